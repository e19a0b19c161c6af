package ingest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/central/store/storetest"
	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/envelope"
)

// sharedPair is two ingesters in shared mode (as two central instances
// consuming one AMQP queue) on one database, fed by the test.
type sharedPair struct {
	in      [2]*Ingester
	st      [2]*store.Store
	clock   *clockwork.FakeClock
	acks    atomic.Int64
	nacks   atomic.Int64
	resyncs atomic.Int64
}

func newSharedPair(t *testing.T, dsn string, pki *certstest.MiniPKI) *sharedPair {
	ctx, cancel := context.WithCancel(context.Background())
	p := &sharedPair{clock: clockwork.NewFakeClockAt(time.Now().Truncate(time.Second))}
	central := pki.Issue(t, "central", "spiffe://"+certstest.MiniTrustDomain+"/svc/central")
	var wg sync.WaitGroup
	for i := range 2 {
		st, err := store.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		in, err := New(ctx, Options{Store: st, Verify: envelope.RootsVerifier(pki.Roots()), Signer: central.Key, Chain: central.Chain,
			AMQP:          &AMQPOptions{Name: fmt.Sprint("central-", i)}, // shared mode without a broker: the test hands messages in
			ReorderWindow: 10 * time.Second, ResyncInterval: time.Minute, OfflineAfter: time.Hour, Clock: p.clock,
			Publish: func(topic string, payload []byte) error {
				if _, c, err := command.Decode(payload); err == nil && c.Name == command.Rebirth {
					p.resyncs.Add(1)
				}
				return nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		p.in[i], p.st[i] = in, st
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := in.Run(ctx); err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		p.st[0].Close()
		p.st[1].Close()
	})
	if err := p.clock.BlockUntilContext(ctx, 2); err != nil { // both tickers
		t.Fatal(err)
	}
	return p
}

// to returns a sender to instance i (call it with g.msg's results).
func (p *sharedPair) to(i int) func(string, []byte) {
	return func(topic string, data []byte) { p.send(i, topic, data) }
}

func (p *sharedPair) send(i int, topic string, data []byte) {
	p.in[i].handle(context.Background(), topic, data, func(ok bool) {
		if ok {
			p.acks.Add(1)
		} else {
			p.nacks.Add(1)
		}
	})
}

// until advances the shared clock by a tick at a time (the instances look
// up held seqs on every batch and tick) until cond holds.
func (p *sharedPair) until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	start, n := time.Now(), 0
	defer func() { t.Logf("%s after %d ticks, %s", what, n, time.Since(start)) }()
	for ; !cond(); n++ {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; stats %+v / %+v", what, p.in[0].Stats(), p.in[1].Stats())
		}
		time.Sleep(20 * time.Millisecond) // the loops run on their own goroutines; nothing to await across two of them
		p.clock.Advance(500 * time.Millisecond)
	}
}

// TestSharedIngestSplit: a gateway's messages split between two
// instances (with duplicates sent to both) are stored once each, with no
// gap recorded, every message acknowledged, and one merged gateway row.
func TestSharedIngestSplit(t *testing.T) {
	pki := certstest.NewMini(t)
	id := pki.Gateway(t, "gw-1")
	g := gw{id: "gw-1", key: id.Key, chain: id.Chain}
	storetest.Each(t, func(t *testing.T, dsn string) {
		p := newSharedPair(t, dsn, pki)
		now := p.clock.Now
		const last = 200
		sent := 0
		p.to(0)(g.msg(t, 1, 1, now(), envelope.KindBirth, wire.Birth{Gateway: "gw-1", Site: "s1", Version: "1.2.3"}))
		sent++
		for seq := uint64(2); seq <= last; seq++ {
			topic, data := g.msg(t, 1, seq, now(), envelope.KindEvent, wire.Event{Kind: "authority.lock_add", Severity: wire.SeverityWarning})
			// Round robin, as RabbitMQ hands a queue to two consumers; every
			// 17th is redelivered to the other instance too.
			p.send(int(seq%2), topic, data)
			sent++
			if seq%17 == 0 {
				p.send(int(1-seq%2), topic, data)
				sent++
			}
		}
		ctx := context.Background()
		count := func() int64 {
			var n int64
			_, _ = p.st[0].Events(ctx, store.EventQuery{Gateway: "gw-1"}, func(store.Event) error { n++; return nil })
			return n
		}
		p.until(t, "every event stored and acknowledged", func() bool { return count() == last && p.acks.Load() == int64(sent) })
		fs, _ := p.st[0].Findings(ctx, "", 0)
		for _, f := range fs {
			t.Errorf("finding: %+v", f)
		}
		s0, s1 := p.in[0].Stats(), p.in[1].Stats()
		if s0.Gaps+s1.Gaps != 0 || p.nacks.Load() != 0 {
			t.Fatalf("gaps %d+%d, nacks %d", s0.Gaps, s1.Gaps, p.nacks.Load())
		}
		if dups := s0.Duplicates + s1.Duplicates; dups != uint64(sent-last) {
			t.Errorf("duplicates %d, want %d", dups, sent-last)
		}
		p.until(t, "the merged row", func() bool {
			gg, _ := p.st[0].Gateway(ctx, "gw-1")
			return gg.LastSeq == last && gg.Messages >= last
		})
		gg, _ := p.st[0].Gateway(ctx, "gw-1")
		if gg.Session != 1 || !gg.Online || gg.Stale || gg.Version != "1.2.3" || gg.Gaps != 0 {
			t.Fatalf("gateway row %+v", gg)
		}
		if p.resyncs.Load() != 0 {
			t.Fatalf("%d resync requests for a gateway whose birth the other instance stored", p.resyncs.Load())
		}
		t.Logf("%d messages, %d stored, duplicates %d/%d, late %d/%d", sent, last, s0.Duplicates, s1.Duplicates, s0.Late, s1.Late)
	})
}

// TestSharedIngestRealGap: a seq that reached neither instance is still a
// gap, recorded once, and the resync is asked for by one instance only.
func TestSharedIngestRealGap(t *testing.T) {
	pki := certstest.NewMini(t)
	id := pki.Gateway(t, "gw-2")
	g := gw{id: "gw-2", key: id.Key, chain: id.Chain}
	storetest.Each(t, func(t *testing.T, dsn string) {
		p := newSharedPair(t, dsn, pki)
		now := p.clock.Now
		p.to(0)(g.msg(t, 1, 1, now(), envelope.KindBirth, wire.Birth{Gateway: "gw-2"}))
		p.to(1)(g.msg(t, 1, 2, now(), envelope.KindEvent, wire.Event{Kind: "a.b"}))
		// 3 is lost; both instances hold later ones.
		p.to(0)(g.msg(t, 1, 4, now(), envelope.KindEvent, wire.Event{Kind: "a.b"}))
		p.to(1)(g.msg(t, 1, 5, now(), envelope.KindEvent, wire.Event{Kind: "a.b"}))
		ctx := context.Background()
		// Messages keep flowing (metrics), so the reorder window runs.
		seq := uint64(6)
		p.until(t, "the gap", func() bool {
			p.to(int(seq % 2))(g.msg(t, 1, seq, now(), envelope.KindEvent, wire.Event{Kind: "c.d"}))
			seq++
			fs, _ := p.st[0].Findings(ctx, "", 0)
			return len(fs) > 0
		})
		p.until(t, "a resync", func() bool { return p.resyncs.Load() > 0 })
		for range 10 { // more ticks: the other instance must not ask again within the interval
			p.to(int(seq % 2))(g.msg(t, 1, seq, now(), envelope.KindEvent, wire.Event{Kind: "c.d"}))
			seq++
			time.Sleep(20 * time.Millisecond)
			p.clock.Advance(500 * time.Millisecond)
		}
		// Both instances held across the gap and may both have recorded
		// it (the first one's marks stop the second when they come first).
		fs, _ := p.st[0].Findings(ctx, "", 0)
		if len(fs) < 1 || len(fs) > 2 {
			t.Fatalf("findings %+v", fs)
		}
		for _, f := range fs {
			if f.Kind != store.FindingGap {
				t.Fatalf("finding %+v", f)
			}
		}
		if n := p.resyncs.Load(); n != 1 {
			t.Fatalf("%d resync requests, want 1 (claimed through the row)", n)
		}
	})
}
