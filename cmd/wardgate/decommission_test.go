package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecommissionCommand(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "wardgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(runConfig(t, dir, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	// Not confirmed: nothing happens.
	code, _, errs := runCLI(t, "wrong-id\n", "decommission", "--config", cfgPath)
	if code != exitUsage || !strings.Contains(errs, "not confirmed") {
		t.Fatalf("unconfirmed: %d %s", code, errs)
	}
	// The broker does not answer: stops before revoking.
	var out string
	code, out, errs = runCLI(t, "gw-e2e\n", "decommission", "--config", cfgPath, "--wait", "300ms")
	if code != exitUsage || !strings.Contains(errs, "nothing was revoked or wiped") || !strings.Contains(out, "NOT delivered") {
		t.Fatalf("undelivered: %d\n%s\n%s", code, out, errs)
	}
	// Forced, with the development CA: nothing to revoke; state wiped,
	// undelivered outbox kept.
	code, out, errs = runCLI(t, "", "decommission", "--config", cfgPath, "--wait", "300ms", "--yes", "--force")
	if code != exitOK || !strings.Contains(out, "no CA to revoke at") || !strings.Contains(out, "kept  "+filepath.Join(dir, "state", "telemetry.db")) ||
		!strings.Contains(out, "gateway gw-e2e decommissioned") {
		t.Fatalf("forced: %d\n%s\n%s", code, out, errs)
	}
}
