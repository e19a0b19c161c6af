package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/brokertest"
	"github.com/wardgate/wardgate/wire/envelope"
	"github.com/wardgate/wardgate/wire/siem"
)

// TestTailUsageErrors: every inconsistent SIEM flag combination is a
// usage error (exit 2) that says what to do.
func TestTailUsageErrors(t *testing.T) {
	dir := t.TempDir()
	short, good := filepath.Join(dir, "short"), filepath.Join(dir, "good")
	_ = os.WriteFile(short, []byte("abc\n"), 0o600)
	_ = os.WriteFile(good, []byte("0123456789abcdef0123\n"), 0o600)
	notPEM := filepath.Join(dir, "ca.pem")
	_ = os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	base := []string{"tail", "--broker", "mqtts://127.0.0.1:1", "--cert", "c", "--key", "k", "--ca", "a"}
	q := filepath.Join(dir, "q")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "xml"}, "use one of json, syslog, cef, leef"},
		{[]string{"--format", ""}, "use one of json, syslog, cef, leef"},
		{[]string{"--syslog", "tcp://127.0.0.1:1"}, "need --queue DIR"},
		{[]string{"--webhook", "https://127.0.0.1:1/h", "--webhook-secret", good}, "need --queue DIR"},
		{[]string{"--syslog", "udp://127.0.0.1:514", "--queue", q}, "UDP"},
		{[]string{"--syslog", "127.0.0.1:514", "--queue", q}, "tcp://HOST:PORT"},
		{[]string{"--syslog-ca", notPEM}, "need --syslog tls://HOST:PORT"},
		{[]string{"--syslog", "tcp://127.0.0.1:1", "--syslog-cert", "c", "--syslog-key", "k", "--queue", q}, "need a tls:// --syslog target"},
		{[]string{"--syslog", "tls://127.0.0.1:1", "--syslog-cert", "c", "--queue", q}, "go together"},
		{[]string{"--syslog", "tls://127.0.0.1:1", "--syslog-ca", notPEM, "--queue", q}, "no PEM certificate"},
		{[]string{"--syslog", "tls://127.0.0.1:1", "--syslog-ca", filepath.Join(dir, "missing"), "--queue", q}, "--syslog-ca: open"},
		{[]string{"--syslog", "tls://127.0.0.1:1", "--syslog-cert", "c", "--syslog-key", "k", "--queue", q}, "client certificate"},
		{[]string{"--syslog", "tcp://127.0.0.1:1", "--queue", q, "--queue-max", "0"}, "at least 1"},
		{[]string{"--webhook-secret", good}, "need --webhook URL"},
		// every problem at once, one per line
		{[]string{"--syslog", "udp://127.0.0.1:514", "--webhook", "ftp://x", "--webhook-secret", short}, "wardgate tail: --syslog and --webhook need --queue DIR"},
		{[]string{"--syslog", "udp://127.0.0.1:514", "--webhook", "ftp://x", "--webhook-secret", short}, "\nwardgate tail: --syslog: syslog target"},
		{[]string{"--syslog", "udp://127.0.0.1:514", "--webhook", "ftp://x", "--webhook-secret", short}, "\nwardgate tail: --webhook: webhook URL"},
		{[]string{"--syslog", "udp://127.0.0.1:514", "--webhook", "ftp://x", "--webhook-secret", short}, "\nwardgate tail: --webhook-secret: webhook secret"},
		{[]string{"--webhook", "https://127.0.0.1:1/h", "--queue", q}, "--webhook-secret FILE"},
		{[]string{"--webhook", "https://127.0.0.1:1/h", "--webhook-secret", short, "--queue", q}, "at least 16"},
		{[]string{"--webhook", "http://siem.example/h", "--webhook-secret", good, "--queue", q}, "https://"},
		{[]string{"--webhook", "https://127.0.0.1:1/h", "--webhook-secret", good, "--webhook-ca", notPEM, "--queue", q}, "no PEM"},
	} {
		code, out, errs := runCLI(t, "", append(append([]string{}, base...), c.args...)...)
		if code != exitUsage || !strings.Contains(errs, c.want) || out != "" {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, code, errs, c.want)
		}
	}
}

// gatewayPublisher publishes signed events as a gateway.
type gatewayPublisher struct {
	c   paho.Client
	idn *certstest.Identity
	seq uint64
}

func (g *gatewayPublisher) event(t *testing.T, ev wire.Event) {
	t.Helper()
	body, err := wire.EventBody(ev)
	if err != nil {
		t.Fatal(err)
	}
	g.seq++
	payload, err := envelope.EncodePayload(&envelope.Envelope{Version: 1, Gateway: "gw-siem", Session: 1, Seq: g.seq,
		Time: time.Now().UnixMilli(), Kind: envelope.KindEvent, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := envelope.Sign(g.idn.Key, g.idn.Chain, payload)
	if err != nil {
		t.Fatal(err)
	}
	tok := g.c.Publish(wire.Topic("gw-siem", envelope.KindEvent), 1, false, msg)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

// TestTailSIEMEndToEnd runs the real binary against a real mosquitto: one
// tail prints CEF on stdout, another sends RFC 5424 over TCP to a loopback
// receiver and signed webhooks to an HTTPS server.
func TestTailSIEMEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary and mosquitto")
	}
	bin := buildBinary(t)
	pki := certstest.NewMini(t)
	broker := brokertest.StartMosquitto(t, pki)
	dir := t.TempDir()
	root := pki.WriteRoot(t, dir)
	centralCert, centralKey := pki.Issue(t, "central", "spiffe://hospital.example/svc/central").WriteFiles(t, dir, "central")

	frames := make(chan string, 100)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			n, err := br.ReadString(' ')
			if err != nil {
				return
			}
			size, err := strconv.Atoi(strings.TrimSpace(n))
			if err != nil {
				frames <- "bad frame length " + n
				return
			}
			buf := make([]byte, size)
			if _, err := io.ReadFull(br, buf); err != nil {
				return
			}
			frames <- string(buf)
		}
	}()

	secret := []byte("0123456789abcdef0123456789abcdef")
	secretFile := filepath.Join(dir, "hook.secret")
	_ = os.WriteFile(secretFile, append(secret, '\n'), 0o600)
	hooks := make(chan error, 100)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		err := siem.Verify(secret, r.Header.Get(siem.HeaderTimestamp), r.Header.Get(siem.HeaderSignature), body, time.Now(), 0)
		if err == nil && r.Header.Get(siem.HeaderType) != siem.TypeVendorRequest {
			err = fmt.Errorf("type %q", r.Header.Get(siem.HeaderType))
		}
		hooks <- err
	}))
	defer srv.Close()
	hookCA := filepath.Join(dir, "hook-ca.pem")
	_ = os.WriteFile(hookCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)

	common := []string{"tail", "--broker", broker.URL, "--cert", centralCert, "--key", centralKey, "--ca", root}
	var cefOut, cefErr, sysErr syncBuffer
	cef := exec.Command(bin, append(common, "--format", "cef")...)
	cef.Stdout, cef.Stderr = &cefOut, &cefErr
	sys := exec.Command(bin, append(common, "--syslog", "tcp://"+ln.Addr().String(), "--queue", filepath.Join(dir, "queue"),
		"--webhook", srv.URL+"/hook", "--webhook-secret", secretFile, "--webhook-ca", hookCA)...)
	var sysOut syncBuffer
	sys.Stdout, sys.Stderr = &sysOut, &sysErr
	var jsonOut, jsonErr syncBuffer
	plain := exec.Command(bin, common...) // the default: JSON lines, as always
	plain.Stdout, plain.Stderr = &jsonOut, &jsonErr
	procs := []*exec.Cmd{cef, sys, plain}
	for _, c := range procs {
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		for _, c := range procs {
			_ = c.Process.Signal(syscall.SIGTERM)
		}
		for _, c := range procs {
			if err := c.Wait(); err != nil {
				t.Errorf("%v: %v\n%s%s", c.Args[len(c.Args)-1], err, cefErr.String(), sysErr.String())
			}
		}
	}
	defer stop()

	gw := pki.Gateway(t, "gw-siem")
	co := paho.NewClientOptions().AddBroker(broker.URL).SetClientID("gw-siem").SetTLSConfig(pki.ClientTLS(gw)).
		SetProtocolVersion(4).SetCleanSession(true)
	pc := paho.NewClient(co)
	if tok := pc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("gateway connect: %v", tok.Error())
	}
	defer pc.Disconnect(100)
	pub := &gatewayPublisher{c: pc, idn: gw}

	// The tails subscribe in their own time: publish until all three
	// outputs have shown a vendor request.
	var gotCEF, gotSyslog, gotHook, gotJSON bool
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for !(gotCEF && gotSyslog && gotHook && gotJSON) {
		select {
		case <-tick.C:
			pub.event(t, wire.Event{Kind: "vendor.request", Severity: "info", Attrs: map[string]string{
				"device": "pump-07", "vendor": "spiffe://hospital.example/vendor/acme/jdoe", "grant": "G-1"}})
			gotCEF = gotCEF || strings.Contains(cefOut.String(), "CEF:0|wardgate|wardgate|dev|2001|Vendor access requested|3|")
			gotJSON = gotJSON || strings.Contains(jsonOut.String(), `"kind":"vendor.request"`)
		case f := <-frames:
			if !strings.HasPrefix(f, "<110>1 ") || !strings.Contains(f, " gw-siem wardgate - vendor.request [wardgate@32473 gateway=\"gw-siem\"") ||
				!strings.Contains(f, `[meta sequenceId="`) {
				t.Fatalf("syslog frame: %q", f)
			}
			gotSyslog = true
		case err := <-hooks:
			if err != nil {
				t.Fatalf("webhook: %v", err)
			}
			gotHook = true
		case <-deadline:
			t.Fatalf("cef %v syslog %v webhook %v json %v\ncef stderr: %s\nsyslog stderr: %s\njson stderr: %s", gotCEF, gotSyslog,
				gotHook, gotJSON, cefErr.String(), sysErr.String(), jsonErr.String())
		}
	}
	stop()
	if sysOut.String() != "" {
		t.Errorf("--syslog also wrote to stdout: %q", sysOut.String())
	}
	// JSON lines are exactly the encoding of wire.Line, one per line.
	for _, l := range strings.Split(strings.TrimSpace(jsonOut.String()), "\n") {
		var line wire.Line
		if err := json.Unmarshal([]byte(l), &line); err != nil || !line.Verified || line.Gateway != "gw-siem" {
			t.Errorf("json line %q: %v", l, err)
			continue
		}
		if again, _ := json.Marshal(line); line.Body == nil || l != string(again) {
			t.Errorf("json line is not the wire.Line encoding:\n%s\n%s", l, again)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(cefOut.String()), "\n") {
		if !strings.HasPrefix(l, "CEF:0|wardgate|wardgate|") || bytes.ContainsRune([]byte(l), '\r') {
			t.Errorf("stdout line %q", l)
		}
	}
}
