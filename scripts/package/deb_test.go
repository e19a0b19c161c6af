// Package pkgtest checks the .deb packages that scripts/package/deb.sh
// builds: it installs one into a throwaway root and inspects it.
package pkgtest

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	for _, f := range []string{"scripts/package/nfpm.yaml", "scripts/package/wardgate.service", "scripts/package/preinstall.sh", "scripts/package/postinstall.sh", "scripts/package/deb.sh", "config/example.yaml", "docs/quickstart.md"} {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, f), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// As `make cross` builds it (Makefile: TAGS, LDFLAGS).
	build := exec.Command("go", "build", "-trimpath", "-tags", "nethttpomithttp2", "-ldflags", "-s -w", "-o", filepath.Join(work, "bin/wardgate-linux-arm64"), "./cmd/wardgate")
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
	// Ownership and modes as dpkg will install them: the agent runs as
	// wardgate and must read its configuration; the demo is not shipped.
	list, err := exec.Command("dpkg-deb", "-c", deb).Output()
	if err != nil {
		t.Fatalf("dpkg-deb -c: %v", err)
	}
	entries := map[string]string{} // path -> "MODE OWNER/GROUP"
	for line := range strings.Lines(string(list)) {
		f := strings.Fields(line)
		if i := slices.Index(f, "->"); i > 0 { // a symlink: PATH -> TARGET
			// (the mode of a symlink means nothing on Linux)
			entries[strings.TrimPrefix(f[i-1], ".")] = "symlink " + f[1] + " -> " + f[i+1]
			continue
		}
		if len(f) >= 6 {
			entries[strings.TrimSuffix(strings.TrimPrefix(f[len(f)-1], "."), "/")] = f[0] + " " + f[1]
		}
	}
	for path, want := range map[string]string{
		"/etc/wardgate/wardgate.yaml":                   "-rw-r----- root/wardgate",
		"/usr/lib/wardgate/wardgate.a":                  "-rwxr-xr-x root/root",
		"/usr/lib/wardgate/wardgate":                    "symlink root/root -> wardgate.a",
		"/usr/bin/wardgate":                             "symlink root/root -> ../lib/wardgate/wardgate",
		"/lib/systemd/system/wardgate.service":          "-rw-r--r-- root/root",
		"/usr/share/doc/wardgate/quickstart.md":         "-rw-r--r-- root/root",
		"/usr/share/doc/wardgate/wardgate.example.yaml": "-rw-r--r-- root/root",
	} {
		if got := entries[path]; got != want {
			t.Errorf("dpkg-deb -c: %s is %q, want %q", path, got, want)
		}
	}
	for path := range entries {
		if strings.Contains(path, "demo") {
			t.Errorf("the package ships %s; it must carry the gateway binary only", path)
		}
	}
	inst := filepath.Join(tmp, "root")
	if out, err := exec.Command("dpkg-deb", "-x", deb, inst).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	// The binary: static, for arm64.
	f, err := elf.Open(filepath.Join(inst, "usr/lib/wardgate/wardgate.a"))
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
		"ExecStart=/usr/bin/wardgate run --config /etc/wardgate/wardgate.yaml",
		"ExecStartPre=-/usr/bin/wardgate config check /etc/wardgate/wardgate.yaml", "ExecReload=/bin/kill -HUP $MAINPID",
		"User=wardgate", "DeviceAllow=char-ttyUSB rw", "DeviceAllow=char-ttyACM rw", "DeviceAllow=char-ttyAMA rw",
		"LimitNOFILE=4096", "TasksMax=256", "MemoryMax=256M"} {
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
	// dpkg resolves the config's group by name at unpack: the group must
	// exist by then.
	if c, _ := os.ReadFile(filepath.Join(ctrl, "preinst")); !strings.Contains(string(c), "groupadd --system wardgate") {
		t.Error("no preinst creating the group wardgate before the files are unpacked")
	}
	st, err := os.Stat(filepath.Join(inst, "var/lib/wardgate"))
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Errorf("state dir: %v %v", st, err)
	}
	// The packaged binary runs on arm64 (under qemu-user here) as the
	// service account, and reads the configuration as installed.
	qemu, err := exec.LookPath("qemu-aarch64-static")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("qemu-aarch64-static missing; run scripts/deps.sh")
		}
		t.Skip("qemu-aarch64-static missing; run scripts/deps.sh")
	}
	runAsWardgate(t, deb, func(root, user string, args ...string) ([]byte, error) {
		return exec.Command("runuser", append([]string{"-u", user, "--", qemu, filepath.Join(root, "usr/bin/wardgate")}, args...)...).CombinedOutput()
	})
}

// runAsWardgate extracts deb into a root that user wardgate can traverse,
// creating the account as preinstall.sh does if missing, and checks that
// the packaged binary run as wardgate reads the config root:wardgate 0640,
// and would not read it root:root 0640.
func runAsWardgate(t *testing.T, deb string, run func(root, user string, args ...string) ([]byte, error)) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("running the packaged binary as user wardgate needs root")
		}
		t.Skip("running the packaged binary as user wardgate needs root")
	}
	for _, tool := range []string{"runuser", "useradd", "groupadd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: %v", tool, err)
		}
	}
	if exec.Command("getent", "group", "wardgate").Run() != nil {
		if out, err := exec.Command("groupadd", "--system", "wardgate").CombinedOutput(); err != nil {
			t.Fatalf("groupadd: %v\n%s", err, out)
		}
	}
	if exec.Command("getent", "passwd", "wardgate").Run() != nil {
		if out, err := exec.Command("useradd", "--system", "--gid", "wardgate", "--no-create-home", "--shell", "/usr/sbin/nologin", "wardgate").CombinedOutput(); err != nil {
			t.Fatalf("useradd: %v\n%s", err, out)
		}
	}
	// t.TempDir is 0700 root: a root wardgate can walk into instead.
	root, err := os.MkdirTemp("", "wardgate-deb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	cfg := filepath.Join(root, "etc/wardgate/wardgate.yaml")
	// dpkg gives the file its owner and group from the archive (checked
	// above with dpkg-deb -c); set them here too, whatever this dpkg-deb -x
	// did, then take them away to see the check matters.
	for _, tc := range []struct {
		group string
		ok    bool
	}{{"wardgate", true}, {"root", false}} {
		if out, err := exec.Command("chown", "root:"+tc.group, cfg).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v\n%s", err, out)
		}
		if err := os.Chmod(cfg, 0o640); err != nil {
			t.Fatal(err)
		}
		out, err := run(root, "wardgate", "config", "check", cfg)
		if tc.ok && err != nil {
			t.Errorf("as wardgate, config check of root:%s 0640: %v\n%s", tc.group, err, out)
		}
		if !tc.ok && err == nil {
			t.Errorf("as wardgate, config check of root:%s 0640 succeeded; is the test running as wardgate?\n%s", tc.group, out)
		}
	}
}
