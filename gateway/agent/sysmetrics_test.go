package agent

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSysStats(t *testing.T) {
	proc := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(proc, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("meminfo", "MemTotal:        1000 kB\nMemFree:          100 kB\nMemAvailable:     250 kB\n")
	write("stat", "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3\n")
	s := &sysStats{proc: proc}
	got, err := s.sample(proc)
	if err != nil {
		t.Fatal(err)
	}
	if got.MemTotal != 1000*1024 || got.MemUsed != 750*1024 || got.CPUPercent != 0 || got.DiskTotal == 0 {
		t.Fatalf("first sample %+v", got)
	}
	// 100 more busy jiffies out of 400 -> 25%.
	write("stat", "cpu  150 0 150 1100 0 0 0 0 0 0\n")
	if got, _ = s.sample(proc); got.CPUPercent != 25 {
		t.Fatalf("cpu %v, want 25", got.CPUPercent)
	}
	write("stat", "intr 1\n")
	write("meminfo", "garbage\n")
	if _, err := s.sample(filepath.Join(proc, "missing")); err == nil {
		t.Fatal("bad /proc accepted")
	}
}
