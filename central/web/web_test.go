package web

import (
	"context"
	"crypto/tls"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/central/ingest"
	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/central/store/storetest"
	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

var now = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

const user = "spiffe://hospital.example/approver/security/ann"

// seed fills a store with one gateway, an overdue account, an expiring
// exception, events, a live session, an alarm and a finding.
func seed(t *testing.T, dsn string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	inv := wire.Inventory{Devices: []wire.Device{{ID: "pump-07", Kind: "infusion-pump", Owner: "clinical-engineering/icu",
		Accounts:   []wire.Account{{ID: "acme-svc", Type: "shared-password", Owner: "clinical-engineering/icu", RotateEvery: 90 * 24 * time.Hour, LastRotated: now.AddDate(0, -5, 0)}},
		Exceptions: []wire.Exception{{ID: "EX-2026-014", Control: "PR.PS-02", ApprovedBy: "ciso/jdoe", Expires: now.AddDate(0, 0, 12)}}}}}
	_, err = st.Apply(context.Background(), func(tx *store.Tx) error {
		if err := tx.PutGateway(store.Gateway{ID: "gw-icu3-12", Site: "st-example", Version: "1.4.0", Online: true, LastSeen: now, Session: 3, LastSeq: 40, Devices: 1}); err != nil {
			return err
		}
		if err := tx.PutInventory("gw-icu3-12", inv, now); err != nil {
			return err
		}
		for i := range 25 {
			kind := "vendor.request"
			if i%2 == 1 {
				kind = "clinical.refused"
			}
			if err := tx.AddEvent(store.Event{Gateway: "gw-icu3-12", Seq: uint64(i + 1), Time: now.Add(-time.Duration(i) * time.Minute), Received: now,
				Kind: kind, Severity: "info", Device: "pump-07", Identity: "spiffe://hospital.example/vendor/acme/bob",
				Attrs: map[string]string{"grant": "g1", "note": "=cmd()"}}); err != nil {
				return err
			}
		}
		if err := tx.PutSession(store.Session{Gateway: "gw-icu3-12", Grant: "g1", Vendor: "spiffe://hospital.example/vendor/acme/bob", Device: "pump-07", State: "live", Updated: now}); err != nil {
			return err
		}
		if err := tx.SetAlarms("gw-icu3-12", map[string]string{"tamper": "case opened"}, now); err != nil {
			return err
		}
		return tx.AddFinding(store.Finding{Time: now, Gateway: "gw-rogue", Topic: "wardgate/v1/gw-rogue/event", Kind: store.FindingVerifyFailed, Detail: "untrusted signer"})
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func newServer(t *testing.T, st *store.Store) *Server {
	s, err := New(Options{Store: st, TrustDomain: "hospital.example", Clock: clockwork.NewFakeClockAt(now),
		User:  func(*http.Request) (string, error) { return user, nil },
		Stats: func() ingest.Stats { return ingest.Stats{Received: 7, Verified: 6, Rejected: 1} }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func get(t *testing.T, h http.Handler, path string) (int, string, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Body.String(), rec.Header()
}

func getJSON(t *testing.T, h http.Handler, path string, v any) {
	t.Helper()
	code, body, _ := get(t, h, path)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

func TestAPI(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		h := newServer(t, seed(t, dsn)).Handler()
		var gws struct{ Gateways []map[string]any }
		getJSON(t, h, "/api/v1/gateways", &gws)
		if len(gws.Gateways) != 1 || gws.Gateways[0]["id"] != "gw-icu3-12" || gws.Gateways[0]["online"] != true || gws.Gateways[0]["active_alarms"] != 1.0 {
			t.Fatalf("gateways %v", gws)
		}
		var one struct {
			Gateway map[string]any
			Devices []map[string]any
			Alarms  []map[string]any
		}
		getJSON(t, h, "/api/v1/gateways/gw-icu3-12", &one)
		if one.Gateway["version"] != "1.4.0" || len(one.Devices) != 1 || len(one.Alarms) != 1 {
			t.Fatalf("gateway %v", one)
		}
		if code, _, _ := get(t, h, "/api/v1/gateways/nope"); code != 404 {
			t.Fatalf("unknown gateway: %d", code)
		}
		var devs struct{ Devices []store.Device }
		getJSON(t, h, "/api/v1/devices?gateway=gw-icu3-12", &devs)
		if len(devs.Devices) != 1 || devs.Devices[0].Accounts[0].ID != "acme-svc" {
			t.Fatalf("devices %+v", devs)
		}
		var acc struct {
			WarningDays int `json:"warning_days"`
			Owners      []store.OwnerReport
		}
		getJSON(t, h, "/api/v1/accountability", &acc)
		if acc.WarningDays != 30 || len(acc.Owners) != 2 || acc.Owners[0].Owner != "ciso/jdoe" || acc.Owners[0].Exceptions[0].DaysLeft != 12 ||
			acc.Owners[1].Overdue[0].ID != "acme-svc" {
			t.Fatalf("accountability %+v", acc)
		}
		var ss struct{ Sessions []store.Session }
		getJSON(t, h, "/api/v1/sessions?state=live", &ss)
		if len(ss.Sessions) != 1 {
			t.Fatalf("sessions %+v", ss)
		}
		// Events page by page with the cursor, then filtered, then exports.
		var page struct {
			Events []store.Event
			Next   string `json:"next_cursor"`
		}
		getJSON(t, h, "/api/v1/events?limit=10", &page)
		total := len(page.Events)
		for page.Next != "" {
			cursor := page.Next
			page.Next = ""
			getJSON(t, h, "/api/v1/events?limit=10&cursor="+cursor, &page)
			total += len(page.Events)
		}
		if total != 25 {
			t.Fatalf("paged %d events, want 25", total)
		}
		getJSON(t, h, "/api/v1/events?kind=vendor.*&identity="+url.QueryEscape("spiffe://hospital.example/vendor/acme/bob")+"&since="+now.Add(-5*time.Minute).Format(time.RFC3339), &page)
		if len(page.Events) != 3 {
			t.Fatalf("filtered: %d events", len(page.Events))
		}
		code, body, hdr := get(t, h, "/api/v1/events?format=csv&gateway=gw-icu3-12")
		rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
		if code != 200 || err != nil || len(rows) != 26 || hdr.Get("Content-Type") != "text/csv; charset=utf-8" || rows[1][6] != "vendor.request" {
			t.Fatalf("csv %d %v rows=%d %v", code, err, len(rows), rows[1])
		}
		_, body, _ = get(t, h, "/api/v1/events?format=jsonl&device=pump-07")
		if n := strings.Count(body, "\n"); n != 25 {
			t.Fatalf("jsonl lines %d", n)
		}
		for _, bad := range []string{"/api/v1/events?since=yesterday", "/api/v1/events?cursor=x", "/api/v1/events?limit=0", "/api/v1/events?format=xml"} {
			if code, _, _ := get(t, h, bad); code != 400 {
				t.Errorf("GET %s: %d, want 400", bad, code)
			}
		}
		var al struct{ Alarms []store.Alarm }
		getJSON(t, h, "/api/v1/alarms", &al)
		if len(al.Alarms) != 1 || al.Alarms[0].Kind != "tamper" {
			t.Fatalf("alarms %+v", al)
		}
		var fs struct{ Findings []store.Finding }
		getJSON(t, h, "/api/v1/findings?state=open", &fs)
		if len(fs.Findings) != 1 {
			t.Fatalf("findings %+v", fs)
		}
		post := func(path, body string) (int, string) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("POST", path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			h.ServeHTTP(rec, req)
			return rec.Code, rec.Body.String()
		}
		id := fs.Findings[0].ID
		code, body = post(fmt.Sprintf("/api/v1/findings/%d/triage", id), `{"action":"suppress","note":"known test rig"}`)
		var f store.Finding
		_ = json.Unmarshal([]byte(body), &f)
		if code != 200 || f.State != "suppressed" || f.TriagedBy != user || !f.TriagedAt.Equal(now) || f.Note != "known test rig" {
			t.Fatalf("triage %d %s", code, body)
		}
		for _, c := range []struct {
			path, body string
			want       int
		}{
			{fmt.Sprintf("/api/v1/findings/%d/triage", id), `{"action":"delete"}`, 400},
			{fmt.Sprintf("/api/v1/findings/%d/triage", id), `{"action":"resolve","extra":1}`, 400},
			{"/api/v1/findings/x/triage", `{"action":"resolve"}`, 400},
			{"/api/v1/findings/999/triage", `{"action":"resolve"}`, 404},
		} {
			if code, body := post(c.path, c.body); code != c.want {
				t.Errorf("POST %s %s: %d %s, want %d", c.path, c.body, code, body, c.want)
			}
		}
		code, body, _ = get(t, h, "/metrics")
		for _, want := range []string{"wardgate_central_gateways 1", "wardgate_central_gateways_online 1", "wardgate_central_messages_rejected_total 1",
			"wardgate_central_store_up 1", `wardgate_central_store_latency_seconds_bucket{le="+Inf"} 0`} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %q:\n%s", want, body)
			}
		}
		_ = code
	})
}

func TestPages(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		h := newServer(t, seed(t, dsn)).Handler()
		for path, wants := range map[string][]string{
			"/":                                    {"gw-icu3-12", "online", "1.4.0", "<svg", "signed in as " + user},
			"/gateways/gw-icu3-12":                 {"pump-07", "tamper"},
			"/gateways/gw-icu3-12/devices/pump-07": {"acme-svc", "EX-2026-014"},
			"/accountability":                      {"clinical-engineering/icu", "acme-svc", "overdue", "ciso/jdoe", "12"},
			"/sessions":                            {"g1", "live"},
			"/events?gateway=gw-icu3-12&kind=vendor.*": {"vendor.request", "format=csv"},
			"/alarms":   {"tamper"},
			"/findings": {"untrusted signer", "Acknowledge"},
		} {
			code, body, hdr := get(t, h, path)
			if code != 200 {
				t.Errorf("GET %s: %d %s", path, code, body)
				continue
			}
			for _, w := range wants {
				if !strings.Contains(body, w) {
					t.Errorf("GET %s lacks %q", path, w)
				}
			}
			if !strings.Contains(hdr.Get("Content-Security-Policy"), "script-src 'nonce-") {
				t.Errorf("GET %s: CSP %q", path, hdr.Get("Content-Security-Policy"))
			}
		}
		for _, p := range []string{"/gateways/nope", "/gateways/gw-icu3-12/devices/nope", "/nothing"} {
			if code, _, _ := get(t, h, p); code != 404 {
				t.Errorf("GET %s: %d, want 404", p, code)
			}
		}
		if code, body, _ := get(t, h, "/events?since=bad"); code != 200 || !strings.Contains(body, "is not a time") {
			t.Errorf("bad filter page: %d", code)
		}
		// Live refreshes get the content only.
		frag := httptest.NewRecorder()
		freq := httptest.NewRequest("GET", "/", nil)
		freq.Header.Set("X-Fragment", "main")
		h.ServeHTTP(frag, freq)
		if b := frag.Body.String(); frag.Code != 200 || strings.Contains(b, "<html") || !strings.Contains(b, "gw-icu3-12") {
			t.Fatalf("fragment: %d %s", frag.Code, b)
		}
		// The triage form, and a cross-origin post refused.
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/findings/1/triage", strings.NewReader("action=acknowledge&note=seen"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusSeeOther {
			t.Fatalf("form triage: %d %s", rec.Code, rec.Body)
		}
		rec = httptest.NewRecorder()
		req = httptest.NewRequest("POST", "/findings/1/triage", strings.NewReader("action=resolve"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Fatalf("cross-site triage: %d", rec.Code)
		}
	})
}

// TestMTLSApproversOnly serves over real TLS with the approver policy:
// an approver certificate gets in and is the user; a vendor's does not.
func TestMTLSApproversOnly(t *testing.T) {
	pki := certstest.New(t, "hospital.example")
	st := seed(t, storetest.SQLite(t))
	s, err := New(Options{Store: st, TrustDomain: "hospital.example"})
	if err != nil {
		t.Fatal(err)
	}
	srvCert := pki.Server(t, "localhost")
	tlsConf := pki.Verifier().ServerTLSConfig(certs.Static(&srvCert), ApproverPolicy("hospital.example", 0), nil)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tlsConf)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, ln) }()
	defer func() { cancel(); <-done }()
	client := func(c tls.Certificate) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pki.Bundle().Pool(), Certificates: []tls.Certificate{c}, ServerName: "localhost"}}}
	}
	addr := "https://" + ln.Addr().(*net.TCPAddr).String()
	resp, err := client(pki.Approver(t, "security", "ann")).Get(addr + "/api/v1/whoami")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), user) {
		t.Fatalf("approver: %d %s", resp.StatusCode, b)
	}
	if _, err := client(pki.Vendor(t, "acme", "bob")).Get(addr + "/api/v1/whoami"); err == nil {
		t.Fatal("a vendor certificate got in")
	}
}

func TestCSVSafe(t *testing.T) {
	for in, want := range map[string]string{"=cmd()": "'=cmd()", "+1": "'+1", "-x": "'-x", "@a": "'@a", "pump-07": "pump-07", "": ""} {
		if got := csvSafe(in); got != want {
			t.Errorf("csvSafe(%q) = %q, want %q", in, got, want)
		}
	}
}
