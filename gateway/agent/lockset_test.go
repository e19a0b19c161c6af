package agent

import (
	"strconv"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/gateway/authority"
	"github.com/wardgate/wardgate/wire/brokertest"
	"github.com/wardgate/wardgate/wire/lockset"
)

// TestLockSetOverMosquitto: the agent applies a fleet lock set published
// (retained) before it started, then its site's set; a replayed version
// is refused with an event.
func TestLockSetOverMosquitto(t *testing.T) {
	pki := certstest.NewMini(t)
	broker := brokertest.StartMosquitto(t, pki)
	e := newEnv(t)
	e.ca = certs.DevCAFrom(pki.CA.Root, pki.CA.Intermediate, pki.CA.Signer, certs.DevCAOptions{})
	e.addrs["broker"] = "127.0.0.1:" + strconv.Itoa(broker.Port)
	cl := newCentral(t, pki, broker.URL, "gw-t")
	alice, bob := e.approver("alice"), e.approver("bob")
	sign := func(scope string, version uint64, target string, who ...*certstest.Identity) []byte {
		t.Helper()
		now := time.Now()
		s := &lockset.Set{TrustDomain: "hospital.example", Version: version, IssuedAt: now.UnixMilli(),
			Expires: now.Add(24 * time.Hour).UnixMilli(), Scope: scope, Locks: []lockset.Lock{{Target: target, Reason: "incident 9"}}}
		var signers []lockset.Signer
		for _, w := range who {
			s.Approvers = append(s.Approvers, w.Chain[0].URIs[0].String())
			signers = append(signers, lockset.Signer{Key: w.Key, Chain: w.Chain})
		}
		b, err := lockset.Sign(s, signers...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	retain := func(topic string, b []byte) {
		t.Helper()
		if tok := cl.c.Publish(topic, 1, true, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", topic, tok.Error())
		}
	}
	acme, globex := "spiffe://hospital.example/vendor/acme-medical/*", "spiffe://hospital.example/vendor/globex/*"
	v1 := sign(lockset.ScopeFleet, 1, acme, alice, bob)
	retain(lockset.Topic(lockset.ScopeFleet), v1)

	e.start(e.config(pumpServer))
	locked := func(id string) bool { ok, _ := e.a.auth.Locked(id); return ok }
	await := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out: %s", what)
			}
		}
	}
	await("fleet set v1 applied at birth", func() bool {
		_, ok := e.recentEvent(authority.EvLockSetApplied)
		return ok && locked("spiffe://hospital.example/vendor/acme-medical/jane")
	})
	if ev, ok := e.recentEvent(authority.EvLockSetApplied); !ok || ev.Attrs["version"] != "1" || ev.Attrs["scope"] != "fleet" {
		t.Fatalf("applied event %+v %v", ev, ok)
	}

	retain(lockset.Topic(lockset.Site("lab")), sign(lockset.Site("lab"), 1, globex, alice))
	await("site set applied", func() bool { return locked("spiffe://hospital.example/vendor/globex/x") })

	retain(lockset.Topic(lockset.ScopeFleet), sign(lockset.ScopeFleet, 2, globex, alice, bob))
	await("fleet v2 applied", func() bool { return !locked("spiffe://hospital.example/vendor/acme-medical/jane") })
	retain(lockset.Topic(lockset.ScopeFleet), v1) // replayed: an older version
	await("replay refused", func() bool { _, ok := e.recentEvent(authority.EvLockSetRefused); return ok })
	if ev, _ := e.recentEvent(authority.EvLockSetRefused); ev.Attrs["version"] != "1" {
		t.Fatalf("refusal %+v", ev)
	}
	if !locked("spiffe://hospital.example/vendor/globex/x") {
		t.Fatal("globex lock lost")
	}
}
