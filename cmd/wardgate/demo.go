package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
)

func init() {
	register(cliCommand{name: "demo", summary: "the whole product in one process on loopback, narrated (runs wardgate-demo)", run: cmdDemo})
}

// demoBinary is the demo's own binary. The gateway binary does not link the
// demo (its embedded broker, simulated devices and pseudo-terminals); `wardgate
// demo` runs this one instead, with the same arguments. cmd/wardgate-demo.
const demoBinary = "wardgate-demo"

// executable is os.Executable; tests replace it.
var executable = os.Executable

// findDemo returns the demo binary next to the executable exe, else the one
// on PATH.
func findDemo(exe string) (string, error) {
	if exe != "" {
		p := filepath.Join(filepath.Dir(exe), demoBinary)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return exec.LookPath(demoBinary)
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help"
}

func cmdDemo(e *env, args []string) int {
	exe, _ := executable()
	bin, err := findDemo(exe)
	if err != nil && len(args) == 1 && isHelp(args[0]) {
		fmt.Fprintf(e.stdout, "Usage: wardgate demo [--for DURATION] [--json] [--keep]\n\n"+
			"Runs %s, the demo's own binary, with these arguments: the whole product\n"+
			"in one process on loopback, narrated. It is not installed here: build it with\n"+
			"`make build`, or build and play the demo with `make demo`.\n", demoBinary)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "wardgate demo: the demo is a separate binary, %s, found neither next to this\n"+
			"one (%s) nor on PATH. Build both with `make build` (bin/wardgate and\n"+
			"bin/%s), or build and play the demo at once with `make demo`.\n", demoBinary, exe, demoBinary)
		return exitUsage
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = e.stdin, e.stdout, e.stderr
	// The demo stops on SIGINT or SIGTERM: pass them on and wait for it.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(e.stderr, "wardgate demo:", err)
		return exitFailure
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case sig := <-sigs:
			cmd.Process.Signal(sig)
		case err := <-done:
			var exit *exec.ExitError
			switch {
			case err == nil:
				return exitOK
			case errors.As(err, &exit) && exit.ExitCode() >= 0:
				return exit.ExitCode()
			}
			fmt.Fprintln(e.stderr, "wardgate demo:", err)
			return exitFailure
		}
	}
}
