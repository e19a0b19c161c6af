package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/central/store/storetest"
)

func TestMarkAndStoredSeqs(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		s, ctx := open(t, dsn), context.Background()
		for i, seqs := range []map[string][]uint64{{"gw-1": {1, 2, 63, 64, 200}, "gw-2": {5}}, {"gw-1": {3, 63}}, {"gw-1": {62}}} {
			if _, err := s.Apply(ctx, func(tx *store.Tx) error { return tx.MarkSeqs(fmt.Sprint("c", i%2), seqs) }); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.StoredSeqs(ctx, "gw-1", 2, 199)
		if err != nil {
			t.Fatal(err)
		}
		want := map[uint64]bool{2: true, 3: true, 62: true, 63: true, 64: true}
		if len(got) != len(want) {
			t.Fatalf("stored %v, want %v", got, want)
		}
		for k := range want {
			if !got[k] {
				t.Fatalf("stored %v, want %v", got, want)
			}
		}
		if got, _ := s.StoredSeqs(ctx, "gw-1", 9, 3); len(got) != 0 {
			t.Fatalf("empty range gave %v", got)
		}
		// gw-1 is at seq 300: marks more than 100 seqs back go; gw-2 has no row.
		if _, err := s.Apply(ctx, func(tx *store.Tx) error { return tx.PutGateway(store.Gateway{ID: "gw-1", LastSeq: 300}) }); err != nil {
			t.Fatal(err)
		}
		if n, err := s.PruneSeqs(ctx, 100); err != nil || n != 3 {
			t.Fatalf("pruned %d, %v; want the blocks of 0..127", n, err)
		}
		if got, _ := s.StoredSeqs(ctx, "gw-1", 0, 300); len(got) != 1 || !got[200] {
			t.Fatalf("after pruning %v", got)
		}
		if got, _ := s.StoredSeqs(ctx, "gw-2", 0, 10); !got[5] {
			t.Fatalf("gw-2's marks pruned: %v", got)
		}
	})
}

func TestMergeGatewayMonotonic(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		s, ctx := open(t, dsn), context.Background()
		t0 := t0.Add(0)
		merge := func(g store.Gateway, dm, dg uint64) {
			t.Helper()
			if _, err := s.Apply(ctx, func(tx *store.Tx) error { return tx.MergeGateway(g, dm, dg) }); err != nil {
				t.Fatal(err)
			}
		}
		// Instance A saw the birth and seq 10; instance B, later, seq 11.
		merge(store.Gateway{ID: "gw-1", Session: 2, LastSeq: 10, Online: true, Version: "2.0", LastSeen: t0, LastBirth: t0, FirstSeen: t0, Messages: 10}, 10, 0)
		merge(store.Gateway{ID: "gw-1", Session: 2, LastSeq: 11, Online: true, LastSeen: t0.Add(time.Second), FirstSeen: t0.Add(time.Second)}, 1, 0)
		// A writes again with its older view: nothing moves back.
		merge(store.Gateway{ID: "gw-1", Session: 1, LastSeq: 9, Online: false, Version: "1.0", LastSeen: t0.Add(-time.Second)}, 0, 0)
		g, err := s.Gateway(ctx, "gw-1")
		if err != nil {
			t.Fatal(err)
		}
		if g.Session != 2 || g.LastSeq != 11 || !g.Online || g.Version != "2.0" || g.Messages != 11 || !g.FirstSeen.Equal(t0) || !g.LastSeen.Equal(t0.Add(time.Second)) {
			t.Fatalf("merged row %+v", g)
		}
		// A marks it stale (a gap); B's write without the mark keeps it
		// stale; a later birth clears it.
		merge(store.Gateway{ID: "gw-1", Session: 2, LastSeq: 12, Stale: true, StaleReason: "gap 12..12", StaleSince: t0.Add(2 * time.Second), LastSeen: t0.Add(2 * time.Second), Online: true, Gaps: 1}, 0, 1)
		merge(store.Gateway{ID: "gw-1", Session: 2, LastSeq: 13, LastSeen: t0.Add(3 * time.Second), Online: true}, 1, 0)
		if g, _ := s.Gateway(ctx, "gw-1"); !g.Stale || g.StaleReason != "gap 12..12" || g.Gaps != 1 {
			t.Fatalf("stale mark lost: %+v", g)
		}
		merge(store.Gateway{ID: "gw-1", Session: 3, LastSeq: 14, LastBirth: t0.Add(4 * time.Second), LastSeen: t0.Add(4 * time.Second), Online: true}, 1, 0)
		if g, _ := s.Gateway(ctx, "gw-1"); g.Stale || g.Session != 3 {
			t.Fatalf("stale not cleared by the birth: %+v", g)
		}
	})
}

func TestClaimResync(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		s, ctx := open(t, dsn), context.Background()
		t0 := t0.Add(0)
		for _, c := range []struct {
			at   time.Time
			want bool
		}{{t0, true}, {t0, false}, {t0.Add(30 * time.Second), false}, {t0.Add(time.Minute), true}} {
			got, err := s.ClaimResync(ctx, "gw-1", c.at, time.Minute)
			if err != nil || got != c.want {
				t.Fatalf("claim at %s: %v, %v; want %v", c.at.Sub(t0), got, err, c.want)
			}
		}
		if g, _ := s.Gateway(ctx, "gw-1"); !g.ResyncAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("resync_ms %s", g.ResyncAt)
		}
	})
}
