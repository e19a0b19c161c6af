package recording

import (
	"errors"
	"sync"
	"testing"

	"github.com/jonboulle/clockwork"
)

// TestPruneNeedsReceipt: with Archived set (an upload URL configured), a
// delivered recording is pruned only once central's receipt is held.
func TestPruneNeedsReceipt(t *testing.T) {
	dir := t.TempDir()
	d := &delivery{all: true}
	var mu sync.Mutex
	archived := map[string]bool{}
	fail := false
	s := openStore(t, dir, StoreOptions{Clock: clockwork.NewFakeClockAt(t0)})
	for i, id := range []string{"s-1", "s-2"} {
		record(t, s, id, 10)
		if err := s.Ended(id, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	s = openStore(t, dir, StoreOptions{Clock: clockwork.NewFakeClockAt(t0), MaxBytes: 1, Delivered: d.Delivered,
		Archived: func(session string) (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			if fail {
				return false, errors.New("receipts unreadable")
			}
			return archived[session], nil
		}})
	if got := s.EndedRecordings(); len(got) != 2 || got[0].Session != "s-1" || got[1].EndSeq != 2 {
		t.Fatalf("EndedRecordings = %+v", got)
	}
	if n, _, err := s.Prune(); n != 0 || err != nil {
		t.Fatalf("prune without receipts: %d, %v", n, err)
	}
	mu.Lock()
	archived["s-2"] = true
	mu.Unlock()
	if n, _, err := s.Prune(); n != 1 || err != nil || exists(s.Path("s-2")) || !exists(s.Path("s-1")) {
		t.Fatalf("prune with one receipt: %d, %v", n, err)
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	if n, _, err := s.Prune(); n != 0 || err == nil {
		t.Fatalf("prune with failing receipts: %d, %v", n, err)
	}
}
