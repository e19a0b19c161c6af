package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/gateway/release"
)

// TestUpdateApplyRefusals drives `wardgate update apply` with bundles that
// must change nothing: unsigned by a pinned key, for another architecture,
// and with no release key configured. Each step is journaled for the agent.
func TestUpdateApplyRefusals(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pub := filepath.Join(dir, "release.pem")
	os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	cfgText := runConfig(t, dir, "") + "update: {release_keys: [" + pub + "], install_dir: " + dir + "/lib}\n"
	cfgPath := filepath.Join(dir, "wardgate.yaml")
	os.WriteFile(cfgPath, []byte(cfgText), 0o600)
	os.MkdirAll(filepath.Join(dir, "state"), 0o700)
	goos, arch := release.Platform()
	write := func(name string, k *ecdsa.PrivateKey, arch string) string {
		b, err := release.Sign(k, release.Manifest{Version: "v99.0.0", OS: goos, Arch: arch}, []byte("#!/bin/sh\n"))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	for _, tc := range []struct{ name, bundle, want string }{
		{"wrong key", write("other.bundle", other, arch), "not signed by a pinned release key"},
		{"wrong arch", write("arch.bundle", key, "riscv64"), "another architecture"},
	} {
		code, _, errs := runCLI(t, "", "update", "apply", tc.bundle, "--config", cfgPath, "--restart", "none")
		if code != exitUsage || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: exit %d %s", tc.name, code, errs)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "lib", "wardgate")); !os.IsNotExist(err) {
		t.Error("a refused bundle touched the install directory")
	}
	entries, err := release.DrainJournal(filepath.Join(dir, "state", release.JournalFile))
	if err != nil || len(entries) != 2 || entries[0].Step != "failed" {
		t.Errorf("journal %+v %v", entries, err)
	}
	// No release key configured: refused.
	os.WriteFile(cfgPath, []byte(runConfig(t, dir, "")), 0o600)
	if code, _, errs := runCLI(t, "", "update", "apply", write("good.bundle", key, arch), "--config", cfgPath); code != exitUsage || !strings.Contains(errs, "release_keys") {
		t.Errorf("no release keys: %d %s", code, errs)
	}
	if code, _, _ := runCLI(t, "", "update"); code != exitUsage {
		t.Errorf("update without apply: %d", code)
	}
}
