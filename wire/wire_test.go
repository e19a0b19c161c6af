package wire

import (
	"fmt"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire/envelope"
)

func TestTrackerGapsAndDuplicates(t *testing.T) {
	now := time.Unix(1000, 0)
	tr := NewTracker(time.Minute)
	for _, s := range []uint64{10, 11, 14, 12} {
		if tr.Observe("gw", s, now) {
			t.Fatalf("seq %d reported as duplicate", s)
		}
	}
	if !tr.Observe("gw", 11, now) {
		t.Fatal("duplicate not detected")
	}
	tr.Optional("gw", 13, now) // a death Will that never came
	if g := tr.Gaps(now.Add(time.Hour)); len(g) != 0 {
		t.Fatalf("gaps %v", g)
	}
	tr.Observe("gw", 20, now)
	if g := tr.Gaps(now.Add(30 * time.Second)); len(g) != 0 {
		t.Fatalf("gap reported before the grace period: %v", g)
	}
	tr.Observe("gw", 16, now) // out of order: fills part of the hole
	g := tr.Gaps(now.Add(2 * time.Minute))
	want := []Gap{{Gateway: "gw", From: 15, To: 15}, {Gateway: "gw", From: 17, To: 19}}
	if fmt.Sprint(g) != fmt.Sprint(want) {
		t.Fatalf("gaps %v, want %v", g, want)
	}
	if g := tr.Gaps(now.Add(time.Hour)); len(g) != 0 {
		t.Fatalf("gaps reported twice: %v", g)
	}
	// A late arrival of a reported seq is still new, not a duplicate.
	if tr.Observe("gw", 17, now) || !tr.Seen("gw", 17) {
		t.Fatal("late seq 17 treated as duplicate")
	}
}

func TestTailLineAlerts(t *testing.T) {
	pki := certstest.NewMini(t)
	other := certstest.NewMini(t)
	gw := pki.Gateway(t, "gw-test")
	body, _ := EventBody(Event{Kind: "x"})
	payload, _ := envelope.EncodePayload(&envelope.Envelope{Version: 1, Gateway: "gw-test", Seq: 3, Kind: envelope.KindEvent, Body: body})
	msg, _ := envelope.Sign(gw.Key, gw.Chain, payload)
	now := time.Now()
	l, ok := Inspect("wardgate/v1/gw-test/event", msg, envelope.RootsVerifier(pki.Roots()), now)
	if !ok || !l.Verified || l.Seq != 3 || l.Body.(map[string]any)["kind"] != "x" {
		t.Fatalf("line %+v", l)
	}
	if l, ok := Inspect("wardgate/v1/gw-test/event", msg, envelope.RootsVerifier(other.Roots()), now); ok || l.Alert != "verify_failed" || l.Verified {
		t.Fatalf("untrusted: %+v", l)
	}
	if l, ok := Inspect("wardgate/v1/gw-x/event", msg, envelope.RootsVerifier(pki.Roots()), now); ok || l.Alert != "topic_mismatch" {
		t.Fatalf("topic mismatch: %+v", l)
	}
	if l, ok := Inspect("wardgate/v1/gw-test/status", msg, envelope.RootsVerifier(pki.Roots()), now); ok || l.Alert != "topic_mismatch" {
		t.Fatalf("kind/topic mismatch: %+v", l)
	}
	if l, _ := Inspect("wardgate/v1/gw-test/event", []byte("junk"), envelope.RootsVerifier(pki.Roots()), now); l.Alert != "verify_failed" {
		t.Fatalf("junk: %+v", l)
	}
}

// TestTailAcceptsWillSignedBeforeExpiry: a death Will signed while the
// certificate was valid verifies after the certificate expired; other
// kinds do not.
func TestTailAcceptsWillSignedBeforeExpiry(t *testing.T) {
	pki := certstest.NewMini(t)
	gw := pki.Gateway(t, "gw-test")
	signedAt := time.Now()
	later := gw.Chain[0].NotAfter.Add(time.Hour)
	mk := func(kind envelope.Kind) []byte {
		body, _ := envelope.Marshal(Death{Reason: "offline"})
		pl, _ := envelope.EncodePayload(&envelope.Envelope{Version: 1, Gateway: "gw-test", Seq: 9, Time: signedAt.UnixMilli(), Kind: kind, Body: body})
		m, err := envelope.Sign(gw.Key, gw.Chain, pl)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	v := envelope.RootsVerifier(pki.Roots())
	if l, ok := Inspect("wardgate/v1/gw-test/death", mk(envelope.KindDeath), v, later); !ok || !l.Verified {
		t.Fatalf("death after expiry: %+v", l)
	}
	if l, ok := Inspect("wardgate/v1/gw-test/status", mk(envelope.KindStatus), v, later); ok || l.Alert != "verify_failed" {
		t.Fatalf("status after expiry: %+v", l)
	}
}
