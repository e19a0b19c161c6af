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
