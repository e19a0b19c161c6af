package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wardgate/wardgate/gateway/demo"
)

func init() {
	register(cliCommand{name: "demo", summary: "the whole product in one process on loopback, narrated", run: cmdDemo})
}

const demoAbout = `Runs everything in one process on loopback, without root and with nothing
installed: a development CA, an embedded MQTT broker, a simulated infusion
pump (TCP) and patient monitor (serial, on a pseudo-terminal), simulated
hardware and the agent. It then plays a scenario: a clinical client passes the
mTLS front; a vendor is refused, asks, the approve button is pressed, the
session runs, is recorded and is cut at expiry; a lock stops an identity;
owners are told of an overdue rotation and an expiring exception; the gateway
certificate rotates under a live session; central security verifies every
telemetry message. Exit 0 when every step behaved, 1 otherwise.`

func cmdDemo(e *env, args []string) int {
	fs := newFlags(e, "demo [--for DURATION] [--json]", demoAbout)
	forD := fs.Duration("for", 90*time.Second, "time budget of the scenario; vendor sessions are sized to fit")
	asJSON := fs.Bool("json", false, "one JSON object per line (steps, telemetry, summary)")
	keep := fs.Bool("keep", false, "keep the demo's state directory (configuration, logs, recordings)")
	if code, ok := parse(e, fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 || *forD < 30*time.Second {
		fmt.Fprintln(e.stderr, "wardgate demo: --for must be at least 30s")
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := demo.Run(ctx, demo.Options{For: *forD, JSON: *asJSON, Out: e.stdout, Version: version, Keep: *keep})
	if err != nil {
		fmt.Fprintln(e.stderr, "wardgate demo:", err)
	}
	if !ok {
		return exitFailure
	}
	return exitOK
}
