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

// TestFleetsimLock runs -mode lock with a small fleet against the real
// central binary and checks the lines it prints.
func TestFleetsimLock(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts wardgate-central and mosquitto")
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
	if err := runLock(ctx, &out, opts{central: bin, db: "sqlite", gateways: 10}); err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{`(?m)^BenchmarkFleetLock/sqlite/10gw/online 1 \d+ p99-ms \d+ max-ms 10 gateways$`,
		`(?m)^BenchmarkFleetLock/sqlite/10gw/late 1 \d+ p99-ms \d+ max-ms 1 gateways$`,
		`(?m)^BenchmarkFleetLock/sqlite/10gw/reported 1 \d+ ms 11 gateways$`} {
		if !regexp.MustCompile(re).Match(out.Bytes()) {
			t.Errorf("output lacks %s:\n%s", re, out.String())
		}
	}
}
