package envelope

import (
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs/certstest"
)

// FuzzVerify feeds arbitrary bytes to the COSE and envelope decoders.
func FuzzVerify(f *testing.F) {
	pki := certstest.NewMini(f)
	gw := pki.Gateway(f, "gw-test")
	body, _ := Marshal(map[string]any{"kind": "x"})
	for _, tc := range envelopeCases {
		p, _ := EncodePayload(&tc.env)
		f.Add(p)
		msg, err := Sign(gw.Key, gw.Chain, p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(msg)
	}
	p, _ := EncodePayload(&Envelope{Version: 1, Gateway: "gw-test", Kind: KindEvent, Body: body})
	m, _ := Sign(gw.Key, gw.Chain[:1], p)
	f.Add(m)
	f.Add([]byte{0xd2, 0x84, 0x40, 0xa0, 0xf6, 0x40})
	verify := RootsVerifier(pki.Roots())
	now := time.Now()
	f.Fuzz(func(t *testing.T, data []byte) {
		if m, err := Verify(data, verify, now); err == nil {
			if err := m.Validate(); err != nil {
				t.Fatalf("verified message does not validate: %v", err)
			}
		}
		if s, err := Parse(data); err == nil {
			_ = s.VerifySignature()
		}
		if e, err := DecodePayload(data); err == nil {
			if _, err := EncodePayload(e); err != nil {
				t.Fatalf("decoded envelope does not re-encode: %v", err)
			}
		}
	})
}

// FuzzDecodePack feeds arbitrary bytes to the SenML decoder.
func FuzzDecodePack(f *testing.F) {
	for _, tc := range senmlCases {
		f.Add(mustHex(tc.wire))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodePack(data)
		if err != nil {
			return
		}
		_ = p.Resolve()
		if _, err := EncodePack(p); err != nil {
			t.Fatalf("decoded pack does not re-encode: %v", err)
		}
	})
}
