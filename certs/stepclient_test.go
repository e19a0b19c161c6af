package certs

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.step.sm/crypto/jose"
)

// garbageCA is an HTTPS server, trusted by the dev CA's root, that answers
// whatever body/status is set.
func garbageCA(t *testing.T, dev *DevCA) (*httptest.Server, *atomic.Pointer[[2]string]) {
	t.Helper()
	answer := &atomic.Pointer[[2]string]{}
	answer.Store(&[2]string{"200", "<html>hello</html>"})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := answer.Load()
		code := 200
		if a[0] != "200" {
			code = 500
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(a[1]))
	}))
	cert, err := dev.Issue(IssueOptions{CommonName: "ca", IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, answer
}

// TestStepClientGarbage: a CA answering garbage is an error and the old
// certificate stays current.
func TestStepClientGarbage(t *testing.T) {
	dev := newDevCA(t, clockwork.NewRealClock(), time.Hour)
	srv, answer := garbageCA(t, dev)
	client, err := NewStepClient(StepClientOptions{URL: srv.URL, Bundle: dev.Bundle(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// A certificate due for renewal within 2 s.
	tc, _ := dev.Issue(IssueOptions{URI: GatewayURI(testTD, "gw-01"), Lifetime: 3 * time.Second})
	ev := newEventLog()
	m, err := NewManager(ManagerOptions{CA: client, Bundle: dev.Bundle(), OnEvent: ev.add, RetryMin: 50 * time.Millisecond, RetryMax: 100 * time.Millisecond, RootsEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Install(tc.PrivateKey.(crypto.Signer), leafChain(t, tc)); err != nil {
		t.Fatal(err)
	}
	old := m.Current()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for _, a := range [][2]string{
		{"200", "<html>hello</html>"},
		{"200", `{"crt":"not pem","ca":"","certChain":["nope"]}`},
		{"200", `{}`},
		{"500", "<html>oops</html>"},
	} {
		answer.Store(&a)
		if e := ev.wait(t, EventRenewalFailed, 10*time.Second); !errors.Is(e.Err, ErrCABadResponse) {
			t.Fatalf("answer %q: err %v", a[1], e.Err)
		}
		if m.Current() != old {
			t.Fatal("old certificate replaced")
		}
	}
	// A step-ca style error is ErrCARefused with the CA's message.
	answer.Store(&[2]string{"500", `{"status":500,"message":"The certificate authority encountered an Internal Server Error."}`})
	for {
		e := ev.wait(t, EventRenewalFailed, 10*time.Second)
		if errors.Is(e.Err, ErrCARefused) {
			if !strings.Contains(e.Err.Error(), "Internal Server Error") {
				t.Fatalf("message %v", e.Err)
			}
			break
		}
	}
	// FetchRoot and Roots against garbage.
	answer.Store(&[2]string{"200", "garbage"})
	if _, err := FetchRoot(context.Background(), srv.URL, Fingerprint(dev.Root()), nil, time.Second); !errors.Is(err, ErrCABadResponse) {
		t.Fatalf("FetchRoot: %v", err)
	}
	if _, err := client.Roots(context.Background()); !errors.Is(err, ErrCABadResponse) {
		t.Fatalf("Roots: %v", err)
	}
	answer.Store(&[2]string{"200", `{"crts":[]}`})
	if _, err := client.Roots(context.Background()); !errors.Is(err, ErrCABadResponse) {
		t.Fatalf("Roots empty: %v", err)
	}
}

// TestStepClientUntrustedTLS: a CA whose TLS certificate is not under the
// trusted roots is refused.
func TestStepClientUntrustedTLS(t *testing.T) {
	dev := newDevCA(t, clockwork.NewRealClock(), time.Hour)
	other := newDevCA(t, clockwork.NewRealClock(), time.Hour)
	srv, _ := garbageCA(t, dev)
	client, _ := NewStepClient(StepClientOptions{URL: srv.URL, Bundle: other.Bundle(), Timeout: time.Second})
	if _, err := client.Roots(context.Background()); !errors.Is(err, ErrCABadResponse) || !strings.Contains(err.Error(), "not trusted") {
		t.Fatalf("err %v", err)
	}
	if _, err := NewStepClient(StepClientOptions{URL: "http://ca:9000", Bundle: other.Bundle()}); err == nil {
		t.Fatal("http URL accepted")
	}
}

func TestParseTokenClaims(t *testing.T) {
	key, _ := GenerateKey()
	// Tokens are minted by step's own JOSE implementation, as `step ca
	// token` does.
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, new(jose.SignerOptions).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	mk := func(c any) string {
		tok, err := jose.Signed(signer).Claims(c).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	type stepClaims struct {
		jose.Claims
		SANs []string `json:"sans"`
	}
	tok := mk(stepClaims{Claims: jose.Claims{Subject: "gw-01", Audience: jose.Audience{"https://ca.example:9000/1.0/sign"}, Expiry: jose.NewNumericDate(time.Now().Add(time.Minute))}, SANs: []string{"gw-01", "10.0.0.1"}})
	c, err := ParseTokenClaims(" " + tok + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "gw-01" || len(c.SANs) != 2 || CAURLFromAudience(c.Audience) != "https://ca.example:9000" ||
		time.Until(c.Expiry) <= 0 || time.Until(c.Expiry) > time.Minute {
		t.Fatalf("claims %+v", c)
	}
	// "aud" may be a single string (RFC 7519 4.1.3).
	c, err = ParseTokenClaims(mk(map[string]any{"sub": "gw-03", "aud": "https://ca.example:9000/1.0/sign"}))
	if err != nil || CAURLFromAudience(c.Audience) != "https://ca.example:9000" {
		t.Fatalf("string aud: %+v %v", c, err)
	}
	if _, err := ParseTokenClaims(mk(map[string]any{"sub": "gw-04", "aud": 7})); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("numeric aud: %v", err)
	}
	c, _ = ParseTokenClaims(mk(jose.Claims{Subject: "gw-02"}))
	if len(c.SANs) != 1 || c.SANs[0] != "gw-02" {
		t.Fatalf("default SANs %v", c.SANs)
	}
	if _, err := ParseTokenClaims(mk(jose.Claims{Issuer: "x"})); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("no subject: %v", err)
	}
	// An expired token is refused before contacting the CA.
	exp := mk(jose.Claims{Subject: "gw", Expiry: jose.NewNumericDate(time.Now().Add(-time.Minute)), Audience: jose.Audience{"https://127.0.0.1:1/1.0/sign"}})
	if _, err := Enroll(context.Background(), EnrollOptions{RootFingerprint: strings.Repeat("00", 32), Token: exp, Dir: t.TempDir()}); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("expired token: %v", err)
	}
	// Clock insane: refused before anything else.
	if _, err := Enroll(context.Background(), EnrollOptions{Token: tok, Dir: t.TempDir(), NotBefore: time.Now().Add(time.Hour)}); !errors.Is(err, ErrClockInsane) {
		t.Fatalf("clock insane: %v", err)
	}
}

// TestRenewTokenShape: the x5cInsecure token carries the chain and is
// signed by the certificate's key.
func TestRenewTokenShape(t *testing.T) {
	dev := newDevCA(t, clockwork.NewRealClock(), time.Hour)
	tc, _ := dev.Issue(IssueOptions{URI: GatewayURI(testTD, "gw-01")})
	chain := leafChain(t, tc)
	tok, err := renewToken(tc.PrivateKey.(crypto.Signer), chain, "https://ca:9000/1.0/renew", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	jwt, chains, err := jose.ParseX5cInsecure(tok, dev.Bundle().Roots())
	if err != nil {
		t.Fatal(err)
	}
	var c jose.Claims
	if err := jwt.Claims(chains[0][0].PublicKey, &c); err != nil {
		t.Fatal(err)
	}
	if c.Subject != "gw-01" || c.Issuer != "step-ca-client/1.0" || c.ID == "" || c.Audience[0] != "https://ca:9000/1.0/renew" {
		t.Fatalf("claims %+v", c)
	}
	if err := c.ValidateWithLeeway(jose.Expected{Time: time.Now(), AnyAudience: jose.Audience{"https://ca:9000/1.0/renew"}}, time.Minute); err != nil {
		t.Fatalf("step's validation: %v", err)
	}
	// ES256 only: a key of another kind is refused with a clear error.
	_, ed, _ := ed25519.GenerateKey(nil)
	if _, err := renewToken(ed, chain, "https://ca:9000/1.0/renew", time.Now()); err == nil || !strings.Contains(err.Error(), "P-256") {
		t.Fatalf("ed25519 key: %v", err)
	}
}

func FuzzParseSignResponse(f *testing.F) {
	f.Add([]byte(`{"crt":"","ca":"","certChain":[]}`))
	f.Add([]byte(`{"crt":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}`))
	f.Add([]byte(`<html>`))
	f.Add([]byte(`{"certChain":["x","y"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		chain, err := ParseSignResponse(b)
		if err == nil && len(chain) == 0 {
			t.Fatal("empty chain without error")
		}
		if err != nil && !errors.Is(err, ErrCABadResponse) {
			t.Fatalf("error not ErrCABadResponse: %v", err)
		}
	})
}

func FuzzParseTokenClaims(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJndyJ9.c2ln")
	f.Add("")
	f.Add("a.b.c")
	f.Add(`{"payload":"e30","signatures":[]}`)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseTokenClaims(s)
		if err == nil && (c.Subject == "" || len(c.SANs) == 0) {
			t.Fatalf("claims without subject: %+v", c)
		}
	})
}

func FuzzParseCertsPEM(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("garbage"))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		certs, err := ParseCertsPEM(b)
		if err == nil && len(certs) == 0 {
			t.Fatal("no certificates without error")
		}
	})
}
