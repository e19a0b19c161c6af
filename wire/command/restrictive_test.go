package command

import (
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire/envelope"
)

// TestRestrictiveAndAddressing: restrictive commands may be valid for 7
// days and addressed to a site (or, except lock, the fleet); permissive
// ones keep 5 minutes and one gateway; nonces are kept until expiry.
func TestRestrictiveAndAddressing(t *testing.T) {
	pki := certstest.NewMini(t)
	appr := pki.Approver(t, "security", "jdoe")
	now := time.Now()
	store, _ := openStore(t, filepath.Join(t.TempDir(), "n.db"))
	hook := approverHook(pki)
	bob := "spiffe://hospital.example/vendor/acme/bob"
	sign := func(to To, name string, args []string, ttl time.Duration) []byte {
		t.Helper()
		b, err := SignTo(appr.Key, appr.Chain, to, name, args, now, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	raw := func(p Payload) []byte {
		p.Nonce, p.IssuedAt = []byte("0123456789abcdef-"+p.Name), now.UnixMilli()
		if p.Args == nil {
			p.Args = []string{}
		}
		b, _ := envelope.Marshal(&p)
		m, err := envelope.Sign(appr.Key, appr.Chain, b)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	week := 7 * 24 * time.Hour
	siteLock := sign(To{Site: "st-a"}, Lock, []string{bob, "72h"}, week)
	cases := []struct {
		name     string
		msg      []byte
		gw, site string
		want     error
	}{
		{"lock to a site for 7 days", siteLock, "gw-1", "st-a", nil},
		{"deny to the fleet for 7 days", sign(To{Fleet: true}, Deny, []string{"G-1"}, week), "gw-1", "st-a", nil},
		{"end-session to one gateway for 3 days", sign(To{Gateway: "gw-1"}, EndSession, []string{"S-1"}, 72*time.Hour), "gw-1", "", nil},
		{"revoke for 7 days", sign(To{Gateway: "gw-1"}, Revoke, []string{"G-2"}, week), "gw-1", "", nil},
		{"lock to another site", siteLock, "gw-1", "st-b", ErrOtherGateway},
		{"lock to a site, gateway without site", siteLock, "gw-1", "", ErrOtherGateway},
		{"approve to a site", raw(Payload{Site: "st-a", Name: Approve, Args: []string{"G-1"}, Expires: now.Add(time.Minute).UnixMilli()}), "gw-1", "st-a", ErrNotOneGateway},
		{"unlock to the fleet", raw(Payload{Fleet: true, Name: Unlock, Args: []string{bob}, Expires: now.Add(time.Minute).UnixMilli()}), "gw-1", "st-a", ErrNotOneGateway},
		{"clear-tamper to a site", raw(Payload{Site: "st-a", Name: ClearTamper, Expires: now.Add(time.Minute).UnixMilli()}), "gw-1", "st-a", ErrNotOneGateway},
		{"lock to the fleet", raw(Payload{Fleet: true, Name: Lock, Args: []string{bob}, Expires: now.Add(time.Hour).UnixMilli()}), "gw-1", "st-a", ErrFleetLock},
		{"gateway and site", raw(Payload{Gateway: "gw-1", Site: "st-a", Name: Deny, Args: []string{"G-1"}, Expires: now.Add(time.Hour).UnixMilli()}), "gw-1", "st-a", ErrNotOneGateway},
		{"no addressee", raw(Payload{Name: Deny, Args: []string{"G-9"}, Expires: now.Add(time.Hour).UnixMilli()}), "gw-1", "st-a", ErrNotOneGateway},
		{"unlock for an hour", raw(Payload{Gateway: "gw-1", Name: Unlock, Args: []string{bob}, Expires: now.Add(time.Hour).UnixMilli()}), "gw-1", "", ErrTooLong},
		{"lock for 8 days", raw(Payload{Gateway: "gw-1", Name: Lock, Args: []string{bob}, Expires: now.Add(8 * 24 * time.Hour).UnixMilli()}), "gw-1", "", ErrTooLong},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := VerifyAt(c.msg, c.gw, c.site, now, hook, store)
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
	// Verify (no site) refuses a site-addressed command.
	if _, err := Verify(sign(To{Site: "st-a"}, Deny, []string{"G-7"}, time.Hour), "gw-1", now, hook, store); !errors.Is(err, ErrOtherGateway) {
		t.Fatalf("Verify of a site command: %v", err)
	}
	// The 7-day nonce is kept: a replay six days later is refused (the
	// test approver certificate lives a day: its chain is checked at now).
	atNow := func(chain []*x509.Certificate, _ time.Time) (string, error) { return hook(chain, now) }
	if _, err := VerifyAt(siteLock, "gw-1", "st-a", now.Add(6*24*time.Hour), atNow, store); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay after 6 days: %v", err)
	}
	// Sign refuses too long and permissive fan-out.
	if _, err := SignTo(appr.Key, appr.Chain, To{Gateway: "gw-1"}, Lock, []string{bob}, now, week+time.Second); !errors.Is(err, ErrTooLong) {
		t.Fatalf("Sign lock 7d+1s: %v", err)
	}
	if _, err := SignTo(appr.Key, appr.Chain, To{Site: "st-a"}, Approve, []string{"G-1"}, now, time.Minute); !errors.Is(err, ErrNotOneGateway) {
		t.Fatalf("Sign approve to a site: %v", err)
	}
}
