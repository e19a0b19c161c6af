package main

import (
	"fmt"
	"runtime"
	"time"
)

// Set by the Makefile with -ldflags "-X main.version=... -X main.commit=...
// -X main.buildTime=RFC3339".
var (
	version   = "dev"
	commit    = "unknown"
	buildTime = ""
)

// builtAt is the build time, the earliest time the clock may sanely show;
// zero when unknown.
func builtAt() time.Time {
	t, err := time.Parse(time.RFC3339, buildTime)
	if err != nil {
		return time.Time{}
	}
	return t
}

func init() {
	register(cliCommand{name: "version", summary: "print version, commit, build time, Go version and platform", run: cmdVersion})
}

func cmdVersion(e *env, args []string) int {
	fs := newFlags(e, "version", "Prints the version, commit, build time, Go version and GOOS/GOARCH of this binary.")
	if code, ok := parse(e, fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(e.stderr, "wardgate version: takes no arguments")
		return exitUsage
	}
	bt := buildTime
	if bt == "" {
		bt = "unknown"
	}
	fmt.Fprintf(e.stdout, "wardgate %s\ncommit:     %s\nbuilt:      %s\ngo:         %s\nplatform:   %s/%s\n",
		version, commit, bt, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}
