// Package pkgtest checks the .deb packages that scripts/package/deb.sh
// builds: it installs one into a throwaway root and inspects it.
package pkgtest

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestDebContents(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds and packages the binary")
	}
	for _, tool := range []string{"dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: %v", tool, err)
		}
	}
	root := "../.."
	tmp := t.TempDir()
	// Build into a copy of the layout deb.sh expects, without touching bin/.
	work := filepath.Join(tmp, "src")
	for _, p := range []string{"scripts/package", "config", "docs", "bin"} {
		if err := os.MkdirAll(filepath.Join(work, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"scripts/package/nfpm.yaml", "scripts/package/wardgate.service", "scripts/package/postinstall.sh", "scripts/package/deb.sh", "config/example.yaml", "docs/quickstart.md"} {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, f), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(work, "bin/wardgate-linux-arm64"), "./cmd/wardgate")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("cross build: %v\n%s", err, out)
	}
	nfpm := filepath.Join(tmp, "nfpm")
	build = exec.Command("go", "build", "-o", nfpm, "github.com/goreleaser/nfpm/v2/cmd/nfpm")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build nfpm: %v\n%s", err, out)
	}
	pkg := exec.Command("bash", filepath.Join(work, "scripts/package/deb.sh"), "arm64")
	pkg.Env = append(os.Environ(), "VERSION=1.2.3", "NFPM="+nfpm)
	pkg.Dir = work
	if out, err := pkg.CombinedOutput(); err != nil {
		t.Fatalf("deb.sh: %v\n%s", err, out)
	}
	deb := filepath.Join(work, "dist/wardgate_1.2.3_arm64.deb")
	info, err := exec.Command("dpkg-deb", "--field", deb, "Package", "Version", "Architecture").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Package: wardgate", "Version: 1.2.3", "Architecture: arm64"} {
		if !strings.Contains(string(info), want) {
			t.Errorf("control lacks %q:\n%s", want, info)
		}
	}
	inst := filepath.Join(tmp, "root")
	if out, err := exec.Command("dpkg-deb", "-x", deb, inst).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	// The binary: static, for arm64.
	f, err := elf.Open(filepath.Join(inst, "usr/bin/wardgate"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 {
		t.Errorf("binary machine %v, want aarch64", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("binary is dynamically linked; it must be static (CGO_ENABLED=0)")
		}
	}
	// The systemd unit: notify, watchdog, hardening.
	unit, err := os.ReadFile(filepath.Join(inst, "lib/systemd/system/wardgate.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "WatchdogSec=", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
		"ExecStart=/usr/bin/wardgate run --config /etc/wardgate/wardgate.yaml", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	// The example config, kept on upgrade, and the state directory.
	cfg, err := os.ReadFile(filepath.Join(inst, "etc/wardgate/wardgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	example, _ := os.ReadFile(filepath.Join(root, "config/example.yaml"))
	if string(cfg) != string(example) {
		t.Error("/etc/wardgate/wardgate.yaml is not the example config")
	}
	ctrl := filepath.Join(tmp, "ctrl")
	if out, err := exec.Command("dpkg-deb", "-e", deb, ctrl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, out)
	}
	if c, _ := os.ReadFile(filepath.Join(ctrl, "conffiles")); !strings.Contains(string(c), "/etc/wardgate/wardgate.yaml") {
		t.Error("the config is not a conffile: an upgrade would overwrite the operator's edits")
	}
	st, err := os.Stat(filepath.Join(inst, "var/lib/wardgate"))
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Errorf("state dir: %v %v", st, err)
	}
	// The packaged binary runs on arm64 (under qemu-user here).
	if qemu, err := exec.LookPath("qemu-aarch64-static"); err == nil {
		out, err := exec.Command(qemu, filepath.Join(inst, "usr/bin/wardgate"), "config", "check", filepath.Join(inst, "etc/wardgate/wardgate.yaml")).CombinedOutput()
		if err != nil {
			t.Errorf("packaged binary checking packaged config: %v\n%s", err, out)
		}
	} else if os.Getenv("CI") != "" {
		t.Fatal("qemu-aarch64-static missing; run scripts/deps.sh")
	}
}
