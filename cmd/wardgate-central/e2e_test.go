package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/wardgate/wardgate/central/app"
	"github.com/wardgate/wardgate/central/config"
	"github.com/wardgate/wardgate/central/store/storetest"
	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/gateway/agent"
	"github.com/wardgate/wardgate/gateway/telemetry"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/brokertest"
	"github.com/wardgate/wardgate/wire/envelope"
)

const td = certstest.MiniTrustDomain

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// e2e is central on SQLite, a real mosquitto with TLS and ACLs, and the
// gateway's real telemetry publisher.
type e2e struct {
	t      *testing.T
	pki    *certstest.MiniPKI
	broker *brokertest.Mosquitto
	api    string
	client *http.Client
}

func startCentral(t *testing.T, pki *certstest.MiniPKI, broker *brokertest.Mosquitto, db string) *e2e {
	dir := t.TempDir()
	central := pki.Issue(t, "central", "spiffe://"+td+"/svc/central", "localhost")
	certFile, keyFile := central.WriteFiles(t, dir, "central")
	root := pki.WriteRoot(t, dir)
	if db == "" {
		db = "sqlite:" + filepath.Join(dir, "central.db")
	}
	yaml := fmt.Sprintf(`version: 1
central: {id: central-e2e, trust_domain: %s, listen: "127.0.0.1:0", db: %q, operator_cert_lifetime: 48h}
tls: {cert: %s, key: %s, ca: %s}
mqtt: {brokers: [%q], keepalive: 5s}
ingest: {reorder_window: 300ms, resync_interval: 1m, offline_after: 1h}
`, td, db, certFile, keyFile, root, broker.URL)
	cfgFile := filepath.Join(dir, "central.yaml")
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("CENTRAL_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	go func() { done <- app.Run(ctx, cfg, app.Options{Listener: ln, Version: "e2e", Logger: logger}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("central: %v", err)
		}
	})
	appr := pki.Approver(t, "security", "ann")
	return &e2e{t: t, pki: pki, broker: broker, api: "https://" + ln.Addr().String(),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLS(appr)}}}
}

func (e *e2e) get(path string, v any) int {
	e.t.Helper()
	resp, err := e.client.Get(e.api + path)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b, v); err != nil {
			e.t.Fatalf("GET %s: %v: %s", path, err, b)
		}
	}
	return resp.StatusCode
}

// await polls the API (the state lives in another component) until cond
// holds, for at most 60 seconds (CI machines run many suites at once).
func (e *e2e) await(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *e2e) metrics() string {
	e.t.Helper()
	resp, err := e.client.Get(e.api + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func (e *e2e) awaitSubscribed() {
	e.await("central subscribed", func() bool { return strings.Contains(e.metrics(), "wardgate_central_mqtt_connected 1") })
}

type apiGateway struct {
	ID      string `json:"id"`
	Online  bool   `json:"online"`
	Stale   bool   `json:"stale"`
	LastSeq uint64 `json:"last_seq"`
	Gaps    int    `json:"gaps"`
	Devices int    `json:"devices"`
	Version string `json:"version"`
}

func (e *e2e) gateway(id string) apiGateway {
	var r struct{ Gateway apiGateway }
	e.get("/api/v1/gateways/"+id, &r)
	return r.Gateway
}

// gatewayPublisher starts the gateway's real telemetry publisher, wired as
// the agent wires it: approvers and central's own identity verified by a
// certs.Verifier, central admitted for rebirth and inventory only.
func gatewayPublisher(t *testing.T, pki *certstest.MiniPKI, brokerURL, id string, inv wire.Inventory) (*telemetry.Publisher, context.CancelFunc) {
	gw := pki.Gateway(t, id)
	cert := gw.TLS()
	v := certs.NewVerifier(certs.NewBundle(pki.CA.Root), nil)
	approver := certs.PeerPolicy{TrustDomain: td, Allow: []certs.Pattern{certs.MustCompilePattern("spiffe://" + td + "/approver/**")}, MaxLifetime: 48 * time.Hour}
	central := certs.PeerPolicy{TrustDomain: td, Allow: []certs.Pattern{certs.MustCompilePattern(certs.ServiceURI(td, "central"))},
		MaxLifetime: agent.CentralMaxLifetime}
	verify := func(p certs.PeerPolicy) func([]*x509.Certificate, time.Time) (string, error) {
		return func(chain []*x509.Certificate, _ time.Time) (string, error) {
			i, err := v.Verify(chain, p)
			return i.URI, err
		}
	}
	p, err := telemetry.New(telemetry.Options{
		GatewayID: id, Site: "st-e2e", Version: "9.9.9", ConfigHash: "ab", Brokers: []string{brokerURL},
		TLSConfig: func(string) *tls.Config {
			return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pki.Roots(), ServerName: "localhost",
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }}
		},
		Signer:     func() (crypto.Signer, []*x509.Certificate) { return gw.Key, gw.Chain },
		Inventory:  func() wire.Inventory { return inv },
		OutboxPath: filepath.Join(t.TempDir(), "telemetry.db"), NoSync: true,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond, Timeout: 5 * time.Second, KeepAlive: 5 * time.Second,
		VerifyApprover: verify(approver), VerifyCentral: verify(central),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var stopped bool
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("publisher: %v", err)
		}
		p.Close()
	}
	t.Cleanup(stop)
	return p, stop
}

// mqttAs connects to the broker as an identity (raw publishes).
func mqttAs(t *testing.T, pki *certstest.MiniPKI, brokerURL string, idn *certstest.Identity, clientID string) paho.Client {
	c := paho.NewClient(paho.NewClientOptions().AddBroker(brokerURL).SetClientID(clientID).SetTLSConfig(pki.ClientTLS(idn)).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func testInventory() wire.Inventory {
	return wire.Inventory{Devices: []wire.Device{{ID: "pump-07", Kind: "infusion-pump", Owner: "clinical-engineering/icu", Link: "tcp",
		Accounts: []wire.Account{{ID: "acme-svc", Type: "shared-password", Owner: "clinical-engineering/icu", RotateEvery: 90 * 24 * time.Hour,
			LastRotated: time.Now().AddDate(0, -6, 0)}},
		Exceptions: []wire.Exception{{ID: "EX-1", Control: "PR.PS-02", ApprovedBy: "ciso/jdoe", Expires: time.Now().AddDate(0, 0, 20)}}}}}
}

// TestEndToEnd: a real gateway publisher reports through a real mosquitto
// (TLS, ACLs) to central on SQLite; a gap makes central ask the gateway
// for a signed resync, which the gateway answers; a forged message becomes
// a finding; a clean shutdown takes the gateway offline.
func TestEndToEnd(t *testing.T) {
	storetest.Each(t, endToEnd)
}

func endToEnd(t *testing.T, db string) {
	pki := certstest.NewMini(t)
	broker := brokertest.StartMosquitto(t, pki)
	e := startCentral(t, pki, broker, db)
	e.awaitSubscribed()
	p, stop := gatewayPublisher(t, pki, broker.URL, "gw-e2e", testInventory())
	e.await("gateway online with inventory", func() bool {
		g := e.gateway("gw-e2e")
		return g.Online && g.Devices == 1 && g.Version == "9.9.9"
	})
	var acc struct {
		Owners []struct {
			Owner   string
			Overdue []struct{ ID string } `json:"overdue_rotations"`
		}
	}
	e.await("the inventory's overdue account", func() bool {
		e.get("/api/v1/accountability", &acc)
		for _, o := range acc.Owners {
			if o.Owner == "clinical-engineering/icu" && len(o.Overdue) == 1 && o.Overdue[0].ID == "acme-svc" {
				return true
			}
		}
		return false
	})
	seq, err := p.Event(wire.Event{Kind: "vendor.request", Severity: "info", Attrs: map[string]string{"grant": "g-1",
		"vendor": "spiffe://hospital.example/vendor/acme/bob", "device": "pump-07"}})
	if err != nil {
		t.Fatal(err)
	}
	e.await("the event", func() bool { return e.gateway("gw-e2e").LastSeq >= seq })
	var evs struct {
		Events []struct{ Kind, Identity string }
	}
	e.get("/api/v1/events?kind=vendor.request&device=pump-07", &evs)
	if len(evs.Events) != 1 || evs.Events[0].Identity != "spiffe://hospital.example/vendor/acme/bob" {
		t.Fatalf("events %+v", evs)
	}

	// Resync answers so far: central also asks when it first hears from a
	// gateway whose birth it missed (a race with its subscription).
	answeredResyncs := func() int {
		var replies struct {
			Events []struct{ Attrs map[string]string }
		}
		e.get("/api/v1/events?kind=command.reply", &replies)
		n := 0
		for _, r := range replies.Events {
			if r.Attrs["accepted"] == "true" && r.Attrs["approver"] == "spiffe://"+td+"/svc/central" {
				n++
			}
		}
		return n
	}
	before := answeredResyncs()
	resyncsBefore := metricValue(e.metrics(), "wardgate_central_resyncs_total")
	// A gap: the gateway's key signs a message far ahead (as if many were
	// lost; far enough not to collide with the seqs the test still uses),
	// sent with the gateway's own broker identity.
	gwIdn := pki.Gateway(t, "gw-e2e")
	raw := mqttAs(t, pki, broker.URL, gwIdn, "gw-e2e-raw")
	body, _ := wire.EventBody(wire.Event{Kind: "test.ahead"})
	payload, _ := envelope.EncodePayload(&envelope.Envelope{Version: envelope.Version, Gateway: "gw-e2e", Session: p.Stats().Session,
		Seq: p.Stats().Outbox.NextSeq + 1000, Time: time.Now().UnixMilli(), Kind: envelope.KindEvent, Body: body})
	signed, _ := envelope.Sign(gwIdn.Key, gwIdn.Chain, payload)
	if tok := raw.Publish(wire.Topic("gw-e2e", envelope.KindEvent), 1, false, signed); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	e.await("gap recorded and resync answered", func() bool {
		var fs struct{ Findings []struct{ Kind string } }
		e.get("/api/v1/findings?state=open", &fs)
		gap := false
		for _, f := range fs.Findings {
			gap = gap || f.Kind == "gap"
		}
		answered := answeredResyncs() - before
		if testing.Verbose() {
			t.Logf("gap %v resync answers %d gateway %+v", gap, answered, e.gateway("gw-e2e"))
		}
		return gap && answered == 2 && !e.gateway("gw-e2e").Stale
	})
	if g := e.gateway("gw-e2e"); g.Gaps != 1 {
		t.Fatalf("gaps %d", g.Gaps)
	}

	// A forged message on the gateway's topic is a finding, not dropped.
	if tok := raw.Publish(wire.Topic("gw-e2e", envelope.KindEvent), 1, false, []byte("forged")); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	e.await("verify_failed finding", func() bool {
		var fs struct {
			Findings []struct{ Kind, Gateway string }
		}
		e.get("/api/v1/findings?state=open", &fs)
		for _, f := range fs.Findings {
			if f.Kind == "verify_failed" && f.Gateway == "gw-e2e" {
				return true
			}
		}
		return false
	})
	metrics := e.metrics()
	if !strings.Contains(metrics, "wardgate_central_mqtt_connected 1") || metricValue(metrics, "wardgate_central_resyncs_total")-resyncsBefore != 1 {
		t.Fatalf("metrics:\n%s", metrics)
	}
	stop()
	e.await("offline after the death", func() bool { return !e.gateway("gw-e2e").Online })
}

// metricValue reads an integer sample of name from Prometheus text (0 when
// absent).
func metricValue(text, name string) int {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}
