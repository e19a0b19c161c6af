package web

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/wardgate/wardgate/central/ingest"
	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/central/store/storetest"
	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/envelope"
)

// chromium finds Debian's headless Chromium; under CI its absence fails.
func chromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser tests skipped with -short")
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is required under CI (scripts/deps.sh installs it)")
	}
	t.Skip("chromium not installed (scripts/deps.sh installs it)")
	return ""
}

func signedMsg(t *testing.T, key crypto.Signer, chain []*x509.Certificate, gw string, seq uint64, kind envelope.Kind, body []byte) (string, []byte) {
	t.Helper()
	p, err := envelope.EncodePayload(&envelope.Envelope{Version: envelope.Version, Gateway: gw, Session: 1, Seq: seq,
		Time: time.Now().UnixMilli(), Kind: kind, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	data, err := envelope.Sign(key, chain, p)
	if err != nil {
		t.Fatal(err)
	}
	return wire.Topic(gw, kind), data
}

// TestBrowser drives the pages in headless Chromium. The pages are served
// over loopback HTTP with the user injected (the mTLS login is covered by
// TestMTLSApproversOnly): the fleet page lists a live gateway fed through
// the real ingest, the accountability page shows an overdue account, a
// new gateway appears on the open fleet page by SSE within 2 seconds, and
// no page logs a console error (CSP violations included).
func TestBrowser(t *testing.T) {
	bin := chromium(t)
	pki := certstest.NewMini(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(ctx, storetest.SQLite(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var srv *Server
	in, err := ingest.New(ctx, ingest.Options{Store: st, Verify: envelope.RootsVerifier(pki.Roots()),
		OnChange: func(c ingest.Change) { srv.Notify(c) }})
	if err != nil {
		t.Fatal(err)
	}
	srv, err = New(Options{Store: st, TrustDomain: "hospital.example", Stats: in.Stats,
		User: func(*http.Request) (string, error) { return user, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ingestDone := make(chan struct{})
	go func() { defer close(ingestDone); _ = in.Run(ctx) }()
	hs := httptest.NewServer(srv.Handler())
	defer func() { cancel(); <-ingestDone; hs.Close() }()

	feed := func(id string, inv wire.Inventory) {
		g := pki.Gateway(t, id)
		bb, _ := wire.BirthBody(wire.Birth{Gateway: id, Site: "st-ui", Version: "2.0.1", Inventory: inv.Summary()})
		topic, data := signedMsg(t, g.Key, g.Chain, id, 1, envelope.KindBirth, bb)
		in.Handle(ctx, topic, data)
		ib, _ := wire.InventoryBody(inv)
		topic, data = signedMsg(t, g.Key, g.Chain, id, 2, envelope.KindInventory, ib)
		in.Handle(ctx, topic, data)
	}
	feed("gw-live-1", wire.Inventory{Devices: []wire.Device{{ID: "pump-07", Owner: "clinical-engineering/icu",
		Accounts: []wire.Account{{ID: "acme-svc", Type: "shared-password", Owner: "clinical-engineering/icu", RotateEvery: 90 * 24 * time.Hour,
			LastRotated: time.Now().AddDate(0, -7, 0)}}}}})
	deadline := time.Now().Add(10 * time.Second)
	for {
		devs, _ := st.Devices(ctx, "gw-live-1")
		if len(devs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the ingest did not store the gateway")
		}
		time.Sleep(20 * time.Millisecond)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Headless,
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	bctx, tcancel := context.WithTimeout(bctx, 60*time.Second)
	defer tcancel()
	var mu sync.Mutex
	var consoleErrors []string
	msgs := chromedp.Console(bctx)
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				mu.Lock()
				consoleErrors = append(consoleErrors, m.String()+" at "+m.URL+":"+fmt.Sprint(m.Line))
				mu.Unlock()
			}
		}
	}()
	if err := chromedp.Do(bctx, chromedp.Navigate(hs.URL+"/accountability"), chromedp.WaitVisible(chromedp.CSS("tr.overdue"))); err != nil {
		t.Fatal(err)
	}
	acct, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(hs.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`a[href="/gateways/gw-live-1"]`))); err != nil {
		t.Fatal(err)
	}
	fleet, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fleet, "online") || !strings.Contains(fleet, "2.0.1") {
		t.Fatalf("fleet page: %s", fleet)
	}
	if !strings.Contains(acct, "acme-svc") || !strings.Contains(acct, "clinical-engineering/icu") {
		t.Fatalf("accountability page: %s", acct)
	}
	// Wait until the page's EventSource is connected, then a new gateway
	// reports; the open page must show it within 2 seconds.
	for srv.liveClients() == 0 {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatal("the fleet page did not open /live")
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	feed("gw-live-2", wire.Inventory{})
	sctx, scancel := context.WithTimeout(bctx, 2*time.Second)
	defer scancel()
	if err := chromedp.Do(sctx, chromedp.WaitVisible(chromedp.CSS(`a[href="/gateways/gw-live-2"]`))); err != nil {
		t.Fatalf("the SSE update did not appear within 2 s: %v", err)
	}
	t.Logf("SSE update visible after %s", time.Since(start).Round(time.Millisecond))
	// Load every page once more for console errors (CSP included).
	for _, p := range []string{"/gateways/gw-live-1", "/gateways/gw-live-1/devices/pump-07", "/sessions", "/events", "/alarms", "/findings"} {
		if err := chromedp.Do(bctx, chromedp.Navigate(hs.URL+p), chromedp.WaitVisible(chromedp.CSS("main"))); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	tcancel()
	<-consoleDone
	mu.Lock()
	defer mu.Unlock()
	if len(consoleErrors) > 0 {
		t.Fatalf("console errors: %v", consoleErrors)
	}
}
