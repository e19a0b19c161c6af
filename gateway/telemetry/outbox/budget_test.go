package outbox

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"go.etcd.io/bbolt"
)

// unit is the stored size of every record made by rec: the budget tests
// count in records.
const unit = 100

// rec returns a record of class c whose stored size is n units.
func rec(t testing.TB, c Class, n int) Record {
	t.Helper()
	for l := range n * unit {
		r := Record{Class: c, Kind: "k", Body: make([]byte, l)}
		val, err := cbor.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if 8+len(val)+recordOverhead == n*unit {
			return r
		}
	}
	t.Fatalf("no body gives a record of %d bytes", n*unit)
	return Record{}
}

func seqRange(a, b uint64) []uint64 {
	var s []uint64
	for i := a; i <= b; i++ {
		s = append(s, i)
	}
	return s
}

// stored returns the stored seqs per class, oldest first.
func stored(t testing.TB, o *Outbox) [numClasses][]uint64 {
	t.Helper()
	var out [numClasses][]uint64
	recs, err := o.Peek(1<<30, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		out[r.Class] = append(out[r.Class], r.Seq)
	}
	return out
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name        string
		max, res    int64
		wantReserve int64
		wantErr     []string // substrings, every one present
	}{
		{name: "no cap", wantReserve: 0},
		{name: "default reserve", max: 1000, wantReserve: 250},
		{name: "explicit reserve", max: 1000, res: 10, wantReserve: 10},
		{name: "reserve equals budget", max: 1000, res: 1000, wantErr: []string{"Reserve (1000) must be less than MaxBytes (1000)"}},
		{name: "reserve above budget", max: 1000, res: 2000, wantErr: []string{"must be less than MaxBytes"}},
		{name: "reserve without budget", res: 10, wantErr: []string{"a reserve needs a budget"}},
		{name: "negative values", max: -1, res: -1, wantErr: []string{"MaxBytes is -1", "Reserve is -1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := Open(filepath.Join(t.TempDir(), "o.db"), Options{MaxBytes: tc.max, Reserve: tc.res})
			if len(tc.wantErr) > 0 {
				if err == nil {
					o.Close()
					t.Fatal("accepted")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			if o.opts.Reserve != tc.wantReserve {
				t.Fatalf("reserve %d, want %d", o.opts.Reserve, tc.wantReserve)
			}
		})
	}
}

// step is one operation of a budget scenario: enqueue n records of class
// c, each size units big (1 if 0), expecting err for each; or acknowledge
// every stored record.
type step struct {
	c       Class
	n, size int
	err     error
	ackAll  bool
}

func TestBudget(t *testing.T) {
	const b, e, u = ClassBulk, ClassEvent, ClassUrgent
	for _, tc := range []struct {
		name       string
		max, res   int64 // in units
		steps      []step
		want       [numClasses][]uint64 // stored seqs: urgent, event, bulk
		lost, lEv  uint64
		alarms     []string
		wantTotalU int64 // Stats.Bytes in units
	}{
		{
			name:  "bulk drops oldest bulk within its share",
			max:   10,
			steps: []step{{c: b, n: 10}},
			want:  [numClasses][]uint64{2: seqRange(4, 10)},
			lost:  3, wantTotalU: 7,
		},
		{
			name:  "bulk refused while events still fit",
			max:   10,
			steps: []step{{c: e, n: 7}, {c: b, n: 1, err: ErrDropped}, {c: e, n: 3}},
			want:  [numClasses][]uint64{1: seqRange(1, 10)},
			lost:  1, alarms: []string{AlarmFull}, wantTotalU: 10,
		},
		{
			name:  "events displace bulk before any event",
			max:   10,
			steps: []step{{c: b, n: 7}, {c: e, n: 10}},
			want:  [numClasses][]uint64{1: seqRange(8, 17)},
			lost:  7, alarms: []string{AlarmFull}, wantTotalU: 10,
		},
		{
			name:  "newest events kept when full",
			max:   10,
			steps: []step{{c: e, n: 12}},
			want:  [numClasses][]uint64{1: seqRange(3, 12)},
			lEv:   2, alarms: []string{AlarmFull, AlarmEventsDropped}, wantTotalU: 10,
		},
		{
			name:  "events dropped before urgent",
			max:   10,
			steps: []step{{c: u, n: 5}, {c: e, n: 7}},
			want:  [numClasses][]uint64{seqRange(1, 5), seqRange(8, 12), nil},
			lEv:   2, alarms: []string{AlarmFull, AlarmEventsDropped}, wantTotalU: 10,
		},
		{
			name:  "urgent dropped only when nothing else is left",
			max:   10,
			steps: []step{{c: u, n: 12}},
			want:  [numClasses][]uint64{seqRange(3, 12), nil, nil},
			lEv:   2, alarms: []string{AlarmFull, AlarmEventsDropped}, wantTotalU: 10,
		},
		{
			name:  "event larger than the budget is refused and drops nothing",
			max:   10,
			steps: []step{{c: b, n: 3}, {c: e, n: 1, size: 11, err: ErrTooLarge}, {c: e, n: 1}},
			want:  [numClasses][]uint64{1: {4}, 2: seqRange(1, 3)},
			lEv:   1, alarms: []string{AlarmEventsDropped}, wantTotalU: 4,
		},
		{
			name:  "bulk larger than its share is refused without alarm",
			max:   10,
			steps: []step{{c: b, n: 2}, {c: b, n: 1, size: 8, err: ErrDropped}},
			want:  [numClasses][]uint64{2: seqRange(1, 2)},
			lost:  1, wantTotalU: 2,
		},
		{
			name: "explicit reserve",
			max:  10, res: 5,
			steps: []step{{c: b, n: 6}, {c: e, n: 5}},
			want:  [numClasses][]uint64{1: seqRange(7, 11), 2: seqRange(2, 6)},
			lost:  1, wantTotalU: 10,
		},
		{
			name:       "no cap keeps everything",
			steps:      []step{{c: e, n: 30}, {c: b, n: 30}},
			want:       [numClasses][]uint64{1: seqRange(1, 30), 2: seqRange(31, 60)},
			wantTotalU: 60,
		},
		{
			name:  "alarms re-armed after the backlog drained",
			max:   10,
			steps: []step{{c: e, n: 12}, {ackAll: true}, {c: e, n: 12}},
			want:  [numClasses][]uint64{1: seqRange(15, 24)},
			lEv:   4, alarms: []string{AlarmFull, AlarmEventsDropped, AlarmFull, AlarmEventsDropped}, wantTotalU: 10,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var alarms []string
			o := open(t, filepath.Join(t.TempDir(), "o.db"), Options{
				MaxBytes: tc.max * unit, Reserve: tc.res * unit, NoSync: true,
				OnAlarm: func(kind, msg string) {
					alarms = append(alarms, kind)
					if !strings.Contains(msg, "mqtt.outbox_max") {
						t.Errorf("alarm %s does not say what to change: %q", kind, msg)
					}
				},
			})
			for i, s := range tc.steps {
				if s.ackAll {
					all := stored(t, o)
					if err := o.Ack(slices.Concat(all[:]...)...); err != nil {
						t.Fatal(err)
					}
					continue
				}
				r := rec(t, s.c, max(s.size, 1))
				for range s.n {
					if _, err := o.Enqueue(r); !errors.Is(err, s.err) {
						t.Fatalf("step %d: enqueue class %d: %v, want %v", i, s.c, err, s.err)
					}
				}
			}
			if got := stored(t, o); !equalSeqs(got, tc.want) {
				t.Errorf("stored %v, want %v", got, tc.want)
			}
			st := o.Stats()
			if st.Lost != tc.lost || st.LostEvents != tc.lEv || st.Bytes != tc.wantTotalU*unit {
				t.Errorf("stats %+v, want lost %d, lost events %d, bytes %d", st, tc.lost, tc.lEv, tc.wantTotalU*unit)
			}
			if !slices.Equal(alarms, tc.alarms) {
				t.Errorf("alarms %v, want %v", alarms, tc.alarms)
			}
		})
	}
}

func equalSeqs(a, b [numClasses][]uint64) bool {
	for c := range numClasses {
		if !slices.Equal(a[c], b[c]) {
			return false
		}
	}
	return true
}

func TestCountersAndDeliveredPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.db")
	o := open(t, path, Options{MaxBytes: 10 * unit})
	ev, bulk := rec(t, ClassEvent, 1), rec(t, ClassBulk, 1)
	for range 12 { // 1..12; 1 and 2 dropped
		if _, err := o.Enqueue(ev); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := o.Enqueue(bulk); !errors.Is(err, ErrDropped) {
		t.Fatalf("bulk into a budget full of events: %v", err)
	}
	if err := o.Ack(3, 4); err != nil {
		t.Fatal(err)
	}
	if err := o.Discard(5, 999); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		seq  uint64
		want bool
	}{
		{"zero is never a message", 0, false},
		{"dropped for capacity", 1, false},
		{"acknowledged", 3, true},
		{"acknowledged too", 4, true},
		{"discarded", 5, false},
		{"still stored", 6, false},
		{"newest, stored", 12, false},
		{"not enqueued yet", 13, false},
		{"far future", 1 << 40, false},
	}
	check := func(o *Outbox, when string) {
		t.Helper()
		for _, c := range cases {
			got, err := o.Delivered(c.seq)
			if err != nil || got != c.want {
				t.Errorf("%s: %s: Delivered(%d) = %v, %v; want %v", when, c.name, c.seq, got, err, c.want)
			}
		}
	}
	check(o, "before reopen")
	before := o.Stats()
	if before.Lost != 1 || before.LostEvents != 3 || before.Depth != 7 {
		t.Fatalf("stats %+v", before)
	}
	o.Close()
	if _, err := o.Delivered(3); !errors.Is(err, ErrClosed) {
		t.Fatalf("delivered after close: %v", err)
	}

	o2 := open(t, path, Options{MaxBytes: 10 * unit})
	check(o2, "after reopen")
	after := o2.Stats()
	before.Oldest = after.Oldest // compared apart: same instant, maybe another location
	if !after.Oldest.Equal(time.UnixMilli(0)) {
		t.Errorf("oldest after reopen %v", after.Oldest)
	}
	if after != before {
		t.Fatalf("stats after reopen %+v, before %+v", after, before)
	}
}

// TestAlarmsAfterReopen: a restart does not hide a full outbox: the next
// Enqueue raises AlarmFull again; an Ack alone raises nothing.
func TestAlarmsAfterReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.db")
	var alarms []string
	opts := Options{MaxBytes: 10 * unit, OnAlarm: func(kind, _ string) { alarms = append(alarms, kind) }}
	o := open(t, path, opts)
	ev := rec(t, ClassEvent, 1)
	for range 9 {
		if _, err := o.Enqueue(ev); err != nil {
			t.Fatal(err)
		}
	}
	o.Close()
	alarms = nil
	o = open(t, path, opts)
	if err := o.Ack(1); err != nil {
		t.Fatal(err)
	}
	if len(alarms) != 0 {
		t.Fatalf("ack raised %v", alarms)
	}
	if _, err := o.Enqueue(ev); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(alarms, []string{AlarmFull}) {
		t.Fatalf("alarms after reopen %v, want [%s]", alarms, AlarmFull)
	}
}

// TestDeliveredForgetsOldDrops: past the kept drops, seqs at or below the
// forgotten ones report not delivered, never delivered by mistake.
func TestDeliveredForgetsOldDrops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.db")
	o := open(t, path, Options{MaxBytes: 3 * unit})
	o.droppedKept = 2
	ev := rec(t, ClassEvent, 1)
	mustEnqueue := func(n int) {
		for range n {
			if _, err := o.Enqueue(ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	mustEnqueue(1)
	if err := o.Ack(1); err != nil {
		t.Fatal(err)
	}
	if ok, _ := o.Delivered(1); !ok {
		t.Fatal("acknowledged seq 1 not delivered")
	}
	mustEnqueue(6) // 2..7: 2, 3, 4 dropped; 2 forgotten
	if err := o.Ack(5); err != nil {
		t.Fatal(err)
	}
	want := map[uint64]bool{1: false, 2: false, 3: false, 4: false, 5: true, 6: false, 7: false}
	for _, oo := range []*Outbox{o, nil} {
		if oo == nil {
			o.Close()
			oo = open(t, path, Options{MaxBytes: 3 * unit})
		}
		for s, w := range want {
			if got, err := oo.Delivered(s); err != nil || got != w {
				t.Errorf("Delivered(%d) = %v, %v; want %v", s, got, err, w)
			}
		}
		err := oo.DB().View(func(tx *bbolt.Tx) error {
			if n := tx.Bucket(bucketDropped).Stats().KeyN; n != 2 {
				t.Errorf("%d dropped seqs kept, want 2", n)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestDiscardCountsLost(t *testing.T) {
	o := open(t, filepath.Join(t.TempDir(), "o.db"), Options{})
	for _, c := range []Class{ClassUrgent, ClassEvent, ClassBulk} {
		if _, err := o.Enqueue(rec(t, c, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Discard(); err != nil {
		t.Fatal(err)
	}
	if err := o.Discard(1, 2, 3); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Depth != 0 || st.Bytes != 0 || st.Lost != 1 || st.LostEvents != 2 {
		t.Fatalf("stats %+v", st)
	}
	o.Close()
	if err := o.Discard(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("discard after close: %v", err)
	}
}

// TestBytesAccounting: after random operations Stats.Bytes equals the
// stored records' sizes, stays within the budget, and a reopen counts
// the same.
func TestBytesAccounting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.db")
	opts := Options{MaxBytes: 5000, Reserve: 1500, NoSync: true}
	o := open(t, path, opts)
	rnd := rand.New(rand.NewPCG(1, 2))
	isStored := func(s uint64) bool {
		found := false
		err := o.DB().View(func(tx *bbolt.Tx) error {
			for c := range numClasses {
				found = found || tx.Bucket(bucketQ[c]).Get(binary.BigEndian.AppendUint64(nil, s)) != nil
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return found
	}
	acked := map[uint64]bool{}    // seqs acknowledged while stored
	classOf := map[uint64]Class{} // of every seq enqueued
	check := func(i int) {
		t.Helper()
		var sum int64
		var n int
		err := o.DB().View(func(tx *bbolt.Tx) error {
			for c := range numClasses {
				err := tx.Bucket(bucketQ[c]).ForEach(func(k, v []byte) error {
					sum += int64(len(k) + len(v) + recordOverhead)
					n++
					return nil
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if st := o.Stats(); st.Bytes != sum || st.Depth != n || sum > opts.MaxBytes {
			t.Fatalf("op %d: stats %+v; stored %d records of %d bytes, budget %d", i, st, n, sum, opts.MaxBytes)
		}
	}
	for i := range 1500 {
		switch op := rnd.IntN(10); {
		case op < 6:
			r := Record{Class: Class(rnd.IntN(int(numClasses))), Kind: "k", Body: make([]byte, rnd.IntN(400))}
			s, err := o.Enqueue(r)
			if err != nil && !errors.Is(err, ErrDropped) {
				t.Fatalf("op %d: %v", i, err)
			}
			classOf[s] = r.Class
		case op < 9:
			recs, err := o.Peek(rnd.IntN(8), nil)
			if err != nil {
				t.Fatal(err)
			}
			var seqs []uint64
			for _, r := range recs {
				seqs = append(seqs, r.Seq)
			}
			seqs = append(seqs, rnd.Uint64N(o.Stats().NextSeq+2)) // maybe unknown
			if op == 8 {
				err = o.Discard(seqs...)
			} else {
				for _, s := range seqs {
					acked[s] = acked[s] || isStored(s)
				}
				err = o.Ack(seqs...)
			}
			if err != nil {
				t.Fatal(err)
			}
		default:
			if rnd.IntN(10) == 0 {
				o.Close()
				o = open(t, path, opts)
			}
		}
		check(i)
	}
	t.Logf("end: %+v", o.Stats())
	// Delivered is true exactly for the urgent and event seqs acknowledged
	// while stored: never for one dropped, discarded or still waiting.
	// (Bulk drops are not recorded.)
	for s := range o.Stats().NextSeq + 1 {
		if c, ok := classOf[s]; ok && c == ClassBulk {
			continue
		}
		d, err := o.Delivered(s)
		if err != nil {
			t.Fatal(err)
		}
		if d != acked[s] {
			t.Errorf("Delivered(%d) = %v, acknowledged while stored: %v", s, d, acked[s])
		}
	}
}
