package access

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func needCurl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is required (scripts/deps.sh installs it)")
		}
		t.Skip("curl not installed")
	}
	return p
}

// curl runs curl as a vendor through the gateway's HTTPS proxy.
func (e *env) curl(t *testing.T, v vendor, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	base := []string{"-sS", "-v", "--max-time", "15",
		"--proxy", "https://" + e.addr, "--proxy-cert", v.certFile, "--proxy-key", v.keyFile, "--proxy-cacert", e.pki.rootFile}
	cmd := exec.CommandContext(ctx, needCurl(t), append(base, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &se
	err = cmd.Run()
	return o.String(), se.String(), err
}

func TestCurlVendor(t *testing.T) {
	needCurl(t)
	e := newEnv(t)

	// 1. No grant: the refusal reason is on the status line curl shows.
	_, se, err := e.curl(t, e.jo, "", "--proxy-header", "X-Reason: E42 occlusion alarm", "telnet://pump-07:23")
	if err == nil || !strings.Contains(se, "< HTTP/1.1 403 no grant yet: request ") {
		t.Fatalf("err %v\n%s", err, se)
	}
	req := e.ev.wait(t, EvRequest, nil)
	if req.Reason != "E42 occlusion alarm" {
		t.Fatalf("%+v", req)
	}
	// 2. Pending.
	_, se, _ = e.curl(t, e.jo, "", "telnet://pump-07:23")
	if !strings.Contains(se, "403 request "+req.Grant+" pending") {
		t.Fatalf("%s", se)
	}
	// 3. Port not allowed, IP literal.
	_, se, _ = e.curl(t, e.jo, "", "telnet://pump-07:2222")
	if !strings.Contains(se, "403 port 2222 not allowed on pump-07") {
		t.Fatalf("%s", se)
	}
	_, se, _ = e.curl(t, e.jo, "", "telnet://10.20.0.7:23")
	if !strings.Contains(se, "403 target 10.20.0.7 is an address") {
		t.Fatalf("%s", se)
	}
	// 4. Approved by the button: telnet and HTTP through the tunnel.
	if _, err := e.b.ApproveByButton(); err != nil {
		t.Fatal(err)
	}
	out, se, err := e.curl(t, e.jo, "show alarms\nbye\n", "telnet://pump-07:23")
	if err != nil || !strings.Contains(out, "echo: show alarms") {
		t.Fatalf("telnet: %v\nstdout %q\n%s", err, out, se)
	}
	e.ev.wait(t, EvSessionEnd, nil)
	e.refused(e.jo, "pump-07:8080") // ask for the second port too
	if _, err := e.b.ApproveByButton(); err != nil {
		t.Fatal(err)
	}
	out, se, err = e.curl(t, e.jo, "", "--proxytunnel", "http://pump-07:8080/")
	if err != nil || !strings.Contains(out, "pump ok") {
		t.Fatalf("http via tunnel: %v\nstdout %q\n%s", err, out, se)
	}
	// 5. Wrong CA: refused with a reason.
	other := e.pki.vendor(t, "wrongca", joURI, e.pki.wrong, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	_, se, _ = e.curl(t, other, "", "telnet://pump-07:23")
	if !strings.Contains(se, "403 client certificate is not issued by a CA this gateway trusts") {
		t.Fatalf("%s", se)
	}
}
