package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestDemoEndToEnd runs the real binary's demo and checks every scenario
// step it reports, and that the scenario covered what DESIGN.md promises.
func TestDemoEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo (about 40 s)")
	}
	bin := buildBinary(t)
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
