package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/access/recording"
	"github.com/wardgate/wardgate/gateway/authority"
)

// vendorGateway is a real vendor listener (broker, authority, recording
// store) on loopback, with PEM files for a vendor.
type vendorGateway struct {
	b               *access.Broker
	rec             *recording.Store
	addr            string
	cert, key, root string
	mu              sync.Mutex
	evs             []access.Event
	evc             chan struct{}
	vendorTLS       *tls.Config
	devAddrs        map[int]string // device port -> real loopback address
	local           access.Actor
}

func newVendorGateway(t *testing.T, dev access.Device, devAddrs map[int]string) *vendorGateway {
	t.Helper()
	dir := t.TempDir()
	pki := certstest.NewMini(t)
	srv := pki.Server(t).TLS()
	jo := pki.Issue(t, "jo", "spiffe://"+certstest.MiniTrustDomain+"/vendor/acme-medical/jo")
	g := &vendorGateway{evc: make(chan struct{}, 1), devAddrs: devAddrs, local: access.Actor{Kind: access.KindLocal, Via: "admin", UID: 1000, Name: "nurse"}}
	g.cert, g.key = jo.WriteFiles(t, dir, "jo")
	g.root = pki.WriteRoot(t, dir)
	g.vendorTLS = pki.ClientTLS(jo)
	auth, err := authority.Open(authority.Options{Path: filepath.Join(dir, "authority.db"), TrustDomain: certstest.MiniTrustDomain})
	if err != nil {
		t.Fatal(err)
	}
	st, err := access.OpenStore(filepath.Join(dir, "access.db"))
	if err != nil {
		t.Fatal(err)
	}
	g.rec, err = recording.OpenStore(filepath.Join(dir, "recordings"), recording.StoreOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	roots := pki.Roots()
	g.b, err = access.New(access.Options{
		Store: st, Authority: auth, Recordings: g.rec, Devices: []access.Device{dev},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &srv, nil },
		ClientCAs:      func() *x509.CertPool { return roots },
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, p, _ := net.SplitHostPort(addr)
			var port int
			fmt.Sscan(p, &port)
			var d net.Dialer
			return d.DialContext(ctx, network, g.devAddrs[port])
		},
		Events: func(ev access.Event) {
			g.mu.Lock()
			g.evs = append(g.evs, ev)
			g.mu.Unlock()
			select {
			case g.evc <- struct{}{}:
			default:
			}
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.b.Run(ctx, ln); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		g.b.Close()
		st.Close()
		auth.Close()
	})
	return g
}

func (g *vendorGateway) wait(t *testing.T, kind string, pred func(access.Event) bool) access.Event {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		g.mu.Lock()
		for _, ev := range g.evs {
			if ev.Kind == kind && (pred == nil || pred(ev)) {
				g.mu.Unlock()
				return ev
			}
		}
		g.mu.Unlock()
		select {
		case <-g.evc:
		case <-deadline:
			t.Fatalf("no %s event", kind)
		}
	}
}

// args are the connect flags every run needs.
func (g *vendorGateway) args(target string, extra ...string) []string {
	return append([]string{"connect", "--gateway", g.addr, "--target", target, "--cert", g.cert, "--key", g.key, "--ca", g.root}, extra...)
}

// procOut collects a process's output and lets a test await text in it.
type procOut struct {
	mu sync.Mutex
	b  bytes.Buffer
	ch chan struct{}
}

func newProcOut() *procOut { return &procOut{ch: make(chan struct{}, 1)} }

func (p *procOut) Write(b []byte) (int, error) {
	p.mu.Lock()
	p.b.Write(b)
	p.mu.Unlock()
	select {
	case p.ch <- struct{}{}:
	default:
	}
	return len(b), nil
}

func (p *procOut) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.b.String()
}

// await returns the first submatch of re once the output matches it.
func (p *procOut) await(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(30 * time.Second)
	for {
		if m := rx.FindStringSubmatch(p.String()); m != nil {
			return m
		}
		select {
		case <-p.ch:
		case <-deadline:
			t.Fatalf("output lacks /%s/:\n%s", re, p.String())
		}
	}
}

func echoDevice(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "echo: %s\n", sc.Text())
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestConnectProcessCountdownWarningsAndEnd: the real `wardgate connect`
// against the real listener: the countdown honours request_timeout, the
// grant's id, approver and expiry are printed, the last-minute warning
// comes, and the end says "expired".
func TestConnectProcessCountdownWarningsAndEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the wardgate binary (and sshd)")
	}
	bin := buildBinary(t)
	g := newVendorGateway(t, access.Device{ID: "pump-07", Org: "acme-medical", Ports: []int{23}, Approval: []string{access.KindLocal},
		MaxSession: 15 * time.Second, Host: "pump-07.seg", RequestTTL: 2 * time.Minute}, map[int]string{23: echoDevice(t)})
	out := newProcOut()
	cmd := exec.Command(bin, g.args("pump-07:23", "--listen", "127.0.0.1:0", "--reason", "E42 ticket 1234")...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	m := out.await(t, `waiting for approval of ([A-Z0-9]{6}) \(local approval: [^)]*\): 0[12]:[0-9]{2} left`)
	req := g.wait(t, access.EvRequest, nil)
	if req.Grant != m[1] || req.Reason != "E42 ticket 1234" || req.Until.Sub(req.Time) != 2*time.Minute {
		t.Fatalf("%+v", req)
	}
	if _, err := g.b.Approve(m[1], g.local); err != nil {
		t.Fatal(err)
	}
	out.await(t, `grant `+m[1]+` for pump-07 ports 23 approved by local:nurse\(uid=1000\); expires at `)
	l := out.await(t, `listening on (127\.0\.0\.1:[0-9]+)`)
	out.await(t, `warning: grant `+m[1]+` ends in [0-9.]+m?s`)
	c, err := net.Dial("tcp", l[1])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "status\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "echo: status\n" {
		t.Fatalf("%q %v", line, err)
	}
	out.await(t, `session `+m[1]+`-1 to pump-07:23 ended: expired \(your grant expired`)
	out.await(t, `grant `+m[1]+` ended: expired`)
}

// TestConnectProcessExtend: `wardgate connect --extend` waits for the
// owner, exits 0 with the new expiry when approved and 1 when denied.
func TestConnectProcessExtend(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the wardgate binary (and sshd)")
	}
	bin := buildBinary(t)
	g := newVendorGateway(t, access.Device{ID: "pump-07", Org: "acme-medical", Ports: []int{23}, Approval: []string{access.KindLocal},
		MaxSession: 10 * time.Minute, Host: "pump-07.seg"}, map[int]string{23: echoDevice(t)})
	cl := &access.Client{Gateway: g.addr, Target: "pump-07:23", TLS: g.vendorTLS}
	ans, err := cl.Request(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	granted, err := g.b.Approve(ans.Grant.ID, g.local)
	if err != nil {
		t.Fatal(err)
	}
	for _, approve := range []bool{true, false} {
		out := newProcOut()
		cmd := exec.Command(bin, g.args("pump-07:23", "--extend", "5m", "--reason", "firmware flash")...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		m := out.await(t, `request ([A-Z0-9]{6}) recorded for pump-07: 5m0s more on grant `+ans.Grant.ID)
		out.await(t, `waiting for approval of `+m[1])
		if approve {
			_, err = g.b.Approve(m[1], g.local)
		} else {
			err = g.b.Deny(m[1], g.local)
		}
		if err != nil {
			t.Fatal(err)
		}
		werr := cmd.Wait()
		if approve {
			if werr != nil {
				t.Fatalf("%v\n%s", werr, out.String())
			}
			out.await(t, `extension `+m[1]+` approved by local:nurse\(uid=1000\): grant `+ans.Grant.ID+` now expires at `)
			ev := g.wait(t, access.EvExtended, nil)
			// max_session (10m) from the extension's approval bounds the
			// new expiry: later than before, never beyond now + 10m.
			if ev.Grant != ans.Grant.ID || !ev.Until.After(granted.Deadline) || ev.Until.After(time.Now().Add(10*time.Minute)) {
				t.Fatalf("%+v (was %s)", ev, granted.Deadline)
			}
		} else {
			if cmd.ProcessState.ExitCode() != exitFailure || !strings.Contains(out.String(), "extension: request "+m[1]+" was denied by local:nurse(uid=1000)") {
				t.Fatalf("exit %d\n%s", cmd.ProcessState.ExitCode(), out.String())
			}
		}
	}
}

// sshd runs a real OpenSSH server as the current user on a loopback port
// with its own host key and configuration; it returns the port, the
// client key file and the host public key.
func sshd(t *testing.T) (addr, userKey, hostPub string) {
	t.Helper()
	bin := "/usr/sbin/sshd"
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("sshd is required (scripts/deps.sh installs openssh-server)")
		}
		t.Skip("sshd not installed")
	}
	if os.Getuid() == 0 {
		// As root, sshd needs its privilege separation directory (the
		// package's service creates it at boot).
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	for _, k := range []string{"host", "user"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "user.pub"))
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf("Port %s\nListenAddress 127.0.0.1\nHostKey %s\nPidFile %s\nAuthorizedKeysFile %s\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n",
		port, filepath.Join(dir, "host"), filepath.Join(dir, "sshd.pid"), filepath.Join(dir, "authorized_keys"))
	if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	out := newProcOut()
	cmd := exec.Command(bin, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	out.await(t, "Server listening on 127.0.0.1 port "+port)
	hp, _ := os.ReadFile(filepath.Join(dir, "host.pub"))
	return addr, filepath.Join(dir, "user"), strings.TrimSpace(string(hp))
}

// TestConnectStdioUnderSSH: a real ssh client uses `wardgate connect
// --stdio` as its ProxyCommand to reach a real sshd behind the gateway;
// known_hosts keeps the device's key under its own name (HostKeyAlias);
// the recording notes that the tunnel carried SSH.
func TestConnectStdioUnderSSH(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the wardgate binary (and sshd)")
	}
	addr, userKey, hostPub := sshd(t)
	bin := buildBinary(t)
	g := newVendorGateway(t, access.Device{ID: "pump-07", Org: "acme-medical", Ports: []int{22}, Approval: []string{access.KindLocal},
		MaxSession: 10 * time.Minute, Host: "pump-07.seg"}, map[int]string{22: addr})
	cl := &access.Client{Gateway: g.addr, Target: "pump-07:22", TLS: g.vendorTLS}
	ans, err := cl.Request(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.b.Approve(ans.Grant.ID, g.local); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte("pump-07 "+hostPub+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	user := "root"
	if u := os.Getenv("USER"); u != "" {
		user = u
	}
	proxy := strings.Join(append([]string{bin}, g.args("pump-07:22", "--stdio")...), " ")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ssh := exec.CommandContext(ctx, "ssh", "-F", "/dev/null", "-o", "ProxyCommand="+proxy, "-o", "HostKeyAlias=pump-07",
		"-o", "UserKnownHostsFile="+kh, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-i", userKey,
		user+"@pump-07", "echo", "hello-from-the-pump")
	var stdout, stderr bytes.Buffer
	ssh.Stdout, ssh.Stderr = &stdout, &stderr
	if err := ssh.Run(); err != nil || strings.TrimSpace(stdout.String()) != "hello-from-the-pump" {
		t.Fatalf("ssh: %v\nstdout %q\nstderr %s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "grant "+ans.Grant.ID+" for pump-07 ports 22 approved by local:nurse(uid=1000)") {
		t.Errorf("ssh's stderr lacks the grant line:\n%s", stderr.String())
	}
	end := g.wait(t, access.EvSessionEnd, nil)
	f, err := os.Open(g.rec.Path(end.Session))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var text strings.Builder
	if _, err := recording.ReplayText(f, &text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "## encrypted: ssh: ") {
		t.Errorf("recording does not note SSH:\n%.2000s", text.String())
	}
	// replay --text and --expect on the real recording, with the hash of
	// the session-end event; a wrong hash exits 1.
	code, out, errs := runCLI(t, "", "replay", "--text", "--expect", end.Hash, g.rec.Path(end.Session))
	if code != exitOK || !strings.Contains(out, "final hash matches the expected hash "+end.Hash) || !strings.Contains(out, ">> SSH-2.0-") {
		t.Fatalf("exit %d\n%.3000s\n%s", code, out, errs)
	}
	wrong := strings.Repeat("0", 64)
	code, _, errs = runCLI(t, "", "replay", "--expect", wrong, g.rec.Path(end.Session))
	if code != exitFailure || !strings.Contains(errs, "does not match the expected hash") {
		t.Fatalf("exit %d %s", code, errs)
	}
	_ = io.Discard
}

func TestHostAliasHints(t *testing.T) {
	var b strings.Builder
	printAliasHints(&b, "pump-07", "127.0.0.1:8081", "pump-07:8080")
	for _, want := range []string{"ssh -p 8081 -o HostKeyAlias=pump-07 USER@127.0.0.1", "curl --connect-to pump-07:8080:127.0.0.1:8081 http://pump-07:8080/",
		`add "127.0.0.1 pump-07" to your hosts file, then open http://pump-07:8081/`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("hints lack %q:\n%s", want, b.String())
		}
	}
	// Flag errors are usage errors.
	if code, _, errs := runCLI(t, "", "connect", "--gateway", "g:1", "--target", "d:1", "--cert", "c", "--key", "k", "--ca", "a", "--stdio", "--extend", "5m"); code != exitUsage || !strings.Contains(errs, "exclude each other") {
		t.Errorf("--stdio --extend: %d %s", code, errs)
	}
}
