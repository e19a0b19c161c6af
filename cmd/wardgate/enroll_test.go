package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs/stepcatest"
)

// TestEnrollAndRunWithStepCA is the biomedical engineer's path against the
// real step-ca: enroll with a one-time token (refusals first), then run the
// agent on that identity; a key left readable by others is refused.
func TestEnrollAndRunWithStepCA(t *testing.T) {
	ca := stepcatest.New(t, stepcatest.Config{DefaultDur: 10 * time.Minute, MinDur: time.Minute, Provisioners: map[string]bool{"gateways": true}})
	bin := buildBinary(t)
	dir := t.TempDir()
	write := func(name, fp string) string {
		p := filepath.Join(dir, name)
		cfg := fmt.Sprintf(`version: 1
gateway: {id: gw-e2e, site: lab, trust_domain: hospital.example, state_dir: %[1]s/state-%[2]s,
          vendor_listen: "127.0.0.1:%[3]d", admin_socket: %[1]s/%[2]s.sock}
identity: {ca: step, ca_url: %[4]q, root_fingerprint: %[5]s, lifetime: 10m}
mqtt: {broker: "mqtts://127.0.0.1:%[6]d"}
hal: {driver: sim}
devices:
  - {id: pump-07, owner: ce/icu, link: {tcp: "127.0.0.1:%[7]d"},
     clinical: {listen: "127.0.0.1:%[8]d", allow: ["spiffe://hospital.example/svc/pump-server"]}}
`, dir, name, freePort(t), ca.URL, fp, freePort(t), freePort(t), freePort(t))
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", ca.Fingerprint())
	wrongFP := write("wrongfp", strings.Repeat("ab", 32))
	other := write("other", ca.Fingerprint())
	wg := func(args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if err != nil && cmd.ProcessState == nil {
			t.Fatal(err)
		}
		return out.String(), cmd.ProcessState.ExitCode()
	}
	uri := "spiffe://hospital.example/gateway/gw-e2e"
	cases := []struct {
		name, cfg, token, want string
		code                   int
	}{
		{"token for another gateway", good, ca.Token("gateways", "gw-other", "gw-other", "spiffe://hospital.example/gateway/gw-other"), "not for this gateway", exitUsage},
		{"not a token", good, "hello", "token", exitUsage},
		{"wrong root fingerprint", wrongFP, ca.Token("gateways", "gw-e2e", "gw-e2e", uri), "root_fingerprint", exitFailure},
	}
	for _, tc := range cases {
		out, code := wg("enroll", "--config", tc.cfg, "--token", tc.token)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, want %d with %q:\n%s", tc.name, code, tc.code, tc.want, out)
		}
	}
	tok := ca.Token("gateways", "gw-e2e", "gw-e2e", uri)
	if out, code := wg("enroll", "--config", good, "--token", tok); code != 0 || !strings.Contains(out, "enrolled gw-e2e") {
		t.Fatalf("enroll: exit %d\n%s\nCA log:\n%s", code, out, ca.Log())
	}
	// The same token again, for another state directory: refused by the CA.
	if out, code := wg("enroll", "--config", other, "--token", tok); code != exitFailure || !strings.Contains(out, "new token") {
		t.Errorf("reused token: exit %d\n%s", code, out)
	}
	// Enrolling again over a valid identity is refused without --force.
	if out, code := wg("enroll", "--config", good, "--token", ca.Token("gateways", "gw-e2e", "gw-e2e", uri)); code != exitFailure || !strings.Contains(out, "already holds") {
		t.Errorf("second enroll: exit %d\n%s", code, out)
	}

	// The agent runs on the enrolled identity.
	var logs syncBuffer
	agent := exec.Command(bin, "run", "--config", good)
	agent.Stderr = &logs
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	var status string
	for {
		out, code := wg("status", "--config", good)
		if code == 0 {
			status = out
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent did not answer: %s\n%s", out, logs.String())
		}
		select {
		case err := <-exited:
			t.Fatalf("agent exited: %v\n%s", err, logs.String())
		case <-time.After(100 * time.Millisecond): // an external process
		}
	}
	if !strings.Contains(status, uri) || !strings.Contains(status, "expires in") {
		t.Errorf("status does not show the step-ca identity:\n%s", status)
	}
	agent.Process.Signal(os.Interrupt)
	if err := <-exited; err != nil {
		t.Errorf("agent exit: %v\n%s", err, logs.String())
	}

	// A key readable by others is refused with the fix to apply.
	key := filepath.Join(dir, "state-good", "identity", "key.pem")
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := wg("run", "--config", good); code == 0 || !strings.Contains(out, "chmod 600 "+key) {
		t.Errorf("readable key: exit %d\n%s", code, out)
	}
}
