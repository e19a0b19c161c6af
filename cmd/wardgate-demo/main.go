// Command wardgate-demo plays `wardgate demo`: the whole product in one
// process on loopback. It is a binary of its own so that the gateway binary
// carries production code only: the embedded MQTT broker, the simulated
// devices and the pseudo-terminals live here, in gateway/demo. `wardgate
// demo` finds this binary next to itself or on PATH and runs it with the same
// arguments.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wardgate/wardgate/gateway/demo"
)

// Exit statuses, as for wardgate (docs/architecture.md): 0 every step behaved, 1 a step
// failed, 2 usage error.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// Set by the Makefile with -ldflags "-X main.version=...".
var version = "dev"

const about = `Runs everything in one process on loopback, without root and with nothing
installed: a development CA, an embedded MQTT broker, a simulated infusion
pump (TCP) and patient monitor (serial, on a pseudo-terminal), simulated
hardware and the agent. It then plays a scenario: a clinical client passes the
mTLS front; a vendor is refused, asks, the approve button is pressed, the
session runs, is recorded and is cut at expiry; a lock stops an identity;
owners are told of an overdue rotation and an expiring exception; the gateway
certificate rotates under a live session; central security verifies every
telemetry message. Exit 0 when every step behaved, 1 otherwise.`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Stdout, os.Stderr, os.Args[1:], demo.Run)
	stop()
	os.Exit(code)
}

// runFunc is demo.Run; tests pass a stand-in.
type runFunc func(context.Context, demo.Options) (bool, error)

func run(ctx context.Context, stdout, stderr io.Writer, args []string, play runFunc) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	usage := func(w io.Writer) {
		fs.SetOutput(w)
		fmt.Fprintf(w, "Usage: wardgate demo [--for DURATION] [--json] [--keep]\n\n%s\n\nFlags:\n", about)
		fs.PrintDefaults()
	}
	fs.Usage = func() {} // printed below, to the right stream
	forD := fs.Duration("for", 90*time.Second, "time budget of the scenario; vendor sessions are sized to fit")
	asJSON := fs.Bool("json", false, "one JSON object per line (steps, telemetry, summary)")
	keep := fs.Bool("keep", false, "keep the state directory and stay up after the scenario (Ctrl-C stops) to click through central's pages")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		usage(stdout)
		return exitOK
	} else if err != nil {
		usage(stderr)
		return exitUsage
	}
	if fs.NArg() > 0 || *forD < 30*time.Second {
		fmt.Fprintln(stderr, "wardgate demo: --for must be at least 30s, and no other arguments")
		return exitUsage
	}
	ok, err := play(ctx, demo.Options{For: *forD, JSON: *asJSON, Out: stdout, Version: version, Keep: *keep, Central: startCentral})
	if err != nil {
		fmt.Fprintln(stderr, "wardgate demo:", err)
	}
	if !ok {
		return exitFailure
	}
	return exitOK
}
