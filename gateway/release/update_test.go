package release

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/veraison/go-cose"
)

const (
	goodBin = "#!/bin/sh\nexit 0\n"
	badBin  = "#!/bin/sh\necho 'listeners not up' >&2\nexit 1\n"
)

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// pemPin writes key's public key as PEM and pins it through ParsePin.
func pemPin(t *testing.T, k *ecdsa.PrivateKey) Pin {
	t.Helper()
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	p := filepath.Join(t.TempDir(), "release.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	pin, err := ParsePin(p)
	if err != nil {
		t.Fatal(err)
	}
	return pin
}

// updater returns an Updater over a fresh install directory whose running
// binary is goodBin at version v1.2.0; its health check runs the binary
// the link names (as the admin socket status would answer for a real
// agent).
func updater(t *testing.T, pins ...Pin) (*Updater, *[]string) {
	t.Helper()
	dir := t.TempDir()
	cur := filepath.Join(t.TempDir(), "wardgate-current")
	if err := os.WriteFile(cur, []byte(goodBin), 0o755); err != nil {
		t.Fatal(err)
	}
	var steps []string
	u := &Updater{Dir: filepath.Join(dir, "lib"), Pins: pins, OS: "linux", Arch: "arm64", Current: "v1.2.0", CurrentBinary: cur,
		Restart: func(context.Context) error { return nil },
		Health: func(ctx context.Context) error {
			out, err := exec.CommandContext(ctx, filepath.Join(dir, "lib", Link)).CombinedOutput()
			if err != nil {
				return errors.New(string(bytes.TrimSpace(out)))
			}
			return nil
		},
		HealthTimeout: 500 * time.Millisecond, HealthEvery: 50 * time.Millisecond,
		Report: func(s Step) { steps = append(steps, s.Name) },
	}
	return u, &steps
}

func linkTarget(t *testing.T, u *Updater) string {
	t.Helper()
	target, err := os.Readlink(filepath.Join(u.Dir, Link))
	if err != nil {
		t.Fatal(err)
	}
	return target
}

func sign(t *testing.T, k *ecdsa.PrivateKey, version, arch, bin string) []byte {
	t.Helper()
	b, err := Sign(k, Manifest{Version: version, OS: "linux", Arch: arch}, []byte(bin))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestApplyGoodBundle(t *testing.T) {
	k := newKey(t)
	u, steps := updater(t, pemPin(t, k))
	m, err := u.Apply(context.Background(), sign(t, k, "v1.3.0", "arm64", goodBin))
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != "v1.3.0" || linkTarget(t, u) != SlotB {
		t.Errorf("manifest %+v, link %s", m, linkTarget(t, u))
	}
	if want := []string{"verified", "installed", "restarted", "healthy"}; !slices.Equal(*steps, want) {
		t.Errorf("steps %v, want %v", *steps, want)
	}
	// The previous binary stays in slot A for a later rollback.
	if b, _ := os.ReadFile(filepath.Join(u.Dir, SlotA)); string(b) != goodBin {
		t.Error("slot A lost the previous binary")
	}
	// The next update goes to slot A.
	u.Current = "v1.3.0"
	if _, err := u.Apply(context.Background(), sign(t, k, "v1.4.0", "arm64", goodBin+"# 1.4\n")); err != nil || linkTarget(t, u) != SlotA {
		t.Fatalf("second update: %v, link %s", err, linkTarget(t, u))
	}
}

func TestApplyFingerprintPin(t *testing.T) {
	k := newKey(t)
	h, _ := SPKIHash(&k.PublicKey)
	pin, err := ParsePin("sha256:" + hex.EncodeToString(h[:]))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := updater(t, pin)
	if _, err := u.Apply(context.Background(), sign(t, k, "v1.3.0", "arm64", goodBin)); err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePin("sha256:abcd"); err == nil {
		t.Error("short fingerprint accepted")
	}
}

// retar rewrites one entry of a bundle.
func retar(t *testing.T, bundle []byte, name string, data []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(bytes.NewReader(bundle))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		v, _ := io.ReadAll(tr)
		if h.Name == name {
			v = data
			h.Size = int64(len(v))
		}
		tw.WriteHeader(h)
		tw.Write(v)
	}
	tw.Close()
	return out.Bytes()
}

func TestApplyRefusals(t *testing.T) {
	k, other := newKey(t), newKey(t)
	cases := []struct {
		name   string
		bundle func() []byte
		want   error
	}{
		{"tampered binary", func() []byte {
			return retar(t, sign(t, k, "v1.3.0", "arm64", goodBin), BundleBinary, []byte(goodBin+"evil\n"))
		}, ErrTampered},
		{"wrong key", func() []byte { return sign(t, other, "v1.3.0", "arm64", goodBin) }, ErrUntrusted},
		{"downgrade", func() []byte { return sign(t, k, "v1.1.9", "arm64", goodBin) }, ErrDowngrade},
		{"same version", func() []byte { return sign(t, k, "v1.2.0", "arm64", goodBin) }, ErrDowngrade},
		{"wrong arch", func() []byte { return sign(t, k, "v1.3.0", "arm/v7", goodBin) }, ErrWrongArch},
		{"not a bundle", func() []byte { return []byte("hello") }, ErrBadBundle},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, steps := updater(t, pemPin(t, k))
			_, err := u.Apply(context.Background(), tc.bundle())
			if !errors.Is(err, tc.want) {
				t.Fatalf("Apply = %v, want %v", err, tc.want)
			}
			if _, err := os.Lstat(filepath.Join(u.Dir, Link)); !os.IsNotExist(err) {
				t.Error("a refused bundle changed the install directory")
			}
			if !slices.Equal(*steps, []string{"failed"}) {
				t.Errorf("steps %v", *steps)
			}
		})
	}
	u, _ := updater(t)
	if _, err := u.Apply(context.Background(), sign(t, k, "v1.3.0", "arm64", goodBin)); !errors.Is(err, ErrNoReleasKey) {
		t.Errorf("no pins: %v", err)
	}
}

func TestApplyUnhealthyRollsBack(t *testing.T) {
	k := newKey(t)
	u, steps := updater(t, pemPin(t, k))
	start := time.Now()
	_, err := u.Apply(context.Background(), sign(t, k, "v1.3.0", "arm64", badBin))
	if !errors.Is(err, ErrRolledBack) {
		t.Fatalf("Apply = %v, want ErrRolledBack", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("rollback took %s, want within the health timeout", took)
	}
	if linkTarget(t, u) != SlotA {
		t.Errorf("link %s after rollback, want %s", linkTarget(t, u), SlotA)
	}
	if want := []string{"verified", "installed", "restarted", "unhealthy", "rolled_back"}; !slices.Equal(*steps, want) {
		t.Errorf("steps %v, want %v", *steps, want)
	}
	if err := u.Health(context.Background()); err != nil {
		t.Errorf("the restored binary is not healthy: %v", err)
	}
}

func FuzzVerifyBundle(f *testing.F) {
	k := newKey(f)
	good, _ := Sign(k, Manifest{Version: "v1.3.0", OS: "linux", Arch: "arm64"}, []byte(goodBin))
	f.Add(good)
	f.Add([]byte("not a tar"))
	h, _ := SPKIHash(&k.PublicKey)
	pins := []Pin{{SPKI: h}}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBundle(data)
		if err != nil {
			return
		}
		b.Verify(pins, "linux", "arm64", "v1.0.0")
	})
}

func TestJournal(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, JournalFile)
	if got, err := DrainJournal(p); got != nil || err != nil {
		t.Fatalf("no journal: %v %v", got, err)
	}
	for _, s := range []string{"verified", "installed"} {
		if err := AppendJournal(p, JournalEntry{Time: time.Now(), Step: s}); err != nil {
			t.Fatal(err)
		}
	}
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("not json\n")
	f.Close()
	got, err := DrainJournal(p)
	if err != nil || len(got) != 2 || got[1].Step != "installed" {
		t.Fatalf("journal %+v %v", got, err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Error("journal not removed")
	}
}

// TestForgedKeyID: a manifest that names the pinned key's id but is signed
// by another key is refused.
func TestForgedKeyID(t *testing.T) {
	k, other := newKey(t), newKey(t)
	good := sign(t, k, "v1.3.0", "arm64", goodBin)
	b, err := ParseBundle(good)
	if err != nil {
		t.Fatal(err)
	}
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(b.Manifest); err != nil {
		t.Fatal(err)
	}
	s, _ := cose.NewSigner(cose.AlgorithmES256, other)
	forged := cose.NewSign1Message()
	forged.Headers.Protected = msg.Headers.Protected // the pinned key's kid
	forged.Payload = msg.Payload
	if err := forged.Sign(rand.Reader, nil, s); err != nil {
		t.Fatal(err)
	}
	raw, _ := forged.MarshalCBOR()
	u, _ := updater(t, pemPin(t, k))
	if _, err := u.Apply(context.Background(), retar(t, good, BundleManifest, raw)); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("forged key id: %v", err)
	}
}
