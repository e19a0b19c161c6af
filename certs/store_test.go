package certs

import (
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.step.sm/crypto/keyutil"

	"github.com/wardgate/wardgate/internal/atomicfile"
)

func TestStoreRoundTripAndModes(t *testing.T) {
	ca := newDevCA(t, clockwork.NewRealClock(), time.Hour)
	tc, err := ca.Issue(IssueOptions{URI: GatewayURI(testTD, "gw-01"), DNSNames: []string{"gw-01"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "identity")
	s := NewStore(dir)
	if _, _, err := s.Load(); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("empty store: %v", err)
	}
	if _, err := s.LoadRoots(); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("empty roots: %v", err)
	}
	key := tc.PrivateKey.(crypto.Signer)
	chain := leafChain(t, tc)
	if err := s.Save(key, chain); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveRoots(ca.Bundle().Roots()); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{"": 0o700, KeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%q mode %04o, want %04o", name, fi.Mode().Perm(), want)
		}
	}
	k2, c2, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !keyMatches(k2, c2[0]) || len(c2) != 2 || !c2[0].Equal(chain[0]) {
		t.Fatal("round trip mismatch")
	}
	if roots, err := s.LoadRoots(); err != nil || !roots[0].Equal(ca.Root()) {
		t.Fatalf("roots: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") || strings.HasSuffix(e.Name(), ".pending") {
			t.Errorf("leftover %s", e.Name())
		}
	}
	// Saving a renewal (same key) and a re-key (new key).
	renewed, _ := ca.Issue(IssueOptions{URI: GatewayURI(testTD, "gw-01"), Key: key})
	if err := s.Save(key, leafChain(t, renewed)); err != nil {
		t.Fatal(err)
	}
	rekeyed, _ := ca.Issue(IssueOptions{URI: GatewayURI(testTD, "gw-01")})
	if err := s.Save(rekeyed.PrivateKey.(crypto.Signer), leafChain(t, rekeyed)); err != nil {
		t.Fatal(err)
	}
	k3, c3, err := s.Load()
	if err != nil || !keyMatches(k3, c3[0]) || !keyutilEqual(k3, rekeyed.PrivateKey.(crypto.Signer)) {
		t.Fatalf("after re-key: %v", err)
	}
	// A mismatched pair is refused by Save.
	if err := s.Save(key, leafChain(t, rekeyed)); err == nil {
		t.Fatal("saved a key with another key's certificate")
	}
}

func keyutilEqual(a, b crypto.Signer) bool { return keyutil.Equal(a.Public(), b.Public()) }

func TestStoreRefusesReadableKey(t *testing.T) {
	ca := newDevCA(t, clockwork.NewRealClock(), time.Hour)
	tc, _ := ca.Issue(IssueOptions{URI: GatewayURI(testTD, "gw-01")})
	s := NewStore(t.TempDir())
	if err := s.Save(tc.PrivateKey.(crypto.Signer), leafChain(t, tc)); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644, 0o660} {
		if err := os.Chmod(s.Path(KeyFile), mode); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.Load()
		if !errors.Is(err, ErrKeyPermissions) {
			t.Fatalf("mode %04o: %v", mode, err)
		}
		if want := "chmod 600 " + s.Path(KeyFile); !strings.Contains(err.Error(), want) {
			t.Fatalf("message %q lacks %q", err, want)
		}
	}
	if err := os.Chmod(s.Path(KeyFile), 0o400); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(); err != nil {
		t.Fatalf("0400 refused: %v", err)
	}
}

// TestStoreRecoversInterruptedRekey: the certificate was replaced but the
// new key is still pending (crash between the renames).
func TestStoreRecoversInterruptedRekey(t *testing.T) {
	ca := newDevCA(t, clockwork.NewRealClock(), time.Hour)
	old, _ := ca.Issue(IssueOptions{URI: GatewayURI(testTD, "gw-01")})
	s := NewStore(t.TempDir())
	if err := s.Save(old.PrivateKey.(crypto.Signer), leafChain(t, old)); err != nil {
		t.Fatal(err)
	}
	nw, _ := ca.Issue(IssueOptions{URI: GatewayURI(testTD, "gw-01")})
	keyPEM, _ := EncodeKeyPEM(nw.PrivateKey.(crypto.Signer))
	if err := atomicfile.Write(s.Path(pendingKeyFile), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(s.Path(CertFile), EncodeCertsPEM(leafChain(t, nw)), 0o644); err != nil {
		t.Fatal(err)
	}
	k, c, err := s.Load()
	if err != nil || !keyMatches(k, c[0]) || !c[0].Equal(leafChain(t, nw)[0]) {
		t.Fatalf("recovery: %v", err)
	}
	// A stale pending key (crash before the certificate was written) is dropped.
	if err := atomicfile.Write(s.Path(pendingKeyFile), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(s.Path(CertFile), EncodeCertsPEM(leafChain(t, old)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(s.Path(KeyFile), mustKeyPEM(t, old.PrivateKey.(crypto.Signer)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Path(pendingKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale pending key kept: %v", err)
	}
}

func mustKeyPEM(t *testing.T, k crypto.Signer) []byte {
	b, err := EncodeKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStoreLoadErrors(t *testing.T) {
	s := NewStore(t.TempDir())
	if err := os.WriteFile(s.Path(CertFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(); err == nil || errors.Is(err, ErrNoIdentity) {
		t.Fatalf("garbage cert: %v", err)
	}
	ca := newDevCA(t, clockwork.NewRealClock(), time.Hour)
	a, _ := ca.Issue(IssueOptions{URI: GatewayURI(testTD, "a")})
	b, _ := ca.Issue(IssueOptions{URI: GatewayURI(testTD, "b")})
	_ = atomicfile.Write(s.Path(CertFile), EncodeCertsPEM(leafChain(t, a)), 0o644)
	if _, _, err := s.Load(); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("missing key: %v", err)
	}
	_ = atomicfile.Write(s.Path(KeyFile), mustKeyPEM(t, b.PrivateKey.(crypto.Signer)), 0o600)
	if _, _, err := s.Load(); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatch: %v", err)
	}
}

func TestStoreMakesDirPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "identity")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ca := newDevCA(t, clockwork.NewRealClock(), time.Hour)
	if err := NewStore(dir).SaveRoots(ca.Bundle().Roots()); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %04o", fi.Mode().Perm())
	}
}
