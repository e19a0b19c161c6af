package lockset

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire/envelope"
)

func signerOf(t *testing.T, c tls.Certificate) Signer {
	id := certstest.IdentityOf(t, c)
	return Signer{Key: id.Key, Chain: id.Chain}
}

// TestEndorsement: a set outlives its approvers' day-long certificates
// only with central's endorsement, made after it was issued over exactly
// its payload by a certificate valid now.
func TestEndorsement(t *testing.T) {
	td := "hospital.example"
	clk := clockwork.NewFakeClock()
	pki := certstest.NewWithClock(t, td, clk)
	// Approvers sign with hour-long certificates; the set is verified
	// three days later, when central's current certificate is valid.
	issued := clk.Now()
	jdoe := signerOf(t, pki.Approver(t, "security", "jdoe"))
	asmith := signerOf(t, pki.Approver(t, "ciso", "asmith"))
	oldCentral := signerOf(t, pki.Service(t, "central"))
	clk.Advance(3 * 24 * time.Hour)
	now := clk.Now()
	central := signerOf(t, pki.Service(t, "central"))
	roots := envelope.RootsVerifier(pki.Bundle().Pool())
	centralHook := func(chain []*x509.Certificate, at time.Time) (string, error) {
		id, err := roots(chain, at)
		if err == nil && id != "spiffe://"+td+"/svc/central" {
			err = errors.New(id + " is not central")
		}
		return id, err
	}
	approver := func(chain []*x509.Certificate, at time.Time) (string, error) {
		id, err := roots(chain, at)
		if err == nil && !strings.HasPrefix(id, "spiffe://"+td+"/approver/") {
			err = errors.New(id + " is not an approver")
		}
		return id, err
	}
	o := VerifyOptions{Approver: approver, Central: centralHook}
	mk := func(version uint64) []byte {
		b, err := Sign(&Set{TrustDomain: td, Version: version, IssuedAt: issued.UnixMilli(), Expires: issued.Add(6 * 24 * time.Hour).UnixMilli(),
			Scope: ScopeFleet, Locks: []Lock{{Target: "spiffe://" + td + "/vendor/acme/*"}},
			Approvers: []string{"spiffe://" + td + "/approver/security/jdoe", "spiffe://" + td + "/approver/ciso/asmith"}}, jdoe, asmith)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	set := mk(5)
	endorse := func(msg []byte, by Signer, at time.Time) []byte {
		t.Helper()
		b, err := Endorse(msg, by, at)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	if _, err := Verify(set, td, now, o.Approver); !errors.Is(err, ErrNotApprover) {
		t.Fatalf("expired signers without central: %v", err)
	}
	if _, err := VerifyWith(set, td, now, o); !errors.Is(err, ErrNotApprover) {
		t.Fatalf("expired signers, no endorsement: %v", err)
	}
	good := endorse(set, central, now.Add(-time.Minute))
	s, err := VerifyWith(good, td, now, o)
	if err != nil || s.Version != 5 {
		t.Fatalf("endorsed: %+v %v", s, err)
	}
	// Re-endorsing replaces the endorsement; the approvers' part is kept.
	again := endorse(good, central, now)
	var parts [][]byte
	if err := envelope.Unmarshal(again, &parts); err != nil || len(parts) != 3 {
		t.Fatalf("re-endorsed: %d parts, %v", len(parts), err)
	}
	if _, err := VerifyWith(again, td, now, o); err != nil {
		t.Fatalf("re-endorsed: %v", err)
	}
	// Without the central hook an endorsement is ignored.
	if _, err := Verify(good, td, now, o.Approver); !errors.Is(err, ErrNotApprover) {
		t.Fatalf("endorsement honoured without a central verifier: %v", err)
	}
	// Decode and Cosign read an endorsed set.
	if d, err := Decode(good); err != nil || d.Version != 5 {
		t.Fatalf("decode endorsed: %v", err)
	}

	// The endorsement of another set, spliced in.
	var a, b [][]byte
	_ = envelope.Unmarshal(endorse(mk(6), central, now), &a)
	_ = envelope.Unmarshal(set, &b)
	spliced, _ := envelope.Marshal(append(b, a[len(a)-1]))

	for name, tc := range map[string]struct {
		msg  []byte
		want error
	}{
		"endorsed by an approver":            {endorse(set, jdoe, now), ErrEndorsement},
		"endorser's certificate expired":     {endorse(set, oldCentral, issued.Add(time.Hour)), ErrEndorsement},
		"endorsed before the set was issued": {endorse(set, central, issued.Add(-time.Hour)), ErrEndorsement},
		"endorsed in the future":             {endorse(set, central, now.Add(time.Hour)), ErrEndorsement},
		"endorsement of another set":         {spliced, ErrEndorsement},
		"endorsement not last":               {func() []byte { x, _ := envelope.Marshal(append([][]byte{a[len(a)-1]}, b...)); return x }(), ErrMalformed},
		"two endorsements":                   {func() []byte { x, _ := envelope.Marshal(append(append(b, a[len(a)-1]), a[len(a)-1])); return x }(), ErrMalformed},
	} {
		if _, err := VerifyWith(tc.msg, td, now, o); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}
