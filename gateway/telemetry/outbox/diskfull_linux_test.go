package outbox

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// smallDisk mounts a 2 MiB tmpfs on a fresh directory, unmounted at the
// end of the test. It needs root (CAP_SYS_ADMIN); without it the test is
// skipped, except in CI where it must run.
func smallDisk(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("mounts a tmpfs; not in the -short runs under qemu-user")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=2m,mode=0700"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount a tmpfs for the disk-full test (run as root): %v", err)
		}
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	// Registered after TempDir's removal, so it runs before it.
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file until the disk is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for range 1024 { // 4 MiB at most: twice the disk
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
	t.Fatal("the disk never filled up")
}

// TestDiskFull: on a full state disk Enqueue fails with ErrDiskFull,
// raises AlarmWriteFailed once, changes nothing, and works again once
// space was freed; what was stored before survives a reopen.
func TestDiskFull(t *testing.T) {
	dir := smallDisk(t)
	path := filepath.Join(dir, "outbox.db")
	var alarms []string
	opts := Options{OnAlarm: func(kind, _ string) { alarms = append(alarms, kind) }}
	o, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() }) // before the unmount
	ev := Record{Class: ClassEvent, Kind: "event", Body: make([]byte, 8<<10)}
	if _, err := o.Enqueue(ev); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	fill(t, filler)

	// Freed pages inside the file may still take a few records: keep
	// going until the file must grow.
	var failed error
	var stored int
	for range 200 {
		before := o.Stats()
		if _, err := o.Enqueue(ev); err != nil {
			failed = err
			if after := o.Stats(); after != before {
				t.Fatalf("a failed enqueue changed the outbox: %+v, was %+v", after, before)
			}
			break
		}
		stored++
	}
	if failed == nil {
		t.Fatal("enqueue never failed on a full disk")
	}
	if !errors.Is(failed, ErrDiskFull) || !errors.Is(failed, ErrWriteFailed) {
		t.Fatalf("enqueue on a full disk: %v; want ErrDiskFull", failed)
	}
	t.Logf("stored %d more, then: %v", stored, failed)
	next := o.Stats().NextSeq
	if _, err := o.Enqueue(ev); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("second enqueue on a full disk: %v", err)
	}
	if len(alarms) != 1 || alarms[0] != AlarmWriteFailed {
		t.Fatalf("alarms %v, want one %s", alarms, AlarmWriteFailed)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	seq, err := o.Enqueue(ev)
	if err != nil {
		t.Fatalf("enqueue after space was freed: %v", err)
	}
	if seq != next {
		t.Fatalf("seq %d after the failure, want %d: failed enqueues must not use numbers", seq, next)
	}
	want := 1 + stored + 1
	if n := o.Len(); n != want {
		t.Fatalf("%d stored, want %d", n, want)
	}
	o.Close()
	o2, err := Open(path, opts)
	if err != nil {
		t.Fatalf("reopen after a full disk: %v", err)
	}
	defer o2.Close()
	recs, err := o2.Peek(1000, nil)
	if err != nil || len(recs) != want {
		t.Fatalf("after reopen %d records (%v), want %d", len(recs), err, want)
	}
	if len(alarms) != 1 {
		t.Fatalf("alarms %v", alarms)
	}
}
