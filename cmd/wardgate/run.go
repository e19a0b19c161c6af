package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/agent"
)

func init() {
	register(cliCommand{name: "run", summary: "run the agent (foreground; systemd-friendly)", run: cmdRun})
}

const runAbout = `Runs the agent in the foreground until SIGTERM or SIGINT, which drain
connections within gateway.drain_timeout. SIGHUP re-reads the configuration:
devices whose settings did not change keep their connections; an invalid
file is refused and the running configuration stays. Under systemd
(Type=notify) it reports READY=1 and WATCHDOG=1 while healthy.`

func cmdRun(e *env, args []string) int {
	fs := newFlags(e, "run --config FILE", runAbout)
	cfgPath := fs.String("config", defaultConfig, "configuration `FILE`")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logJSON := fs.Bool("log-json", false, "log as JSON lines (default: text)")
	if code, ok := parse(e, fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(e.stderr, "wardgate run: --log-level %q: use debug, info, warn or error\n", *logLevel)
		return exitUsage
	}
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(e.stderr, hopts)
	if *logJSON {
		h = slog.NewJSONHandler(e.stderr, hopts)
	}
	log := slog.New(h)

	cfg, err := config.Load(*cfgPath, time.Now())
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitUsage
	}
	if t := builtAt(); !t.IsZero() && time.Now().Before(t) {
		log.Warn("the clock is earlier than this binary's build time; identity renewal waits for a sane clock", "now", time.Now(), "built", t)
	}
	a, err := agent.New(agent.Options{Config: cfg, Logger: log, Version: version, BuildTime: builtAt()})
	if err != nil {
		fmt.Fprintln(e.stderr, "wardgate run:", err)
		if errors.Is(err, agent.ErrNotEnrolled) {
			return exitUsage
		}
		return exitFailure
	}
	defer a.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	for {
		select {
		case err := <-done:
			if err != nil {
				fmt.Fprintln(e.stderr, "wardgate run:", err)
				return exitFailure
			}
			return exitOK
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				log.Info("signal received: stopping", "signal", sig.String())
				cancel()
				continue
			}
			next, err := config.Load(*cfgPath, time.Now())
			if err != nil {
				log.Error("reload refused: the configuration has problems; the running one stays", "problems", err.Error())
				continue
			}
			if err := a.Reload(next); err != nil {
				log.Error("reload refused; the running configuration stays", "err", err)
				continue
			}
			log.Info("configuration reloaded", "hash", next.Hash)
		}
	}
}
