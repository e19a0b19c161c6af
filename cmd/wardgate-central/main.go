// Command wardgate-central is central security's fleet service: it
// ingests the gateways' signed telemetry, stores it (SQLite or
// PostgreSQL) and serves the web UI, the JSON API and /metrics. It only
// parses flags and wires the central packages (central/app does the
// wiring); it never links the gateway agent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/wardgate/wardgate/central/app"
	"github.com/wardgate/wardgate/central/config"
	gwconfig "github.com/wardgate/wardgate/config"
)

// Set by the Makefile with -ldflags.
var (
	version   = "dev"
	commit    = "unknown"
	buildTime = ""
)

// Exit statuses: 0 success, 1 runtime failure, 2 usage or configuration
// error.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const usageText = `wardgate-central: central security's fleet service

usage:
  wardgate-central run --config FILE     ingest telemetry, store it, serve the web UI and API
  wardgate-central config check FILE     validate; print every problem as FILE:LINE: path: message
  wardgate-central config example        print a complete, commented example configuration
  wardgate-central command ...           sign a command with your approver key and queue it at central
                                         (command list|show ID: its delivery per gateway)
  wardgate-central lockset sign|cosign|submit|show ...   the signed lock set of the fleet, a site or a gateway
  wardgate-central version               print version, commit, build time and platform
`

func main() {
	os.Exit(run(context.Background(), os.Stdout, os.Stderr, os.Args[1:]))
}

func run(ctx context.Context, stdout, stderr io.Writer, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usageText)
		return exitOK
	case "version":
		bt := buildTime
		if bt == "" {
			bt = "unknown"
		}
		fmt.Fprintf(stdout, "wardgate-central %s\ncommit:     %s\nbuilt:      %s\ngo:         %s\nplatform:   %s/%s\n",
			version, commit, bt, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	case "config":
		return cmdConfig(stdout, stderr, args[1:])
	case "run":
		return cmdRun(ctx, stderr, args[1:])
	case "command":
		return cmdCommand(stdout, stderr, args[1:])
	case "lockset":
		return cmdLockSet(stdout, stderr, args[1:])
	}
	fmt.Fprintf(stderr, "wardgate-central: unknown command %q\n\n%s", args[0], usageText)
	return exitUsage
}

func cmdConfig(stdout, stderr io.Writer, args []string) int {
	switch {
	case len(args) == 1 && args[0] == "example":
		fmt.Fprint(stdout, config.Example)
		return exitOK
	case len(args) == 2 && args[0] == "check":
		if _, err := config.Load(args[1]); err != nil {
			fmt.Fprintln(stderr, err)
			return exitUsage
		}
		fmt.Fprintf(stdout, "%s: ok\n", args[1])
		return exitOK
	}
	fmt.Fprint(stderr, "usage: wardgate-central config check FILE | config example\n")
	return exitUsage
}

func cmdRun(ctx context.Context, stderr io.Writer, args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "", "the configuration `FILE` (see `wardgate-central config example`)")
	debug := fs.Bool("debug", false, "log at debug level")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *file == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "wardgate-central run: --config FILE is required")
		return exitUsage
	}
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		if errors.Is(err, gwconfig.ErrInvalid) {
			return exitUsage
		}
		return exitFailure
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, cfg, app.Options{Logger: logger, Version: version}); err != nil {
		logger.Error("wardgate-central stopped", "err", err)
		return exitFailure
	}
	return exitOK
}
