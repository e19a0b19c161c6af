package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/config"
)

// TestSocketFromBrokenConfig: the admin commands find the socket in a
// configuration with a typo in an unrelated section and fail on reaching the
// (absent) agent, not on the configuration.
func TestSocketFromBrokenConfig(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	broken := strings.NewReplacer(
		"admin_socket: /run/wardgate/admin.sock", "admin_socket: "+sock,
		"  driver: periph", "  drivr: periph", // typo in hal
		"outbox_max: 256MiB", "outbox_max: lots", // invalid mqtt value
	).Replace(config.Example)
	if !strings.Contains(broken, sock) {
		t.Fatal("example has no admin_socket to replace")
	}
	cfgPath := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(cfgPath, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(cfgPath, time.Now()); err == nil {
		t.Fatal("broken.yaml should not pass config.Load")
	}
	for _, args := range [][]string{
		{"status", "--config", cfgPath},
		{"grant", "list", "--config", cfgPath},
		{"lock", "list", "--config", cfgPath},
		{"hal", "show", "--config", cfgPath},
	} {
		t.Run(args[0], func(t *testing.T) {
			code, _, errs := runCLI(t, "", args...)
			if code != exitFailure {
				t.Errorf("exit %d, want 1 (agent not reachable)", code)
			}
			for _, want := range []string{"cannot reach the agent", sock, "--socket PATH"} {
				if !strings.Contains(errs, want) {
					t.Errorf("stderr %q lacks %q", errs, want)
				}
			}
			if strings.Contains(errs, "drivr") || strings.Contains(errs, "outbox_max") {
				t.Errorf("stderr is about the configuration: %q", errs)
			}
		})
	}
}

// TestSocketConfigUnreadable: a file that is not YAML gives a clear
// configuration error that names --socket PATH.
func TestSocketConfigUnreadable(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\ngateway: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"not yaml", bad, "bad.yaml:2: not valid YAML"},
		{"missing", filepath.Join(dir, "nope.yaml"), "nope.yaml: no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCLI(t, "", "status", "--config", tc.path)
			if code != exitUsage {
				t.Errorf("exit %d, want 2", code)
			}
			for _, want := range []string{tc.want, "--socket PATH"} {
				if !strings.Contains(errs, want) {
					t.Errorf("stderr %q lacks %q", errs, want)
				}
			}
		})
	}
}

// TestSocketFlagWins: --socket is used as given, whatever --config says.
func TestSocketFlagWins(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "other.sock")
	code, _, errs := runCLI(t, "", "status", "--config", "/nonexistent.yaml", "--socket", sock)
	if code != exitFailure || !strings.Contains(errs, sock) {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
}
