package ingest

import (
	"context"
	"crypto"
	"crypto/x509"
	"os"
	"sync"
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

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// gw signs messages as a gateway would.
type gw struct {
	id    string
	key   crypto.Signer
	chain []*x509.Certificate
}

func (g gw) msg(t testing.TB, session, seq uint64, at time.Time, kind envelope.Kind, body any) (string, []byte) {
	t.Helper()
	var b []byte
	var err error
	switch v := body.(type) {
	case wire.Inventory:
		b, err = wire.InventoryBody(v)
	case wire.Event:
		b, err = wire.EventBody(v)
	default:
		b, err = envelope.Marshal(v)
	}
	if err != nil {
		t.Fatal(err)
	}
	p, err := envelope.EncodePayload(&envelope.Envelope{Version: envelope.Version, Gateway: g.id, Session: session, Seq: seq,
		Time: at.UnixMilli(), Kind: kind, Body: b})
	if err != nil {
		t.Fatal(err)
	}
	data, err := envelope.Sign(g.key, g.chain, p)
	if err != nil {
		t.Fatal(err)
	}
	return wire.Topic(g.id, kind), data
}

type harness struct {
	t       *testing.T
	in      *Ingester
	st      *store.Store
	clock   *clockwork.FakeClock
	changes chan Change
	mu      sync.Mutex
	sent    []*command.Payload
	signers []string
}

func newHarness(t *testing.T, dsn string, pki *certstest.MiniPKI) *harness {
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, st: st, clock: clockwork.NewFakeClockAt(time.Now().Truncate(time.Second)), changes: make(chan Change, 1000)}
	central := pki.Issue(t, "central", "spiffe://"+certstest.MiniTrustDomain+"/svc/central")
	in, err := New(ctx, Options{Store: st, Verify: envelope.RootsVerifier(pki.Roots()), Signer: central.Key, Chain: central.Chain,
		ReorderWindow: 5 * time.Second, ResyncInterval: time.Minute, OfflineAfter: time.Hour, Clock: h.clock,
		OnChange: func(c Change) { h.changes <- c },
		Publish: func(topic string, payload []byte) error {
			s, p, err := command.Decode(payload)
			if err != nil {
				t.Errorf("central published an undecodable command: %v", err)
				return nil
			}
			h.mu.Lock()
			h.sent = append(h.sent, p)
			h.signers = append(h.signers, s.Chain[0].URIs[0].String())
			h.mu.Unlock()
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	h.in = in
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		st.Close()
	})
	if err := h.clock.BlockUntilContext(ctx, 1); err != nil { // the ticker
		t.Fatal(err)
	}
	return h
}

// until waits (bounded) for cond after stored batches.
func (h *harness) until(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	poll := time.NewTicker(20 * time.Millisecond) // held messages store nothing, so no change is announced
	defer poll.Stop()
	for !cond() {
		select {
		case <-h.changes:
		case <-poll.C:
		case <-deadline:
			h.t.Fatalf("timed out waiting for %s; stats %+v", what, h.in.Stats())
		}
	}
}

func (h *harness) gateway(id string) store.Gateway {
	g, _ := h.st.Gateway(context.Background(), id)
	return g
}

func (h *harness) findings(kind string) []store.Finding {
	fs, _ := h.st.Findings(context.Background(), "", 0)
	var out []store.Finding
	for _, f := range fs {
		if kind == "" || f.Kind == kind {
			out = append(out, f)
		}
	}
	return out
}

func (h *harness) send(topic string, data []byte) { h.in.Handle(context.Background(), topic, data) }

func TestIngestOrderGapsResync(t *testing.T) {
	pki := certstest.NewMini(t)
	id := pki.Gateway(t, "gw-1")
	g := gw{id: "gw-1", key: id.Key, chain: id.Chain}
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	inv := wire.Inventory{Devices: []wire.Device{{ID: "pump-07", Owner: "ce/icu",
		Accounts: []wire.Account{{ID: "svc", Type: "shared-password", Owner: "ce/icu", RotateEvery: 90 * 24 * time.Hour, LastRotated: day}}}}}
	storetest.Each(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn, pki)
		now := h.clock.Now
		birth := wire.Birth{Gateway: "gw-1", Site: "s1", Version: "1.2.3", DeathSeq: 9, Inventory: wire.Summary{Devices: 1}}
		h.send(g.msg(t, 1, 10, now(), envelope.KindBirth, birth))
		h.send(g.msg(t, 1, 11, now(), envelope.KindInventory, inv))
		h.send(g.msg(t, 1, 12, now(), envelope.KindEvent, wire.Event{Kind: "vendor.request", Severity: "info",
			Attrs: map[string]string{"grant": "g1", "vendor": "spiffe://hospital.example/vendor/acme/bob", "device": "pump-07"}}))
		h.until("birth, inventory, event", func() bool { gg := h.gateway("gw-1"); return gg.LastSeq == 12 && gg.Online && gg.Devices == 1 })
		if gg := h.gateway("gw-1"); gg.Version != "1.2.3" || gg.Session != 1 || gg.Stale {
			t.Fatalf("gateway %+v", gg)
		}
		// Out of order within the window: held, then applied in order.
		h.send(g.msg(t, 1, 14, now(), envelope.KindEvent, wire.Event{Kind: "vendor.session_start", Attrs: map[string]string{"grant": "g1", "session": "s1"}}))
		h.send(g.msg(t, 1, 13, now(), envelope.KindEvent, wire.Event{Kind: "vendor.approve", Attrs: map[string]string{"grant": "g1", "complete": "true", "actor": "local:button"}}))
		h.until("13 and 14", func() bool { return h.gateway("gw-1").LastSeq == 14 })
		ss, _ := h.st.Sessions(context.Background(), []string{"live"}, 0)
		if len(ss) != 1 || ss[0].SessionID != "s1" || ss[0].Approver != "local:button" || ss[0].Vendor == "" {
			t.Fatalf("sessions %+v", ss)
		}
		if len(h.findings(store.FindingGap)) != 0 {
			t.Fatal("a reordered pair was recorded as a gap")
		}
		// A real gap: 15 never comes within the window.
		h.send(g.msg(t, 1, 16, now(), envelope.KindEvent, wire.Event{Kind: "x.y"}))
		h.until("16 held", func() bool { return h.in.Stats().Held == 1 })
		h.clock.Advance(6 * time.Second)
		h.until("gap", func() bool { return len(h.findings(store.FindingGap)) == 1 && h.gateway("gw-1").Stale })
		h.mu.Lock()
		if len(h.sent) != 2 || h.sent[0].Name != command.Rebirth || h.sent[1].Name != command.InventoryNow || h.sent[0].Gateway != "gw-1" ||
			h.signers[0] != "spiffe://hospital.example/svc/central" {
			t.Fatalf("resync commands %+v %v", h.sent, h.signers)
		}
		h.mu.Unlock()
		// A second gap soon after: recorded, but no second resync (rate limit).
		h.send(g.msg(t, 1, 18, now(), envelope.KindEvent, wire.Event{Kind: "x.y"}))
		h.until("18 held", func() bool { return h.in.Stats().Held == 1 })
		h.clock.Advance(6 * time.Second)
		h.until("second gap", func() bool { return len(h.findings(store.FindingGap)) == 2 })
		h.mu.Lock()
		if len(h.sent) != 2 {
			t.Fatalf("resync not rate-limited: %d commands", len(h.sent))
		}
		h.mu.Unlock()
		// The gateway answers: birth and inventory clear the stale mark.
		h.send(g.msg(t, 1, 19, now(), envelope.KindBirth, birth))
		h.until("still stale without inventory", func() bool { return h.gateway("gw-1").LastSeq == 19 })
		if !h.gateway("gw-1").Stale {
			t.Fatal("stale cleared before the inventory arrived")
		}
		h.send(g.msg(t, 1, 20, now(), envelope.KindInventory, inv))
		h.until("not stale", func() bool { return !h.gateway("gw-1").Stale })
		// The late seq 15 is still stored; a redelivered 12 is not stored twice.
		h.send(g.msg(t, 1, 15, now(), envelope.KindEvent, wire.Event{Kind: "late.one"}))
		h.send(g.msg(t, 1, 12, now(), envelope.KindEvent, wire.Event{Kind: "vendor.request", Attrs: map[string]string{"grant": "g1"}}))
		// Late is counted on receipt, before the commit: wait for the row.
		var late int
		h.until("late and dup", func() bool {
			s := h.in.Stats()
			late = 0
			_, _ = h.st.Events(context.Background(), store.EventQuery{Kind: "late.one"}, func(store.Event) error { late++; return nil })
			return s.Late >= 1 && s.Duplicates >= 1 && late > 0
		})
		if late != 1 {
			t.Fatalf("late event stored %d times", late)
		}
		// A death of another session is ignored; the Will of this one is not.
		h.send(g.msg(t, 0, 5, now(), envelope.KindDeath, wire.Death{Reason: "offline"}))
		h.send(g.msg(t, 1, 21, now(), envelope.KindStatus, wire.Status{State: "alarm", Alarms: []string{"tamper"}}))
		h.until("status", func() bool { return h.gateway("gw-1").State == "alarm" })
		if !h.gateway("gw-1").Online || h.gateway("gw-1").ActiveAlarms != 1 {
			t.Fatalf("old death took the gateway offline, or alarm missing: %+v", h.gateway("gw-1"))
		}
		h.send(g.msg(t, 1, 9, now(), envelope.KindDeath, wire.Death{Reason: "offline"}))
		h.until("offline", func() bool { return !h.gateway("gw-1").Online })
		// A message of the dead session verified after its death (sent
		// before it) is stored but does not bring the gateway back online.
		h.send(g.msg(t, 1, 22, now(), envelope.KindEvent, wire.Event{Kind: "after.death"}))
		h.until("after-death event stored", func() bool { return h.gateway("gw-1").LastSeq == 22 })
		if h.gateway("gw-1").Online {
			t.Fatal("a message of the dead session brought the gateway back online")
		}
		if n := h.in.Stats().Late; n != 2 { // 15 and the old session's death; the announced Will is not late
			t.Logf("late %d", n)
		}
	})
}

func TestIngestFindings(t *testing.T) {
	pki := certstest.NewMini(t)
	other := certstest.NewMini(t)
	id := pki.Gateway(t, "gw-1")
	g := gw{id: "gw-1", key: id.Key, chain: id.Chain}
	rogueID := other.Gateway(t, "gw-1")
	rogue := gw{id: "gw-1", key: rogueID.Key, chain: rogueID.Chain}
	storetest.Each(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn, pki)
		topic, data := rogue.msg(t, 1, 1, h.clock.Now(), envelope.KindEvent, wire.Event{Kind: "x"})
		h.send(topic, data)
		_, data = g.msg(t, 1, 2, h.clock.Now(), envelope.KindEvent, wire.Event{Kind: "x"})
		h.send("wardgate/v1/gw-2/event", data)
		h.send("wardgate/v1/gw-3/event", []byte("not cbor"))
		h.until("3 findings", func() bool {
			fs, _ := h.st.Findings(context.Background(), store.FindingOpen, 0)
			return len(fs) == 3
		})
		if len(h.findings(store.FindingVerifyFailed)) != 2 || len(h.findings(store.FindingTopicMismatch)) != 1 {
			t.Fatalf("findings: %+v", h.findings(""))
		}
		if h.in.Stats().Rejected != 3 {
			t.Fatalf("stats %+v", h.in.Stats())
		}
		// A flood is folded: at most 20 findings per gateway, kind and minute.
		for range 30 {
			h.send("wardgate/v1/gw-9/event", []byte{0xff})
		}
		h.until("flood folded", func() bool { return h.in.Stats().FindingsFolded == 10 })
	})
}

func TestCachedVerifier(t *testing.T) {
	pki := certstest.NewMini(t)
	good := pki.Gateway(t, "gw-1")
	calls := 0
	base := envelope.RootsVerifier(pki.Roots())
	v := cachedVerifier(func(chain []*x509.Certificate, now time.Time) (string, error) {
		calls++
		return base(chain, now)
	})
	now := time.Now()
	for range 3 {
		if id, err := v(good.Chain, now); err != nil || id != "spiffe://hospital.example/gateway/gw-1" {
			t.Fatalf("%q %v", id, err)
		}
	}
	if calls != 1 {
		t.Fatalf("verified %d times, want 1 (cached)", calls)
	}
	if _, err := v(good.Chain, now.Add(verifyCacheTTL+time.Second)); err != nil || calls != 2 {
		t.Fatalf("not verified again after the TTL: %d %v", calls, err)
	}
	if _, err := v(good.Chain, good.Chain[0].NotAfter.Add(time.Second)); err == nil {
		t.Fatal("expired chain accepted from the cache")
	}
	rogue := certstest.NewMini(t).Gateway(t, "gw-1")
	for range 2 {
		if _, err := v(rogue.Chain, now); err == nil {
			t.Fatal("untrusted chain accepted")
		}
	}
	if calls != 5 {
		t.Fatalf("failures cached? %d calls", calls)
	}
}
