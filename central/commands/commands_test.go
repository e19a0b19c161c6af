package commands_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.etcd.io/bbolt"

	"github.com/wardgate/wardgate/central/commands"
	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/central/store/storetest"
	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/envelope"
	"github.com/wardgate/wardgate/wire/lockset"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

const td = certstest.MiniTrustDomain

type published struct {
	topic  string
	data   []byte
	retain bool
}

type env struct {
	t     *testing.T
	ctx   context.Context
	clock *clockwork.FakeClock
	st    *store.Store
	svc   *commands.Service
	pki   *certstest.MiniPKI
	ann   *certstest.Identity
	bob   *certstest.Identity
	// central is central's identity, valid for 30 days (it endorses).
	central lockset.Signer

	mu  sync.Mutex
	pub []published
}

func newEnv(t *testing.T, dsn string, mods ...func(*commands.Options)) *env {
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, clock: clockwork.NewFakeClockAt(time.Now()), st: st, pki: certstest.NewMini(t)}
	e.ann, e.bob = e.pki.Approver(t, "security", "ann"), e.pki.Approver(t, "security", "bob")
	u, _ := url.Parse(certs.ServiceURI(td, "central"))
	leaf, key := e.pki.Sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: "central"}, URIs: []*url.URL{u},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		time.Now().Add(-time.Hour), time.Now().Add(30*24*time.Hour))
	e.central = lockset.Signer{Key: key, Chain: []*x509.Certificate{leaf, e.pki.CA.Intermediate}}
	v := certs.NewVerifier(certs.NewBundle(e.pki.CA.Root), e.clock)
	pol := certs.PeerPolicy{TrustDomain: td, Allow: []certs.Pattern{certs.MustCompilePattern("spiffe://" + td + "/approver/**")}, MaxLifetime: 48 * time.Hour}
	o := commands.Options{Store: st, TrustDomain: td, Clock: e.clock, Endorser: &e.central,
		Approver: func(chain []*x509.Certificate, _ time.Time) (string, error) {
			id, err := v.Verify(chain, pol)
			return id.URI, err
		},
		Publish: func(topic string, data []byte, retain bool) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.pub = append(e.pub, published{topic, data, retain})
			return nil
		}}
	for _, m := range mods {
		m(&o)
	}
	e.svc, err = commands.New(o)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		st.Close()
	})
	_, err = st.Apply(ctx, func(tx *store.Tx) error {
		for _, g := range []store.Gateway{{ID: "gw-1", Site: "a", Online: true}, {ID: "gw-2", Site: "a"}, {ID: "gw-3", Site: "b", Online: true}} {
			if err := tx.PutGateway(g); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e.await("the start-up pass", func() bool { return true })
	return e
}

func uri(id *certstest.Identity) string { return id.Chain[0].URIs[0].String() }

// sign signs any payload, also one the wire package would refuse to make
// (central must not trust the client).
func (e *env) sign(who *certstest.Identity, p command.Payload) []byte {
	e.t.Helper()
	if p.Nonce == nil {
		p.Nonce = make([]byte, 16)
		_, _ = rand.Read(p.Nonce)
	}
	if p.Args == nil {
		p.Args = []string{}
	}
	b, err := envelope.Marshal(&p)
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := envelope.Sign(who.Key, who.Chain, b)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) payload(name string, valid time.Duration, args ...string) command.Payload {
	now := e.clock.Now()
	return command.Payload{Name: name, Args: args, IssuedAt: now.UnixMilli(), Expires: now.Add(valid).UnixMilli()}
}

// await waits (bounded) for cond: the queue runs on its own goroutine.
func (e *env) await(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !(e.svc.Idle() && cond()) {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) target(id, gw string) store.CommandTarget {
	e.t.Helper()
	t, err := e.st.Target(e.ctx, id, gw)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		e.t.Fatal(err)
	}
	return t
}

func (e *env) publishedTo(topic string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, p := range e.pub {
		if p.topic == topic {
			n++
		}
	}
	return n
}

func (e *env) birth(gw, site string) {
	body, _ := envelope.Marshal(wire.Birth{Site: site})
	e.svc.Observe(&envelope.Message{Envelope: envelope.Envelope{Gateway: gw, Kind: envelope.KindBirth, Time: e.clock.Now().UnixMilli(), Body: body}})
}

func (e *env) reply(gw string, signed []byte, accepted bool, reason string) {
	_, p, _ := command.Decode(signed)
	body, _ := envelope.Marshal(wire.Reply{Nonce: p.Nonce, Command: p.Name, Accepted: accepted, Reason: reason, Result: "done"})
	e.svc.Observe(&envelope.Message{Envelope: envelope.Envelope{Gateway: gw, Kind: envelope.KindReply, Time: e.clock.Now().UnixMilli(), Body: body}})
}

// TestSiteLockLifecycle: a lock for site a reaches its online gateway at
// once, its offline gateway at its birth, and a gateway that joins the
// site later at its birth; replies make targets applied or rejected; a
// replay refusal after a re-delivery changes nothing.
func TestSiteLockLifecycle(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn)
		p := e.payload(command.Lock, 48*time.Hour, "spiffe://"+td+"/vendor/acme/*", "48h", "incident 7")
		p.Site = "a"
		signed := e.sign(e.ann, p)
		c, err := e.svc.Submit(e.ctx, signed, uri(e.ann), "ticket 42")
		if err != nil {
			t.Fatal(err)
		}
		if c.Scope != "site/a" || len(c.Targets) != 2 || c.Signer != uri(e.ann) || c.Note != "ticket 42" {
			t.Fatalf("queued %+v", c)
		}
		e.await("gw-1 delivered", func() bool { return e.target(c.ID, "gw-1").State == store.TargetDelivered })
		if tg := e.target(c.ID, "gw-2"); tg.State != store.TargetQueued || e.publishedTo(wire.CommandTopic("gw-2")) != 0 {
			t.Fatalf("offline gw-2: %+v", tg)
		}
		if e.publishedTo(wire.CommandTopic("gw-3")) != 0 {
			t.Fatal("published to another site")
		}
		e.clock.Advance(time.Hour)
		e.birth("gw-2", "a")
		e.await("gw-2 delivered at its birth", func() bool { return e.target(c.ID, "gw-2").State == store.TargetDelivered })
		e.birth("gw-9", "a") // a gateway new to central joins site a
		e.await("gw-9 delivered at its birth", func() bool { return e.target(c.ID, "gw-9").State == store.TargetDelivered })
		e.birth("gw-8", "b")
		e.reply("gw-1", signed, true, "")
		e.reply("gw-2", signed, false, "lock target not allowed by this gateway's approver scopes")
		e.reply("gw-9", signed, false, command.ErrReplay.Error())
		e.await("answers", func() bool {
			return e.target(c.ID, "gw-1").State == store.TargetApplied && e.target(c.ID, "gw-2").State == store.TargetRejected
		})
		if tg := e.target(c.ID, "gw-9"); tg.State != store.TargetDelivered {
			t.Fatalf("a replay refusal changed gw-9: %+v", tg)
		}
		if tg := e.target(c.ID, "gw-8"); tg.State != "" {
			t.Fatalf("gw-8 at site b got a target: %+v", tg)
		}
		// Another birth re-delivers to gw-9 only (gw-1 applied, gw-2 rejected).
		before1, before9 := e.publishedTo(wire.CommandTopic("gw-1")), e.publishedTo(wire.CommandTopic("gw-9"))
		e.birth("gw-1", "a")
		e.birth("gw-9", "a")
		e.await("gw-9 re-delivered", func() bool { return e.target(c.ID, "gw-9").Deliveries == 2 })
		if e.publishedTo(wire.CommandTopic("gw-1")) != before1 || e.publishedTo(wire.CommandTopic("gw-9")) != before9+1 {
			t.Fatal("re-delivery to an answered gateway")
		}
		full, err := e.st.Command(e.ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		g1, g2 := full.Targets[0], full.Targets[1]
		if g1.Applied.IsZero() || g1.Delivered.IsZero() || g1.Queued.IsZero() || g1.Result != "done" ||
			g2.Rejected.IsZero() || !strings.Contains(g2.Reason, "approver scopes") || full.States[store.TargetDelivered] != 1 {
			t.Fatalf("targets %+v", full)
		}
	})
}

// TestUnlockNeverAfterExpiry: an unlock for an offline gateway expires
// after its 5 minutes; the gateway's later birth does not get it.
func TestUnlockNeverAfterExpiry(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn)
		p := e.payload(command.Unlock, 5*time.Minute, "spiffe://"+td+"/vendor/acme/bob")
		p.Gateway = "gw-2"
		c, err := e.svc.Submit(e.ctx, e.sign(e.ann, p), uri(e.ann), "")
		if err != nil {
			t.Fatal(err)
		}
		e.await("queued", func() bool { return e.target(c.ID, "gw-2").State == store.TargetQueued })
		e.clock.Advance(5*time.Minute + time.Millisecond)
		e.birth("gw-2", "a")
		e.await("expired", func() bool { return e.target(c.ID, "gw-2").State == store.TargetExpired })
		if n := e.publishedTo(wire.CommandTopic("gw-2")); n != 0 {
			t.Fatalf("an expired unlock was published %d times", n)
		}
		// The periodic sweep expires what no birth touched.
		p = e.payload(command.Unlock, time.Minute, "spiffe://"+td+"/vendor/acme/eve")
		p.Gateway = "gw-7"
		c2, err := e.svc.Submit(e.ctx, e.sign(e.ann, p), uri(e.ann), "")
		if err != nil {
			t.Fatal(err)
		}
		e.await("queued", func() bool { return e.target(c2.ID, "gw-7").State == store.TargetQueued })
		e.clock.Advance(time.Minute)
		e.await("swept", func() bool { return e.target(c2.ID, "gw-7").State == store.TargetExpired })
	})
}

// TestSubmitRefusals: what central refuses, whatever the client signed.
func TestSubmitRefusals(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn)
		gw := e.pki.Gateway(t, "gw-1")
		to := func(p command.Payload, gw, site string, fleet bool) command.Payload {
			p.Gateway, p.Site, p.Fleet = gw, site, fleet
			return p
		}
		ok := e.sign(e.ann, to(e.payload(command.Deny, time.Hour, "G-1"), "", "a", false))
		cases := []struct {
			name      string
			signed    []byte
			submitter string
			want      error
			msg       string
		}{
			{"approve to a site", e.sign(e.ann, to(e.payload(command.Approve, time.Minute, "G-1"), "", "a", false)), uri(e.ann), commands.ErrInvalid, "exactly one gateway"},
			{"unlock to the fleet", e.sign(e.ann, to(e.payload(command.Unlock, time.Minute, "x"), "", "", true)), uri(e.ann), commands.ErrInvalid, "exactly one gateway"},
			{"clear-tamper to a site", e.sign(e.ann, to(e.payload(command.ClearTamper, time.Minute), "", "a", false)), uri(e.ann), commands.ErrInvalid, "exactly one gateway"},
			{"fleet lock", e.sign(e.ann, to(e.payload(command.Lock, time.Hour, "x"), "", "", true)), uri(e.ann), commands.ErrInvalid, "lock set"},
			{"rebirth to a site", e.sign(e.ann, to(e.payload(command.Rebirth, time.Minute), "", "a", false)), uri(e.ann), commands.ErrInvalid, "one gateway"},
			{"unlock for an hour", e.sign(e.ann, to(e.payload(command.Unlock, time.Hour, "x"), "gw-1", "", false)), uri(e.ann), commands.ErrInvalid, "at most 5m0s"},
			{"lock for 8 days", e.sign(e.ann, to(e.payload(command.Lock, 8*24*time.Hour, "x"), "gw-1", "", false)), uri(e.ann), commands.ErrInvalid, "at most 168h0m0s"},
			{"expired", e.sign(e.ann, to(command.Payload{Name: command.Lock, Args: []string{"x"}, IssuedAt: e.clock.Now().Add(-time.Hour).UnixMilli(),
				Expires: e.clock.Now().Add(-time.Minute).UnixMilli()}, "gw-1", "", false)), uri(e.ann), commands.ErrInvalid, "expired"},
			{"two addressees", e.sign(e.ann, to(e.payload(command.Lock, time.Hour, "x"), "gw-1", "a", false)), uri(e.ann), commands.ErrInvalid, "exactly one addressee"},
			{"unknown command", e.sign(e.ann, to(e.payload("format-disk", time.Minute), "gw-1", "", false)), uri(e.ann), commands.ErrInvalid, "unknown command"},
			{"missing argument", e.sign(e.ann, to(e.payload(command.Lock, time.Minute), "gw-1", "", false)), uri(e.ann), commands.ErrInvalid, "takes 1 to 3"},
			{"signed by a gateway", e.sign(gw, to(e.payload(command.Lock, time.Minute, "x"), "gw-1", "", false)), uri(e.ann), commands.ErrInvalid, "not an approver"},
			{"submitted by another approver", ok, uri(e.bob), commands.ErrNotSigner, "submitted by"},
			{"not a command", []byte("hello"), uri(e.ann), commands.ErrInvalid, "not a signed command"},
		}
		for _, c := range cases {
			_, err := e.svc.Submit(e.ctx, c.signed, c.submitter, "")
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("%s: got %v, want %v with %q", c.name, err, c.want, c.msg)
			}
		}
		if _, err := e.svc.Submit(e.ctx, ok, uri(e.ann), ""); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Submit(e.ctx, ok, uri(e.ann), ""); !errors.Is(err, commands.ErrConflict) {
			t.Fatalf("submitted twice: %v", err)
		}
		if cs, _ := e.st.Commands(e.ctx, 100); len(cs) != 1 {
			t.Fatalf("stored %d commands", len(cs))
		}
	})
}

func (e *env) lockSet(scope string, version uint64, who ...*certstest.Identity) []byte {
	e.t.Helper()
	now := e.clock.Now()
	s := &lockset.Set{TrustDomain: td, Version: version, IssuedAt: now.UnixMilli(), Expires: now.Add(24 * time.Hour).UnixMilli(),
		Scope: scope, Locks: []lockset.Lock{{Target: "spiffe://" + td + "/vendor/acme/*", Reason: "incident 9"}}}
	var signers []lockset.Signer
	for _, w := range who {
		s.Approvers = append(s.Approvers, uri(w))
		signers = append(signers, lockset.Signer{Key: w.Key, Chain: w.Chain})
	}
	if len(signers) == 0 {
		e.t.Fatal("no signer")
	}
	b, err := lockset.Sign(s, signers[0])
	if err != nil {
		e.t.Fatal(err)
	}
	for _, sg := range signers[1:] {
		if b, err = lockset.Cosign(b, sg); err != nil {
			e.t.Fatal(err)
		}
	}
	return b
}

// TestLockSets: a fleet set needs two persons and a newer version; it is
// published retained, again at each reconnection; gateways' events say
// which version each applied.
func TestLockSets(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn)
		carol := e.pki.Approver(t, "security", "carol")
		fleet := lockset.Topic(lockset.ScopeFleet)
		// One approver only: lockset.Sign refuses it for the fleet, so
		// forge the approvers list with one name.
		s := &lockset.Set{TrustDomain: td, Version: 1, IssuedAt: e.clock.Now().UnixMilli(), Expires: e.clock.Now().Add(time.Hour).UnixMilli(),
			Scope: lockset.Site("a"), Approvers: []string{uri(e.ann)}}
		one, err := lockset.Sign(s, lockset.Signer{Key: e.ann.Key, Chain: e.ann.Chain})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.SubmitLockSet(e.ctx, one, uri(carol)); !errors.Is(err, commands.ErrNotSigner) {
			t.Fatalf("submitted by a non-signer: %v", err)
		}
		if _, err := e.svc.SubmitLockSet(e.ctx, one, uri(e.ann)); err != nil {
			t.Fatalf("site set: %v", err)
		}
		v1 := e.lockSet(lockset.ScopeFleet, 1, e.ann, e.bob)
		partial, _ := lockset.Sign(&lockset.Set{TrustDomain: td, Version: 1, IssuedAt: e.clock.Now().UnixMilli(),
			Expires: e.clock.Now().Add(time.Hour).UnixMilli(), Scope: lockset.ScopeFleet, Approvers: []string{uri(e.ann), uri(e.bob)}},
			lockset.Signer{Key: e.ann.Key, Chain: e.ann.Chain})
		if _, err := e.svc.SubmitLockSet(e.ctx, partial, uri(e.ann)); !errors.Is(err, commands.ErrInvalid) || !strings.Contains(err.Error(), "cosign") {
			t.Fatalf("fleet set without the second signature: %v", err)
		}
		ls, err := e.svc.SubmitLockSet(e.ctx, v1, uri(e.bob))
		if err != nil || ls.Version != 1 || len(ls.Approvers) != 2 || ls.Locks[0].Reason != "incident 9" {
			t.Fatalf("fleet v1: %+v %v", ls, err)
		}
		e.await("published retained", func() bool { return e.publishedTo(fleet) == 1 })
		if _, err := e.svc.SubmitLockSet(e.ctx, v1, uri(e.ann)); !errors.Is(err, commands.ErrConflict) || !strings.Contains(err.Error(), "sign version 2") {
			t.Fatalf("same version: %v", err)
		}
		if _, err := e.svc.SubmitLockSet(e.ctx, e.lockSet(lockset.ScopeFleet, 3, e.ann, carol), uri(e.ann)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.SubmitLockSet(e.ctx, e.lockSet(lockset.ScopeFleet, 2, e.ann, carol), uri(e.ann)); !errors.Is(err, commands.ErrConflict) {
			t.Fatalf("older version: %v", err)
		}
		e.await("v3 published", func() bool { return e.publishedTo(fleet) == 2 })
		e.mu.Lock()
		last := e.pub[len(e.pub)-1]
		e.mu.Unlock()
		if !last.retain {
			t.Fatal("not retained")
		}
		e.svc.Connected()
		e.await("republished at reconnection", func() bool { return e.publishedTo(fleet) == 3 && e.publishedTo(lockset.Topic(lockset.Site("a"))) == 2 })

		// The published set carries central's endorsement: a gateway
		// accepts it after its approvers' certificates expired, and refuses
		// the approvers' signatures alone then. Two approvers with
		// certificates of two hours sign version 4.
		short := func(person string) *certstest.Identity {
			u, _ := url.Parse("spiffe://" + td + "/approver/security/" + person)
			leaf, key := e.pki.Sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: person}, URIs: []*url.URL{u},
				KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
				time.Now().Add(-time.Hour), time.Now().Add(2*time.Hour))
			return &certstest.Identity{Key: key, Chain: []*x509.Certificate{leaf, e.pki.CA.Intermediate}}
		}
		dave, erin := short("dave"), short("erin")
		if _, err := e.svc.SubmitLockSet(e.ctx, e.lockSet(lockset.ScopeFleet, 4, dave, erin), uri(dave)); err != nil {
			t.Fatal(err)
		}
		e.await("v4 published", func() bool { return e.publishedTo(fleet) == 4 })
		v := certs.NewVerifier(certs.NewBundle(e.pki.CA.Root), nil)
		at := func(p certs.PeerPolicy) command.VerifyApprover {
			return func(chain []*x509.Certificate, now time.Time) (string, error) {
				id, err := v.VerifyAt(chain, p, now)
				return id.URI, err
			}
		}
		opts := lockset.VerifyOptions{
			Approver: at(certs.PeerPolicy{TrustDomain: td, Allow: []certs.Pattern{certs.MustCompilePattern("spiffe://" + td + "/approver/**")}, MaxLifetime: 48 * time.Hour}),
			Central:  at(certs.PeerPolicy{TrustDomain: td, Allow: []certs.Pattern{certs.MustCompilePattern(certs.ServiceURI(td, "central"))}, MaxLifetime: 90 * 24 * time.Hour})}
		later := time.Now().Add(3 * time.Hour) // past dave's and erin's certificates, within the set's day
		var endorsed []byte
		e.mu.Lock()
		for _, p := range e.pub {
			if p.topic == fleet {
				endorsed = p.data
			}
		}
		e.mu.Unlock()
		if s, err := lockset.VerifyWith(endorsed, td, later, opts); err != nil || s.Version != 4 {
			t.Fatalf("endorsed set after its approvers' certificates: %v", err)
		}
		stored, _ := e.st.LockSet(e.ctx, lockset.ScopeFleet)
		if _, err := lockset.VerifyWith(stored.Signed, td, later, opts); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("the approvers' signatures alone later: %v", err)
		}
		// Central endorses and publishes its sets again every 12 hours.
		e.clock.Advance(12 * time.Hour)
		e.await("re-endorsed", func() bool { return e.publishedTo(fleet) == 5 })

		ev := func(gw, kind, version string) {
			body, _ := wire.EventBody(wire.Event{Kind: kind, Severity: "warning", Attrs: map[string]string{"scope": "fleet", "version": version, "reason": "older"}})
			e.svc.Observe(&envelope.Message{Envelope: envelope.Envelope{Gateway: gw, Kind: envelope.KindEvent, Time: e.clock.Now().UnixMilli(), Body: body}})
		}
		ev("gw-1", commands.EvLockSetApplied, "4")
		ev("gw-2", commands.EvLockSetApplied, "1")
		ev("gw-2", commands.EvLockSetRefused, "1")
		var view commands.LockSetView
		e.await("statuses", func() bool {
			view, err = commands.LockSet(e.ctx, e.st, lockset.ScopeFleet)
			return err == nil && view.Current == 1 && view.Behind == 2
		})
		if view.Version != 4 || len(view.Gateways) != 3 || view.Gateways[1].Version != 1 || view.Gateways[1].RefusedReason != "older" || view.Gateways[2].Version != 0 {
			t.Fatalf("view %+v", view)
		}
		all, err := commands.LockSets(e.ctx, e.st)
		if err != nil || len(all) != 2 || all[1].Scope != "site/a" || len(all[1].Gateways) != 2 {
			t.Fatalf("all %+v %v", all, err)
		}
	})
}

// TestLockSetsWithoutRetain: over AMQP nothing is retained, so central
// sends the sets that apply to a gateway on its own topic at its birth.
func TestLockSetsWithoutRetain(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, func(o *commands.Options) { o.NoRetain = true })
		if _, err := e.svc.SubmitLockSet(e.ctx, e.lockSet(lockset.Site("a"), 1, e.ann), uri(e.ann)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.SubmitLockSet(e.ctx, e.lockSet(lockset.ScopeFleet, 1, e.ann, e.bob), uri(e.ann)); err != nil {
			t.Fatal(err)
		}
		gw2, gw3 := lockset.Topic(lockset.Gateway("gw-2")), lockset.Topic(lockset.Gateway("gw-3"))
		e.birth("gw-2", "a")
		e.birth("gw-3", "b")
		e.await("sets sent at the births", func() bool { return e.publishedTo(gw2) == 2 && e.publishedTo(gw3) == 1 })
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, p := range e.pub {
			if p.topic != gw2 && p.topic != gw3 {
				continue
			}
			if p.retain {
				t.Fatalf("a set sent at a birth was retained on %s", p.topic)
			}
			s, err := lockset.Decode(p.data)
			if err != nil || (p.topic == gw3 && s.Scope != lockset.ScopeFleet) {
				t.Fatalf("%s got %+v %v", p.topic, s, err)
			}
		}
	})
}

// TestExpiredLockSetCleared: once a scope's newest set expired, central
// clears its retained topic (gateways would refuse it at every
// connection), once.
func TestExpiredLockSetCleared(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		// No sweep during the test: the reconnection pass, which also
		// clears, is triggered by hand.
		e := newEnv(t, dsn, func(o *commands.Options) { o.SweepEvery = 24 * time.Hour })
		site := lockset.Topic(lockset.Site("a"))
		now := e.clock.Now()
		s := &lockset.Set{TrustDomain: td, Version: 1, IssuedAt: now.UnixMilli(), Expires: now.Add(time.Hour).UnixMilli(),
			Scope: lockset.Site("a"), Approvers: []string{uri(e.ann)}, Locks: []lockset.Lock{{Target: "spiffe://" + td + "/vendor/acme/*"}}}
		signed, err := lockset.Sign(s, lockset.Signer{Key: e.ann.Key, Chain: e.ann.Chain})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.SubmitLockSet(e.ctx, signed, uri(e.ann)); err != nil {
			t.Fatal(err)
		}
		e.await("published", func() bool { return e.publishedTo(site) == 1 })
		e.clock.Advance(30 * time.Minute)
		e.svc.Connected() // still valid: republished, not cleared
		e.await("republished", func() bool { return e.publishedTo(site) == 2 })
		e.mu.Lock()
		if last := e.pub[len(e.pub)-1]; len(last.data) == 0 {
			t.Fatal("a valid set was cleared")
		}
		e.mu.Unlock()
		e.clock.Advance(time.Hour)
		e.svc.Connected()
		e.await("cleared", func() bool { return e.publishedTo(site) == 3 })
		e.mu.Lock()
		last := e.pub[len(e.pub)-1]
		e.mu.Unlock()
		if last.topic != site || len(last.data) != 0 || !last.retain {
			t.Fatalf("clear: %+v", last)
		}
		e.clock.Advance(time.Minute)
		e.svc.Connected() // republish at reconnection: the expired set is not sent again
		e.await("cleared once", func() bool { return e.svc.Idle() })
		if n := e.publishedTo(site); n != 3 {
			t.Fatalf("%d publishes on the site topic, want 3", n)
		}
	})
}

// TestLockOutlivesItsSigner: a site lock valid for three days reaches a
// gateway that comes back after its signer's day-long certificate expired:
// central publishes it with its endorsement then, and the gateway's check
// accepts it. While the certificate is valid it goes as signed.
func TestLockOutlivesItsSigner(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn)
		// carl's approver certificate lasts two hours.
		carl := e.pki.IssueFor(t, "carl", "spiffe://"+td+"/approver/security/carl", e.clock.Now(), e.clock.Now().Add(2*time.Hour))
		p := e.payload(command.Lock, 72*time.Hour, "spiffe://"+td+"/vendor/acme/*", "72h", "incident 9")
		p.Site = "a"
		signed := e.sign(carl, p)
		c, err := e.svc.Submit(e.ctx, signed, uri(carl), "")
		if err != nil {
			t.Fatal(err)
		}
		e.await("gw-1 delivered", func() bool { return e.target(c.ID, "gw-1").State == store.TargetDelivered })
		if got := e.lastTo(wire.CommandTopic("gw-1")); string(got) != string(signed) {
			t.Fatal("a command whose signer is valid was not published as signed")
		}

		e.clock.Advance(5 * time.Hour) // carl's certificate ended 3 hours ago
		e.birth("gw-2", "a")
		e.await("gw-2 delivered at its birth", func() bool { return e.target(c.ID, "gw-2").State == store.TargetDelivered })
		got := e.lastTo(wire.CommandTopic("gw-2"))
		if string(got) == string(signed) {
			t.Fatal("published without central's endorsement after the signer's certificate expired")
		}

		// The gateway's side of the check, with its own policies.
		v := certs.NewVerifier(certs.NewBundle(e.pki.CA.Root), e.clock)
		hook := func(pattern string) command.VerifyApprover {
			pol := certs.PeerPolicy{TrustDomain: td, Allow: []certs.Pattern{certs.MustCompilePattern(pattern)}, MaxLifetime: 60 * 24 * time.Hour}
			return func(chain []*x509.Certificate, at time.Time) (string, error) {
				id, err := v.VerifyAt(chain, pol, at)
				return id.URI, err
			}
		}
		o := command.VerifyOptions{Approver: hook("spiffe://" + td + "/approver/**"), Central: hook(certs.ServiceURI(td, "central"))}
		db, err := bbolt.Open(filepath.Join(t.TempDir(), "nonces.db"), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		nonces, err := command.NewNonceStore(db)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := command.VerifyWith(signed, "gw-2", "a", e.clock.Now(), o, nonces); !errors.Is(err, command.ErrNotApprover) {
			t.Fatalf("the command as signed, after its signer expired: %v", err)
		}
		cmd, err := command.VerifyWith(got, "gw-2", "a", e.clock.Now(), o, nonces)
		if err != nil || cmd.Approver != uri(carl) || cmd.Name != command.Lock {
			t.Fatalf("endorsed lock at the gateway: %+v %v", cmd, err)
		}
	})
}

func (e *env) lastTo(topic string) []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.pub) - 1; i >= 0; i-- {
		if e.pub[i].topic == topic {
			return e.pub[i].data
		}
	}
	return nil
}
