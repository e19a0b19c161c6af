package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testnet"
)

// freePort returns a loopback port nobody listens on right now.
func freePort(t *testing.T) int { return testnet.FreePort(t) }

func runConfig(t *testing.T, dir string, extraDevice string) string {
	return fmt.Sprintf(`version: 1
gateway:
  id: gw-e2e
  site: lab
  trust_domain: hospital.example
  state_dir: %[1]s/state
  vendor_listen: "127.0.0.1:%[2]d"
  admin_socket: %[1]s/admin.sock
  drain_timeout: 2s
identity: {ca: dev, lifetime: 1h}
mqtt: {broker: "mqtts://127.0.0.1:%[3]d", metrics_interval: 1s}
hal: {driver: sim}
vendors:
  - {org: acme-medical, identities: ["spiffe://hospital.example/vendor/acme-medical/*"]}
devices:
  - id: pump-07
    owner: clinical-engineering/icu
    link: {tcp: "127.0.0.1:%[4]d"}
    clinical: {listen: "127.0.0.1:%[5]d", allow: ["spiffe://hospital.example/svc/pump-server"]}
    vendor: {org: acme-medical, ports: [23], approval: [local]}
%[6]s`, dir, freePort(t), freePort(t), freePort(t), freePort(t), extraDevice)
}

// TestRunEndToEnd runs `wardgate run` as an operator would and drives it
// with the other commands over the admin socket: status, lock, grant, hal,
// tamper; then SIGHUP with a broken and a good file, then SIGTERM.
func TestRunEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "wardgate.yaml")
	good := runConfig(t, dir, "")
	if err := os.WriteFile(cfgPath, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	agent := exec.Command(bin, "run", "--config", cfgPath, "--log-json")
	agent.Stderr = &logs
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	defer func() {
		if agent.ProcessState == nil {
			agent.Process.Kill()
			<-exited
		}
	}()
	wg := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, append(args, "--config", cfgPath)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if err != nil {
			code = cmd.ProcessState.ExitCode()
		}
		return out.String(), errb.String(), code
	}
	// The agent is a separate process: poll its socket until it answers.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, errs, code := wg("status")
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent did not come up: %s\nlogs:\n%s", errs, logs.String())
		}
		select {
		case err := <-exited:
			t.Fatalf("agent exited: %v\n%s", err, logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}

	out, errs, code := wg("status")
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errs)
	}
	for _, want := range []string{"gateway    gw-e2e", "spiffe://hospital.example/gateway/gw-e2e", "pump-07", "NOT CONNECTED", "hardware   sim", "findings   "} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s%s", want, out, errs)
		}
	}
	out, _, code = wg("status", "--json")
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 {
		t.Fatalf("status --json: %v %q", err, out)
	}
	for _, k := range []string{"time", "gateway", "identity", "devices", "vendor", "telemetry", "hardware", "alarms", "monitor"} {
		if _, ok := st[k]; !ok {
			t.Errorf("status --json lacks %q", k)
		}
	}

	// Locks: add, list, remove; the uid is recorded.
	id := "spiffe://hospital.example/vendor/acme-medical/jane"
	if out, errs, code = wg("lock", "add", id, "--for", "1h", "--reason", "left the company"); code != 0 || !strings.Contains(out, "locked "+id) {
		t.Fatalf("lock add: %d %s %s", code, out, errs)
	}
	out, _, _ = wg("lock", "list", "--json")
	if !strings.Contains(out, "left the company") || !strings.Contains(out, fmt.Sprintf(`"uid": %d`, os.Getuid())) {
		t.Errorf("lock list --json: %s", out)
	}
	// The actor is named local:NAME(uid=N) in --json and in events.
	if me, err := user.Current(); err == nil {
		want := fmt.Sprintf("local:%s(uid=%d)", me.Username, os.Getuid())
		if !strings.Contains(out, `"id": "`+want+`"`) {
			t.Errorf("lock list --json lacks the actor %s: %s", want, out)
		}
		out, _, _ = wg("status", "--json")
		if !strings.Contains(out, `"actor": "`+want+`"`) {
			t.Errorf("status --json: the lock event lacks actor %s", want)
		}
	}
	if _, _, code = wg("lock", "remove", id); code != 0 {
		t.Errorf("lock remove: exit %d", code)
	}
	if _, errs, code = wg("lock", "remove", id); code != exitUsage || !strings.Contains(errs, "not found") {
		t.Errorf("second lock remove: exit %d %q", code, errs)
	}
	// Grants: nothing pending; approving an unknown id is refused clearly.
	if out, _, code = wg("grant", "list"); code != 0 || !strings.Contains(out, "no pending requests") {
		t.Errorf("grant list: %d %s", code, out)
	}
	if _, errs, code = wg("grant", "approve", "ZZZZZZ"); code != exitUsage || !strings.Contains(errs, "not found") {
		t.Errorf("grant approve unknown: %d %s", code, errs)
	}
	// Simulated hardware: a press with nothing pending, tamper open/clear.
	if out, errs, code = wg("hal", "press", "approve", "--hold", "50ms"); code != 0 {
		t.Errorf("hal press: %d %s %s", code, out, errs)
	}
	if _, errs, code = wg("hal", "press", "reset"); code != exitUsage || !strings.Contains(errs, "approve") {
		t.Errorf("hal press of an unknown button: %d %s", code, errs)
	}
	if _, _, code = wg("hal", "tamper", "open"); code != 0 {
		t.Errorf("hal tamper open: %d", code)
	}
	waitFor(t, func() bool { out, _, _ := wg("status"); return strings.Contains(out, "ALARM      tamper") }, "tamper alarm in status")
	if _, errs, code = wg("tamper", "clear"); code == 0 || !strings.Contains(errs, "close the enclosure first") {
		t.Errorf("tamper clear while open: %d %s", code, errs)
	}
	wg("hal", "tamper", "closed")
	waitFor(t, func() bool { out, _, _ := wg("hal", "show"); return strings.Contains(out, `"open":false`) }, "tamper loop closed")
	if _, errs, code = wg("tamper", "clear"); code != 0 {
		t.Errorf("tamper clear: %d %s", code, errs)
	}
	// A person at the gateway may reset the trusted-time mark.
	if out, errs, code = wg("clock", "reset"); code != 0 || !strings.Contains(out, "trusted time reset") {
		t.Errorf("clock reset: %d %s %s", code, out, errs)
	}

	// SIGHUP with a broken file: refused, the agent keeps running.
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(good, "owner: clinical-engineering/icu", "owner: ''", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	agent.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(logs.String(), "reload refused") }, "reload refused in the log")
	// ... raises an alarm and a signed event naming every problem; status
	// still works with the broken file (it reads only the socket's keys).
	waitFor(t, func() bool { out, _, _ := wg("status"); return strings.Contains(out, "ALARM      config_refused") }, "config_refused alarm in status")
	out, _, _ = wg("status", "--json")
	if !strings.Contains(out, `"kind": "config.reload_refused"`) || !strings.Contains(out, "devices[0].owner") {
		t.Errorf("status --json lacks the config.reload_refused event with its problem:\n%s", out)
	}
	// SIGHUP with a good file that adds a device: applied.
	if err := os.WriteFile(cfgPath, []byte(runConfig(t, dir, fmt.Sprintf(`  - id: pump-08
    owner: clinical-engineering/icu
    link: {tcp: "127.0.0.1:%d"}
    clinical: {listen: "127.0.0.1:%d", allow: ["spiffe://hospital.example/svc/pump-server"]}
`, freePort(t), freePort(t)))), 0o600); err != nil {
		t.Fatal(err)
	}
	// The new file also moved the gateway's own listeners: that needs a
	// restart, and the agent says so.
	agent.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(logs.String(), "needs a restart") }, "restart-needed refusal")

	agent.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("agent exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("agent did not stop within 20s of SIGTERM")
	}
	if _, err := os.Stat(filepath.Join(dir, "admin.sock")); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind: %v", err)
	}
}

// waitFor polls cond (an external process's state) until it holds.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRunStartsOnLastKnownGood: the first boot with an invalid file fails
// with status 2; a file that ran is kept; a later invalid file makes the
// agent start on the kept one, with an alarm.
func TestRunStartsOnLastKnownGood(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "wardgate.yaml")
	good := runConfig(t, dir, "")
	broken := strings.Replace(good, "owner: clinical-engineering/icu", "owner: ''", 1)
	wg := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, append(args, "--config", cfgPath)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if err != nil {
			code = cmd.ProcessState.ExitCode()
		}
		return out.String(), errb.String(), code
	}
	start := func() (*exec.Cmd, *syncBuffer, chan error) {
		var logs syncBuffer
		agent := exec.Command(bin, "run", "--config", cfgPath, "--log-json")
		agent.Stderr = &logs
		if err := agent.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- agent.Wait() }()
		t.Cleanup(func() {
			if agent.ProcessState == nil {
				agent.Process.Kill()
				<-exited
			}
		})
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, _, code := wg("status"); code == 0 {
				return agent, &logs, exited
			}
			if time.Now().After(deadline) {
				t.Fatalf("agent did not come up:\n%s", logs.String())
			}
			select {
			case err := <-exited:
				t.Fatalf("agent exited: %v\n%s", err, logs.String())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	stop := func(agent *exec.Cmd, exited chan error) {
		agent.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			t.Fatal("agent did not stop within 20s of SIGTERM")
		}
	}

	// First boot, broken file, nothing kept: exit 2 with the problem.
	if err := os.WriteFile(cfgPath, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errs, code := wg("run")
	if code != exitUsage || !strings.Contains(errs, "devices[0].owner") {
		t.Fatalf("first boot with a broken file: exit %d, want %d with the problem: %s", code, exitUsage, errs)
	}

	// A good file runs and is kept (0600, with its hash).
	if err := os.WriteFile(cfgPath, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	agent, _, exited := start()
	lkg := filepath.Join(dir, "state", "last-good.yaml")
	waitFor(t, func() bool { _, err := os.Stat(lkg); return err == nil }, "last known good configuration saved")
	if fi, _ := os.Stat(lkg); fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", lkg, fi.Mode().Perm())
	}
	out, _, _ := wg("status", "--json")
	var st struct {
		Gateway struct {
			ConfigHash string `json:"config_hash"`
		} `json:"gateway"`
		Alarms []string `json:"alarms"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	goodHash := st.Gateway.ConfigHash
	stop(agent, exited)

	// The file breaks; the next start runs the kept one with an alarm.
	if err := os.WriteFile(cfgPath, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	agent, logs, exited := start()
	out, _, _ = wg("status", "--json")
	st.Alarms = nil
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if st.Gateway.ConfigHash != goodHash {
		t.Errorf("running config %s, want the last known good %s", st.Gateway.ConfigHash, goodHash)
	}
	if len(st.Alarms) == 0 || !strings.Contains(strings.Join(st.Alarms, "\n"), "config_invalid") {
		t.Errorf("alarms %q, want config_invalid", st.Alarms)
	}
	if !strings.Contains(out, `"kind": "config.started_last_good"`) || !strings.Contains(out, "devices[0].owner") {
		t.Errorf("status lacks the config.started_last_good event with its problem:\n%s", out)
	}
	// Fixing the file and reloading clears the alarm.
	if err := os.WriteFile(cfgPath, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	agent.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { out, _, _ := wg("status"); return !strings.Contains(out, "config_invalid") }, "config_invalid cleared after a good reload")
	_ = logs
	stop(agent, exited)
}
