package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs/stepcatest"
)

// rootsFrom is a CA whose roots come from another CA (a second step-ca).
type rootsFrom struct {
	CA
	roots CA
}

func (r rootsFrom) Roots(ctx context.Context) ([]*x509.Certificate, error) { return r.roots.Roots(ctx) }

func TestAcceptRoots(t *testing.T) {
	now := time.Now()
	old, next, rogue := stepcatest.NewPKI(t), stepcatest.NewPKI(t), stepcatest.NewPKI(t)
	cross := old.CrossSign(t, next)
	byRogue := rogue.CrossSign(t, next)
	trusted := []*x509.Certificate{old.Root}
	for _, tc := range []struct {
		name    string
		offered []*x509.Certificate
		pinned  []string
		want    []*x509.Certificate // nil: refused
	}{
		{"unchanged", []*x509.Certificate{old.Root}, nil, []*x509.Certificate{old.Root}},
		{"rogue root", []*x509.Certificate{rogue.Root}, nil, nil},
		{"rogue root beside the old", []*x509.Certificate{old.Root, rogue.Root}, nil, nil},
		{"cross-signed", []*x509.Certificate{next.Root, cross}, nil, []*x509.Certificate{next.Root}},
		{"cross-signed beside the old", []*x509.Certificate{old.Root, next.Root, cross}, nil, []*x509.Certificate{old.Root, next.Root}},
		{"cross-signed by an untrusted root", []*x509.Certificate{next.Root, byRogue}, nil, nil},
		{"pinned", []*x509.Certificate{rogue.Root}, []string{Fingerprint(rogue.Root)}, []*x509.Certificate{rogue.Root}},
		{"no root at all", []*x509.Certificate{cross}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AcceptRoots(trusted, tc.offered, tc.pinned, now)
			if tc.want == nil {
				if err == nil {
					t.Fatalf("accepted %d roots", len(got))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d roots, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if !got[i].Equal(tc.want[i]) {
					t.Fatalf("root %d differs", i)
				}
			}
		})
	}
	// Expired cross-certificates do not count.
	if _, err := AcceptRoots(trusted, []*x509.Certificate{next.Root, cross}, nil, now.Add(48*time.Hour)); !errors.Is(err, ErrRootNotContinuous) {
		t.Fatalf("expired cross-certificate: %v", err)
	}
	// Nothing trusted yet: take what the (fingerprint-pinned) CA serves.
	if got, err := AcceptRoots(nil, []*x509.Certificate{rogue.Root}, nil, now); err != nil || len(got) != 1 {
		t.Fatalf("first roots: %v", err)
	}
}

// TestRootsContinuityStepCA: the gateway trusts one root; a second real
// step-ca serves its own root on /roots. Without continuity it is refused
// (old bundle kept, roots_rejected); a CA whose new root is cross-signed by
// the trusted one is accepted.
func TestRootsContinuityStepCA(t *testing.T) {
	t.Parallel()
	trustedPKI := stepcatest.NewPKI(t)
	rogue := newStepCA(t, stepCAConfig{DefaultDur: time.Hour, MinDur: time.Minute, Provisioners: map[string]bool{"gateways": false}})
	nextPKI := stepcatest.NewPKI(t)
	next := newStepCA(t, stepCAConfig{DefaultDur: time.Hour, MinDur: time.Minute, Provisioners: map[string]bool{"gateways": false},
		PKI: nextPKI, ExtraCerts: []*x509.Certificate{trustedPKI.CrossSign(t, nextPKI)}})

	run := func(ca *stepCA, pinned ...string) *mgrHarness {
		client, err := NewStepClient(StepClientOptions{URL: ca.URL, Bundle: NewBundle(ca.Root()), Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return newMgrHarness(t, time.Hour, func(o *ManagerOptions) {
			// The gateway's identity comes from the dev CA; its bundle
			// also trusts trustedPKI's root.
			o.Bundle = NewBundle(append(o.Bundle.Roots(), trustedPKI.Root)...)
			o.CA = rootsFrom{CA: o.CA, roots: client}
			o.RootsEvery = time.Hour
			o.PinnedRoots = pinned
		})
	}

	h := run(rogue)
	e := h.ev.wait(t, EventRootsRejected, 20*time.Second)
	if !errors.Is(e.Err, ErrRootNotContinuous) || !strings.Contains(e.Err.Error(), Fingerprint(rogue.Root())) {
		t.Fatalf("rejection %+v", e)
	}
	roots := h.m.Roots().Roots()
	if len(roots) != 2 || !roots[1].Equal(trustedPKI.Root) {
		t.Fatalf("bundle changed after a rogue root: %d roots", len(roots))
	}
	if h.ev.count(EventRootsChanged) != 0 {
		t.Fatal("roots_changed after a rejection")
	}

	h = run(next)
	h.ev.wait(t, EventRootsChanged, 20*time.Second)
	if roots := h.m.Roots().Roots(); len(roots) != 1 || !roots[0].Equal(nextPKI.Root) {
		t.Fatalf("cross-signed root not adopted: %d roots", len(roots))
	}

	// The operator may pin the rogue CA's root instead.
	h = run(rogue, strings.ToUpper(Fingerprint(rogue.Root())))
	h.ev.wait(t, EventRootsChanged, 20*time.Second)
	if roots := h.m.Roots().Roots(); len(roots) != 1 || !roots[0].Equal(rogue.Root()) {
		t.Fatal("pinned root not adopted")
	}
}

func TestPinnedIntermediate(t *testing.T) {
	dev := newDevCA(t, nil, time.Hour)
	v := NewVerifier(dev.Bundle(), nil)
	tc, err := dev.Issue(IssueOptions{URI: VendorURI(testTD, "acme", "jo")})
	if err != nil {
		t.Fatal(err)
	}
	chain := leafChain(t, tc)
	p := PeerPolicy{TrustDomain: testTD, Allow: []Pattern{MustCompilePattern("spiffe://" + testTD + "/vendor/**")}}
	p.Intermediates = []string{Fingerprint(dev.Intermediate())}
	if _, err := v.Verify(chain, p); err != nil {
		t.Fatalf("pinned intermediate refused: %v", err)
	}
	p.Intermediates = []string{strings.Repeat("ab", 32)}
	if _, err := v.Verify(chain, p); PeerReason(err) != ReasonIntermediate {
		t.Fatalf("other intermediate: %v", err)
	}
}
