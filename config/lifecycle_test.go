package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// lkgConfig writes a valid configuration whose state_dir is under dir and
// loads it.
func lkgConfig(t *testing.T, dir string) *Config {
	t.Helper()
	path := filepath.Join(dir, "wardgate.yaml")
	if err := os.WriteFile(path, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, now)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Gateway.StateDir = filepath.Join(dir, "state")
	return cfg
}

func TestLastGoodRoundTrip(t *testing.T) {
	dir := t.TempDir()
	cfg := lkgConfig(t, dir)
	state := cfg.Gateway.StateDir
	if _, err := LoadLastGood(state, now); !errors.Is(err, ErrNoLastGood) {
		t.Fatalf("first boot: %v, want ErrNoLastGood", err)
	}
	if err := SaveLastGood(cfg); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{LastGoodFile, LastGoodHashFile} {
		fi, err := os.Stat(filepath.Join(state, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	got, err := LoadLastGood(state, now)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hash != cfg.Hash || got.Gateway.ID != cfg.Gateway.ID {
		t.Errorf("last good hash %s id %s, want %s %s", got.Hash, got.Gateway.ID, cfg.Hash, cfg.Gateway.ID)
	}
	// Saving the same configuration again changes nothing.
	if err := SaveLastGood(cfg); err != nil {
		t.Fatal(err)
	}
	// A file edited since it was loaded is not saved under the old hash.
	if err := os.WriteFile(cfg.File, []byte(base+"\n# edited\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := *cfg
	other.Hash = strings.Repeat("0", 64)
	if err := SaveLastGood(&other); err == nil || !strings.Contains(err.Error(), "changed since it was loaded") {
		t.Errorf("save of a changed file: %v", err)
	}
	// A configuration from memory is not saved.
	mem := *cfg
	mem.File = ""
	if err := SaveLastGood(&mem); err != nil {
		t.Errorf("memory config: %v", err)
	}
}

func TestLastGoodTamperedIsRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := lkgConfig(t, dir)
	if err := SaveLastGood(cfg); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(cfg.Gateway.StateDir, LastGoodFile)
	data, _ := os.ReadFile(p)
	if err := os.WriteFile(p, append(data, "# changed\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadLastGood(cfg.Gateway.StateDir, now); err == nil || !strings.Contains(err.Error(), "does not match its stored hash") {
		t.Errorf("tampered last good: %v", err)
	}
}

func TestStateDirOf(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, content, want string
		wantErr             bool
	}{
		{"explicit", "version: 1\ngateway: {state_dir: /srv/wg}\n", "/srv/wg", false},
		{"default", "version: 1\n", DefaultStateDir, false},
		{"broken elsewhere", "version: 1\ngateway:\n  state_dir: /srv/wg\n  sitte: x\ndevices: nope\n", "/srv/wg", false},
		{"relative", "version: 1\ngateway: {state_dir: state}\n", DefaultStateDir, true},
		{"not yaml", "version: 1\n\tgateway: x\n", DefaultStateDir, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "c.yaml")
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := StateDirOf(p)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("StateDirOf = %q, %v; want %q (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestProblemList(t *testing.T) {
	_, err := Parse("x.yaml", []byte("version: 1\ngateway: {idd: x}\nmqtt: {outbox_max: lots}\n"), now)
	ps := ProblemList(err)
	if len(ps) < 2 || !strings.HasPrefix(ps[0], "x.yaml:") {
		t.Errorf("ProblemList = %q", ps)
	}
	if got := ProblemList(errors.New("a\nb\n")); len(got) != 2 {
		t.Errorf("ProblemList(plain) = %q", got)
	}
	if ProblemList(nil) != nil {
		t.Error("ProblemList(nil) not nil")
	}
}

// replacement is a second device that takes pump-07's place and port.
const replacement = `  - id: pump-09
    owner: clinical-engineering/icu
    link: {tcp: 10.20.0.9:4001}
    clinical: {listen: ":7001", allow: ["spiffe://hospital.example/svc/pump-server"]}
`

func TestRetirementRules(t *testing.T) {
	retire := func(fields string) string {
		return strings.Replace(base, "    owner: clinical-engineering/icu\n", "    owner: clinical-engineering/icu\n"+fields, 1) + replacement
	}
	cases := []struct {
		name, text string
		want       problemWant
	}{
		{"replaced_by unknown", retire("    retired: 2026-11-01\n    replaced_by: pump-99\n"), problemWant{"devices[0].replaced_by", "replaced_by: pump-99", "not a configured device"}},
		{"replaced_by without retired", strings.Replace(retire("    replaced_by: pump-09\n"), `listen: ":7001", allow`, `listen: ":7003", allow`, 1), problemWant{"devices[0].replaced_by", "replaced_by: pump-09", "only a retired device"}},
		{"replaced_by itself", retire("    retired: 2026-11-01\n    replaced_by: pump-07\n"), problemWant{"devices[0].replaced_by", "replaced_by: pump-07", "cannot replace itself"}},
		{"retired in the future", retire("    retired: 2027-01-01\n"), problemWant{"devices[0].retired", "retired: 2027-01-01", "in the future"}},
		{"retired bad date", retire("    retired: soon\n"), problemWant{"devices[0].retired", "retired: soon", "YYYY-MM-DD"}},
		{"replace each other", strings.Replace(retire("    retired: 2026-11-01\n    replaced_by: pump-09\n"), "  - id: pump-09\n    owner: clinical-engineering/icu\n", "  - id: pump-09\n    owner: clinical-engineering/icu\n    retired: 2026-11-02\n    replaced_by: pump-07\n", 1), problemWant{"devices[0].replaced_by", "replaced_by: pump-09", "replace each other"}},
		{"in-service listener still collides", base + replacement, problemWant{"devices[1].clinical.listen", `clinical: {listen: ":7001"`, "collides with devices[0].clinical.listen"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("w.yaml", []byte(tc.text), now)
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("want Problems, got %v", err)
			}
			wantLine := lineOf(t, tc.text, tc.want.lineAt)
			for _, p := range ps {
				if p.Path == tc.want.path && p.Line == wantLine && strings.Contains(p.Msg, tc.want.msg) {
					return
				}
			}
			t.Errorf("want w.yaml:%d: %s: ...%s..., got:\n%v", wantLine, tc.want.path, tc.want.msg, err)
		})
	}
	// A retired device replaced by another on the same port is valid: its
	// listener is closed and does not collide.
	cfg, err := Parse("w.yaml", []byte(retire("    retired: 2026-11-01\n    replaced_by: pump-09\n")), now)
	if err != nil {
		t.Fatalf("retired and replaced: %v", err)
	}
	if !cfg.Devices[0].IsRetired() || cfg.Devices[0].ReplacedBy != "pump-09" || cfg.Devices[1].IsRetired() {
		t.Errorf("devices %+v", cfg.Devices)
	}
}

func TestUpdateRules(t *testing.T) {
	cases := []struct {
		name, add string
		want      problemWant
	}{
		{"pin not hex", "update:\n  release_keys: [\"sha256:zz\"]\n", problemWant{"update.release_keys[0]", "release_keys:", "64 hexadecimal"}},
		{"pin relative path", "update:\n  release_keys: [release.pem]\n", problemWant{"update.release_keys[0]", "release_keys:", "absolute path"}},
		{"install dir relative", "update:\n  install_dir: lib/wardgate\n", problemWant{"update.install_dir", "install_dir:", "absolute"}},
		{"health timeout too short", "update:\n  health_timeout: 1s\n", problemWant{"update.health_timeout", "health_timeout:", "between 10s and 10m"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := base + tc.add
			_, err := Parse("w.yaml", []byte(text), now)
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("want Problems, got %v", err)
			}
			wantLine := lineOf(t, text, tc.want.lineAt)
			for _, p := range ps {
				if p.Path == tc.want.path && p.Line == wantLine && strings.Contains(p.Msg, tc.want.msg) {
					return
				}
			}
			t.Errorf("want w.yaml:%d: %s: ...%s..., got:\n%v", wantLine, tc.want.path, tc.want.msg, err)
		})
	}
	cfg, err := Parse("w.yaml", []byte(base+"update:\n  release_keys: [/etc/wardgate/release.pem, \"sha256:"+strings.Repeat("ab", 32)+"\"]\n"), now)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Update.InstallDir != DefaultUpdateInstallDir || cfg.Update.HealthTimeout.D() != DefaultUpdateHealthTimeout || len(cfg.Update.ReleaseKeys) != 2 {
		t.Errorf("update %+v", cfg.Update)
	}
}
