package envelope

import (
	"bytes"
	"crypto"
	"errors"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
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

// TestParseRefusesDuplicateKeys: a duplicate label in either COSE header
// is refused while parsing, before any signature check (the decoders
// enforce unique map keys; nothing decodes the message a second time to
// look for them).
func TestParseRefusesDuplicateKeys(t *testing.T) {
	pki := certstest.NewMini(t)
	good := signedEvent(t, pki.Gateway(t, "gw-test"), "gw-test")
	var tag cbor.RawTag
	var parts []cbor.RawMessage
	if err := cbor.Unmarshal(good, &tag); err != nil {
		t.Fatal(err)
	}
	if err := cbor.Unmarshal(tag.Content, &parts); err != nil || len(parts) != 4 {
		t.Fatalf("%d parts, %v", len(parts), err)
	}
	chain := parts[1][3:] // parts[1] is {33: chain}: a1 18 21 CHAIN
	build := func(protected, unprotected []byte) []byte {
		t.Helper()
		content, err := cbor.Marshal([]cbor.RawMessage{protected, unprotected, parts[2], parts[3]})
		if err != nil {
			t.Fatal(err)
		}
		b, err := cbor.Marshal(cbor.RawTag{Number: 18, Content: content})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, err := Parse(build(parts[0], parts[1])); err != nil {
		t.Fatalf("rebuilt message: %v", err)
	}
	dupUnprotected := append(append(append([]byte{0xa2, 0x18, 0x21}, chain...), 0x18, 0x21), chain...)
	for name, msg := range map[string][]byte{
		"unprotected header": build(parts[0], dupUnprotected),
		"protected header":   build([]byte{0x45, 0xa2, 0x01, 0x26, 0x01, 0x26}, parts[1]),
	} {
		if _, err := Parse(msg); !errors.Is(err, ErrMalformed) {
			t.Errorf("duplicate label in the %s: %v", name, err)
		}
	}
}
