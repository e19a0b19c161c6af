package clinical

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/gateway/authority"
)

// TestRefusalsWithOpenSSL connects with openssl s_client as refused clients
// and checks each refusal's reason in an event, and that the device was
// never reached; an allowed client gets its answer.
func TestRefusalsWithOpenSSL(t *testing.T) {
	openssl := needTool(t, "openssl")
	e := newEnv(t, pong, nil)
	p := e.p
	now := time.Now()
	cases := []struct {
		name, reason string
		cred         *cred
	}{
		{"no client certificate", ReasonNoCertificate, nil},
		{"wrong CA", "untrusted", ptr(p.client(t, "wrong", pumpSrv, p.wrong, now.Add(-time.Minute), now.Add(time.Hour)))},
		{"identity not allowed", "not_allowed", ptr(p.client(t, "billing", otherSvc, p.ca, now.Add(-time.Minute), now.Add(time.Hour)))},
		{"expired", "expired", ptr(p.client(t, "expired", pumpSrv, p.ca, now.Add(-3*time.Hour), now.Add(-time.Hour)))},
		{"longer-lived than allowed", "lifetime_too_long", ptr(p.client(t, "long", pumpSrv, p.ca, now.Add(-time.Minute), now.Add(48*time.Hour)))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"s_client", "-connect", e.addr(), "-CAfile", p.rootFile, "-quiet"}
			if tc.cred != nil {
				args = append(args, "-cert", tc.cred.certFile, "-key", tc.cred.keyFile, "-cert_chain", tc.cred.chainFile)
			}
			out := runTool(t, openssl, args, "PING\n")
			if strings.Contains(out, "PONG") {
				t.Fatalf("refused client got an answer: %s", out)
			}
			ev := e.ev.wait(t, EvRefused, func(ev Event) bool { return ev.Reason == tc.reason })
			if ev.Device != devicePmp || !strings.HasPrefix(ev.Remote, "127.0.0.1:") || ev.Detail == "" {
				t.Errorf("event %+v", ev)
			}
			if tc.reason == "not_allowed" && ev.Identity != otherSvc {
				t.Errorf("identity %q, want %q", ev.Identity, otherSvc)
			}
			if tc.reason == "untrusted" && ev.Claimed != pumpSrv {
				t.Errorf("claimed %q", ev.Claimed)
			}
		})
	}
	if n := e.be.count(); n != 0 {
		t.Fatalf("refused clients reached the device %d times", n)
	}
	t.Run("allowed", func(t *testing.T) {
		c := p.good(t)
		out := runTool(t, openssl, []string{"s_client", "-connect", e.addr(), "-CAfile", p.rootFile, "-quiet",
			"-cert", c.certFile, "-key", c.keyFile, "-cert_chain", c.chainFile}, "PING\n")
		if !strings.Contains(out, "PONG PING") {
			t.Fatalf("no answer through the relay: %s", out)
		}
		e.ev.wait(t, EvSessionEnd, func(ev Event) bool { return ev.Identity == pumpSrv && ev.ToDevice == 5 && ev.FromDevice == 10 })
	})
	cnt := e.s.Snapshot()[0].Counters
	if cnt.AuthFailures["expired"] != 1 || cnt.AuthFailures[ReasonNoCertificate] != 1 || cnt.Sessions != 1 {
		t.Errorf("counters %+v", cnt)
	}
}

func ptr[T any](v T) *T { return &v }

// runTool runs an external client with stdin and a 20s bound.
func runTool(t *testing.T, path string, args []string, stdin string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, _ := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s timed out: %s", path, out)
	}
	return string(out)
}

// TestCurlThroughRelay: an HTTP device behind the mTLS front, reached with
// curl presenting the clinical client's certificate.
func TestCurlThroughRelay(t *testing.T) {
	curl := needTool(t, "curl")
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "device says hello to %s\n", r.URL.Path)
	}), ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	e := newEnv(t, nil, func(_ *Options, d *DeviceOptions) { d.TCP = ln.Addr().String() })
	c := e.p.good(t)
	out := runTool(t, curl, []string{"-sS", "--max-time", "10", "--cacert", e.p.rootFile, "--cert", c.certFile, "--key", c.keyFile,
		"https://localhost:" + portOf(e.addr()) + "/vitals"}, "")
	if !strings.Contains(out, "device says hello to /vitals") {
		t.Fatalf("curl: %s", out)
	}
	other := e.p.client(t, "billing", otherSvc, e.p.ca, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	out = runTool(t, curl, []string{"-sS", "--max-time", "10", "--cacert", e.p.rootFile, "--cert", other.certFile, "--key", other.keyFile,
		"https://localhost:" + portOf(e.addr()) + "/vitals"}, "")
	if strings.Contains(out, "hello") {
		t.Fatalf("refused identity got through: %s", out)
	}
	e.ev.wait(t, EvRefused, func(ev Event) bool { return ev.Reason == "not_allowed" })
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// TestHalfClose: the client half-closes after sending; the echo device sees
// EOF, answers everything and half-closes; the client reads to EOF.
func TestHalfClose(t *testing.T) {
	e := newEnv(t, echo, nil)
	c := dial(t, e.addr(), e.p.good(t))
	defer c.Close()
	msg := strings.Repeat("abcdefgh", 10000)
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read to EOF: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("got %d bytes, want %d", len(got), len(msg))
	}
	ev := e.ev.wait(t, EvSessionEnd, nil)
	if ev.Reason != ReasonClosed || ev.ToDevice != int64(len(msg)) || ev.FromDevice != int64(len(msg)) {
		t.Fatalf("session end %+v", ev)
	}
}

// TestBackendDown: the device does not answer: the client gets a clean
// close (close_notify, read returns io.EOF) and a link_down event goes out.
func TestBackendDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	e := newEnv(t, nil, func(_ *Options, d *DeviceOptions) { d.TCP = dead })
	c := dial(t, e.addr(), e.p.good(t))
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("read: %v, want io.EOF (close_notify)", err)
	}
	ev := e.ev.wait(t, EvLinkDown, nil)
	if ev.Device != devicePmp || !strings.Contains(ev.Detail, dead) {
		t.Fatalf("link down %+v", ev)
	}
	if st := e.s.Snapshot()[0]; st.LinkState != "down" || st.Counters.Refused[ReasonLinkDown] != 1 {
		t.Fatalf("status %+v", st)
	}
}

// TestDeviceFailsMidSession: the device resets the connection: the client
// gets a clean close.
func TestDeviceFailsMidSession(t *testing.T) {
	e := newEnv(t, func(c net.Conn) {
		buf := make([]byte, 4)
		_, _ = io.ReadFull(c, buf)
		_, _ = c.Write(buf)
		c.(*net.TCPConn).SetLinger(0)
	}, nil)
	c := dial(t, e.addr(), e.p.good(t))
	defer c.Close()
	roundTrip(t, c, "ping")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read: %v, want io.EOF", err)
	}
}

// TestLockCutsLiveSession: a prefix lock cuts the live session within 1 s
// through the lock authority's subscription; new handshakes are refused by
// Authorize.
func TestLockCutsLiveSession(t *testing.T) {
	e := newEnv(t, echo, nil)
	good := e.p.good(t)
	c := dial(t, e.addr(), good)
	defer c.Close()
	roundTrip(t, c, "hello")
	start := time.Now()
	if _, err := e.auth.AddLock("spiffe://"+td+"/svc/*", time.Time{}, "incident", authority.Actor{Kind: authority.KindLocal, Via: "admin"}); err != nil {
		t.Fatal(err)
	}
	took, _ := waitClosed(t, c, 3*time.Second)
	if took > time.Second || time.Since(start) > time.Second {
		t.Fatalf("session cut after %s", took)
	}
	ev := e.ev.wait(t, EvSessionEnd, nil)
	if ev.Reason != ReasonLocked {
		t.Fatalf("end %+v", ev)
	}
	c2, err := tls.Dial("tcp", e.addr(), good.tls)
	if err == nil {
		_, err = c2.Read(make([]byte, 1))
		c2.Close()
	}
	if err == nil {
		t.Fatal("locked identity connected")
	}
	e.ev.wait(t, EvRefused, func(ev Event) bool { return ev.Reason == "locked" && ev.Identity == pumpSrv })
}

// TestResumption: a second handshake resumes with a ticket, and Authorize
// still runs on it (a lock refuses a resumed session).
func TestResumption(t *testing.T) {
	e := newEnv(t, echo, nil)
	good := e.p.good(t)
	good.tls.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	for i := range 2 {
		c := dial(t, e.addr(), good)
		roundTrip(t, c, "x")
		if i == 1 && !c.ConnectionState().DidResume {
			t.Fatal("second handshake did not resume")
		}
		c.Close()
	}
	e.pol.lock(pumpSrv)
	c, err := tls.Dial("tcp", e.addr(), good.tls)
	if err == nil {
		if !c.ConnectionState().DidResume {
			t.Log("third handshake did not resume")
		}
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if err == nil {
		t.Fatal("locked identity resumed")
	}
	e.ev.wait(t, EvRefused, func(ev Event) bool { return ev.Reason == "locked" })
}

// TestUpdate: an unchanged device keeps its session across Update; a
// changed one is restarted; a removed one stops.
func TestUpdate(t *testing.T) {
	e := newEnv(t, echo, nil)
	c := dial(t, e.addr(), e.p.good(t))
	defer c.Close()
	roundTrip(t, c, "before")
	addr := e.addr()
	same := e.dev
	if err := e.s.Update([]DeviceOptions{same}); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "after reload")
	if e.addr() != addr {
		t.Fatal("unchanged device got a new listener")
	}
	bad := same
	bad.TCP = ""
	if err := e.s.Update([]DeviceOptions{bad}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("invalid update: %v", err)
	}
	roundTrip(t, c, "after refused reload")

	changed := same
	changed.IdleTimeout = time.Hour
	if err := e.s.Update([]DeviceOptions{changed}); err != nil {
		t.Fatal(err)
	}
	if _, err := waitClosed(t, c, 5*time.Second); err != nil {
		t.Fatalf("changed device's session not closed cleanly: %v", err)
	}
	e.ev.wait(t, EvSessionEnd, func(ev Event) bool { return ev.Reason == ReasonReconfigured })
	c2 := dial(t, e.addr(), e.p.good(t))
	roundTrip(t, c2, "new listener")
	c2.Close()
	if err := e.s.Update(nil); err != nil {
		t.Fatal(err)
	}
	if len(e.s.Snapshot()) != 0 {
		t.Fatal("removed device still listed")
	}
}

// TestShutdownDrains: Shutdown waits for a live session until its deadline,
// then cuts it.
func TestShutdownDrains(t *testing.T) {
	e := newEnv(t, echo, nil)
	c := dial(t, e.addr(), e.p.good(t))
	defer c.Close()
	roundTrip(t, c, "x")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := e.s.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := waitClosed(t, c, 5*time.Second); err != nil {
		t.Fatalf("not closed: %v", err)
	}
	e.ev.wait(t, EvSessionEnd, func(ev Event) bool { return ev.Reason == ReasonShutdown })
}
