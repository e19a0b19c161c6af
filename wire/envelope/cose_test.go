package envelope

import (
	"bytes"
	"crypto"
	"errors"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs/certstest"
)

func signedEvent(t *testing.T, id *certstest.Identity, gw string) []byte {
	t.Helper()
	body, _ := Marshal(map[string]any{"kind": "test"})
	p, err := EncodePayload(&Envelope{Version: 1, Gateway: gw, Session: 1, Seq: 9, Time: 5, Kind: KindEvent, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := Sign(id.Key, id.Chain, p)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestSignVerifyRoundTrip(t *testing.T) {
	pki := certstest.NewMini(t)
	gw := pki.Gateway(t, "gw-test")
	msg := signedEvent(t, gw, "gw-test")
	if msg[0] != 0xd2 {
		t.Fatalf("not tag 18: %x", msg[:2])
	}
	m, err := Verify(msg, RootsVerifier(pki.Roots()), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if m.Seq != 9 || m.Gateway != "gw-test" || m.Signer != "spiffe://hospital.example/gateway/gw-test" || len(m.Chain) != 2 {
		t.Fatalf("verified %+v", m)
	}
	// Single-certificate chains are encoded as one bstr.
	single, err := Sign(gw.Key, gw.Chain[:1], []byte{0xf6})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(single)
	if err != nil || len(s.Chain) != 1 || s.VerifySignature() != nil {
		t.Fatalf("single chain: %v", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	pki := certstest.NewMini(t)
	other := certstest.NewMini(t)
	gw := pki.Gateway(t, "gw-test")
	good := signedEvent(t, gw, "gw-test")

	tampered := bytes.Clone(good)
	i := bytes.LastIndex(tampered, []byte("test"))
	tampered[i] = 'b'

	cases := []struct {
		name string
		msg  []byte
		ver  ChainVerifier
		want error
	}{
		{"other CA", good, RootsVerifier(other.Roots()), ErrUntrusted},
		{"tampered payload", tampered, RootsVerifier(pki.Roots()), ErrSignature},
		{"names another gateway", signedEvent(t, gw, "gw-other"), RootsVerifier(pki.Roots()), ErrUntrusted},
		{"signed by another key", signWith(t, pki.Gateway(t, "gw-x").Key, gw), RootsVerifier(pki.Roots()), ErrSignature},
		{"untagged", good[1:], RootsVerifier(pki.Roots()), ErrMalformed},
		{"not cbor", []byte("hello"), RootsVerifier(pki.Roots()), ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(tc.msg, tc.ver, time.Now())
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := Verify(good, RootsVerifier(pki.Roots()), time.Now().Add(48*time.Hour)); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("expired chain: %v", err)
	}
}

func signWith(t *testing.T, key crypto.Signer, id *certstest.Identity) []byte {
	t.Helper()
	p, _ := EncodePayload(&Envelope{Version: 1, Gateway: "gw-test", Kind: KindEvent, Body: []byte{0xf6}})
	msg, err := Sign(key, id.Chain, p)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}
