package telemetry

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"

	"github.com/wardgate/wardgate/wire"

	"github.com/wardgate/wardgate/gateway/telemetry/outbox"
)

// TestPublisherDelivered: Delivered follows the outbox: false while a
// message waits, true once acknowledged, false for one dropped or not
// handed out, ErrClosed after Close.
func TestPublisherDelivered(t *testing.T) {
	p, err := New(Options{
		GatewayID: "gw-test", Brokers: []string{"mqtts://127.0.0.1:1"},
		TLSConfig:  func(string) *tls.Config { return &tls.Config{} },
		Signer:     func() (crypto.Signer, []*x509.Certificate) { return nil, nil },
		OutboxPath: filepath.Join(t.TempDir(), "telemetry.db"),
		NoSync:     true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	end, err := p.Event(wire.Event{Kind: "session.end"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := p.Event(wire.Event{Kind: "session.start"})
	if err != nil {
		t.Fatal(err)
	}
	check := func(seq uint64, want bool) {
		t.Helper()
		if got, err := p.Delivered(seq); err != nil || got != want {
			t.Fatalf("Delivered(%d) = %v, %v; want %v", seq, got, err, want)
		}
	}
	check(end, false)
	if err := p.ob.Ack(end); err != nil {
		t.Fatal(err)
	}
	check(end, true)
	if err := p.ob.Discard(other); err != nil { // as for a message that cannot be signed
		t.Fatal(err)
	}
	check(other, false)
	check(other+1, false)
	p.Close()
	if _, err := p.Delivered(end); !errors.Is(err, outbox.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}
