package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/config"
)

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(&env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb}, args)
	return code, out.String(), errb.String()
}

func TestHelpListsCommands(t *testing.T) {
	code, out, _ := runCLI(t, "", "--help")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for name := range commands {
		if !strings.Contains(out, "  "+name) {
			t.Errorf("help does not list %s", name)
		}
	}
	if code, _, _ := runCLI(t, ""); code != exitUsage {
		t.Errorf("no command: exit %d, want 2", code)
	}
	if code, _, errs := runCLI(t, "", "frobnicate"); code != exitUsage || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d %q", code, errs)
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	for name := range commands {
		t.Run(name, func(t *testing.T) {
			code, out, _ := runCLI(t, "", name, "--help")
			if code != exitOK || !strings.Contains(out, "Usage: wardgate "+name) {
				t.Errorf("%s --help: exit %d, output %q", name, code, out)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "", "version")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"wardgate ", "commit:", "built:", runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
}

func TestConfigExampleMatchesFileAndChecks(t *testing.T) {
	code, out, _ := runCLI(t, "", "config", "example")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	onDisk, err := os.ReadFile("../../config/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if out != string(onDisk) {
		t.Fatal("`wardgate config example` differs from config/example.yaml")
	}
	p := filepath.Join(t.TempDir(), "wardgate.yaml")
	if err := os.WriteFile(p, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "", "config", "check", p)
	if code != exitOK || !strings.Contains(out, "valid") {
		t.Fatalf("check of the example: exit %d\n%s%s", code, out, errs)
	}
	// The example's root fingerprint is a placeholder: warned, still valid.
	if !strings.Contains(errs, p+":") || !strings.Contains(errs, ": identity.root_fingerprint: warning: ") || !strings.Contains(out, "1 warning(s)") {
		t.Errorf("check of the example does not warn about its placeholder fingerprint:\n%s%s", out, errs)
	}
}

func TestConfigCheckWarnings(t *testing.T) {
	dev := strings.NewReplacer("  ca: step ", "  ca: dev  ", "\n  tamper: GPIO27", "\n  tamper: none").Replace(config.Example)
	p := filepath.Join(t.TempDir(), "dev.yaml")
	if err := os.WriteFile(p, []byte(dev), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "", "config", "check", p)
	if code != exitOK {
		t.Fatalf("exit %d, want 0: warnings do not make a file invalid\n%s", code, errs)
	}
	for _, want := range []string{
		p + ":" + fmt.Sprint(lineOfText(dev, "  ca: dev")) + ": identity.ca: warning: ",
		p + ":" + fmt.Sprint(lineOfText(dev, "  tamper: none")) + ": hal.tamper: warning: no tamper input",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if !strings.Contains(out, "2 warning(s)") {
		t.Errorf("stdout: %q", out)
	}
}

// TestConfigCheckReportsEverythingAtOnce: decode problems (unknown key,
// wrong type) and validation problems come out of one run.
func TestConfigCheckReportsEverythingAtOnce(t *testing.T) {
	text := strings.NewReplacer(
		"  site: st-example", "  site: st-example\n  colour: blue",
		"ports: [23, 8080]", "ports: [23, 4001]",
		"lifetime: 4h ", "lifetime: 9d ",
	).Replace(config.Example)
	p := filepath.Join(t.TempDir(), "w.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI(t, "", "config", "check", p)
	if code != exitUsage {
		t.Errorf("exit %d, want 2", code)
	}
	for _, want := range []string{
		`gateway.colour: unknown key "colour"`,
		"devices[0].vendor.ports[1]: port 4001 is the device's clinical service",
		"identity.lifetime: 9d is outside the allowed range",
		"3 problem(s)",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

func lineOfText(text, sub string) int {
	return strings.Count(text[:strings.Index(text, sub)], "\n") + 1
}

func TestConfigCheckBadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wrongVersion := strings.Replace(config.Example, "version: 1", "version: 3", 1)
	unknownKey := strings.Replace(config.Example, "  site: st-example", "  site: st-example\n  colour: blue", 1)
	cases := []struct {
		name, file, want string
	}{
		{"missing", filepath.Join(dir, "nope.yaml"), "nope.yaml: no such file"},
		{"directory", dir, "is a directory"},
		{"empty", write("empty.yaml", ""), "empty.yaml: the file is empty"},
		{"wrong version", write("v3.yaml", wrongVersion), "v3.yaml:4: version: version 3 is not supported"},
		{"tabs", write("tabs.yaml", "version: 1\ngateway:\n\tid: x\n"), "tabs.yaml:3: tab character"},
		{"unknown key", write("unknown.yaml", unknownKey), `unknown.yaml:9: gateway.colour: unknown key "colour"`},
		{"two megabytes", write("big.yaml", "version: 1\n#"+strings.Repeat("x", 2<<20)), "larger than 1 MiB"},
		{"alias bomb", write("bomb.yaml", "version: 1\na: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"), "alias bomb"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCLI(t, "", "config", "check", tc.file)
			if code != exitUsage {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(errs, tc.want) {
				t.Errorf("stderr %q does not contain %q", errs, tc.want)
			}
		})
	}
	if code, _, _ := runCLI(t, "", "config", "check"); code != exitUsage {
		t.Errorf("check without file: exit %d", code)
	}
}

// TestBinary builds the real binary with the Makefile's flags and runs the
// pipe the README shows: `wardgate config example | wardgate config check /dev/stdin`.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "wardgate")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v9.9.9 -X main.buildTime=2026-11-28T00:00:00Z", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command("sh", "-c", bin+" config example | "+bin+" config check /dev/stdin").CombinedOutput()
	if err != nil {
		t.Fatalf("example | check: %v\n%s", err, out)
	}
	out, _ = exec.Command(bin, "version").Output()
	if !strings.Contains(string(out), "wardgate v9.9.9") || !strings.Contains(string(out), "2026-11-28T00:00:00Z") {
		t.Errorf("ldflags not applied: %s", out)
	}
	cmd := exec.Command(bin, "config", "check", "/nonexistent.yaml")
	if err := cmd.Run(); cmd.ProcessState.ExitCode() != exitUsage {
		t.Errorf("missing file: %v, exit %d", err, cmd.ProcessState.ExitCode())
	}
}
