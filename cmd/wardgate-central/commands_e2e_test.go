package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/central/store/storetest"
	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/agent"
	"github.com/wardgate/wardgate/gateway/authority"
	"github.com/wardgate/wardgate/gateway/telemetry"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/brokertest"
	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/envelope"
	"github.com/wardgate/wardgate/wire/lockset"
)

// fullGateway is the gateway's real telemetry publisher and real
// authority, wired as gateway/agent wires them: central commands verified
// by the publisher and executed on the authority, lock sets from the
// retained topics verified and applied, the authority's events published.
type fullGateway struct {
	p    *telemetry.Publisher
	auth *authority.Authority
	stop func()
}

func startGateway(t *testing.T, pki *certstest.MiniPKI, brokerURL, id, site, stateDir string) *fullGateway {
	t.Helper()
	gw := pki.Gateway(t, id)
	cert := gw.TLS()
	v := certs.NewVerifier(certs.NewBundle(pki.CA.Root), nil)
	approverPol := certs.PeerPolicy{TrustDomain: td, Allow: []certs.Pattern{certs.MustCompilePattern("spiffe://" + td + "/approver/**")}, MaxLifetime: 48 * time.Hour}
	centralPol := certs.PeerPolicy{TrustDomain: td, Allow: []certs.Pattern{certs.MustCompilePattern(certs.ServiceURI(td, "central"))},
		MaxLifetime: agent.CentralMaxLifetime}
	verify := func(p certs.PeerPolicy) func([]*x509.Certificate, time.Time) (string, error) {
		return func(chain []*x509.Certificate, _ time.Time) (string, error) {
			i, err := v.Verify(chain, p)
			return i.URI, err
		}
	}
	g := &fullGateway{}
	var events = make(chan authority.Event, 64)
	auth, err := authority.Open(authority.Options{Path: filepath.Join(stateDir, "authority.db"), TrustDomain: td,
		Events: func(e authority.Event) {
			select {
			case events <- e:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	g.auth = auth
	p, err := telemetry.New(telemetry.Options{
		GatewayID: id, Site: site, Version: "9.9.9", ConfigHash: "ab", Brokers: []string{brokerURL},
		TLSConfig: func(string) *tls.Config {
			return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pki.Roots(), ServerName: "localhost",
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }}
		},
		Signer:     func() (crypto.Signer, []*x509.Certificate) { return gw.Key, gw.Chain },
		OutboxPath: filepath.Join(stateDir, "telemetry.db"), NoSync: true,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond, Timeout: 5 * time.Second, KeepAlive: 5 * time.Second,
		VerifyApprover: verify(approverPol), VerifyCentral: verify(centralPol),
		Commands: func(_ context.Context, c command.Command) (string, error) {
			actor := authority.Actor{Kind: authority.KindCentral, Via: "command", Approver: c.Approver}
			switch c.Name {
			case command.Lock:
				var until time.Time
				if len(c.Args) > 1 && c.Args[1] != "" {
					d, err := config.ParseDuration(c.Args[1])
					if err != nil {
						return "", err
					}
					until = time.Now().Add(d)
				}
				reason := ""
				if len(c.Args) > 2 {
					reason = c.Args[2]
				}
				l, err := auth.AddLock(c.Args[0], until, reason, actor)
				return "locked " + l.Identity, err
			case command.Unlock:
				return "unlocked", auth.RemoveLock(c.Args[0], actor)
			}
			return "", fmt.Errorf("%s is not wired in this test gateway", c.Name)
		},
		LockSetTopics: lockset.Topics(id, site),
		LockSets: func(topic string, data []byte) {
			// As gateway/agent does: central's endorsement vouches for a
			// set once its approvers' certificates expired.
			at := func(p certs.PeerPolicy) command.VerifyApprover {
				return func(chain []*x509.Certificate, now time.Time) (string, error) {
					i, err := v.VerifyAt(chain, p, now)
					return i.URI, err
				}
			}
			s, err := lockset.VerifyWith(data, td, time.Now(), lockset.VerifyOptions{Approver: at(approverPol), Central: at(centralPol)})
			if err == nil && !s.Applies(id, site) {
				err = fmt.Errorf("lock set for %s does not apply", s.Scope)
			}
			if err != nil {
				auth.RefuseLockSet(topic, err)
				return
			}
			_, _, _ = auth.ApplyLockSet(s)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	g.p = p
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- p.Run(ctx) }()
	go func() {
		for {
			select {
			case <-ctx.Done():
				done <- nil
				return
			case e := <-events:
				_, _ = p.Event(wire.Event{Kind: e.Kind, Severity: e.Severity(), Attrs: e.Attrs()})
			}
		}
	}()
	stopped := false
	g.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("gateway %s: %v", id, err)
			}
		}
		p.Close()
		auth.Close()
	}
	t.Cleanup(g.stop)
	return g
}

func (g *fullGateway) locked(identity string) bool {
	ok, _ := g.auth.Locked(identity)
	return ok
}

// cli runs wardgate-central with args and returns its exit status and
// output.
func cli(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), &out, &errb, args)
	return code, out.String(), errb.String()
}

// TestFleetCommandsEndToEnd: real mosquitto (TLS, ACLs with the lock-set
// topics), central on SQLite and PostgreSQL, gateways made of the real
// telemetry publisher and authority, and the operator's CLI:
//   - a site lock queued while a gateway of the site is offline reaches
//     the online one at once and the offline one when it connects; both
//     apply it and central records every state with its time;
//   - an approve addressed to a site is refused by the CLI and by the API;
//   - a fleet lock set signed by ann and cosigned by bob is applied by the
//     online gateways and by one that connects later, and central shows
//     the version each applied.
func TestFleetCommandsEndToEnd(t *testing.T) {
	storetest.Each(t, fleetCommands)
}

func fleetCommands(t *testing.T, db string) {
	pki := certstest.NewMini(t)
	broker := brokertest.StartMosquitto(t, pki)
	e := startCentral(t, pki, broker, db)
	e.awaitSubscribed()
	dir := t.TempDir()
	root := pki.WriteRoot(t, dir)
	ann, bob := pki.Approver(t, "security", "ann"), pki.Approver(t, "security", "bob")
	annCert, annKey := ann.WriteFiles(t, dir, "ann")
	bobCert, bobKey := bob.WriteFiles(t, dir, "bob")
	as := func(cert, key string) []string {
		return []string{"--api", e.api, "--cert", cert, "--key", key, "--ca", root}
	}

	// Two gateways of site st-a report; gw-off then goes offline.
	onDir, offDir := t.TempDir(), t.TempDir()
	on := startGateway(t, pki, broker.URL, "gw-on", "st-a", onDir)
	off := startGateway(t, pki, broker.URL, "gw-off", "st-a", offDir)
	e.await("both online", func() bool { return e.gateway("gw-on").Online && e.gateway("gw-off").Online })
	off.stop()
	e.await("gw-off offline", func() bool { return !e.gateway("gw-off").Online })

	acme := "spiffe://" + td + "/vendor/acme-medical/*"
	code, out, errs := cli(append(append([]string{"command"}, as(annCert, annKey)...), "--site", "st-a", "--valid", "2d", "--reason", "incident 7",
		"--note", "ticket 42", "lock", acme)...)
	if code != 0 {
		t.Fatalf("command lock: %d %s %s", code, out, errs)
	}
	id := strings.TrimSpace(strings.SplitN(strings.SplitN(out, " as command ", 2)[1], ",", 2)[0])
	show := func() store.Command {
		code, out, errs := cli(append(append([]string{"command", "show", "--json"}, as(annCert, annKey)...), id)...)
		if code != 0 {
			t.Fatalf("command show: %d %s", code, errs)
		}
		var r struct{ Command store.Command }
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		return r.Command
	}
	state := func(c store.Command, gw string) store.CommandTarget {
		for _, tg := range c.Targets {
			if tg.Gateway == gw {
				return tg
			}
		}
		return store.CommandTarget{}
	}
	e.await("gw-on applied the lock", func() bool { return state(show(), "gw-on").State == store.TargetApplied })
	if !on.locked("spiffe://" + td + "/vendor/acme-medical/jane") {
		t.Fatal("gw-on's authority holds no lock")
	}
	if tg := state(show(), "gw-off"); tg.State != store.TargetQueued || !tg.Delivered.IsZero() {
		t.Fatalf("gw-off while offline: %+v", tg)
	}
	off = startGateway(t, pki, broker.URL, "gw-off", "st-a", offDir)
	e.await("gw-off applied the lock after it connected", func() bool { return state(show(), "gw-off").State == store.TargetApplied })
	if !off.locked("spiffe://" + td + "/vendor/acme-medical/jane") {
		t.Fatal("gw-off's authority holds no lock")
	}
	c := show()
	for _, gw := range []string{"gw-on", "gw-off"} {
		tg := state(c, gw)
		if tg.Queued.IsZero() || tg.Delivered.IsZero() || tg.Applied.IsZero() || tg.Deliveries < 1 || !strings.Contains(tg.Result, "locked") {
			t.Fatalf("%s: %+v", gw, tg)
		}
	}
	if c.Note != "ticket 42" || c.Args[2] != "incident 7" || c.Scope != "site/st-a" {
		t.Fatalf("command %+v", c)
	}
	code, out, _ = cli(append([]string{"command", "list"}, as(annCert, annKey)...)...)
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "site/st-a") {
		t.Fatalf("list: %d %s", code, out)
	}

	// A typo in the gateway ID or the site is queued, with a warning.
	code, _, errs = cli(append(append([]string{"command"}, as(annCert, annKey)...), "--gateway", "gw-typo", "lock", acme)...)
	if code != 0 || !strings.Contains(errs, "never heard from gateway gw-typo") {
		t.Fatalf("unknown gateway: %d %q", code, errs)
	}
	code, _, errs = cli(append(append([]string{"command"}, as(annCert, annKey)...), "--site", "st-typo", "lock", acme)...)
	if code != 0 || !strings.Contains(errs, "no gateway of site st-typo") {
		t.Fatalf("empty site: %d %q", code, errs)
	}
	code, _, errs = cli(append(append([]string{"command"}, as(annCert, annKey)...), "--gateway", "gw-on", "lock", acme)...)
	if code != 0 || strings.Contains(errs, "warning") {
		t.Fatalf("known gateway: %d %q", code, errs)
	}

	// An approve for a site: the CLI refuses it, and so does central when
	// a client signs it anyway.
	code, _, errs = cli(append(append([]string{"command"}, as(annCert, annKey)...), "--site", "st-a", "approve", "G-1")...)
	if code != exitUsage || !strings.Contains(errs, "exactly one gateway") {
		t.Fatalf("CLI approve to a site: %d %s", code, errs)
	}
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	now := time.Now()
	b, _ := envelope.Marshal(&command.Payload{Site: "st-a", Name: command.Approve, Args: []string{"G-1"}, Nonce: nonce,
		IssuedAt: now.UnixMilli(), Expires: now.Add(time.Minute).UnixMilli()})
	signed, _ := envelope.Sign(ann.Key, ann.Chain, b)
	body, _ := json.Marshal(map[string]string{"signed": base64.StdEncoding.EncodeToString(signed)})
	resp, err := e.client.Post(e.api+"/api/v1/commands", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var apiErr struct{ Error string }
	_ = json.NewDecoder(resp.Body).Decode(&apiErr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(apiErr.Error, "exactly one gateway") {
		t.Fatalf("API approve to a site: %d %q", resp.StatusCode, apiErr.Error)
	}
	// ann's signature submitted by bob: refused.
	bobClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLS(bob)}}
	signed, _ = command.SignTo(ann.Key, ann.Chain, command.To{Gateway: "gw-on"}, command.Unlock, []string{acme}, now, time.Minute)
	body, _ = json.Marshal(map[string]string{"signed": base64.StdEncoding.EncodeToString(signed)})
	resp, err = bobClient.Post(e.api+"/api/v1/commands", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("submitted by another person: %d", resp.StatusCode)
	}

	// The fleet lock set: ann signs naming bob, bob cosigns, ann submits.
	globex := "spiffe://" + td + "/vendor/globex/*"
	setFile, cosigned := filepath.Join(dir, "fleet.cbor"), filepath.Join(dir, "fleet2.cbor")
	code, out, errs = cli(append(append([]string{"lockset", "sign"}, as(annCert, annKey)...), "--fleet", "--lock", globex, "--reason", "incident 9",
		"--cosigner", "spiffe://"+td+"/approver/security/bob", "--out", setFile)...)
	if code != 0 || !strings.Contains(out, "fleet version 1") {
		t.Fatalf("lockset sign: %d %s %s", code, out, errs)
	}
	code, _, errs = cli(append(append([]string{"lockset", "submit"}, as(annCert, annKey)...), "--in", setFile)...)
	if code != exitFailure || !strings.Contains(errs, "cosign") {
		t.Fatalf("submit without the cosignature: %d %s", code, errs)
	}
	code, out, errs = cli("lockset", "cosign", "--cert", bobCert, "--key", bobKey, "--in", setFile, "--out", cosigned)
	if code != 0 {
		t.Fatalf("lockset cosign: %d %s %s", code, out, errs)
	}
	code, out, errs = cli(append(append([]string{"lockset", "submit"}, as(annCert, annKey)...), "--in", cosigned)...)
	if code != 0 || !strings.Contains(out, "fleet version 1") {
		t.Fatalf("lockset submit: %d %s %s", code, out, errs)
	}
	code, _, errs = cli(append(append([]string{"lockset", "submit"}, as(annCert, annKey)...), "--in", cosigned)...)
	if code != exitFailure || !strings.Contains(errs, "409") {
		t.Fatalf("the same version again: %d %s", code, errs)
	}
	late := startGateway(t, pki, broker.URL, "gw-late", "st-b", t.TempDir())
	fleetView := func() (v struct {
		Lockset struct {
			Version         uint64
			Current, Behind int
			Gateways        []store.LockSetStatus
		}
	}) {
		code, out, errs := cli(append(append([]string{"lockset", "show", "--json"}, as(annCert, annKey)...), "fleet")...)
		if code != 0 {
			t.Fatalf("lockset show: %d %s", code, errs)
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	e.await("every gateway applied fleet version 1", func() bool {
		v := fleetView()
		return v.Lockset.Version == 1 && v.Lockset.Current == 3 && v.Lockset.Behind == 0
	})
	for _, g := range []*fullGateway{on, off, late} {
		if !g.locked("spiffe://" + td + "/vendor/globex/x") {
			t.Fatal("a gateway holds no lock from the fleet set")
		}
	}
	for _, st := range fleetView().Lockset.Gateways {
		if st.Version != 1 || st.Applied.IsZero() {
			t.Fatalf("status %+v", st)
		}
	}
	// Version 2 from the CLI's default (central's current version + 1).
	code, out, errs = cli(append(append([]string{"lockset", "sign"}, as(annCert, annKey)...), "--fleet", "--lock", acme,
		"--cosigner", "spiffe://"+td+"/approver/security/bob", "--out", setFile)...)
	if code != 0 || !strings.Contains(out, "fleet version 2") {
		t.Fatalf("lockset sign v2: %d %s %s", code, out, errs)
	}
	// The page shows the command and the lock set.
	resp, err = e.client.Get(e.api + "/commands")
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	_, _ = page.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(page.String(), id) || !strings.Contains(page.String(), "fleet version 1") {
		t.Fatalf("commands page %d:\n%s", resp.StatusCode, page.String())
	}
}
