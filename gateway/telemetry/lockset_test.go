package telemetry

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/gateway/authority"
	"github.com/wardgate/wardgate/wire/brokertest"
	"github.com/wardgate/wardgate/wire/lockset"
)

// centralClient connects to brokerURL as central.
func lockSetCentral(t *testing.T, pki *certstest.MiniPKI, brokerURL string) paho.Client {
	t.Helper()
	central := pki.Issue(t, "central", "spiffe://"+certstest.MiniTrustDomain+"/svc/central")
	c := paho.NewClient(paho.NewClientOptions().AddBroker(brokerURL).SetClientID("central-pub").
		SetTLSConfig(pki.ClientTLS(central)).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("central connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func publishRetained(t *testing.T, c paho.Client, topic string, data []byte) {
	t.Helper()
	if tok := c.Publish(topic, 1, true, data); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// TestLockSetRetained: a fleet lock set published (retained) while the
// gateway is offline is applied right after it connects; a newer set
// published while it is connected replaces it; a replayed older set is
// refused. Real mosquitto with TLS and the fleet ACL.
func TestLockSetRetained(t *testing.T) {
	pki := certstest.NewMini(t)
	broker := brokertest.StartMosquitto(t, pki)
	central := lockSetCentral(t, pki, broker.URL)
	td := certstest.MiniTrustDomain
	jdoe, asmith := pki.Approver(t, "security", "jdoe"), pki.Approver(t, "ciso", "asmith")
	signers := []lockset.Signer{{Key: jdoe.Key, Chain: jdoe.Chain}, {Key: asmith.Key, Chain: asmith.Chain}}
	sign := func(version uint64, targets ...string) []byte {
		now := time.Now()
		s := &lockset.Set{TrustDomain: td, Version: version, IssuedAt: now.UnixMilli(), Expires: now.Add(7 * 24 * time.Hour).UnixMilli(),
			Scope: lockset.ScopeFleet, Approvers: []string{jdoe.Chain[0].URIs[0].String(), asmith.Chain[0].URIs[0].String()}}
		for _, tg := range targets {
			s.Locks = append(s.Locks, lockset.Lock{Target: tg, Reason: "incident 7", Until: now.Add(48 * time.Hour).UnixMilli()})
		}
		b, err := lockset.Sign(s, signers...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	acme, eve := "spiffe://"+td+"/vendor/acme/*", "spiffe://"+td+"/vendor/beta/eve"
	v1 := sign(1, acme)
	publishRetained(t, central, lockset.Topic(lockset.ScopeFleet), v1)

	// The gateway starts only now.
	dir := t.TempDir()
	events := make(chan authority.Event, 64)
	auth, err := authority.Open(authority.Options{Path: filepath.Join(dir, "authority.db"), TrustDomain: td,
		Events: func(e authority.Event) {
			if e.Kind == authority.EvLockSetApplied || e.Kind == authority.EvLockSetRefused {
				events <- e
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auth.Close() })
	gw := pki.Gateway(t, "gw-test")
	opts := gatewayOptions(t, pki, broker.URL, "gw-test", gw, dir)
	opts.LockSetTopics = lockset.Topics("gw-test", "st-test")
	hook := approverHook(pki)
	opts.LockSets = func(topic string, data []byte) {
		s, err := lockset.Verify(data, td, time.Now(), hook)
		if err == nil && !s.Applies("gw-test", "st-test") {
			err = errors.New("not for this gateway")
		}
		if err != nil {
			auth.RefuseLockSet(topic, err)
			return
		}
		_, _, _ = auth.ApplyLockSet(s)
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	runPublisher(t, p)
	await := func(what string) authority.Event {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-time.After(20 * time.Second):
			t.Fatalf("no lock-set event: %s", what)
		}
		return authority.Event{}
	}
	e := await("v1 at birth")
	if e.Kind != authority.EvLockSetApplied || e.Version != 1 {
		t.Fatalf("v1: %+v", e)
	}
	t.Logf("v1 applied %s after the gateway started", time.Since(start).Round(time.Millisecond))
	if ok, _ := auth.Locked("spiffe://" + td + "/vendor/acme/jane"); !ok {
		t.Fatal("v1 lock not in force")
	}

	sent := time.Now()
	publishRetained(t, central, lockset.Topic(lockset.ScopeFleet), sign(2, eve))
	if e := await("v2 while connected"); e.Kind != authority.EvLockSetApplied || e.Version != 2 || len(e.Removed) != 1 || len(e.Added) != 1 {
		t.Fatalf("v2: %+v", e)
	}
	t.Logf("v2 applied %s after it was published", time.Since(sent).Round(time.Millisecond))
	if ok, _ := auth.Locked("spiffe://" + td + "/vendor/acme/jane"); ok {
		t.Fatal("v1 lock still in force after v2")
	}

	publishRetained(t, central, lockset.Topic(lockset.ScopeFleet), v1)
	if e := await("replayed v1"); e.Kind != authority.EvLockSetRefused || e.Version != 1 {
		t.Fatalf("replayed v1: %+v", e)
	}
	// A set for another site on the site topic is refused too.
	now := time.Now()
	other, err := lockset.Sign(&lockset.Set{TrustDomain: td, Version: 9, IssuedAt: now.UnixMilli(), Expires: now.Add(time.Hour).UnixMilli(),
		Scope: lockset.Site("st-other"), Locks: []lockset.Lock{{Target: acme}}, Approvers: []string{jdoe.Chain[0].URIs[0].String()}}, signers[0])
	if err != nil {
		t.Fatal(err)
	}
	publishRetained(t, central, lockset.Topic(lockset.Site("st-test")), other)
	if e := await("another site's set"); e.Kind != authority.EvLockSetRefused {
		t.Fatalf("other site: %+v", e)
	}
	if ok, _ := auth.Locked("spiffe://" + td + "/vendor/beta/eve"); !ok {
		t.Fatal("v2 lock lost")
	}

	// The gateway's own topic: central's set is applied there, and the
	// gateway itself may not replace it (the ACL denies its writes to it).
	ownTopic := lockset.Topic(lockset.Gateway("gw-test"))
	own, err := lockset.Sign(&lockset.Set{TrustDomain: td, Version: 1, IssuedAt: now.UnixMilli(), Expires: now.Add(time.Hour).UnixMilli(),
		Scope: lockset.Gateway("gw-test"), Locks: []lockset.Lock{{Target: "spiffe://" + td + "/vendor/gamma/*"}}, Approvers: []string{jdoe.Chain[0].URIs[0].String()}}, signers[0])
	if err != nil {
		t.Fatal(err)
	}
	publishRetained(t, central, ownTopic, own)
	if e := await("the gateway's own set"); e.Kind != authority.EvLockSetApplied || e.Scope != lockset.Gateway("gw-test") {
		t.Fatalf("own set: %+v", e)
	}
	rogue := paho.NewClient(paho.NewClientOptions().AddBroker(broker.URL).SetClientID("gw-test-rogue").
		SetTLSConfig(pki.ClientTLS(gw)).SetAutoReconnect(false))
	if tok := rogue.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("rogue connect: %v", tok.Error())
	}
	defer rogue.Disconnect(100)
	if tok := rogue.Publish(ownTopic, 1, true, []byte("overwritten")); !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("rogue publish not acknowledged")
	}
	got := make(chan []byte, 1)
	if tok := central.Subscribe(ownTopic, 1, func(_ paho.Client, m paho.Message) {
		select {
		case got <- m.Payload():
		default:
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	select {
	case b := <-got:
		if string(b) != string(own) {
			t.Fatalf("the gateway replaced its retained lock set: %q", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no retained set on the gateway's topic")
	}
}
