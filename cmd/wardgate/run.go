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
file is refused, the running configuration stays and an alarm is raised.
A configuration that ran is kept in STATE_DIR as the last known good one;
when the file is invalid at start, the agent starts on that one with an
alarm (with none stored, it exits with status 2). Under systemd
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

	cfg, startProblems, err := loadOrLastGood(*cfgPath, time.Now())
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitUsage
	}
	if startProblems != nil {
		fmt.Fprintf(e.stderr, "%v\nwardgate run: %s is invalid; starting on the last known good configuration (%s) with an alarm\n", startProblems, *cfgPath, cfg.Hash)
	}
	if t := builtAt(); !t.IsZero() && time.Now().Before(t) {
		log.Warn("the clock is earlier than this binary's build time; identity renewal waits for a sane clock", "now", time.Now(), "built", t)
	}
	a, err := agent.New(agent.Options{Config: cfg, Logger: log, Version: version, BuildTime: builtAt(),
		StartProblems: startProblems, ConfigFile: *cfgPath})
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
			if err := a.ReloadFile(*cfgPath); err != nil {
				log.Error("reload refused; the running configuration stays", "err", err)
				continue
			}
			log.Info("configuration reloaded")
		}
	}
}

// loadOrLastGood loads the configuration at path; when it is invalid, it
// falls back to the last known good configuration in the state directory
// the file names, returning the file's problems as startProblems. With no
// usable last known good configuration it returns the file's problems.
func loadOrLastGood(path string, now time.Time) (cfg *config.Config, startProblems error, err error) {
	cfg, err = config.Load(path, now)
	if err == nil {
		return cfg, nil, nil
	}
	dir, _ := config.StateDirOf(path)
	lkg, lerr := config.LoadLastGood(dir, now)
	if lerr != nil {
		if errors.Is(lerr, config.ErrNoLastGood) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("%w\nthe last known good configuration cannot be used either: %w", err, lerr)
	}
	return lkg, err, nil
}
