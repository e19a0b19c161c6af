package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/gateway/demo"
)

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		ok       bool
		err      error
		code     int
		stdout   string
		stderr   string
		played   bool
		wantOpts demo.Options
	}{
		{name: "defaults", ok: true, code: exitOK, played: true, wantOpts: demo.Options{For: 90 * time.Second}},
		{name: "flags", args: []string{"--for", "45s", "--json", "--keep"}, ok: true, code: exitOK, played: true,
			wantOpts: demo.Options{For: 45 * time.Second, JSON: true, Keep: true}},
		{name: "step failed", ok: false, code: exitFailure, played: true, wantOpts: demo.Options{For: 90 * time.Second}},
		{name: "error", ok: false, err: errors.New("no pty"), code: exitFailure, stderr: "wardgate demo: no pty", played: true,
			wantOpts: demo.Options{For: 90 * time.Second}},
		{name: "too short", args: []string{"--for", "10s"}, code: exitUsage, stderr: "at least 30s"},
		{name: "extra argument", args: []string{"now"}, code: exitUsage, stderr: "no other arguments"},
		{name: "bad flag", args: []string{"--fast"}, code: exitUsage, stderr: "Usage: wardgate demo"},
		{name: "help", args: []string{"--help"}, code: exitOK, stdout: "Usage: wardgate demo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			played := false
			code := run(context.Background(), &out, &errb, tc.args, func(_ context.Context, o demo.Options) (bool, error) {
				played = true
				if o.For != tc.wantOpts.For || o.JSON != tc.wantOpts.JSON || o.Keep != tc.wantOpts.Keep || o.Out != &out {
					t.Errorf("options %+v, want %+v writing to stdout", o, tc.wantOpts)
				}
				return tc.ok, tc.err
			})
			if code != tc.code || played != tc.played {
				t.Errorf("exit %d played %v, want %d %v", code, played, tc.code, tc.played)
			}
			if !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("stdout %q stderr %q, want %q and %q", out.String(), errb.String(), tc.stdout, tc.stderr)
			}
		})
	}
}
