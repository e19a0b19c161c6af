package certs

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func TestDevCA(t *testing.T) {
	clk := clockwork.NewFakeClockAt(time.Now())
	ca, err := NewDevCA(DevCAOptions{Clock: clk, Lifetime: 10 * time.Minute, ValidFor: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Root().NotBefore.Before(clk.Now().Add(-23*time.Hour)) || !ca.Intermediate().NotAfter.Equal(ca.Root().NotAfter) {
		t.Fatalf("validity %v..%v", ca.Root().NotBefore, ca.Root().NotAfter)
	}
	ctx := context.Background()
	key, _ := GenerateKey()
	csr, _ := NewCSR("gw-01", []string{"gw-01", "10.0.0.1", GatewayURI(testTD, "gw-01")}, key)
	chain, err := ca.Sign(ctx, csr, "ignored", 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain[0]
	if leaf.NotAfter.Sub(leaf.NotBefore) != 10*time.Minute || len(leaf.URIs) != 1 || len(leaf.IPAddresses) != 1 {
		t.Fatalf("leaf %v %v %v", leaf.NotAfter.Sub(leaf.NotBefore), leaf.URIs, leaf.IPAddresses)
	}
	tc, _ := TLSCertificate(key, chain)
	ca.SetLifetime(20 * time.Minute)
	renewed, err := ca.Renew(ctx, tc)
	if err != nil || !keyMatches(key, renewed[0]) || renewed[0].NotAfter.Sub(renewed[0].NotBefore) != 20*time.Minute {
		t.Fatalf("renew: %v", err)
	}
	nk, _ := GenerateKey()
	ncsr, _ := CSRFromCert(leaf, nk)
	rekeyed, err := ca.Rekey(ctx, tc, ncsr)
	if err != nil || !keyMatches(nk, rekeyed[0]) || rekeyed[0].URIs[0].String() != GatewayURI(testTD, "gw-01") {
		t.Fatalf("rekey: %v", err)
	}
	if roots, _ := ca.Roots(ctx); len(roots) != 1 || !roots[0].Equal(ca.Root()) {
		t.Fatal("roots")
	}
	// Expired: Renew refuses, RenewExpired depends on the setting.
	clk.Advance(11 * time.Minute)
	if _, err := ca.Renew(ctx, tc); !errors.Is(err, ErrCARefused) {
		t.Fatalf("renew expired: %v", err)
	}
	if _, err := ca.RenewExpired(ctx, tc); !errors.Is(err, ErrRenewAfterExpiryNotAllowed) {
		t.Fatalf("renew after expiry not allowed: %v", err)
	}
	ca.SetAllowRenewalAfterExpiry(true)
	if _, err := ca.RenewExpired(ctx, tc); err != nil {
		t.Fatalf("renew after expiry allowed: %v", err)
	}
	// Another CA's certificate is refused.
	other := newDevCA(t, clk, time.Hour)
	oc, _ := other.Issue(IssueOptions{URI: GatewayURI(testTD, "gw-01")})
	if _, err := ca.Renew(ctx, &oc); !errors.Is(err, ErrCARefused) {
		t.Fatalf("foreign certificate: %v", err)
	}
	// Issue with a chosen NotBefore and lifetime.
	nb := clk.Now().Add(-3 * time.Hour)
	old, err := ca.Issue(IssueOptions{URI: VendorURI(testTD, "acme", "jane"), NotBefore: nb, Lifetime: time.Hour, Key: key})
	if err != nil || !old.Leaf.NotBefore.Equal(nb.Truncate(time.Second)) || old.Leaf.Subject.CommonName != "jane" {
		t.Fatalf("issue: %v", err)
	}
}
