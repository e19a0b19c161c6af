package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/envelope"
	"github.com/wardgate/wardgate/wire/lockset"
)

// lockGateway is a simulated gateway that subscribes to its lock-set
// topics (as gateway/telemetry does), notes when the fleet set of the
// wanted version arrives, and reports it applied with a signed
// authority.lockset_applied event (as gateway/authority does).
type lockGateway struct {
	*gateway
	want    atomic.Uint64
	arrived atomic.Int64 // unix ns of the wanted version's arrival
	start   atomic.Int64 // unix ns when it began to connect
	// applied is its authority.lockset_applied event for the wanted
	// version, signed at birth: signing is the gateway's work, not part
	// of the delivery measured here.
	applied []byte
}

func (g *lockGateway) onLockSet(_ paho.Client, m paho.Message) {
	s, err := lockset.Decode(m.Payload())
	if err != nil || s.Scope != lockset.ScopeFleet || s.Version != g.want.Load() {
		return
	}
	g.arrived.CompareAndSwap(0, time.Now().UnixNano())
}

// report publishes the gateway's applied event (after the delivery was
// measured: the simulated fleet shares this machine's cores, a real one
// does not).
func (g *lockGateway) report() paho.Token {
	return g.cli.Publish(wire.Topic(g.id, envelope.KindEvent), 1, false, g.applied)
}

// connect connects the gateway, subscribes to its lock-set topics, then
// publishes its birth (the order of gateway/telemetry).
func (g *lockGateway) connect(brokerURL string, tc *tls.Config) error {
	g.start.Store(time.Now().UnixNano())
	g.cli = paho.NewClient(paho.NewClientOptions().AddBroker(brokerURL).SetClientID(g.id).SetCleanSession(true).
		SetAutoReconnect(false).SetOrderMatters(false).SetTLSConfig(tc))
	if t := g.cli.Connect(); !t.WaitTimeout(30*time.Second) || t.Error() != nil {
		return fmt.Errorf("gateway %s connect: %v", g.id, t.Error())
	}
	// Sign the birth and the applied event first: the retained set may
	// arrive right after the subscription.
	bb, _ := wire.BirthBody(wire.Birth{Gateway: g.id, Site: "sim", Version: "fleetsim", Chain: wire.ChainDER(g.chain)})
	birth, err := g.sign(envelope.KindBirth, bb, time.Now())
	if err != nil {
		return err
	}
	body, _ := wire.EventBody(wire.Event{Kind: "authority.lockset_applied", Severity: "warning",
		Attrs: map[string]string{"scope": lockset.ScopeFleet, "version": fmt.Sprint(g.want.Load()), "actor": "central:lockset"}})
	if g.applied, err = g.sign(envelope.KindEvent, body, time.Now()); err != nil {
		return err
	}
	filters := map[string]byte{}
	for _, t := range lockset.Topics(g.id, "sim") {
		filters[t] = 1
	}
	if t := g.cli.SubscribeMultiple(filters, g.onLockSet); !t.WaitTimeout(30*time.Second) || t.Error() != nil {
		return fmt.Errorf("gateway %s subscribe: %v", g.id, t.Error())
	}
	if t := g.cli.Publish(wire.Topic(g.id, envelope.KindBirth), 1, false, birth); !t.WaitTimeout(30*time.Second) || t.Error() != nil {
		return fmt.Errorf("gateway %s birth: %v", g.id, t.Error())
	}
	return nil
}

// runLock measures the fleet lock set: from its submission to central
// until every online gateway has it (p99 and max), from the connection of
// a gateway that comes online later until it has it, and from the moment
// every gateway reports it applied until central shows that. A late gateway is timed from
// the start of its connection (TLS handshake, subscription, birth): the
// broker hands it the retained set right after its subscription, before
// its birth is even published.
func runLock(ctx context.Context, w io.Writer, o opts) error {
	st, err := newStack()
	if err != nil {
		return err
	}
	defer st.close()
	ca := st.ca
	var approvers []lockset.Signer
	var annTLS tls.Certificate
	for i, who := range []string{"ann", "bob"} {
		c, err := ca.Issue(certs.IssueOptions{URI: certs.ApproverURI(td, "security", who)})
		if err != nil {
			return err
		}
		if i == 0 {
			annTLS = c
		}
		sg := lockset.Signer{Key: c.PrivateKey.(crypto.Signer)}
		for _, der := range c.Certificate {
			x, _ := x509.ParseCertificate(der)
			sg.Chain = append(sg.Chain, x)
		}
		approvers = append(approvers, sg)
	}

	// mosquitto with the fleet ACL: gateways read the lock-set topics.
	if err := st.start(ctx, o, "", annTLS); err != nil {
		return err
	}
	brokerURL, base := st.brokerURL, st.base
	client := st.client(annTLS, 30*time.Second)
	api := &metricsClient{url: base + "/metrics", c: client}

	// The online fleet and, later, the gateways that come online after
	// the set was published (5%, at least 1).
	late := max(o.gateways/20, 1)
	all := make([]*lockGateway, o.gateways+late)
	tcs := make([]*tls.Config, len(all))
	for i := range all {
		id := fmt.Sprintf("gw-%04d", i)
		c, err := ca.Issue(certs.IssueOptions{URI: certs.GatewayURI(td, id), CommonName: id})
		if err != nil {
			return err
		}
		g := &lockGateway{gateway: &gateway{id: id, key: c.PrivateKey.(crypto.Signer)}}
		for _, der := range c.Certificate {
			x, _ := x509.ParseCertificate(der)
			g.chain = append(g.chain, x)
		}
		g.want.Store(1)
		all[i] = g
		tcs[i] = &tls.Config{RootCAs: ca.Bundle().Pool(), Certificates: []tls.Certificate{c}, ServerName: "localhost"}
	}
	connectAll := func(gs []*lockGateway, off int) error {
		sem := make(chan struct{}, 32)
		var wg sync.WaitGroup
		var cerr atomic.Value
		for i, g := range gs {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				if err := g.connect(brokerURL, tcs[off+i]); err != nil {
					cerr.Store(err)
				}
			}()
		}
		wg.Wait()
		if e, _ := cerr.Load().(error); e != nil {
			return e
		}
		return nil
	}
	online, later := all[:o.gateways], all[o.gateways:]
	if err := connectAll(online, 0); err != nil {
		return err
	}
	defer func() {
		for _, g := range all {
			if g.cli != nil {
				g.cli.Disconnect(0)
			}
		}
	}()
	if err := api.await(ctx, 60*time.Second, func(m map[string]float64) bool {
		return m["wardgate_central_gateways_online"] >= float64(len(online))
	}); err != nil {
		return fmt.Errorf("births not stored: %w", err)
	}

	// One fleet set, signed by two approvers, submitted by the first.
	now := time.Now()
	set := &lockset.Set{TrustDomain: td, Version: 1, IssuedAt: now.UnixMilli(), Expires: now.Add(24 * time.Hour).UnixMilli(), Scope: lockset.ScopeFleet,
		Locks:     []lockset.Lock{{Target: "spiffe://" + td + "/vendor/acme-medical/*", Reason: "fleetsim"}},
		Approvers: []string{certs.ApproverURI(td, "security", "ann"), certs.ApproverURI(td, "security", "bob")}}
	signed, err := lockset.Sign(set, approvers...)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]string{"signed": base64.StdEncoding.EncodeToString(signed)})
	t0 := time.Now()
	resp, err := client.Post(base+"/api/v1/locksets", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("submit lock set: %d %s", resp.StatusCode, msg)
	}
	arrivals := func(gs []*lockGateway, from func(*lockGateway) int64) ([]float64, int) {
		var ms []float64
		missing := 0
		for _, g := range gs {
			a := g.arrived.Load()
			if a == 0 {
				missing++
				continue
			}
			ms = append(ms, max(float64(a-from(g))/1e6, 0))
		}
		slices.Sort(ms)
		return ms, missing
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, missing := arrivals(online, nil0(t0)); missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			_, missing := arrivals(online, nil0(t0))
			return fmt.Errorf("%d of %d online gateways did not get the fleet set within 60s", missing, len(online))
		}
		time.Sleep(10 * time.Millisecond)
	}
	ms, _ := arrivals(online, nil0(t0))
	fmt.Fprintf(w, "BenchmarkFleetLock/%s/%dgw/online 1 %.0f p99-ms %.0f max-ms %d gateways\n", o.db, len(online), pct(ms, 0.99), ms[len(ms)-1], len(ms))

	if err := connectAll(later, len(online)); err != nil {
		return err
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		_, missing := arrivals(later, func(g *lockGateway) int64 { return g.start.Load() })
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d gateways that came online later did not get the fleet set within 60s", missing, len(later))
		}
		time.Sleep(10 * time.Millisecond)
	}
	ms, _ = arrivals(later, func(g *lockGateway) int64 { return g.start.Load() })
	fmt.Fprintf(w, "BenchmarkFleetLock/%s/%dgw/late 1 %.0f p99-ms %.0f max-ms %d gateways\n", o.db, len(online), pct(ms, 0.99), ms[len(ms)-1], len(ms))

	// Central's view: every gateway's applied version, from their
	// events, all sent at once.
	t1 := time.Now()
	for _, g := range all {
		g.report()
	}
	for {
		var r struct {
			Lockset struct{ Current, Behind int }
		}
		resp, err := client.Get(base + "/api/v1/locksets/fleet")
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
		}
		if r.Lockset.Current == len(all) {
			break
		}
		if time.Since(t1) > 120*time.Second {
			return fmt.Errorf("central shows %d of %d gateways on the fleet set after 120s", r.Lockset.Current, len(all))
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(w, "BenchmarkFleetLock/%s/%dgw/reported 1 %.0f ms %d gateways\n", o.db, len(online), float64(time.Since(t1))/1e6, len(all))
	return nil
}

func nil0(t0 time.Time) func(*lockGateway) int64 {
	return func(*lockGateway) int64 { return t0.UnixNano() }
}

// pct is the q quantile of sorted values.
func pct(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
