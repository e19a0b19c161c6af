package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	var ex bytes.Buffer
	if code := run(context.Background(), &ex, &bytes.Buffer{}, []string{"config", "example"}); code != exitOK {
		t.Fatalf("config example: %d", code)
	}
	if err := os.WriteFile(good, ex.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\ncentral: {id: X}\nfoo: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missingTLS := filepath.Join(dir, "tls.yaml")
	if err := os.WriteFile(missingTLS, bytes.Replace(ex.Bytes(), []byte("/etc/wardgate-central/central.crt"), []byte(filepath.Join(dir, "nope.crt")), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args        []string
		code        int
		out, errOut string
	}{
		{nil, exitUsage, "", "usage:"},
		{[]string{"help"}, exitOK, "usage:", ""},
		{[]string{"version"}, exitOK, "wardgate-central dev", ""},
		{[]string{"frob"}, exitUsage, "", `unknown command "frob"`},
		{[]string{"config", "check", good}, exitOK, "ok", ""},
		{[]string{"config", "check", bad}, exitUsage, "", "bad.yaml:2: central.id"},
		{[]string{"config", "check", filepath.Join(dir, "none.yaml")}, exitUsage, "", "cannot read"},
		{[]string{"config"}, exitUsage, "", "usage: wardgate-central config"},
		{[]string{"run"}, exitUsage, "", "--config FILE is required"},
		{[]string{"run", "--config", bad}, exitUsage, "", "unknown key"},
		{[]string{"run", "--config", missingTLS}, exitFailure, "", "tls.cert"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		code := run(context.Background(), &out, &errOut, c.args)
		if code != c.code || !strings.Contains(out.String(), c.out) || !strings.Contains(errOut.String(), c.errOut) {
			t.Errorf("%v: code %d, stdout %q, stderr %q; want %d, %q, %q", c.args, code, out.String(), errOut.String(), c.code, c.out, c.errOut)
		}
	}
}
