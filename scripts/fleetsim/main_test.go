package main

import (
	"bytes"
	"context"
	"os"
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
	prof := filepath.Join(t.TempDir(), "central.prof")
	if err := run(ctx, &out, opts{central: bin, db: "sqlite", gateways: 5, burst: 200, rate: 100, steady: time.Second,
		cpuprofile: prof, profileFor: time.Second}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(prof); err != nil || fi.Size() == 0 {
		t.Errorf("central's CPU profile (via central.pprof_listen) not written: %v", err)
	}
	for _, re := range []string{`(?m)^BenchmarkCentralIngest/sqlite/5gw/burst 1 \d+ msgs/s 200 msgs \d+ central-cpu-us/msg \d+ broker-cpu-us/msg \d+ fleet-cpu-us/msg$`, `(?m)^BenchmarkCentralIngest/sqlite/5gw/steady100 1 \d+ p99-ms \d+ msgs$`} {
		if !regexp.MustCompile(re).Match(out.Bytes()) {
			t.Errorf("output lacks %s:\n%s", re, out.String())
		}
	}
}
