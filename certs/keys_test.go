package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

// TestParseKeyPEM: the formats operators bring (step writes SEC1, openssl
// PKCS#8, old tools PKCS#1) parse; encrypted and empty input are refused
// with a message that says what to do.
func TestParseKeyPEM(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ec)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	enc := func(typ string, der []byte, h map[string]string) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der, Headers: h})
	}
	cases := []struct {
		name string
		data []byte
		want string // "" for success
	}{
		{"pkcs8", enc("PRIVATE KEY", pkcs8, nil), ""},
		{"sec1", enc("EC PRIVATE KEY", sec1, nil), ""},
		{"sec1 after EC PARAMETERS", append(params, enc("EC PRIVATE KEY", sec1, nil)...), ""},
		{"pkcs1", enc("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk), nil), ""},
		{"encrypted pkcs8", enc("ENCRYPTED PRIVATE KEY", []byte{1}, nil), "encrypted"},
		{"legacy encrypted", enc("EC PRIVATE KEY", sec1, map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}), "encrypted"},
		{"certificate only", enc("CERTIFICATE", []byte{1}, nil), "no PEM private key"},
		{"garbage", []byte("hello"), "no PEM private key"},
		{"broken der", enc("PRIVATE KEY", []byte{1, 2, 3}, nil), "parse key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKeyPEM(tc.data)
			if tc.want == "" {
				if err != nil || k == nil {
					t.Fatalf("ParseKeyPEM: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
	// What EncodeKeyPEM writes, ParseKeyPEM reads back.
	b, err := EncodeKeyPEM(ec)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseKeyPEM(b)
	if err != nil || !back.Public().(*ecdsa.PublicKey).Equal(&ec.PublicKey) {
		t.Fatalf("round trip: %v", err)
	}
}

// TestNewCSRSplitsSANs: names are told apart as step's CLI does: IPs,
// URIs (a scheme), e-mail addresses, and DNS names for the rest.
func TestNewCSRSplitsSANs(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := NewCSR("gw-01", []string{"gw-01", "10.20.0.2", "::1", "spiffe://hospital.example/gateway/gw-01", "ops@hospital.example"}, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	if csr.Subject.CommonName != "gw-01" || len(csr.DNSNames) != 1 || len(csr.IPAddresses) != 2 || len(csr.URIs) != 1 ||
		csr.URIs[0].String() != "spiffe://hospital.example/gateway/gw-01" || len(csr.EmailAddresses) != 1 {
		t.Fatalf("CSR names: cn %q dns %v ip %v uri %v email %v", csr.Subject.CommonName, csr.DNSNames, csr.IPAddresses, csr.URIs, csr.EmailAddresses)
	}
}
