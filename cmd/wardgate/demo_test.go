package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeDemo writes a stand-in wardgate-demo into dir that prints its
// arguments and exits with status 3.
func fakeDemo(t *testing.T, dir string) {
	t.Helper()
	script := "#!/bin/sh\necho \"demo args: $*\"\nexit 3\n"
	if err := os.WriteFile(filepath.Join(dir, demoBinary), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestDemoRunsDemoBinary checks that `wardgate demo` runs wardgate-demo from
// next to its own executable or from PATH with the same arguments and exit
// status, and says how to get it when it is in neither place.
func TestDemoRunsDemoBinary(t *testing.T) {
	for _, tc := range []struct {
		name           string
		besideExe      bool
		onPath         bool
		args           []string
		code           int
		stdout, stderr string
	}{
		{name: "beside the executable", besideExe: true, args: []string{"--for", "45s", "--json"}, code: 3, stdout: "demo args: --for 45s --json"},
		{name: "on PATH", onPath: true, args: []string{"--keep"}, code: 3, stdout: "demo args: --keep"},
		{name: "help passes through", onPath: true, args: []string{"--help"}, code: 3, stdout: "demo args: --help"},
		{name: "absent", args: []string{"--for", "45s"}, code: exitUsage, stderr: "the demo is a separate binary, wardgate-demo"},
		{name: "absent names make build", code: exitUsage, stderr: "`make build`"},
		{name: "help while absent", args: []string{"--help"}, code: exitOK, stdout: "Usage: wardgate demo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exeDir, pathDir := t.TempDir(), t.TempDir()
			if tc.besideExe {
				fakeDemo(t, exeDir)
			}
			if tc.onPath {
				fakeDemo(t, pathDir)
			}
			t.Setenv("PATH", pathDir)
			old := executable
			executable = func() (string, error) { return filepath.Join(exeDir, "wardgate"), nil }
			defer func() { executable = old }()
			code, out, errs := runCLI(t, "", append([]string{"demo"}, tc.args...)...)
			if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errs, tc.stderr) {
				t.Errorf("exit %d stdout %q stderr %q; want %d, %q and %q", code, out, errs, tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}

// TestDemoEndToEnd runs `wardgate demo` as the README does, with
// wardgate-demo built next to wardgate, and checks every scenario step it
// reports, and that the scenario covered what the README promises.
func TestDemoEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo (about 40 s)")
	}
	bin := buildBinary(t)
	demoBin := filepath.Join(filepath.Dir(bin), demoBinary)
	if out, err := exec.Command("go", "build", "-race", "-o", demoBin, "../wardgate-demo").CombinedOutput(); err != nil {
		t.Fatalf("go build wardgate-demo: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "demo", "--for", "60s", "--json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Errorf("demo exited with %v\nstderr:\n%s", err, stderr.String())
	}
	steps := map[string]bool{}
	kinds := map[string]int{}
	var summary map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
		switch m["type"] {
		case "step":
			id, _ := m["id"].(string)
			ok, _ := m["ok"].(bool)
			steps[id] = ok
			if !ok {
				t.Errorf("step %s failed: %v", id, m["message"])
			}
		case "telemetry":
			kinds[m["kind"].(string)]++
			if v, _ := m["verified"].(bool); !v {
				t.Errorf("unverified telemetry: %v", m)
			}
		case "summary":
			summary = m
		}
	}
	for _, want := range []string{
		"config", "agent", "clinical-allowed", "clinical-refused", "clinical-refused-event", "serial",
		"vendor-refused", "vendor-request-event", "led-pending", "approve-button", "vendor-tunnel", "vendor-session",
		"led-live", "vendor-expiry", "session-end-event", "recording", "lock-cuts", "lock-refuses", "lock-event", "unlock",
		"rotation-overdue", "exception-expiring", "inventory", "rotation", "rotation-no-drop", "rotation-new-handshakes",
		"rotation-event", "telemetry-verified", "telemetry-status", "telemetry-sequence",
	} {
		if _, ran := steps[want]; !ran {
			t.Errorf("step %s did not run", want)
		}
	}
	if summary == nil || summary["ok"] != true {
		t.Errorf("summary: %v", summary)
	}
	for _, k := range []string{"birth", "event", "metrics", "inventory"} {
		if kinds[k] == 0 {
			t.Errorf("no %s telemetry printed", k)
		}
	}
}

// buildBinary builds wardgate once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := osMkdirTemp()
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "wardgate")
		out, err := exec.Command("go", "build", "-race", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = &buildError{err: err, out: string(out)}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}
