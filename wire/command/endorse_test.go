package command

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire/envelope"
)

func keyChain(t *testing.T, c tls.Certificate) (crypto.Signer, []*x509.Certificate) {
	id := certstest.IdentityOf(t, c)
	return id.Key, id.Chain
}

// TestEndorsement: a restrictive command outlives its signer's day-long
// certificate only with central's endorsement, made after it was issued,
// over exactly its payload, by a certificate valid now; a permissive
// command never does.
func TestEndorsement(t *testing.T) {
	td := "hospital.example"
	clk := clockwork.NewFakeClock()
	pki := certstest.NewWithClock(t, td, clk)
	// The approver signs with a certificate of an hour; the gateway comes
	// back three days later, when central's current certificate is valid.
	issued := clk.Now()
	jkey, jchain := keyChain(t, pki.Approver(t, "security", "jdoe"))
	oldKey, oldChain := keyChain(t, pki.Service(t, "central"))
	sign := func(to To, name string, args ...string) []byte {
		t.Helper()
		ttl := MaxRestrictiveTTL
		if Permissive(name) {
			ttl = MaxTTL
		}
		b, err := SignTo(jkey, jchain, to, name, args, issued, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	lock := sign(To{Site: "icu"}, Lock, "spiffe://"+td+"/vendor/acme/*", "72h", "incident 42")
	other := sign(To{Site: "icu"}, Lock, "spiffe://"+td+"/vendor/other/*")
	unlock := sign(To{Gateway: "gw-1"}, Unlock, "spiffe://"+td+"/vendor/acme/*")
	clk.Advance(3 * 24 * time.Hour)
	now := clk.Now()
	ckey, cchain := keyChain(t, pki.Service(t, "central"))

	roots := envelope.RootsVerifier(pki.Bundle().Pool())
	role := func(prefix string) VerifyApprover {
		return func(chain []*x509.Certificate, at time.Time) (string, error) {
			id, err := roots(chain, at)
			if err == nil && !strings.HasPrefix(id, prefix) {
				err = errors.New(id + " is not " + prefix)
			}
			return id, err
		}
	}
	o := VerifyOptions{Approver: role("spiffe://" + td + "/approver/"), Central: role("spiffe://" + td + "/svc/central")}
	endorse := func(msg []byte, key crypto.Signer, chain []*x509.Certificate, at time.Time) []byte {
		t.Helper()
		b, err := Endorse(msg, key, chain, at)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	nonces, _ := openStore(t, filepath.Join(t.TempDir(), "n.db"))
	verify := func(msg []byte, o VerifyOptions) (*Command, error) {
		return VerifyWith(msg, "gw-1", "icu", now, o, nonces)
	}

	if _, err := verify(lock, o); !errors.Is(err, ErrNotApprover) {
		t.Fatalf("expired signer, no endorsement: %v", err)
	}
	good := endorse(lock, ckey, cchain, now.Add(-time.Minute))
	if _, err := verify(good, VerifyOptions{Approver: o.Approver}); !errors.Is(err, ErrNotApprover) {
		t.Fatalf("endorsement honoured without a central verifier: %v", err)
	}
	if _, p, err := Decode(good); err != nil || p.Name != Lock {
		t.Fatalf("decode endorsed: %+v %v", p, err)
	}
	// Re-endorsing replaces the endorsement.
	again := endorse(good, ckey, cchain, now)
	var parts [][]byte
	if err := envelope.Unmarshal(again, &parts); err != nil || len(parts) != 2 {
		t.Fatalf("re-endorsed: %d parts, %v", len(parts), err)
	}
	c, err := verify(again, o)
	if err != nil || c.Approver != "spiffe://"+td+"/approver/security/jdoe" || c.Args[1] != "72h" {
		t.Fatalf("endorsed lock: %+v %v", c, err)
	}
	if _, err := verify(good, o); !errors.Is(err, ErrReplay) {
		t.Fatalf("endorsed lock replayed: %v", err)
	}

	var a, b [][]byte
	_ = envelope.Unmarshal(endorse(other, ckey, cchain, now), &a)
	spliced, _ := envelope.Marshal([][]byte{lock, a[1]})
	_ = envelope.Unmarshal(good, &b)
	for name, tc := range map[string]struct {
		msg  []byte
		want error
	}{
		"a permissive command":                   {endorse(unlock, ckey, cchain, now), ErrNotApprover},
		"endorsed by an approver":                {endorse(other, jkey, jchain, now), ErrEndorsement},
		"endorser's certificate expired":         {endorse(other, oldKey, oldChain, issued.Add(time.Hour)), ErrEndorsement},
		"endorsed before the command was issued": {endorse(other, ckey, cchain, issued.Add(-time.Hour)), ErrEndorsement},
		"endorsed in the future":                 {endorse(other, ckey, cchain, now.Add(time.Hour)), ErrEndorsement},
		"endorsement of another command":         {spliced, ErrEndorsement},
		"three elements":                         {func() []byte { x, _ := envelope.Marshal(append(b, b[1])); return x }(), ErrMalformed},
		"the endorsement first":                  {func() []byte { x, _ := envelope.Marshal([][]byte{b[1], b[0]}); return x }(), ErrMalformed},
	} {
		if _, err := verify(tc.msg, o); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}
