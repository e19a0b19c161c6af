package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/certs/certstest"
)

// TestCommandCLIUsage: what the command and lockset subcommands refuse
// before they sign or reach central, each with a message that says what
// to fix (exit 2).
func TestCommandCLIUsage(t *testing.T) {
	dir := t.TempDir()
	pki := certstest.NewMini(t)
	annCert, annKey := pki.Approver(t, "security", "ann").WriteFiles(t, dir, "ann")
	gwCert, gwKey := pki.Gateway(t, "gw-1").WriteFiles(t, dir, "gw")
	root := pki.WriteRoot(t, dir)
	garbage := filepath.Join(dir, "garbage.cbor")
	if err := os.WriteFile(garbage, []byte("not a lock set"), 0o600); err != nil {
		t.Fatal(err)
	}
	id := []string{"--cert", annCert, "--key", annKey}
	api := append([]string{"--api", "https://127.0.0.1:1", "--ca", root}, id...)
	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"no command", []string{"command"}, "usage:"},
		{"approve to a site", append(append([]string{"command"}, api...), "--site", "a", "approve", "G-1"), "exactly one gateway"},
		{"unlock to the fleet", append(append([]string{"command"}, api...), "--fleet", "unlock", "x"), "exactly one gateway"},
		{"fleet lock", append(append([]string{"command"}, api...), "--fleet", "lock", "x"), "lock set"},
		{"no addressee", append(append([]string{"command"}, api...), "lock", "x"), "exactly one addressee"},
		{"unlock too long", append(append([]string{"command"}, api...), "--gateway", "gw-1", "--valid", "1h", "unlock", "x"), "at most 5m0s"},
		{"lock for 8 days", append(append([]string{"command"}, api...), "--gateway", "gw-1", "--valid", "8d", "lock", "x"), "at most 168h0m0s"},
		{"bad duration", append(append([]string{"command"}, api...), "--gateway", "gw-1", "--valid", "soon", "lock", "x"), "--valid"},
		{"reason on deny", append(append([]string{"command"}, api...), "--gateway", "gw-1", "--reason", "r", "deny", "G-1"), "--note"},
		{"unknown command", append(append([]string{"command"}, api...), "--gateway", "gw-1", "reboot"), "unknown command"},
		{"no key", []string{"command", "--api", "https://127.0.0.1:1", "--gateway", "gw-1", "deny", "G-1"}, "--cert and --key"},
		{"a gateway's certificate", []string{"command", "--api", "https://127.0.0.1:1", "--ca", root, "--cert", gwCert, "--key", gwKey, "--gateway", "gw-1", "deny", "G-1"}, "not an approver"},
		{"http api", append(append([]string{"command", "--api", "http://central:8444", "--ca", root}, id...), "--gateway", "gw-1", "deny", "G-1"), "https://HOST:PORT"},
		{"no ca", append(append([]string{"command", "--api", "https://127.0.0.1:1"}, id...), "--gateway", "gw-1", "deny", "G-1"), "--ca"},
		{"show without id", append([]string{"command", "show"}, api...), "usage:"},
		{"lockset nothing", []string{"lockset"}, "usage:"},
		{"lockset two scopes", append(append([]string{"lockset", "sign"}, id...), "--fleet", "--site", "a", "--out", "x"), "exactly one of"},
		{"lockset no out", append(append([]string{"lockset", "sign"}, id...), "--site", "a"), "--out FILE"},
		{"fleet set with one approver", append(append([]string{"lockset", "sign"}, id...), "--fleet", "--version", "1", "--lock", "x", "--out", filepath.Join(dir, "o")), "two distinct approvers"},
		{"lockset no version, no api", append(append([]string{"lockset", "sign"}, id...), "--site", "a", "--lock", "x", "--out", filepath.Join(dir, "o")), "--version N"},
		{"cosign garbage", append(append([]string{"lockset", "cosign"}, id...), "--in", garbage, "--out", filepath.Join(dir, "o")), "malformed lock set"},
		{"submit without in", append([]string{"lockset", "submit"}, api...), "--in FILE"},
		{"lockset unknown verb", []string{"lockset", "burn"}, "usage:"},
	}
	for _, c := range cases {
		code, _, errs := cli(c.args...)
		if code != exitUsage || !strings.Contains(errs, c.msg) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", c.name, code, errs, c.msg)
		}
	}
	// A site set signed by one approver needs no central to sign.
	out := filepath.Join(dir, "site.cbor")
	code, stdout, errs := cli(append(append([]string{"lockset", "sign"}, id...), "--site", "a", "--version", "4", "--lock", "spiffe://"+td+"/vendor/acme/*", "--until", "2d", "--out", out)...)
	if code != 0 || !strings.Contains(stdout, "site/a version 4 (1 locks") {
		t.Fatalf("site set: %d %s %s", code, stdout, errs)
	}
	// The signer cannot cosign her own set; someone it does not name
	// cannot either.
	code, _, errs = cli("lockset", "cosign", "--cert", annCert, "--key", annKey, "--in", out, "--out", filepath.Join(dir, "x"))
	if code != exitUsage || !strings.Contains(errs, "signed it already") {
		t.Fatalf("cosign by the signer: %d %s", code, errs)
	}
	bobCert, bobKey := pki.Approver(t, "security", "bob").WriteFiles(t, dir, "bob")
	code, _, errs = cli("lockset", "cosign", "--cert", bobCert, "--key", bobKey, "--in", out, "--out", filepath.Join(dir, "x"))
	if code != exitUsage || !strings.Contains(errs, "not you") {
		t.Fatalf("cosign by someone not named: %d %s", code, errs)
	}
}
