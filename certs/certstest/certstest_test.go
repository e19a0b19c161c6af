package certstest

import (
	"crypto/tls"
	"os/exec"
	"testing"

	"github.com/wardgate/wardgate/certs"
)

func TestPKI(t *testing.T) {
	p := New(t, "hospital.example")
	v := p.Verifier()
	policy := certs.PeerPolicy{TrustDomain: "hospital.example", Allow: []certs.Pattern{certs.MustCompilePattern("spiffe://hospital.example/**")}}
	for name, c := range map[string]tls.Certificate{
		"gateway": p.Gateway(t, "gw-01"), "vendor": p.Vendor(t, "acme", "jane"),
		"service": p.Service(t, "pump-server"), "approver": p.Approver(t, "ciso", "jdoe"),
	} {
		chain, err := certs.ChainOf(&c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(chain, policy); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	dir := t.TempDir()
	root := p.WriteRoot(t, dir)
	crt, key := p.WritePEM(t, dir, "server", p.Server(t, "broker"))
	if _, err := tls.LoadX509KeyPair(crt, key); err != nil {
		t.Fatal(err)
	}
	if openssl, err := exec.LookPath("openssl"); err == nil {
		out, err := exec.Command(openssl, "verify", "-CAfile", root, "-untrusted", crt, crt).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl verify: %v\n%s", err, out)
		}
	}
}
