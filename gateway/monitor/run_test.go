package monitor

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// TestRun: Run probes the links and checks the controls at once, then on
// their intervals (on the injected clock), scans the neighbours and
// returns when its context ends.
func TestRun(t *testing.T) {
	var probes atomic.Int32
	src := &fakeNeighbours{ns: []Neighbour{{netip.MustParseAddr("10.20.0.66"), "02:00:00:00:00:66"}}}
	tm := newTestMonitor(t, nil, func(o *Options) {
		o.Probe = func(context.Context) { probes.Add(1) }
		o.Neighbours = src
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tm.Run(ctx) }()
	// Four tickers: probe, minute, neighbours, controls.
	if err := tm.clock.BlockUntilContext(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if probes.Load() != 1 || tm.Controls()[0].Controls[0].Checked.IsZero() {
		t.Fatalf("no probe or check at start: %d probes", probes.Load())
	}
	tm.clock.Advance(30 * time.Second) // neighbour_interval
	waitFinding(t, tm, KindUnknownDevice)
	tm.clock.Advance(30 * time.Second) // link_probe 60s
	for deadline := time.Now().Add(5 * time.Second); probes.Load() < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no second probe")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// waitFinding waits (bounded) for a finding of kind emitted by a goroutine
// of Run.
func waitFinding(t *testing.T, tm *tmon, kind string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		tm.mu.Lock()
		for _, f := range tm.findings {
			if f.Kind == kind {
				tm.mu.Unlock()
				return
			}
		}
		tm.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("no %s finding", kind)
}
