package siem

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func openTestQueue(t *testing.T, path string, max int) *Queue {
	t.Helper()
	q, err := OpenQueue(path, max)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func queued(t *testing.T, q *Queue) []string {
	t.Helper()
	items, err := q.After(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, it := range items {
		out = append(out, string(it.Data))
	}
	return out
}

func TestQueueOrderAndDelete(t *testing.T) {
	q := openTestQueue(t, filepath.Join(t.TempDir(), "q.db"), 0)
	for _, s := range []string{"a", "b", "c"} {
		if err := q.Put([]byte(s), false); err != nil {
			t.Fatal(err)
		}
	}
	items, _ := q.After(0, 2)
	if len(items) != 2 || string(items[0].Data) != "a" || string(items[1].Data) != "b" {
		t.Fatalf("After(0, 2) = %+v", items)
	}
	if rest, _ := q.After(items[1].ID, 10); len(rest) != 1 || string(rest[0].Data) != "c" {
		t.Fatalf("After(b) = %+v", rest)
	}
	if err := q.Delete(items[0].ID, items[0].ID, 999); err != nil { // twice and unknown: ignored
		t.Fatal(err)
	}
	if got := queued(t, q); q.Len() != 2 || len(got) != 2 || got[0] != "b" {
		t.Fatalf("after delete: %v, Len %d", got, q.Len())
	}
	select {
	case <-q.Notify():
	default:
		t.Error("Put did not notify")
	}
}

// TestQueueDropsBulkFirst: a full queue drops the oldest bulk record,
// then the oldest security record, and counts each.
func TestQueueDropsBulkFirst(t *testing.T) {
	q := openTestQueue(t, filepath.Join(t.TempDir(), "q.db"), 4)
	put := func(s string, bulk bool) {
		if err := q.Put([]byte(s), bulk); err != nil {
			t.Fatal(err)
		}
	}
	put("s1", false)
	put("m1", true)
	put("s2", false)
	put("m2", true)
	put("s3", false) // drops m1
	put("s4", false) // drops m2
	put("s5", false) // no bulk left: drops s1
	want := []string{"s2", "s3", "s4", "s5"}
	got := queued(t, q)
	if len(got) != len(want) {
		t.Fatalf("queue %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("queue %v, want %v", got, want)
		}
	}
	if d := q.Dropped(); d != (Drops{Bulk: 2, Security: 1}) || q.Len() != 4 {
		t.Errorf("dropped %+v, len %d", d, q.Len())
	}
}

// TestQueueSurvivesReopen: records, ids and drop counters are on disk.
func TestQueueSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "q.db")
	q, err := OpenQueue(path, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"a", "b", "c"} {
		_ = q.Put([]byte(s), false)
	}
	last, _ := q.After(0, 10)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	q = openTestQueue(t, path, 2)
	if got := queued(t, q); len(got) != 2 || got[0] != "b" || got[1] != "c" || q.Len() != 2 {
		t.Fatalf("after reopen %v len %d", got, q.Len())
	}
	if q.Dropped().Security != 1 {
		t.Errorf("dropped %+v", q.Dropped())
	}
	_ = q.Put([]byte("d"), false)
	items, _ := q.After(0, 10)
	if items[len(items)-1].ID <= last[len(last)-1].ID {
		t.Errorf("id reused after reopen: %d", items[len(items)-1].ID)
	}
}

// TestQueueInUse: a second opener fails with ErrQueueInUse instead of
// hanging.
func TestQueueInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	openTestQueue(t, path, 0)
	_, err := OpenQueue(path, 0)
	if !errors.Is(err, ErrQueueInUse) {
		t.Fatalf("second open: %v", err)
	}
}

// TestQueuePutBatch: one batch larger than the free room drops bulk
// first, then the oldest, and keeps the batch's order.
func TestQueuePutBatch(t *testing.T) {
	q := openTestQueue(t, filepath.Join(t.TempDir(), "q.db"), 3)
	if err := q.PutBatch([]Record{{Data: []byte("m1"), Bulk: true}, {Data: []byte("s1")}}); err != nil {
		t.Fatal(err)
	}
	if err := q.PutBatch([]Record{{Data: []byte("s2")}, {Data: []byte("s3")}, {Data: []byte("s4")}}); err != nil {
		t.Fatal(err)
	}
	got := queued(t, q)
	if len(got) != 3 || got[0] != "s2" || got[1] != "s3" || got[2] != "s4" || q.Len() != 3 {
		t.Fatalf("queue %v len %d", got, q.Len())
	}
	if d := q.Dropped(); d != (Drops{Bulk: 1, Security: 1}) {
		t.Errorf("dropped %+v", d)
	}
	if err := q.PutBatch(nil); err != nil {
		t.Error(err)
	}
}

// TestDropsAreLogged: a sink logs drops of a full queue, at most once a
// minute, with counts since its last report.
func TestDropsAreLogged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	q := openTestQueue(t, path, 2)
	_ = q.PutBatch([]Record{{Data: []byte("a")}, {Data: []byte("b")}, {Data: []byte("c")}}) // an old drop
	var logs bytes.Buffer
	clk := clockwork.NewFakeClockAt(testNow)
	enc := newTestEncoder(t, FormatSyslog)
	s, err := NewSyslogSink(SyslogOptions{Addr: "127.0.0.1:1", Encoder: enc, Queue: q, Clock: clk,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendBatch(seqLines(1, 3)); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "siem queue full"); n != 1 || !strings.Contains(logs.String(), "dropped_security=3") {
		t.Fatalf("logs:\n%s", logs.String())
	}
	_ = s.Send(seqLine(4)) // within the minute: counted, not logged
	clk.Advance(time.Minute)
	_ = s.Send(seqLine(5))
	if n := strings.Count(logs.String(), "siem queue full"); n != 2 || !strings.Contains(logs.String(), "dropped_security=2") {
		t.Fatalf("logs:\n%s", logs.String())
	}
	if d := q.Dropped(); d.Security != 6 {
		t.Errorf("dropped %+v", d)
	}
}
