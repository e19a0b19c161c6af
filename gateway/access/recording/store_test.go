package recording

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// delivery is a fake central: Delivered reports the seqs marked delivered.
type delivery struct {
	mu    sync.Mutex
	seqs  map[uint64]bool
	all   bool
	err   error
	asked []uint64
}

func (d *delivery) Delivered(seq uint64) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.asked = append(d.asked, seq)
	return d.all || d.seqs[seq], d.err
}

func (d *delivery) set(seqs ...uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seqs == nil {
		d.seqs = map[uint64]bool{}
	}
	for _, s := range seqs {
		d.seqs[s] = true
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openStore(t testing.TB, dir string, o StoreOptions) *Store {
	t.Helper()
	if o.Clock == nil {
		o.Clock = clockwork.NewFakeClockAt(t0)
	}
	if o.Logger == nil {
		o.Logger = quiet
	}
	s, err := OpenStore(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// record writes a closed recording of n data bytes and returns its size.
func record(t testing.TB, s *Store, id string, n int) int64 {
	t.Helper()
	w, err := s.Create(id, Header{Grant: "G", Vendor: "v", Device: "d", Port: 23, Start: t0})
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	if err := w.Write(ToDevice, t0, make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(t0, "closed"); err != nil {
		t.Fatal(err)
	}
	return w.Size()
}

// diskBytes sums the sizes of the recordings in dir.
func diskBytes(t testing.TB, dir string) int64 {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*"+recExt))
	var n int64
	for _, p := range m {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestOpenStoreOptions(t *testing.T) {
	tests := []struct {
		name string
		o    StoreOptions
		want []string // every one in the error
	}{
		{"negative max bytes", StoreOptions{MaxBytes: -1}, []string{"MaxBytes -1 is negative"}},
		{"share above one", StoreOptions{MaxFreeShare: 1.5}, []string{"MaxFreeShare 1.5 is not between 0 and 1"}},
		{"negative share", StoreOptions{MaxFreeShare: -0.1}, []string{"MaxFreeShare -0.1"}},
		{"negative durations", StoreOptions{FsyncEvery: -1, PruneEvery: -1, Retain: -1},
			[]string{"FsyncEvery -1ns is negative", "PruneEvery -1ns is negative", "Retain -1ns is negative"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenStore(t.TempDir(), tc.o)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	t.Run("empty dir", func(t *testing.T) {
		if _, err := OpenStore("", StoreOptions{}); err == nil || !strings.Contains(err.Error(), "directory is empty") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("dir is a file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenStore(p, StoreOptions{}); err == nil || !strings.Contains(err.Error(), "recording store: create directory") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("defaults and modes", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "rec")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		s := openStore(t, dir, StoreOptions{})
		if s.o.MaxBytes != DefaultMaxBytes || s.o.FsyncEvery != DefaultFsyncEvery || s.o.PruneEvery != DefaultPruneEvery || s.o.Retain != 0 {
			t.Fatalf("defaults %+v", s.o)
		}
		if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
			t.Fatalf("dir mode %v", fi.Mode())
		}
		record(t, s, "S-1", 10)
		if err := s.Ended("S-1", 7); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{s.Path("S-1"), filepath.Join(dir, "S-1.end")} {
			if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
				t.Fatalf("%s mode %v", p, fi.Mode())
			}
		}
		if _, c := s.Usage(); c != DefaultMaxBytes {
			t.Fatalf("cap %d", c)
		}
	})
}

func TestCreateRefusesWhenFull(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, StoreOptions{})
	a := record(t, s, "A-1", 1000)
	b := record(t, s, "B-1", 1000)
	for i, id := range []string{"A-1", "B-1"} {
		if err := s.Ended(id, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}

	d := &delivery{}
	s = openStore(t, dir, StoreOptions{MaxBytes: a + b, Delivered: d.Delivered})
	_, err := s.Create("C-1", Header{Start: t0})
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Create on a full store: %v", err)
	}
	for _, want := range []string{
		"recording store is full",
		"deleted only after central has received their session-end events",
		"raise gateway.recordings.max_bytes",
		fmt.Sprintf("recordings use %d bytes, cap %d bytes", a+b, a+b),
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	if exists(s.Path("C-1")) {
		t.Fatal("refused recording left a file")
	}
	if used, _ := s.Usage(); used != a+b {
		t.Fatalf("usage %d after refusal, want %d", used, a+b)
	}

	// Central receives A-1's session-end event: Create prunes it first.
	d.set(1)
	w, err := s.Create("C-1", Header{Start: t0})
	if err != nil {
		t.Fatalf("Create after delivery: %v", err)
	}
	defer w.Close(t0, "")
	if exists(s.Path("A-1")) || !exists(s.Path("B-1")) {
		t.Fatal("pruning removed the wrong recording")
	}
}

func TestCreateErrors(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, StoreOptions{})
	live, err := s.Create("LIVE-1", Header{Start: t0})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close(t0, "")
	if err := os.WriteFile(filepath.Join(dir, "HAND-1.cbor"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		session string
		h       Header
		is      error
		msg     string
	}{
		{"empty id", "", Header{}, ErrInvalidSession, `create recording "":`},
		{"hidden", ".x", Header{}, ErrInvalidSession, ""},
		{"slash", "a/b", Header{}, ErrInvalidSession, ""},
		{"dot dot", "..", Header{}, ErrInvalidSession, ""},
		{"space", "a b", Header{}, ErrInvalidSession, ""},
		{"too long", strings.Repeat("a", 129), Header{}, ErrInvalidSession, ""},
		{"header names another session", "S-1", Header{Session: "S-2"}, nil, `header names session "S-2"`},
		{"live duplicate", "LIVE-1", Header{}, fs.ErrExist, "create recording LIVE-1"},
		{"file added by hand", "HAND-1", Header{}, fs.ErrExist, "create recording HAND-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := s.Create(tc.session, tc.h)
			if err == nil {
				w.Close(t0, "")
				t.Fatal("no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q lacks %q", err, tc.msg)
			}
		})
	}
	t.Run("directory removed", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "rec")
		s := openStore(t, dir, StoreOptions{})
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
		_, err := s.Create("S-1", Header{})
		if err == nil || errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "create recording S-1") {
			t.Fatalf("err = %v", err)
		}
		if st := s.Stats(); st.Recordings != 0 || st.Bytes != 0 || !strings.Contains(st.LastError, "read recordings directory") {
			t.Fatalf("stats after failed create: %+v", st)
		}
	})
	if used := s.Stats().Bytes; used != diskBytes(t, dir) {
		t.Fatalf("usage %d, disk %d", used, diskBytes(t, dir))
	}
}

func TestUsageFollowsFiles(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, StoreOptions{})
	sizes := map[string]int64{}
	for i, id := range []string{"A-1", "B-1", "C-1"} {
		sizes[id] = record(t, s, id, 100*(i+1))
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), make([]byte, 5000), 0o600); err != nil {
		t.Fatal(err)
	}
	total := sizes["A-1"] + sizes["B-1"] + sizes["C-1"]
	if used, _ := s.Usage(); used != total || used != diskBytes(t, dir) {
		t.Fatalf("usage %d, want %d", used, total)
	}

	s = openStore(t, dir, StoreOptions{}) // restart
	if used, _ := s.Usage(); used != total {
		t.Fatalf("usage after reopen %d, want %d", used, total)
	}

	// Deleted by hand: gone at the next open, and at the next prune.
	if err := os.Remove(s.Path("B-1")); err != nil {
		t.Fatal(err)
	}
	if used, _ := openStore(t, dir, StoreOptions{}).Usage(); used != total-sizes["B-1"] {
		t.Fatalf("usage after deleting B-1 and reopening %d, want %d", used, total-sizes["B-1"])
	}
	if _, _, err := s.Prune(); err != nil {
		t.Fatal(err)
	}
	if used, _ := s.Usage(); used != total-sizes["B-1"] {
		t.Fatalf("usage after deleting B-1 and pruning %d, want %d", used, total-sizes["B-1"])
	}
	if err := s.Ended("B-1", 1); !errors.Is(err, ErrUnknownSession) {
		t.Fatalf("Ended of a deleted recording: %v", err)
	}
	if st := s.Stats(); st.Recordings != 2 || st.Unended != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPruneOldestDeliveredFirstAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	clock := clockwork.NewFakeClockAt(t0)
	s := openStore(t, dir, StoreOptions{Clock: clock})
	// End order differs from name order: c-old, a-mid, b-new; d-cut never ends.
	var size int64
	for i, id := range []string{"c-old", "a-mid", "b-new"} {
		size = record(t, s, id, 1000)
		if err := s.Ended(id, uint64(10+i)); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Hour)
	}
	record(t, s, "d-cut", 1000)
	if used, _ := s.Usage(); used != 4*size {
		t.Fatalf("recordings differ in size: usage %d, last %d", used, size)
	}

	d := &delivery{}
	var removedIDs []string
	var mu sync.Mutex
	onRemove := func(r Removed) {
		mu.Lock()
		defer mu.Unlock()
		removedIDs = append(removedIDs, r.Session)
		if r.Bytes != size || r.File != r.Session+".cbor" {
			t.Errorf("removed %+v", r)
		}
	}
	// Restart with a cap of 3 recordings: low water is 2.4 recordings.
	s = openStore(t, dir, StoreOptions{Clock: clock, MaxBytes: 3 * size, Delivered: d.Delivered, OnRemove: onRemove})

	steps := []struct {
		name      string
		deliver   []uint64
		all       bool
		removed   int
		order     []string
		remaining []string
	}{
		{"nothing delivered", nil, false, 0, nil, []string{"a-mid", "b-new", "c-old", "d-cut"}},
		{"a-mid and b-new delivered", []uint64{11, 12}, false, 2, []string{"a-mid", "b-new"}, []string{"c-old", "d-cut"}},
		{"below low water", []uint64{10}, false, 0, []string{"a-mid", "b-new"}, []string{"c-old", "d-cut"}},
	}
	for _, st := range steps {
		d.set(st.deliver...)
		n, freed, err := s.Prune()
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if n != st.removed || freed != int64(n)*size {
			t.Fatalf("%s: removed %d (%d bytes), want %d", st.name, n, freed, st.removed)
		}
		if !slices.Equal(removedIDs, st.order) {
			t.Fatalf("%s: removed %v, want %v", st.name, removedIDs, st.order)
		}
		var left []string
		for _, id := range []string{"a-mid", "b-new", "c-old", "d-cut"} {
			if exists(s.Path(id)) {
				left = append(left, id)
			}
		}
		if !slices.Equal(left, st.remaining) {
			t.Fatalf("%s: left %v, want %v", st.name, left, st.remaining)
		}
		if exists(filepath.Join(dir, "a-mid.end")) != slices.Contains(st.remaining, "a-mid") {
			t.Fatalf("%s: end marker of a-mid not removed with it", st.name)
		}
	}
	if st := s.Stats(); st.Removed != 2 || st.RemovedBytes != 2*size || st.LastPrune.IsZero() || st.Ended != 1 || st.Unended != 1 {
		t.Fatalf("stats %+v", st)
	}

	// Restart with a tiny cap and everything delivered: the unended one stays.
	d.all = true
	s = openStore(t, dir, StoreOptions{Clock: clock, MaxBytes: 1, Delivered: d.Delivered})
	if n, _, err := s.Prune(); n != 1 || err != nil {
		t.Fatalf("prune: %d, %v", n, err)
	}
	if !exists(s.Path("d-cut")) || exists(s.Path("c-old")) {
		t.Fatal("unended recording removed, or delivered one kept")
	}

	// Without Delivered, nothing is ever removed.
	if err := s.Ended("d-cut", 13); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, StoreOptions{Clock: clock, MaxBytes: 1})
	if n, _, err := s.Prune(); n != 0 || err != nil {
		t.Fatalf("prune without Delivered: %d, %v", n, err)
	}
}

func TestPruneRetain(t *testing.T) {
	dir := t.TempDir()
	clock := clockwork.NewFakeClockAt(t0)
	d := &delivery{}
	s := openStore(t, dir, StoreOptions{Clock: clock, Retain: 24 * time.Hour, Delivered: d.Delivered})
	for i, id := range []string{"old-delivered", "old-undelivered"} {
		record(t, s, id, 10)
		if err := s.Ended(id, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(2 * time.Hour)
	record(t, s, "young-delivered", 10)
	if err := s.Ended("young-delivered", 3); err != nil {
		t.Fatal(err)
	}
	d.set(1, 3)
	clock.Advance(23 * time.Hour)
	if n, _, err := s.Prune(); n != 1 || err != nil {
		t.Fatalf("prune: %d, %v", n, err)
	}
	if exists(s.Path("old-delivered")) || !exists(s.Path("old-undelivered")) || !exists(s.Path("young-delivered")) {
		t.Fatal("retention removed the wrong recordings")
	}
	d.mu.Lock()
	asked := d.asked
	d.mu.Unlock()
	if !slices.Equal(asked, []uint64{1, 2}) {
		t.Fatalf("asked central about %v, want the expired ones [1 2]", asked)
	}
}

func TestPruneErrors(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, StoreOptions{})
	record(t, s, "A-1", 10)
	record(t, s, "B-1", 10)
	for i, id := range []string{"A-1", "B-1"} {
		if err := s.Ended(id, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	d := &delivery{all: true, err: errors.New("bbolt: database not open")}
	s = openStore(t, dir, StoreOptions{MaxBytes: 1, Delivered: d.Delivered})
	n, _, err := s.Prune()
	if n != 0 || err == nil || !strings.Contains(err.Error(), "ask whether central has session-end event 1 of A-1: bbolt: database not open") {
		t.Fatalf("prune: %d, %v", n, err)
	}
	if len(d.asked) != 1 {
		t.Fatalf("asked %v after the first error", d.asked)
	}
	if st := s.Stats(); !strings.Contains(st.LastError, "bbolt") {
		t.Fatalf("LastError %q", st.LastError)
	}
	// Create logs the failed prune and still records while there is room.
	s2 := openStore(t, dir, StoreOptions{Delivered: d.Delivered})
	w, err := s2.Create("C-1", Header{})
	if err != nil {
		t.Fatalf("Create despite a prune error: %v", err)
	}
	w.Close(t0, "")

	t.Run("directory unreadable", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "rec")
		s := openStore(t, dir, StoreOptions{})
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Prune(); err == nil || !strings.Contains(err.Error(), "prune recordings: read recordings directory") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestEndedErrors(t *testing.T) {
	dir := t.TempDir()
	markerFails := errors.New("disk full")
	s := openStore(t, dir, StoreOptions{syncFile: func(f *os.File) error {
		if strings.HasSuffix(f.Name(), tmpExt) {
			return markerFails
		}
		return f.Sync()
	}})
	record(t, s, "A-1", 10)
	tests := []struct {
		name    string
		session string
		is      error
	}{
		{"invalid", "../A-1", ErrInvalidSession},
		{"unknown", "Z-1", ErrUnknownSession},
		{"marker write fails", "A-1", markerFails},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Ended(tc.session, 1)
			if !errors.Is(err, tc.is) || !strings.HasPrefix(err.Error(), "end recording ") {
				t.Fatalf("err = %v, want %v", err, tc.is)
			}
		})
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 1 || left[0].Name() != "A-1.cbor" {
		t.Fatalf("directory holds %v", left)
	}
	if got := s.Unended(); !slices.Equal(got, []string{"A-1"}) {
		t.Fatalf("Unended %v", got)
	}
}

func TestShareOfFreeDisk(t *testing.T) {
	diskErr := errors.New("statfs: no such device")
	tests := []struct {
		name      string
		max       int64
		share     float64
		avail     int64
		err       error
		wantCap   int64
		wantShare int64
		wantMsg   string
	}{
		{"share below max", 1 << 30, 0.25, 9000, nil, 2500, 2500, ""},       // 0.25 * (9000 + 1000)
		{"max below share", 2000, 0.25, 9000, nil, 2000, 2500, ""},          //
		{"no share limit", 3000, 0, 9000, nil, 3000, 0, ""},                 // DiskAvailable unused
		{"disk full", 1 << 30, 0.5, 0, nil, 500, 500, ""},                   // own bytes still count
		{"statfs fails", 3000, 0.25, 0, diskErr, 3000, 0, "no such device"}, // falls back to MaxBytes
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "OLD-1.cbor"), make([]byte, 1000), 0o600); err != nil {
				t.Fatal(err)
			}
			calls := 0
			s := openStore(t, dir, StoreOptions{MaxBytes: tc.max, MaxFreeShare: tc.share, DiskAvailable: func(d string) (int64, error) {
				calls++
				if d != dir {
					t.Errorf("DiskAvailable(%q)", d)
				}
				return tc.avail, tc.err
			}})
			used, c := s.Usage()
			if used != 1000 || c != tc.wantCap {
				t.Fatalf("Usage = %d, %d; want 1000, %d", used, c, tc.wantCap)
			}
			st := s.Stats()
			if st.Cap != tc.wantCap || st.ShareCap != tc.wantShare || st.MaxBytes != tc.max || !strings.Contains(st.LastError, tc.wantMsg) {
				t.Fatalf("stats %+v", st)
			}
			if (tc.share == 0) != (calls == 0) {
				t.Fatalf("DiskAvailable called %d times", calls)
			}
		})
	}
	t.Run("refuses when the share is used", func(t *testing.T) {
		dir := t.TempDir()
		avail := int64(1 << 20)
		s := openStore(t, dir, StoreOptions{MaxFreeShare: 0.25, DiskAvailable: func(string) (int64, error) { return avail, nil }})
		record(t, s, "A-1", 100)
		avail = 0 // the disk filled up with other data
		if _, err := s.Create("B-1", Header{}); !errors.Is(err, ErrFull) {
			t.Fatalf("Create = %v", err)
		}
	})
	t.Run("real statfs", func(t *testing.T) {
		s := openStore(t, t.TempDir(), StoreOptions{MaxFreeShare: 1})
		if st := s.Stats(); st.ShareCap <= 0 || st.LastError != "" {
			t.Fatalf("stats %+v", st)
		}
	})
}

// syncCounter counts fsyncs of recording files.
type syncCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *syncCounter) sync(f *os.File) error {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[filepath.Base(f.Name())]++
	c.mu.Unlock()
	return f.Sync()
}

func (c *syncCounter) get(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[name]
}

// runStore starts s.Run and returns a function that waits for the next
// tick's work, and one that stops Run and checks it returned nil.
// If observe is false, ticks are not reported (tick must not be called).
func runStore(t *testing.T, s *Store, clock *clockwork.FakeClock, observe bool) (tick func(), stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ticks := make(chan struct{})
	if observe {
		s.tickDone = func() {
			select {
			case ticks <- struct{}{}:
			case <-ctx.Done():
			}
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	if err := clock.BlockUntilContext(ctx, 2); err != nil { // both tickers
		t.Fatal(err)
	}
	tick = func() {
		t.Helper()
		select {
		case <-ticks:
		case <-time.After(10 * time.Second):
			t.Fatal("no tick")
		}
	}
	stop = func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v", err)
		}
	}
	return tick, stop
}

func TestPeriodicFsync(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	sc := &syncCounter{}
	s := openStore(t, t.TempDir(), StoreOptions{Clock: clock, FsyncEvery: 2 * time.Second, PruneEvery: time.Hour, syncFile: sc.sync})
	tick, stop := runStore(t, s, clock, true)
	defer stop()
	if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Run = %v", err)
	}

	w, err := s.Create("S-1", Header{Start: t0})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name  string
		do    func()
		syncs int
	}{
		{"header written, not yet synced", nil, 0},
		{"tick syncs the header", func() { clock.Advance(2 * time.Second); tick() }, 1},
		{"tick without new frames", func() { clock.Advance(2 * time.Second); tick() }, 1},
		{"write then tick", func() {
			if err := w.Write(FromDevice, t0, []byte("hello")); err != nil {
				t.Fatal(err)
			}
			clock.Advance(2 * time.Second)
			tick()
		}, 2},
		{"close syncs", func() { w.Close(t0, "") }, 3},
		{"closed recording is not synced", func() { clock.Advance(2 * time.Second); tick() }, 3},
	}
	for _, st := range steps {
		if st.do != nil {
			st.do()
		}
		if got := sc.get("S-1.cbor"); got != st.syncs {
			t.Fatalf("%s: %d fsyncs, want %d", st.name, got, st.syncs)
		}
	}
}

func TestSyncLiveFailureCutsWrites(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	s := openStore(t, t.TempDir(), StoreOptions{Clock: clock, syncFile: func(f *os.File) error {
		if strings.HasSuffix(f.Name(), recExt) {
			return errors.New("EIO")
		}
		return nil
	}})
	w, err := s.Create("S-1", Header{})
	if err != nil {
		t.Fatal(err)
	}
	s.SyncLive()
	s.SyncLive()
	if err := w.Write(ToDevice, t0, []byte("x")); err == nil || !strings.Contains(err.Error(), "sync recording: EIO") {
		t.Fatalf("Write after failed sync = %v", err)
	}
	if st := s.Stats(); !strings.Contains(st.LastError, "sync recording S-1") || st.Live != 1 {
		t.Fatalf("stats %+v", st)
	}
	w.Close(t0, "")
	if st := s.Stats(); st.Live != 0 || st.Unended != 1 {
		t.Fatalf("stats after close %+v", st)
	}
}

func TestCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, StoreOptions{})
	// The gateway stops during a session: no trailer, no end marker.
	w, err := s.Create("CRASHED-1", Header{Start: t0})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ToDevice, t0, make([]byte, 500)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(t0, "") })
	record(t, s, "BAD-1", 10)
	files := map[string]string{
		".DONE-1.end-123.tmp": `{"session":"DONE-1"`, // interrupted marker write
		"GONE-1.end":          `{"session":"GONE-1","seq":3}`,
		"BAD-1.end":           `{"session":"OTHER","seq":4}`, // damaged: names another session
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	d := &delivery{all: true}
	s = openStore(t, dir, StoreOptions{MaxBytes: 1, Delivered: d.Delivered})
	if used, _ := s.Usage(); used != diskBytes(t, dir) || used < 500 {
		t.Fatalf("usage %d, disk %d", used, diskBytes(t, dir))
	}
	for _, name := range []string{".DONE-1.end-123.tmp", "GONE-1.end"} {
		if exists(filepath.Join(dir, name)) {
			t.Errorf("leftover %s not removed", name)
		}
	}
	if got := s.Unended(); !slices.Equal(got, []string{"BAD-1", "CRASHED-1"}) {
		t.Fatalf("Unended %v", got)
	}
	if n, _, err := s.Prune(); n != 0 || err != nil {
		t.Fatalf("prune removed %d unended recordings (%v)", n, err)
	}
	if _, err := s.Create("NEW-1", Header{}); !errors.Is(err, ErrFull) {
		t.Fatalf("Create = %v", err)
	}
	// The owner emits the missing session-end event: then it can go.
	if err := s.Ended("CRASHED-1", 9); err != nil {
		t.Fatal(err)
	}
	if n, _, err := s.Prune(); n != 1 || err != nil || exists(s.Path("CRASHED-1")) {
		t.Fatalf("prune: %d, %v", n, err)
	}
}

func TestConcurrentUse(t *testing.T) {
	dir := t.TempDir()
	clock := clockwork.NewFakeClockAt(t0)
	d := &delivery{all: true}
	s := openStore(t, dir, StoreOptions{Clock: clock, MaxBytes: 40 << 10, Delivered: d.Delivered, FsyncEvery: time.Second, PruneEvery: time.Second})
	_, stop := runStore(t, s, clock, false)
	defer stop()

	var wg sync.WaitGroup
	var seq sync.Mutex
	next := uint64(0)
	for g := range 6 {
		wg.Go(func() {
			for i := range 8 {
				id := fmt.Sprintf("G%d-%d", g, i)
				w, err := s.Create(id, Header{Start: t0})
				if errors.Is(err, ErrFull) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				var ww sync.WaitGroup
				for _, dd := range []Direction{ToDevice, FromDevice} {
					ww.Go(func() {
						for range 10 {
							if err := w.Write(dd, t0, make([]byte, 256)); err != nil {
								t.Error(err)
							}
						}
					})
				}
				ww.Wait()
				if _, err := w.Close(t0, ""); err != nil {
					t.Error(err)
				}
				seq.Lock()
				next++
				n := next
				seq.Unlock()
				if err := s.Ended(id, n); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if _, _, err := s.Prune(); err != nil {
				t.Error(err)
			}
			s.Usage()
			s.Stats()
			s.Unended()
			s.SyncLive()
		}
	})
	for range 20 {
		clock.Advance(time.Second)
	}
	wg.Wait()
	st := s.Stats()
	if st.Bytes != diskBytes(t, dir) {
		t.Fatalf("usage %d, files %d", st.Bytes, diskBytes(t, dir))
	}
	if st.Removed == 0 || st.Live != 0 {
		t.Fatalf("stats %+v: nothing pruned, or writers left live", st)
	}
}
