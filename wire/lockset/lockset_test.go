package lockset

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire/envelope"
)

func approverHook(pki *certstest.MiniPKI) func([]*x509.Certificate, time.Time) (string, error) {
	roots := envelope.RootsVerifier(pki.Roots())
	return func(chain []*x509.Certificate, now time.Time) (string, error) {
		id, err := roots(chain, now)
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(id, "spiffe://"+certstest.MiniTrustDomain+"/approver/") {
			return "", errors.New("not an approver identity")
		}
		return id, nil
	}
}

func uri(id *certstest.Identity) string { return id.Chain[0].URIs[0].String() }

func TestVerify(t *testing.T) {
	pki := certstest.NewMini(t)
	other := certstest.NewMini(t)
	jdoe := pki.Approver(t, "security", "jdoe")
	asmith := pki.Approver(t, "ciso", "asmith")
	jdoe2 := pki.Approver(t, "ciso", "jdoe") // the same person in another role
	stranger := other.Approver(t, "security", "mallory")
	gw := pki.Gateway(t, "gw-1")
	now := time.Now()
	td := certstest.MiniTrustDomain
	hook := approverHook(pki)
	s := func(id *certstest.Identity) Signer { return Signer{Key: id.Key, Chain: id.Chain} }
	set := func(scope string, approvers ...*certstest.Identity) *Set {
		st := &Set{TrustDomain: td, Version: 3, IssuedAt: now.UnixMilli(), Expires: now.Add(6 * 24 * time.Hour).UnixMilli(),
			Scope: scope, Locks: []Lock{{Target: "spiffe://" + td + "/vendor/acme/*", Reason: "incident 7"}}}
		for _, a := range approvers {
			st.Approvers = append(st.Approvers, uri(a))
		}
		return st
	}
	// raw signs without Sign's checks.
	raw := func(st *Set, ids ...*certstest.Identity) []byte {
		p, _ := envelope.Marshal(st)
		var sigs [][]byte
		for _, id := range ids {
			b, err := envelope.Sign(id.Key, id.Chain, p)
			if err != nil {
				t.Fatal(err)
			}
			sigs = append(sigs, b)
		}
		out, _ := envelope.Marshal(sigs)
		return out
	}
	must := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	fleet := must(Sign(set(ScopeFleet, jdoe, asmith), s(jdoe), s(asmith)))
	half := must(Sign(set(ScopeFleet, jdoe, asmith), s(jdoe)))
	cosigned := must(Cosign(half, s(asmith)))
	site := must(Sign(set(Site("st-a"), jdoe), s(jdoe)))
	p1 := must(Sign(set(Site("st-a"), jdoe), s(jdoe)))
	p2 := must(Sign(set(Site("st-b"), jdoe), s(jdoe)))
	mixed := func() []byte { // two signatures over different payloads
		var a, b [][]byte
		_ = envelope.Unmarshal(p1, &a)
		_ = envelope.Unmarshal(p2, &b)
		out, _ := envelope.Marshal([][]byte{a[0], b[0]})
		return out
	}()
	long := set(Site("st-a"), jdoe)
	long.Expires = now.Add(8 * 24 * time.Hour).UnixMilli()
	expired := set(Site("st-a"), jdoe)
	expired.IssuedAt, expired.Expires = now.Add(-2*time.Hour).UnixMilli(), now.Add(-time.Hour).UnixMilli()
	future := set(Site("st-a"), jdoe)
	future.IssuedAt, future.Expires = now.Add(time.Hour).UnixMilli(), now.Add(2*time.Hour).UnixMilli()
	otherTD := set(Site("st-a"), jdoe)
	otherTD.TrustDomain = "other.example"
	dup := set(Site("st-a"), jdoe)
	dup.Locks = append(dup.Locks, dup.Locks[0])
	badScope := set("region/eu", jdoe)

	cases := []struct {
		name string
		msg  []byte
		want error
	}{
		{"fleet by two approvers", fleet, nil},
		{"fleet countersigned", cosigned, nil},
		{"site by one approver", site, nil},
		{"fleet by one signature", half, ErrSigners},
		{"fleet by one person in two roles", raw(set(ScopeFleet, jdoe, jdoe2), jdoe, jdoe2), ErrTwoPersons},
		{"fleet naming one approver", raw(set(ScopeFleet, jdoe), jdoe), ErrTwoPersons},
		{"same signature twice", raw(set(ScopeFleet, jdoe, asmith), jdoe, jdoe), ErrSigners},
		{"signer not named", raw(set(Site("st-a"), jdoe), asmith), ErrSigners},
		{"gateway is not an approver", raw(set(Site("st-a"), gw), gw), ErrNotApprover},
		{"foreign CA", raw(set(Site("st-a"), stranger), stranger), ErrNotApprover},
		{"signatures over two payloads", mixed, ErrMalformed},
		{"valid 8 days", raw(long, jdoe), ErrTooLong},
		{"expired", raw(expired, jdoe), ErrExpired},
		{"issued in the future", raw(future, jdoe), ErrNotYet},
		{"other trust domain", raw(otherTD, jdoe), ErrOtherDomain},
		{"target twice", raw(dup, jdoe), ErrMalformed},
		{"unknown scope", raw(badScope, jdoe), ErrMalformed},
		{"no signatures", must(envelope.Marshal([][]byte{})), ErrMalformed},
		{"not CBOR", []byte("lock everything"), ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Verify(c.msg, td, now, hook)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if got.Version != 3 || len(got.Locks) != 1 {
					t.Fatalf("got %+v", got)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestScopes(t *testing.T) {
	for _, c := range []struct {
		scope, gw, site string
		applies         bool
		topic           string
	}{
		{ScopeFleet, "gw-1", "", true, "wardgate/v1/fleet/lockset"},
		{Site("st-a"), "gw-1", "st-a", true, "wardgate/v1/site/st-a/lockset"},
		{Site("st-a"), "gw-1", "st-b", false, "wardgate/v1/site/st-a/lockset"},
		{Site("st-a"), "gw-1", "", false, "wardgate/v1/site/st-a/lockset"},
		{Gateway("gw-1"), "gw-1", "st-a", true, "wardgate/v1/gw-1/lockset"},
		{Gateway("gw-1"), "gw-2", "st-a", false, "wardgate/v1/gw-1/lockset"},
	} {
		s := Set{Scope: c.scope}
		if s.Applies(c.gw, c.site) != c.applies || Topic(c.scope) != c.topic {
			t.Errorf("%s for %s at %q: applies %v topic %s", c.scope, c.gw, c.site, s.Applies(c.gw, c.site), Topic(c.scope))
		}
	}
	if got := Topics("gw-1", "st-a"); len(got) != 3 {
		t.Errorf("Topics = %v", got)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{0x80})
	f.Add([]byte{0x81, 0x41, 0xd2})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Decode(data)
		if err == nil && s.Check() != nil {
			t.Fatal("Decode accepted a set Check refuses")
		}
	})
}
