package store_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/central/store/storetest"
	"github.com/wardgate/wardgate/wire"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func open(t *testing.T, dsn string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestMigrationsIdempotent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		s := open(t, dsn)
		s.Close()
		s = open(t, dsn)
		v, err := s.SchemaVersion(context.Background())
		if err != nil || v != store.LatestSchema() {
			t.Fatalf("version %d, %v", v, err)
		}
	})
}

func TestOpenRefusesUnknownDSN(t *testing.T) {
	if _, err := store.Open(context.Background(), "mysql://x"); err == nil {
		t.Fatal("accepted")
	}
}

func TestGatewaysEventsFindings(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		inv := wire.Inventory{Devices: []wire.Device{{ID: "pump-07", Kind: "infusion-pump", Owner: "ce/icu", VendorPorts: []int{23},
			Accounts:   []wire.Account{{ID: "svc", Type: "shared-password", Owner: "ce/icu", RotateEvery: 90 * 24 * time.Hour, LastRotated: t0.AddDate(0, -6, 0)}},
			Exceptions: []wire.Exception{{ID: "EX-1", Control: "PR.PS-02", ApprovedBy: "ciso/jdoe", Expires: t0.AddDate(0, 0, 10)}}}}}
		n, err := s.Apply(ctx, func(tx *store.Tx) error {
			if err := tx.PutGateway(store.Gateway{ID: "gw-1", Site: "s", Online: true, LastSeq: 7, Session: 2, LastSeen: t0, Devices: 1}); err != nil {
				return err
			}
			for seq := uint64(1); seq <= 3; seq++ {
				e := store.Event{Gateway: "gw-1", Seq: seq, Time: t0.Add(time.Duration(seq) * time.Minute), Received: t0, Kind: "vendor.request",
					Severity: "info", Device: "pump-07", Identity: "spiffe://h/vendor/acme/bob", Attrs: map[string]string{"grant": "g1"}}
				if err := tx.AddEvent(e); err != nil {
					return err
				}
				if err := tx.AddEvent(e); err != nil { // duplicate: skipped
					return err
				}
			}
			// Multi-row: one new, one duplicate of the same batch, one already stored.
			if err := tx.AddEvents([]store.Event{{Gateway: "gw-1", Seq: 4, Time: t0, Received: t0, Kind: "gateway.birth"},
				{Gateway: "gw-1", Seq: 4, Time: t0, Received: t0, Kind: "gateway.birth"}, {Gateway: "gw-1", Seq: 1, Time: t0, Received: t0, Kind: "x"}}); err != nil {
				return err
			}
			if err := tx.PutInventory("gw-1", inv, t0); err != nil {
				return err
			}
			if err := tx.PutSession(store.Session{Gateway: "gw-1", Grant: "g1", Vendor: "v", Device: "pump-07", State: "live", Updated: t0}); err != nil {
				return err
			}
			if err := tx.SetAlarms("gw-1", map[string]string{"tamper": "case opened"}, t0); err != nil {
				return err
			}
			return tx.AddFinding(store.Finding{Time: t0, Gateway: "gw-x", Topic: "wardgate/v1/gw-x/event", Kind: store.FindingVerifyFailed, Detail: "bad signature"})
		})
		if err != nil || n != 4 {
			t.Fatalf("apply: %d inserted, %v", n, err)
		}
		g, err := s.Gateway(ctx, "gw-1")
		if err != nil || !g.Online || g.LastSeq != 7 || g.ActiveAlarms != 1 || !g.LastSeen.Equal(t0) {
			t.Fatalf("gateway %+v %v", g, err)
		}
		if _, err := s.Gateway(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing gateway: %v", err)
		}
		var got []store.Event
		next, err := s.Events(ctx, store.EventQuery{Kind: "vendor.*", Device: "pump-07"}, func(e store.Event) error { got = append(got, e); return nil })
		if err != nil || len(got) != 3 || got[0].Attrs["grant"] != "g1" || next != got[2].ID {
			t.Fatalf("events %v %v", got, err)
		}
		got = nil
		_, _ = s.Events(ctx, store.EventQuery{After: got3(t, s), Limit: 1}, func(e store.Event) error { got = append(got, e); return nil })
		if len(got) != 1 || got[0].Kind != "gateway.birth" {
			t.Fatalf("cursor page: %v", got)
		}
		got = nil
		_, _ = s.Events(ctx, store.EventQuery{Since: t0.Add(2 * time.Minute), Until: t0.Add(3 * time.Minute)}, func(e store.Event) error { got = append(got, e); return nil })
		if len(got) != 1 || got[0].Seq != 2 {
			t.Fatalf("time filter: %v", got)
		}
		devs, err := s.Devices(ctx, "gw-1")
		if err != nil || len(devs) != 1 || len(devs[0].Accounts) != 1 || len(devs[0].Exceptions) != 1 || devs[0].VendorPorts[0] != 23 {
			t.Fatalf("devices %+v %v", devs, err)
		}
		rep, err := s.Accountability(ctx, t0, wire.ExpiryWarning)
		if err != nil || len(rep) != 2 || rep[0].Owner != "ce/icu" || len(rep[0].Overdue) != 1 || rep[0].Overdue[0].OverdueDays < 80 ||
			len(rep[0].Exceptions) != 1 || rep[0].Exceptions[0].DaysLeft != 10 || rep[1].Owner != "ciso/jdoe" {
			t.Fatalf("accountability %+v %v", rep, err)
		}
		ss, err := s.Sessions(ctx, []string{"live"}, 0)
		if err != nil || len(ss) != 1 {
			t.Fatalf("sessions %v %v", ss, err)
		}
		fs, err := s.Findings(ctx, store.FindingOpen, 0)
		if err != nil || len(fs) != 1 {
			t.Fatalf("findings %v %v", fs, err)
		}
		f, err := s.Triage(ctx, fs[0].ID, "acknowledge", "spiffe://h/approver/sec/ann", "looking", t0.Add(time.Hour))
		if err != nil || f.State != store.FindingAcknowledged || f.TriagedBy != "spiffe://h/approver/sec/ann" || !f.TriagedAt.Equal(t0.Add(time.Hour)) {
			t.Fatalf("triage %+v %v", f, err)
		}
		if _, err := s.Triage(ctx, fs[0].ID, "delete", "x", "", t0); err == nil {
			t.Fatal("unknown action accepted")
		}
		if _, err := s.Triage(ctx, 9999, "resolve", "x", "", t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing finding: %v", err)
		}
		// Alarms: clearing by a status without them.
		if _, err := s.Apply(ctx, func(tx *store.Tx) error { return tx.SetAlarms("gw-1", nil, t0.Add(time.Minute)) }); err != nil {
			t.Fatal(err)
		}
		al, _ := s.Alarms(ctx, true)
		all, _ := s.Alarms(ctx, false)
		if len(al) != 0 || len(all) != 1 || all[0].Cleared.IsZero() {
			t.Fatalf("alarms %v %v", al, all)
		}
		ph, err := s.EventsPerHour(ctx, t0.Add(-time.Hour))
		if err != nil || len(ph) != 1 || ph[0].N != 4 {
			t.Fatalf("per hour %v %v", ph, err)
		}
		tot, err := s.Totals(ctx)
		if err != nil || tot.Events != 4 || tot.Gateways != 1 || tot.Online != 1 {
			t.Fatalf("totals %+v %v", tot, err)
		}
		pruned, err := s.Prune(ctx, t0.Add(48*time.Hour), store.Retention{Events: 24 * time.Hour, Findings: 24 * time.Hour, Sessions: 24 * time.Hour})
		if err != nil || pruned != 5 { // 4 events + 1 triaged finding; the live session stays
			t.Fatalf("pruned %d %v", pruned, err)
		}
	})
}

func got3(t *testing.T, s *store.Store) int64 {
	var last int64
	_, err := s.Events(context.Background(), store.EventQuery{Limit: 3}, func(e store.Event) error { last = e.ID; return nil })
	if err != nil {
		t.Fatal(err)
	}
	return last
}

func TestAddEventsChunks(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		s := open(t, dsn)
		var es []store.Event
		for i := range 450 {
			es = append(es, store.Event{Gateway: "gw-1", Seq: uint64(i + 1), Time: t0, Received: t0, Kind: "k"})
		}
		n, err := s.Apply(context.Background(), func(tx *store.Tx) error { return tx.AddEvents(append(es, es[:10]...)) })
		if err != nil || n != 450 {
			t.Fatalf("inserted %d, %v", n, err)
		}
	})
}

// TestEventHours: event_hours follows inserts (not duplicates) and
// prunes, and EventsPerHour counts a partial first hour from the events.
func TestEventHours(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		h0 := t0.Truncate(time.Hour)
		var es []store.Event
		for i := range 300 { // 100 per hour over three hours
			es = append(es, store.Event{Gateway: "gw-1", Seq: uint64(i + 1), Time: h0.Add(time.Duration(i) * 36 * time.Second), Received: t0, Kind: "k"})
		}
		if _, err := s.Apply(ctx, func(tx *store.Tx) error { return tx.AddEvents(es) }); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(ctx, func(tx *store.Tx) error { return tx.AddEvents(es[:150]) }); err != nil { // duplicates
			t.Fatal(err)
		}
		tot, err := s.Totals(ctx)
		if err != nil || tot.Events != 300 {
			t.Fatalf("totals %+v %v", tot, err)
		}
		// From half past the first hour: 50 of it, then 100 and 100.
		ph, err := s.EventsPerHour(ctx, h0.Add(30*time.Minute))
		if err != nil || len(ph) != 3 || ph[0].N != 50 || ph[1].N != 100 || ph[2].N != 100 || ph[0].Label != h0.UTC().Format("15:04") {
			t.Fatalf("per hour %+v %v", ph, err)
		}
		// Keep events from the middle of the second hour on.
		pruned, err := s.Prune(ctx, h0.Add(25*time.Hour+30*time.Minute), store.Retention{Events: 24 * time.Hour})
		if err != nil || pruned != 150 {
			t.Fatalf("pruned %d %v", pruned, err)
		}
		ph, err = s.EventsPerHour(ctx, h0)
		if err != nil || len(ph) != 2 || ph[0].N != 50 || ph[1].N != 100 {
			t.Fatalf("per hour after prune %+v %v", ph, err)
		}
		if tot, err := s.Totals(ctx); err != nil || tot.Events != 150 {
			t.Fatalf("totals after prune %+v %v", tot, err)
		}
	})
}
