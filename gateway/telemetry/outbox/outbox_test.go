package outbox

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"
)

func open(t *testing.T, path string, opts Options) *Outbox {
	t.Helper()
	o, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

func TestSeqPersistsAndIsNeverReused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := open(t, path, Options{})
	var last uint64
	for i := range 5 {
		s, err := o.Enqueue(Record{Class: ClassEvent, Kind: "event", Time: int64(i), Body: []byte{0xf6}})
		if err != nil {
			t.Fatal(err)
		}
		if s <= last {
			t.Fatalf("seq %d after %d", s, last)
		}
		last = s
	}
	rs, err := o.ReserveSeq()
	if err != nil || rs != last+1 {
		t.Fatalf("reserve = %d, %v", rs, err)
	}
	sess, _ := o.NextSession()
	if err := o.Ack(1, 2, 3, 4, 5); err != nil {
		t.Fatal(err)
	}
	o.Close()
	o.Close() // idempotent
	if _, err := o.Enqueue(Record{Body: []byte{0xf6}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("enqueue after close: %v", err)
	}

	o2 := open(t, path, Options{})
	s, err := o2.Enqueue(Record{Class: ClassEvent, Kind: "event", Body: []byte{0xf6}})
	if err != nil || s != rs+1 {
		t.Fatalf("after reopen seq = %d (%v), want %d", s, err, rs+1)
	}
	sess2, _ := o2.NextSession()
	if sess2 != sess+1 {
		t.Fatalf("session %d after %d", sess2, sess)
	}
}

func TestPriorityOrder(t *testing.T) {
	o := open(t, filepath.Join(t.TempDir(), "o.db"), Options{})
	for _, c := range []Class{ClassBulk, ClassEvent, ClassBulk, ClassUrgent, ClassEvent} {
		if _, err := o.Enqueue(Record{Class: c, Body: []byte{0xf6}}); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := o.Peek(10, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, r := range recs {
		got = append(got, r.Seq)
	}
	want := []uint64{4, 2, 5, 1, 3}
	if len(got) != len(want) {
		t.Fatalf("peek %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("order %v, want %v", got, want)
		}
	}
	recs, _ = o.Peek(2, func(s uint64) bool { return s == 4 })
	if recs[0].Seq != 2 || recs[1].Seq != 5 {
		t.Fatalf("skip: %+v", recs)
	}
}

func TestGroupCommitConcurrent(t *testing.T) {
	o := open(t, filepath.Join(t.TempDir(), "o.db"), Options{})
	const n, workers = 400, 8
	seen := make(chan uint64, n)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range n / workers {
				s, err := o.Enqueue(Record{Class: ClassEvent, Kind: "event", Body: []byte{0xf6}})
				if err != nil {
					t.Error(err)
					return
				}
				seen <- s
			}
		})
	}
	wg.Wait()
	close(seen)
	uniq := map[uint64]bool{}
	for s := range seen {
		if uniq[s] {
			t.Fatalf("seq %d twice", s)
		}
		uniq[s] = true
	}
	if len(uniq) != n || o.Len() != n {
		t.Fatalf("%d seqs, %d stored", len(uniq), o.Len())
	}
	st := o.Stats()
	if st.Oldest.IsZero() && st.Depth > 0 {
		// Time 0 is the epoch, which is a valid oldest time.
		t.Fatalf("stats %+v", st)
	}
}

func TestUnknownClass(t *testing.T) {
	o := open(t, filepath.Join(t.TempDir(), "o.db"), Options{})
	if _, err := o.Enqueue(Record{Class: 9}); err == nil {
		t.Fatal("accepted class 9")
	}
}

func BenchmarkEnqueueFsync(b *testing.B) {
	o, err := Open(filepath.Join(b.TempDir(), "o.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	body := make([]byte, 200)
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := o.Enqueue(Record{Class: ClassEvent, Kind: "event", Body: body}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func TestWriteFailureRaisesAlarmOnce(t *testing.T) {
	var alarms []string
	o := open(t, filepath.Join(t.TempDir(), "o.db"), Options{OnAlarm: func(k, _ string) { alarms = append(alarms, k) }})
	if _, err := o.Enqueue(Record{Class: ClassEvent, Body: []byte{0xf6}}); err != nil {
		t.Fatal(err)
	}
	o.DB().Close() // the file is gone from under the outbox, as on a failed disk
	for range 2 {
		_, err := o.Enqueue(Record{Class: ClassEvent, Body: []byte{0xf6}})
		if !errors.Is(err, ErrWriteFailed) || errors.Is(err, ErrDiskFull) {
			t.Fatalf("enqueue on a closed database: %v", err)
		}
	}
	if len(alarms) != 1 || alarms[0] != AlarmWriteFailed {
		t.Fatalf("alarms %v, want one %s for the episode", alarms, AlarmWriteFailed)
	}
	if _, err := o.Peek(1, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("peek: %v", err)
	}
	if _, err := o.Delivered(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("delivered: %v", err)
	}
	if _, err := o.NextSession(); !errors.Is(err, ErrWriteFailed) {
		t.Fatalf("next session: %v", err)
	}
	if _, err := o.ReserveSeq(); !errors.Is(err, ErrWriteFailed) {
		t.Fatalf("reserve seq: %v", err)
	}
}

func TestAlarmCallbackMayEnqueue(t *testing.T) {
	var o *Outbox
	raised := map[string]int{}
	o = open(t, filepath.Join(t.TempDir(), "o.db"), Options{MaxBytes: 300, OnAlarm: func(kind, _ string) {
		raised[kind]++
		if _, err := o.Enqueue(Record{Class: ClassEvent, Kind: "event", Body: []byte{0xf6}}); err != nil {
			t.Errorf("enqueue from alarm: %v", err)
		}
	}})
	for range 5 {
		if _, err := o.Enqueue(Record{Class: ClassEvent, Kind: "event", Body: make([]byte, 100)}); err != nil {
			t.Fatal(err)
		}
	}
	if raised[AlarmFull] != 1 || raised[AlarmEventsDropped] != 1 || len(raised) != 2 {
		t.Fatalf("alarms raised %v, want each once", raised)
	}
}

func TestEnqueueReserved(t *testing.T) {
	o := open(t, filepath.Join(t.TempDir(), "o.db"), Options{})
	s, _ := o.ReserveSeq()
	if err := o.EnqueueReserved(Record{Seq: s + 1, Class: ClassEvent}); err == nil {
		t.Fatal("accepted a seq that was not reserved")
	}
	if err := o.EnqueueReserved(Record{Seq: s, Class: ClassEvent, Kind: "death", Body: []byte{0xf6}}); err != nil {
		t.Fatal(err)
	}
	next, _ := o.Enqueue(Record{Class: ClassEvent, Body: []byte{0xf6}})
	recs, _ := o.Peek(10, nil)
	if len(recs) != 2 || recs[0].Seq != s || recs[0].Kind != "death" || next != s+1 {
		t.Fatalf("recs %+v, next %d", recs, next)
	}
}
