package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// TestFleetsim runs a small fleet against the real central binary and
// checks the lines scripts/benchtable reads.
func TestFleetsim(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts wardgate-central, mosquitto and PostgreSQL")
	}
	if _, err := exec.LookPath("mosquitto"); err != nil {
		if _, err := exec.LookPath("/usr/sbin/mosquitto"); err != nil {
			t.Skip("mosquitto not installed (scripts/deps.sh installs it)")
		}
	}
	bin := filepath.Join(t.TempDir(), "wardgate-central")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/wardgate-central").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out, opts{central: bin, db: "sqlite", gateways: 5, burst: 200, rate: 100, steady: time.Second}); err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{`(?m)^BenchmarkCentralIngest/sqlite/5gw/burst 1 \d+ msgs/s 200 msgs$`, `(?m)^BenchmarkCentralIngest/sqlite/5gw/steady100 1 \d+ p99-ms \d+ msgs$`} {
		if !regexp.MustCompile(re).Match(out.Bytes()) {
			t.Errorf("output lacks %s:\n%s", re, out.String())
		}
	}
}
