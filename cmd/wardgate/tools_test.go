package main

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/gateway/access/recording"
	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/envelope"
)

func TestReplay(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.cbor")
	start := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	w, err := recording.Create(path, recording.Header{Session: "ABC234-1", Grant: "ABC234", Vendor: "spiffe://hospital.example/vendor/acme-medical/jane", Device: "pump-07", Port: 23, Start: start}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range []string{"LOG\r\n", "E-104 occlusion cleared\r\n", "QUIT\r\n"} {
		dir := recording.ToDevice
		if i == 1 {
			dir = recording.FromDevice
		}
		if err := w.Write(dir, start.Add(time.Duration(i)*time.Second), []byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(start.Add(5*time.Second), "vendor closed"); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "", "replay", path)
	if code != exitOK || !strings.Contains(out, "pump-07") || !strings.Contains(out, "occlusion") {
		t.Fatalf("replay: exit %d\n%s%s", code, out, errs)
	}
	// One altered byte: the replay names the first bad frame and fails.
	data, _ := os.ReadFile(path)
	i := strings.Index(string(data), "occlusion")
	data[i] ^= 0x20
	bad := filepath.Join(dir, "bad.cbor")
	if err := os.WriteFile(bad, data, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCLI(t, "", "replay", bad)
	if code != exitFailure || !strings.Contains(errs, "frame 2") {
		t.Errorf("altered recording: exit %d, %q", code, errs)
	}
	if code, _, _ := runCLI(t, "", "replay", filepath.Join(dir, "missing")); code != exitUsage {
		t.Errorf("missing file: exit %d", code)
	}
}

func TestSignCommand(t *testing.T) {
	dir := t.TempDir()
	pki := certstest.New(t, "hospital.example")
	cert, key := pki.WritePEM(t, dir, "alice", pki.Approver(t, "security", "alice"))
	out := filepath.Join(dir, "cmd.cose")
	code, _, errs := runCLI(t, "", "sign-command", "--cert", cert, "--key", key, "--gateway", "gw-icu3-12", "--out", out, "approve", "ABC234")
	if code != exitOK {
		t.Fatalf("sign-command: exit %d: %s", code, errs)
	}
	msg, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(filepath.Join(dir, "nonces.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	nonces, err := command.NewNonceStore(db)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(pki.CA.Root())
	verify := envelope.RootsVerifier(roots)
	c, err := command.Verify(msg, "gw-icu3-12", time.Now(), func(chain []*x509.Certificate, now time.Time) (string, error) {
		return verify(chain, now)
	}, nonces)
	if err != nil {
		t.Fatalf("the gateway would refuse it: %v", err)
	}
	if c.Name != "approve" || len(c.Args) != 1 || c.Args[0] != "ABC234" || !strings.Contains(c.Approver, "/approver/security/alice") {
		t.Errorf("command %+v", c)
	}
	// Bad input: unknown command, missing key, ttl too long.
	for _, args := range [][]string{
		{"sign-command", "--cert", cert, "--key", key, "--gateway", "gw-1", "reboot"},
		{"sign-command", "--cert", cert, "--gateway", "gw-1", "approve", "X"},
		{"sign-command", "--cert", cert, "--key", key, "--gateway", "gw-1", "--ttl", "1h", "approve", "X"},
	} {
		if code, _, _ := runCLI(t, "", args...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
