package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/central/store/storetest"
	"github.com/wardgate/wardgate/wire"
)

// The fleet BenchmarkRender renders pages of: 1,000 gateways with 5
// devices each (2 accounts each, one in five overdue; an exception on
// every fifth device), 10 vendor grants per gateway (300 of them open),
// 1,000,000 events over the last 7 days, 20,000 open findings and an alarm
// on every tenth gateway.
const (
	renderGateways   = 1000
	renderDevices    = 5
	renderEvents     = 1_000_000
	renderFindings   = 20_000
	renderGrants     = 10
	renderEventsSpan = 7 * 24 * time.Hour
)

var renderVendors = []string{"acme", "medtronics", "philipsen", "siemens-hc", "baxterly"}

func renderVendor(i int) string {
	return fmt.Sprintf("spiffe://hospital.example/vendor/%s/tech-%02d", renderVendors[i%len(renderVendors)], i%40)
}

// seedFleet fills st with the BenchmarkRender fleet, in a few large
// transactions through the store's own write path (not through MQTT).
func seedFleet(ctx context.Context, st *store.Store, at time.Time) error {
	_, err := st.Apply(ctx, func(tx *store.Tx) error {
		gs := make([]store.Gateway, 0, renderGateways)
		for g := range renderGateways {
			id := fmt.Sprintf("gw-%04d", g)
			gs = append(gs, store.Gateway{ID: id, Site: fmt.Sprintf("site-%02d", g%40), Version: "1.4.0", Session: 3,
				LastSeq: renderEvents / renderGateways, Online: g%17 != 0, Stale: g%97 == 0, FirstSeen: at.Add(-30 * 24 * time.Hour),
				LastSeen: at.Add(-time.Duration(g) * time.Second), LastBirth: at.Add(-24 * time.Hour), State: "ok",
				Devices: renderDevices, Messages: renderEvents / renderGateways, Signer: "spiffe://hospital.example/gateway/" + id})
			var inv wire.Inventory
			for d := range renderDevices {
				dev := wire.Device{ID: fmt.Sprintf("dev-%d", d), Kind: "infusion-pump", Manufacturer: "Acme", Model: "P-100",
					Serial: fmt.Sprintf("SN%04d%d", g, d), Owner: fmt.Sprintf("clinical-engineering/ward-%02d", g%30),
					VendorOrg: renderVendors[d%len(renderVendors)], VendorPorts: []int{443}, Approval: []string{"biomed"}}
				for a := range 2 {
					// One account in five is overdue for rotation.
					age := 60 * 24 * time.Hour
					if (g+d+a)%5 == 0 {
						age = 120 * 24 * time.Hour
					}
					dev.Accounts = append(dev.Accounts, wire.Account{ID: fmt.Sprintf("svc-%d", a), Type: "shared-password",
						Owner: dev.Owner, RotateEvery: 90 * 24 * time.Hour, LastRotated: at.Add(-age)})
				}
				if d == 0 {
					dev.Exceptions = []wire.Exception{{ID: fmt.Sprintf("EX-%04d", g), Control: "PR.PS-02", Reason: "vendor firmware",
						ApprovedBy: "ciso/jdoe", Expires: at.Add(time.Duration(g%60-10) * 24 * time.Hour)}}
				}
				inv.Devices = append(inv.Devices, dev)
			}
			if err := tx.PutInventory(id, inv, at); err != nil {
				return err
			}
			for s := range renderGrants {
				// Every tenth gateway has a live, an approved and a
				// requested grant; the rest are history.
				state := []string{"ended", "ended", "ended", "denied", "expired", "revoked", "ended", "ended", "ended", "ended"}[s]
				if g%10 == 0 && s >= 7 {
					state = []string{"live", "approved", "requested"}[s-7]
				}
				if err := tx.PutSession(store.Session{Gateway: id, Grant: fmt.Sprintf("g-%04d-%d", g, s), Vendor: renderVendor(g + s),
					Device: fmt.Sprintf("dev-%d", s%renderDevices), Ports: "443", State: state, Approver: "spiffe://hospital.example/approver/biomed/ann",
					Requested: at.Add(-time.Duration(g*renderGrants+s) * time.Minute), Updated: at.Add(-time.Duration(g*renderGrants+s) * time.Minute)}); err != nil {
					return err
				}
			}
			if g%10 == 0 {
				if err := tx.SetAlarms(id, map[string]string{"tamper": "case opened"}, at); err != nil {
					return err
				}
			}
		}
		if err := tx.PutGateways(gs); err != nil {
			return err
		}
		for f := range renderFindings {
			if err := tx.AddFinding(store.Finding{Time: at.Add(-time.Duration(f) * time.Minute), Gateway: fmt.Sprintf("gw-%04d", f%renderGateways),
				Topic: "wardgate/v1/gw-rogue/event", Kind: store.FindingVerifyFailed, Detail: "untrusted signer"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Events, oldest first (ids grow with time as they do when received),
	// in transactions of 100,000.
	kinds := []string{"clinical.refused", "clinical.session_start", "clinical.session_end", "vendor.request", "vendor.session_start",
		"vendor.session_end", "gateway.birth", "access.denied"}
	const perTx = 100_000
	step := renderEventsSpan / renderEvents
	batch := make([]store.Event, 0, perTx)
	for start := 0; start < renderEvents; start += perTx {
		batch = batch[:0]
		for i := start; i < min(start+perTx, renderEvents); i++ {
			g := i % renderGateways
			t := at.Add(-renderEventsSpan + time.Duration(i)*step)
			kind := kinds[i%len(kinds)]
			e := store.Event{Gateway: fmt.Sprintf("gw-%04d", g), Session: 3, Seq: uint64(i/renderGateways + 1), Time: t, Received: t,
				Kind: kind, Severity: "info", Device: fmt.Sprintf("dev-%d", i%renderDevices),
				Attrs: map[string]string{"device": fmt.Sprintf("dev-%d", i%renderDevices), "reason": "not allowed"}}
			if kind[:7] == "vendor." {
				e.Identity = renderVendor(i / 7)
				e.Attrs["vendor"], e.Attrs["grant"] = e.Identity, fmt.Sprintf("g-%04d-%d", g, i%renderGrants)
			}
			batch = append(batch, e)
		}
		if _, err := st.Apply(ctx, func(tx *store.Tx) error { return tx.AddEvents(batch) }); err != nil {
			return err
		}
	}
	return nil
}

// renderFleet opens a store on db and seeds it; the store lives as long
// as b (the per-database sub-benchmark, whose page benchmarks share it).
func renderFleet(b *testing.B, db string, at time.Time) *store.Store {
	dsn := storetest.SQLite(b)
	if db == "postgres" {
		dsn = storetest.Postgres(b) // skips (or fails under CI) without PostgreSQL
	}
	ctx := context.Background()
	st, err := store.Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	t0 := time.Now()
	if err := seedFleet(ctx, st, at); err != nil {
		b.Fatal(err)
	}
	b.Logf("%s: seeded %d gateways and %d events in %s", db, renderGateways, renderEvents, time.Since(t0).Round(time.Millisecond))
	return st
}

// BenchmarkRender renders the main pages through the real handler (as an
// approver) against a store holding 1,000 gateways and 1,000,000 events,
// on SQLite and PostgreSQL, and reports each page's p95 in milliseconds.
// Target: p95 <= 200 ms. Seeding (about a minute per database) runs once
// per database and only when the benchmark runs: go test without -bench
// never seeds. Run it with a fixed -benchtime (scripts/bench/render.sh).
func BenchmarkRender(b *testing.B) {
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	pages := []struct{ name, path string }{
		{"fleet", "/"},
		{"gateway", "/gateways/gw-0042"},
		{"accountability", "/accountability"},
		{"events", "/events"},
		{"events-filtered", "/events?" + url.Values{"gateway": {"gw-0042"}, "kind": {"vendor.*"}}.Encode()},
		{"audit-search", "/events?" + url.Values{"identity": {renderVendor(3)}}.Encode()},
		{"sessions", "/sessions"},
		{"findings", "/findings"},
	}
	for _, db := range []string{"sqlite", "postgres"} {
		b.Run(db, func(b *testing.B) {
			st := renderFleet(b, db, at)
			s, err := New(Options{Store: st, TrustDomain: "hospital.example", Clock: clockwork.NewFakeClockAt(at),
				User: func(*http.Request) (string, error) { return user, nil }})
			if err != nil {
				b.Fatal(err)
			}
			h := s.Handler()
			for _, p := range pages {
				b.Run(p.name, func(b *testing.B) {
					// One untimed request first: the p95 is of a server
					// that has rendered the page before.
					h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p.path, nil))
					var took []time.Duration
					for b.Loop() {
						rec := httptest.NewRecorder()
						t0 := time.Now()
						h.ServeHTTP(rec, httptest.NewRequest("GET", p.path, nil))
						took = append(took, time.Since(t0))
						if rec.Code != http.StatusOK {
							b.Fatalf("GET %s: %d %s", p.path, rec.Code, rec.Body.String())
						}
					}
					sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
					p95 := took[min(len(took)-1, len(took)*95/100)]
					b.ReportMetric(float64(p95.Microseconds())/1000, "p95-ms")
				})
			}
		})
	}
}
