package envelope

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs/certstest"
)

// BenchmarkVerify is what a receiver spends per message of a gateway
// whose chain it has seen before: parse, signature, chain (a trivial
// verifier here: central caches chain verification), envelope.
func BenchmarkVerify(b *testing.B) {
	pki := certstest.NewMini(b)
	gw := pki.Gateway(b, "gw-bench")
	body, _ := Marshal(map[string]any{"kind": "clinical.refused", "severity": "warning",
		"attrs": map[string]string{"device": "pump-07", "peer": "spiffe://hospital.example/svc/unknown", "reason": "not allowed"}})
	p, err := EncodePayload(&Envelope{Version: 1, Gateway: "gw-bench", Session: 1, Seq: 9, Time: 5, Kind: KindEvent, Body: body})
	if err != nil {
		b.Fatal(err)
	}
	msg, err := Sign(gw.Key, gw.Chain, p)
	if err != nil {
		b.Fatal(err)
	}
	trusted := func(chain []*x509.Certificate, _ time.Time) (string, error) {
		return "spiffe://hospital.example/gateway/gw-bench", nil
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(msg, trusted, now); err != nil {
			b.Fatal(err)
		}
	}
}
