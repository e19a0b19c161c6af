package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stepWait bounds each real-time wait on step-ca (leaves live 12 s).
const stepWait = 30 * time.Second

// handshakeSerial makes a TLS handshake against a server presenting m's
// current certificate and returns the serial it served.
func handshakeSerial(t *testing.T, m *Manager) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: m.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake with the served certificate: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

// TestStepCALifecycle runs the gateway identity against the real step-ca:
// enroll, renew, re-key, CA down (backoff, old certificate served), CA back,
// expiry while down and recovery with an x5cInsecure token.
func TestStepCALifecycle(t *testing.T) {
	t.Parallel()
	ca := newStepCA(t, stepCAConfig{DefaultDur: 12 * time.Second, MinDur: 5 * time.Second, Provisioners: map[string]bool{"gateways": true}})
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "identity")
	uri := GatewayURI(testTD, "gw-01")
	tok := ca.Token("gateways", "gw-01", "gw-01", "10.20.0.2", uri)

	// Enroll: names from the token, files private.
	leaf, err := Enroll(ctx, EnrollOptions{CAURL: ca.URL, RootFingerprint: ca.Fingerprint(), Token: tok, Dir: dir})
	if err != nil {
		t.Fatalf("enroll: %v\n%s", err, ca.Log())
	}
	if leaf.Subject.CommonName != "gw-01" || len(leaf.URIs) != 1 || leaf.URIs[0].String() != uri ||
		len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != "10.20.0.2" {
		t.Fatalf("enrolled names: cn=%s uris=%v ips=%v", leaf.Subject.CommonName, leaf.URIs, leaf.IPAddresses)
	}
	for name, mode := range map[string]os.FileMode{"": 0o700, KeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%q: %v %v", name, fi.Mode(), err)
		}
	}
	// A second enrollment over a valid identity is refused.
	if _, err := Enroll(ctx, EnrollOptions{CAURL: ca.URL, RootFingerprint: ca.Fingerprint(), Token: ca.Token("gateways", "gw-01"), Dir: dir}); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Fatalf("re-enroll over valid identity: %v", err)
	}

	store := NewStore(dir)
	roots, err := store.LoadRoots()
	if err != nil {
		t.Fatal(err)
	}
	bundle := NewBundle(roots...)
	client, err := NewStepClient(StepClientOptions{URL: ca.URL, Bundle: bundle, Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenGateway(GatewayOptions{CA: "step", CAURL: ca.URL, StateDir: t.TempDir()}); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("OpenGateway without identity: %v", err)
	}
	ev := newEventLog()
	m, err := stepManager(dir, ca.URL, ManagerOptions{
		OnEvent: ev.add, RekeyEvery: 2,
		RetryMin: 200 * time.Millisecond, RetryMax: time.Second, MaxSleep: time.Second, AttemptTimeout: 3 * time.Second,
		NotBefore: time.Now().Add(-time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	k0 := m.Signer()

	// Renewal over mTLS keeps the key; the second is a re-key.
	ev.wait(t, EventRenewed, stepWait)
	if !keyutilEqual(m.Signer(), k0) {
		t.Fatal("renewal changed the key")
	}
	ev.wait(t, EventRekeyed, stepWait)
	if keyutilEqual(m.Signer(), k0) {
		t.Fatal("re-key kept the key")
	}
	diskKey, diskChain, err := store.Load()
	if err != nil || !keyutilEqual(diskKey, m.Signer()) || !diskChain[0].Equal(m.Chain()[0]) {
		t.Fatalf("store not updated after re-key: %v", err)
	}

	// CA down: failures with backoff, the old certificate kept and served.
	ca.Stop()
	held := m.Current()
	for i := 1; i <= 2; i++ {
		e := ev.wait(t, EventRenewalFailed, stepWait)
		if !errors.Is(e.Err, ErrCAUnreachable) {
			t.Fatalf("failure cause: %v", e.Err)
		}
	}
	if m.Current() != held || handshakeSerial(t, m) != held.Leaf.SerialNumber.Text(16) {
		t.Fatal("old certificate not kept while the CA is down")
	}
	if st := m.Status(); st.Failures < 2 || st.LastError == "" {
		t.Fatalf("status %+v", st)
	}

	// CA back: recovery.
	ca.Start()
	e := ev.wait(t, EventRenewed, stepWait)
	if handshakeSerial(t, m) != e.Serial {
		t.Fatal("new certificate not served")
	}

	// Expired while the CA is down: recovered with an x5cInsecure token.
	ca.Stop()
	ev.wait(t, EventExpired, stepWait)
	if !m.Status().Expired {
		t.Fatal("status not expired")
	}
	ca.Start()
	e = ev.wait(t, EventRenewed, stepWait)
	if st := m.Status(); st.Expired || st.ReenrollNeeded || !e.NotAfter.After(time.Now()) {
		t.Fatalf("after x5cInsecure recovery: %+v", st)
	}
}

// TestStepCAErrors covers the enrollment failures and renewal after expiry
// when the CA does not allow it.
func TestStepCAErrors(t *testing.T) {
	t.Parallel()
	ca := newStepCA(t, stepCAConfig{DefaultDur: 12 * time.Second, MinDur: 5 * time.Second,
		Provisioners: map[string]bool{"gateways": true, "strict": false}, ExtraRoot: true})
	ctx := context.Background()

	t.Run("wrong fingerprint", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "identity")
		other := newTestPKI(t)
		for _, fp := range []string{Fingerprint(other.Root), strings.Repeat("ab", 32)} {
			_, err := Enroll(ctx, EnrollOptions{CAURL: ca.URL, RootFingerprint: fp, Token: ca.Token("gateways", "gw-fp"), Dir: dir})
			if !errors.Is(err, ErrFingerprintMismatch) || !strings.Contains(err.Error(), "root_fingerprint") {
				t.Fatalf("err %v", err)
			}
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("identity written despite a wrong fingerprint")
		}
		if _, err := Enroll(ctx, EnrollOptions{CAURL: ca.URL, RootFingerprint: "not-hex", Token: ca.Token("gateways", "gw-fp"), Dir: dir}); err == nil || !strings.Contains(err.Error(), "64 hex") {
			t.Fatalf("bad fingerprint syntax: %v", err)
		}
	})

	t.Run("reused token", func(t *testing.T) {
		tok := ca.Token("gateways", "gw-reuse")
		dir := t.TempDir()
		if _, err := Enroll(ctx, EnrollOptions{RootFingerprint: ca.Fingerprint(), Token: tok, Dir: dir}); err != nil {
			t.Fatal(err)
		}
		// Both roots of the rollover are stored and trusted.
		if roots, err := NewStore(dir).LoadRoots(); err != nil || len(roots) != 2 {
			t.Fatalf("stored roots: %d %v", len(roots), err)
		}
		_, err := Enroll(ctx, EnrollOptions{RootFingerprint: ca.Fingerprint(), Token: tok, Dir: t.TempDir()})
		if !errors.Is(err, ErrTokenRefused) || !strings.Contains(err.Error(), "already used") {
			t.Fatalf("reused token: %v", err)
		}
		if !strings.Contains(ca.Log(), "token already used") {
			t.Fatal("the CA did not see a reused token")
		}
	})

	t.Run("lifetime above the maximum", func(t *testing.T) {
		_, err := Enroll(ctx, EnrollOptions{RootFingerprint: ca.Fingerprint(), Token: ca.Token("gateways", "gw-long"), Dir: t.TempDir(), Lifetime: 48 * time.Hour})
		if !errors.Is(err, ErrCARefused) || !strings.Contains(err.Error(), "identity.lifetime") {
			t.Fatalf("err %v", err)
		}
		t.Log(err)
	})

	t.Run("bad tokens", func(t *testing.T) {
		for _, tok := range []string{"", "not-a-jwt", "a.b.c"} {
			if _, err := Enroll(ctx, EnrollOptions{CAURL: ca.URL, RootFingerprint: ca.Fingerprint(), Token: tok, Dir: t.TempDir()}); !errors.Is(err, ErrTokenInvalid) {
				t.Fatalf("token %q: %v", tok, err)
			}
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		addr := freePort(t)
		_, err := Enroll(ctx, EnrollOptions{CAURL: "https://" + addr, RootFingerprint: ca.Fingerprint(), Token: ca.Token("gateways", "gw-x"), Dir: t.TempDir(), Timeout: 2 * time.Second})
		if !errors.Is(err, ErrCAUnreachable) || !strings.Contains(err.Error(), "ca_url") {
			t.Fatalf("err %v", err)
		}
	})

	t.Run("renewal after expiry not allowed", func(t *testing.T) {
		dir := t.TempDir()
		leaf, err := Enroll(ctx, EnrollOptions{RootFingerprint: ca.Fingerprint(), Token: ca.Token("strict", "gw-strict", "gw-strict", GatewayURI(testTD, "gw-strict")), Dir: dir, Lifetime: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(leaf.NotAfter.Add(1100 * time.Millisecond))) // real time must pass on the real CA
		store := NewStore(dir)
		roots, _ := store.LoadRoots()
		client, _ := NewStepClient(StepClientOptions{URL: ca.URL, Bundle: NewBundle(roots...), Timeout: 3 * time.Second})
		key, chain, err := store.Load()
		if err != nil {
			t.Fatal(err)
		}
		tc, _ := TLSCertificate(key, chain)
		if _, err := client.RenewExpired(ctx, tc); !errors.Is(err, ErrRenewAfterExpiryNotAllowed) {
			t.Fatalf("RenewExpired: %v", err)
		}
		ev := newEventLog()
		m, err := NewManager(ManagerOptions{CA: client, Store: store, OnEvent: ev.add, RetryMin: time.Second, RetryMax: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- m.Run(runCtx) }()
		defer func() { cancel(); <-done }()
		ev.wait(t, EventExpired, stepWait)
		e := ev.wait(t, EventReenrollNeeded, stepWait)
		if !strings.Contains(e.Err.Error(), "re-enrollment needed") {
			t.Fatalf("message %v", e.Err)
		}
		if st := m.Status(); !st.ReenrollNeeded {
			t.Fatalf("status %+v", st)
		}
		// Re-enrollment over the expired identity is allowed.
		if _, err := Enroll(ctx, EnrollOptions{RootFingerprint: ca.Fingerprint(), Token: ca.Token("strict", "gw-strict"), Dir: dir}); err != nil {
			t.Fatalf("re-enroll: %v", err)
		}
	})
}
