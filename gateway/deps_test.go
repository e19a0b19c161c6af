package gateway

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestImportsPointOneWay fails when a layer imports one above it:
// cmd -> {gateway, central} -> wire -> {certs, hal, config}. Tests are
// included, so a test helper cannot sneak an upward import in either.
func TestImportsPointOneWay(t *testing.T) {
	const mod = "github.com/wardgate/wardgate/"
	rules := []struct {
		pkgs      string   // go list pattern, relative to this directory
		forbidden []string // import path prefixes under mod
	}{
		{"../internal/...", []string{"gateway", "central", "wire", "cmd", "certs", "hal", "config"}},
		{"../certs/...", []string{"gateway", "central", "wire", "cmd"}},
		{"../hal/...", []string{"gateway", "central", "wire", "cmd"}},
		{"../config/...", []string{"gateway", "central", "wire", "cmd"}},
		{"../wire/...", []string{"gateway", "central", "cmd"}},
		{"./...", []string{"central", "cmd"}},
		{"../central/...", []string{"gateway", "cmd"}},
	}
	for _, r := range rules {
		checked := 0
		for _, p := range listDeps(t, r.pkgs) {
			if !strings.HasPrefix(p.ImportPath, mod) {
				continue
			}
			checked++
			for _, d := range append(p.Deps, p.ImportPath) {
				for _, f := range r.forbidden {
					if d == mod+f || strings.HasPrefix(d, mod+f+"/") {
						t.Errorf("%s depends on %s: %s must not import %s", p.ImportPath, d, r.pkgs, f)
					}
				}
			}
		}
		if checked == 0 && r.pkgs != "../central/..." {
			t.Errorf("%s: no packages checked; is the layout right?", r.pkgs)
		}
	}
}

type listed struct {
	ImportPath string
	Deps       []string
}

func listDeps(t *testing.T, pattern string) []listed {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-deps", "-test", "-json=ImportPath,Deps", pattern)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var all []listed
	dec := json.NewDecoder(out)
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		all = append(all, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list %s: %v", pattern, err)
	}
	return all
}
