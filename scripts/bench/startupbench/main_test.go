package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// TestBench measures two starts of the real binary and checks the lines
// scripts/benchtable reads.
func TestBench(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts wardgate")
	}
	bin := filepath.Join(t.TempDir(), "wardgate")
	if out, err := exec.Command("go", "build", "-o", bin, "../../../cmd/wardgate").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var buf bytes.Buffer
	err := bench(&buf, bin, 2, 60*time.Second)
	out := buf.Bytes()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out)
	}
	for _, name := range []string{"StartupToReady", "StartupToClinicalTLS"} {
		re := regexp.MustCompile(`(?m)^Benchmark` + name + ` 1 [0-9]+\.[0-9]{2} ms/start$`)
		if n := len(re.FindAll(out, -1)); n != 2 {
			t.Errorf("%d %s lines, want 2:\n%s", n, name, out)
		}
	}
	if !bytes.HasPrefix(out, []byte("pkg: cmd/wardgate")) {
		t.Errorf("no pkg: line first:\n%s", out)
	}
}
