// Package stepcatest runs the real step-ca binary for tests: a CA on
// loopback with a root, an intermediate and JWK provisioners generated at run
// time, and one-time tokens minted as `step ca token` does. The binary is the
// one scripts/deps.sh builds into $WARDGATE_CACHE/bin (default
// ~/.cache/wardgate/bin). Without it, tests fail when CI is set and skip
// otherwise; they always skip in -short mode.
package stepcatest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.step.sm/crypto/jose"
	"go.step.sm/crypto/randutil"

	"github.com/wardgate/wardgate/internal/testnet"
)

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func keyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Binary returns the real step-ca binary, failing under CI and
// skipping elsewhere when it is missing.
func Binary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("step-ca integration test skipped in -short mode")
	}
	cache := os.Getenv("WARDGATE_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "wardgate")
	}
	bin := filepath.Join(cache, "bin", "step-ca")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("step-ca not found at %s: run scripts/deps.sh", bin)
		}
		t.Skipf("step-ca not found at %s (run scripts/deps.sh)", bin)
	}
	return bin
}

// provisioner is a JWK provisioner generated at run time.
type provisioner struct {
	name string
	jwk  *jose.JSONWebKey // private
}

// StepCA is a real step-ca process on loopback, configured at run time
// with its own root, intermediate and JWK provisioners.
type StepCA struct {
	t       testing.TB
	bin     string
	dir     string
	cfgPath string
	addr    string
	URL     string
	root    *x509.Certificate
	provs   map[string]*provisioner

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Config describes the CA to start.
type Config struct {
	DefaultDur time.Duration
	MinDur     time.Duration
	// Provisioners by name -> allowRenewalAfterExpiry.
	Provisioners map[string]bool
	// ExtraRoot adds a second trusted root (as during a CA rollover).
	ExtraRoot bool
	// PKI is the CA's root and intermediate; nil makes a fresh one.
	PKI *PKI
	// ExtraCerts are served by /roots after the roots (for example a
	// cross-certificate of this CA's root signed by another root).
	ExtraCerts []*x509.Certificate
}

func freePort(t testing.TB) string { return testnet.FreeAddr(t) }

// New starts a step-ca with c and stops it when the test ends.
func New(t testing.TB, c Config) *StepCA {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	ca := c.PKI
	if ca == nil {
		ca = NewPKI(t)
	}
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rootPath := write("root_ca.crt", certPEM(ca.Root), 0o644)
	var rootCfg any = rootPath
	if c.ExtraRoot || len(c.ExtraCerts) > 0 {
		paths := []string{rootPath}
		if c.ExtraRoot {
			extra := NewPKI(t)
			paths = append(paths, write("root_ca_next.crt", certPEM(extra.Root), 0o644))
		}
		for i, x := range c.ExtraCerts {
			paths = append(paths, write(fmt.Sprintf("extra_%d.crt", i), certPEM(x), 0o644))
		}
		rootCfg = paths
	}
	intPath := write("intermediate_ca.crt", certPEM(ca.Intermediate), 0o644)
	keyPEM, err := keyPEM(ca.Signer)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := write("intermediate_ca_key", keyPEM, 0o600)

	s := &StepCA{t: t, bin: bin, dir: dir, root: ca.Root, provs: map[string]*provisioner{}}
	s.addr = freePort(t)
	s.URL = "https://" + s.addr

	var provs []map[string]any
	for name, allowExpiry := range c.Provisioners {
		jwk, err := jose.GenerateJWK("EC", "P-256", "ES256", "sig", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		kid, err := jose.Thumbprint(jwk)
		if err != nil {
			t.Fatal(err)
		}
		jwk.KeyID = kid
		pub := jwk.Public()
		s.provs[name] = &provisioner{name: name, jwk: jwk}
		provs = append(provs, map[string]any{
			"type": "JWK",
			"name": name,
			"key":  &pub,
			"claims": map[string]any{
				"minTLSCertDuration":      c.MinDur.String(),
				"maxTLSCertDuration":      "24h",
				"defaultTLSCertDuration":  c.DefaultDur.String(),
				"allowRenewalAfterExpiry": allowExpiry,
			},
		})
	}
	cfg := map[string]any{
		"root":     rootCfg,
		"crt":      intPath,
		"key":      keyPath,
		"address":  s.addr,
		"dnsNames": []string{"127.0.0.1", "localhost"},
		"logger":   map[string]any{"format": "text"},
		"db":       map[string]any{"type": "bbolt", "dataSource": filepath.Join(dir, "db")},
		"authority": map[string]any{
			"provisioners": provs,
		},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	s.cfgPath = write("ca.json", b, 0o600)
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start starts the CA and waits for /health.
func (s *StepCA) Start() {
	s.t.Helper()
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		return
	}
	logf, err := os.OpenFile(filepath.Join(s.dir, "step-ca.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		s.mu.Unlock()
		s.t.Fatal(err)
	}
	cmd := exec.Command(s.bin, s.cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "STEPPATH="+filepath.Join(s.dir, "steppath"), "HOME="+s.dir)
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		s.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	pool := x509.NewCertPool()
	pool.AddCert(s.root)
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(s.dir, "step-ca.log"))
			s.t.Fatalf("step-ca exited:\n%s", log)
		default:
		}
		resp, err := hc.Get(s.URL + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond) // polling an external process
	}
	log, _ := os.ReadFile(filepath.Join(s.dir, "step-ca.log"))
	s.t.Fatalf("step-ca did not become healthy:\n%s", log)
}

// Stop stops the CA (idempotent) and waits for it to exit.
func (s *StepCA) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Log returns the CA's log so far.
func (s *StepCA) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "step-ca.log"))
	return string(b)
}

// Fingerprint is the root's SHA-256.
func (s *StepCA) Fingerprint() string {
	sum := sha256.Sum256(s.root.Raw)
	return hex.EncodeToString(sum[:])
}

// Root is the CA's root certificate.
func (s *StepCA) Root() *x509.Certificate { return s.root }

// Dir is the CA's working directory (ca.json, log, database).
func (s *StepCA) Dir() string { return s.dir }

// Token mints a one-time sign token as `step ca token SUBJECT --san ...`.
func (s *StepCA) Token(prov, subject string, sans ...string) string {
	s.t.Helper()
	p := s.provs[prov]
	if p == nil {
		s.t.Fatalf("no provisioner %q", prov)
	}
	jti, err := randutil.Hex(32)
	if err != nil {
		s.t.Fatal(err)
	}
	now := time.Now()
	if len(sans) == 0 {
		sans = []string{subject}
	}
	claims := struct {
		jose.Claims
		SANs []string `json:"sans"`
	}{
		Claims: jose.Claims{
			ID:        jti,
			Issuer:    p.name,
			Subject:   subject,
			Audience:  jose.Audience{s.URL + "/1.0/sign"},
			IssuedAt:  jose.NewNumericDate(now),
			NotBefore: jose.NewNumericDate(now),
			Expiry:    jose.NewNumericDate(now.Add(5 * time.Minute)),
		},
		SANs: sans,
	}
	so := new(jose.SignerOptions)
	so.WithType("JWT")
	so.WithHeader("kid", p.jwk.KeyID)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: p.jwk.Key}, so)
	if err != nil {
		s.t.Fatal(err)
	}
	tok, err := jose.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// PKI is a root and an intermediate valid from an hour ago (so that
// step-ca's x5cInsecure check, done at NotAfter-1m of the leaf, finds the
// issuers valid), made with crypto/x509 at run time.
type PKI struct {
	Root, Intermediate *x509.Certificate
	Signer             crypto.Signer // the intermediate's key
	RootSigner         crypto.Signer // the root's key (for cross-signing)
}

// CrossSign returns a cross-certificate of other's root (its subject and
// key) signed by p's root: a gateway trusting p's root may then accept
// other's root.
func (p *PKI) CrossSign(t testing.TB, other *PKI) *x509.Certificate {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               other.Root.Subject,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	der, err := x509.CreateCertificate(nil, tmpl, p.Root, other.Root.PublicKey, p.RootSigner)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// NewPKI makes a root and an intermediate.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	now := time.Now()
	mk := func(cn string, parent *x509.Certificate, parentKey crypto.Signer, key crypto.Signer, serial int64) *x509.Certificate {
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(serial),
			Subject:               pkix.Name{CommonName: cn},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(24 * time.Hour),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLen:            1,
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		} else {
			tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
		}
		der, err := x509.CreateCertificate(nil, tmpl, parent, key.Public(), parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	rk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ik, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	root := mk("wardgate test root", nil, nil, rk, 1)
	inter := mk("wardgate test intermediate", root, rk, ik, 2)
	return &PKI{Root: root, Intermediate: inter, Signer: ik, RootSigner: rk}
}
