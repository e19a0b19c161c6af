package envelope_test

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/wire/envelope"
)

// Example signs one event as a gateway does (COSE_Sign1 over the CBOR
// envelope, the signer chain in the header) and verifies it as central
// does, against the trust bundle.
func Example() {
	ca, err := certs.NewDevCA(certs.DevCAOptions{})
	if err != nil {
		panic(err)
	}
	gw, err := ca.Issue(certs.IssueOptions{URI: "spiffe://hospital.example/gateway/gw-icu3-12"})
	if err != nil {
		panic(err)
	}
	var chain []*x509.Certificate
	for _, der := range gw.Certificate {
		c, _ := x509.ParseCertificate(der)
		chain = append(chain, c)
	}

	body, _ := envelope.Marshal(map[string]string{"kind": "access.grant_approved", "grant": "G7K2QX"})
	payload, err := envelope.EncodePayload(&envelope.Envelope{Version: 1, Gateway: "gw-icu3-12", Session: 3, Seq: 1042,
		Time: time.Now().UnixMilli(), Kind: envelope.KindEvent, Body: body})
	if err != nil {
		panic(err)
	}
	msg, err := envelope.Sign(gw.PrivateKey.(crypto.Signer), chain, payload)
	if err != nil {
		panic(err)
	}

	m, err := envelope.Verify(msg, envelope.RootsVerifier(ca.Bundle().Pool()), time.Now())
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Gateway, m.Seq, m.Kind, m.Signer)
	// Output: gw-icu3-12 1042 event spiffe://hospital.example/gateway/gw-icu3-12
}
