package access

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardgate/wardgate/gateway/access/recording"
	"github.com/wardgate/wardgate/gateway/authority"
)

var (
	local   = Actor{Kind: KindLocal, Via: "admin", UID: 1000}
	central = Actor{Kind: KindCentral, Via: "command", Approver: "spiffe://" + td + "/approver/biomed/ann"}
)

func TestAuthorizationMatrix(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	expiredCert := e.pki.vendor(t, "old", joURI, e.pki.ca, now.Add(-3*time.Hour), now.Add(-time.Hour))
	longCert := e.pki.vendor(t, "long", joURI, e.pki.ca, now.Add(-time.Minute), now.Add(48*time.Hour-time.Minute))
	wrongCA := e.pki.vendor(t, "wrong", joURI, e.pki.wrong, now.Add(-time.Minute), now.Add(4*time.Hour))
	max := e.pki.vendor(t, "max", "spiffe://"+td+"/vendor/acme-medical/max", e.pki.ca, now.Add(-time.Minute), now.Add(4*time.Hour))

	cases := []struct {
		name   string
		setup  func(t *testing.T) // runs before the CONNECT
		v      vendor
		target string
		status int
		code   string
		reason string
	}{
		{"no grant", nil, e.jo, "pump-07:23", 403, CodeNoGrant, "no grant yet: request "},
		{"pending", nil, e.jo, "pump-07:23", 403, CodePending, "waiting for local approval"},
		{"denied", func(t *testing.T) {
			id := e.request(max, "pump-07:23")
			if err := e.b.Deny(id, local); err != nil {
				t.Fatal(err)
			}
		}, max, "pump-07:23", 403, CodeDenied, "was denied by local:uid=1000"},
		{"expired", func(t *testing.T) {
			id := e.request(e.jo, "pump-09:23")
			if _, err := e.b.Approve(id, central); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(time.Hour + time.Second)
			e.ev.wait(t, EvGrantExpired, func(ev Event) bool { return ev.Grant == id })
		}, e.jo, "pump-09:23", 403, CodeExpired, "expired at"},
		{"other device", nil, e.jo, "mon-02:22", 403, CodeOtherDevice, "not serviced by acme-medical"},
		{"other port", nil, e.jo, "pump-07:2222", 403, CodePortNotAllowed, "port 2222 not allowed on pump-07 (service ports: 23, 8080)"},
		{"clinical listener port", nil, e.jo, "pump-07:7001", 403, CodeClinicalPort, "clinical port of pump-07"},
		{"expired cert", nil, expiredCert, "pump-07:23", 403, CodeBadCert, "client certificate expired at"},
		{"certificate longer-lived than allowed", nil, longCert, "pump-07:23", 403, CodeIdentity, "lifetime 48h0m0s exceeds the 12h0m0s allowed"},
		{"wrong CA", nil, wrongCA, "pump-07:23", 403, CodeBadCert, "not issued by a CA this gateway trusts"},
		{"IPv4 literal", nil, e.jo, "10.20.0.7:23", 403, CodeIPLiteral, "is an address"},
		{"IPv6 literal", nil, e.jo, "[::1]:23", 403, CodeIPLiteral, "is an address"},
		{"unknown device", nil, e.jo, "pump-99:23", 404, CodeUnknownDevice, "unknown device pump-99"},
		{"locked identity", func(t *testing.T) {
			if _, err := e.auth.AddLock(max.tls.Certificates[0].Leaf.URIs[0].String(), time.Time{}, "stolen laptop", local); err != nil {
				t.Fatal(err)
			}
		}, max, "pump-07:23", 403, CodeIdentity, "is locked: stolen laptop"},
		{"tamper", func(t *testing.T) {
			if err := e.auth.SetTamper(true); err != nil {
				t.Fatal(err)
			}
		}, e.jo, "pump-07:8080", 403, CodeTamper, "tamper"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.setup != nil {
				c.setup(t)
			}
			before := e.ev.count(EvRefused)
			re := e.refused(c.v, c.target)
			if re.Status != c.status || re.Code != c.code || !strings.Contains(re.Reason, c.reason) {
				t.Fatalf("got %d %s %q; want %d %s containing %q", re.Status, re.Code, re.Reason, c.status, c.code, c.reason)
			}
			ev := e.ev.wait(t, EvRefused, func(ev Event) bool { return ev.Code == c.code && ev.Reason == re.Reason })
			if e.ev.count(EvRefused) != before+1 || ev.Remote == "" || ev.Count != 1 {
				t.Fatalf("refusal event %+v", ev)
			}
		})
	}
	// Locked identity refused by the broker itself when Authorize does not check.
	e.b.o.Authorize = defaultAuthorize
	e.auth.SetTamper(false)
	if err := e.auth.ClearTamper(local); err != nil {
		t.Fatal(err)
	}
	if re := e.refused(max, "pump-07:23"); re.Code != CodeLocked {
		t.Fatalf("broker lock check: %+v", re)
	}
}

func TestRequestCarriesReasonAndAnnounces(t *testing.T) {
	e := newEnv(t)
	id := e.request(e.jo, "pump-07:23")
	ev := e.ev.wait(t, EvRequest, nil)
	if ev.Grant != id || ev.Vendor != joURI || ev.Device != "pump-07" || ev.Port != 23 || ev.Reason != "alarm E42 on pump" {
		t.Fatalf("request event %+v", ev)
	}
	if len(id) != 6 || strings.ContainsAny(id, "01OILU") {
		t.Fatalf("id %q is not short and typeable", id)
	}
	// Asking for another port joins the pending request.
	re := e.refused(e.jo, "pump-07:8080")
	if re.Code != CodePending || re.Request != id {
		t.Fatalf("%+v", re)
	}
	s := e.b.Snapshot()
	if len(s.Requests) != 1 || fmt.Sprint(s.Requests[0].Ports) != "[23 8080]" || s.Requests[0].Person != "jo" || !s.LED.Pending {
		t.Fatalf("snapshot %+v", s)
	}
	if l := e.led.last(); !l.Pending || l.Live {
		t.Fatalf("LED %+v", l)
	}
	// Nobody acts: the request expires and the LED stops blinking.
	e.clock.Advance(15*time.Minute + time.Second)
	e.ev.wait(t, EvRequestExpired, func(ev Event) bool { return ev.Grant == id })
	e.led.wait(t, LEDState{})
	if _, err := e.b.Approve(strings.ToLower(id), local); !errors.Is(err, ErrNotPending) {
		t.Fatalf("approve expired: %v", err)
	}
	re = e.refused(e.jo, "pump-07:23")
	if re.Code != CodeExpired || !strings.Contains(re.Reason, "request "+id+" expired") || re.Request == id {
		t.Fatalf("%+v", re)
	}
}

func TestButtonApproval(t *testing.T) {
	e := newEnv(t)
	if _, err := e.b.ApproveByButton(); !errors.Is(err, ErrNoneOrMany) {
		t.Fatalf("no request: %v", err)
	}
	id := e.request(e.jo, "pump-07:23")
	g, err := e.b.ApproveByButton()
	if err != nil || g.ID != id || g.State != StateActive {
		t.Fatalf("%+v %v", g, err)
	}
	ev := e.ev.wait(t, EvApprove, nil)
	if ev.Actor.String() != "local:button" || !ev.Complete {
		t.Fatalf("%+v", ev)
	}
	c := e.tunnel(e.jo, "pump-07:23")
	e.led.wait(t, LEDState{Live: true})
	// Two pending requests: the button does not guess.
	max := e.pki.vendor(t, "max", "spiffe://"+td+"/vendor/acme-medical/max", e.pki.ca, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	e.request(max, "pump-07:23")
	e.request(max, "pump-11:23")
	if _, err := e.b.ApproveByButton(); !errors.Is(err, ErrNoneOrMany) {
		t.Fatalf("two pending: %v", err)
	}
	// Short press while live ends the session and the grant.
	n, err := e.b.ButtonShortPress()
	if err != nil || n != 1 {
		t.Fatalf("short press: %d %v", n, err)
	}
	waitCut(t, c)
	e.ev.wait(t, EvSessionEnd, func(ev Event) bool { return ev.Reason == "ended by button press" })
	if re := e.refused(e.jo, "pump-07:23"); re.Code != CodeRevoked {
		t.Fatalf("%+v", re)
	}
	if _, err := e.b.ButtonShortPress(); !errors.Is(err, ErrNoSession) {
		t.Fatalf("no session: %v", err)
	}
}

func TestCLIApprovalRecordsUID(t *testing.T) {
	e := newEnv(t)
	id := e.request(e.jo, "pump-07:23")
	if _, err := e.b.Approve(id, central); !errors.Is(err, ErrPolicy) {
		t.Fatalf("central on a local device: %v", err)
	}
	g, err := e.b.Approve(id, Actor{Kind: KindLocal, Via: "admin", UID: 1042})
	if err != nil {
		t.Fatal(err)
	}
	if g.Approvals[0].Actor.UID != 1042 || !g.Deadline.Equal(e.clock.Now().Add(time.Hour)) {
		t.Fatalf("%+v", g)
	}
	ev := e.ev.wait(t, EvApprove, nil)
	if ev.Actor.UID != 1042 || ev.Actor.String() != "local:uid=1042" {
		t.Fatalf("%+v", ev)
	}
	if _, err := e.b.Approve(id, local); !errors.Is(err, ErrNotPending) {
		t.Fatalf("second approve: %v", err)
	}
	if _, err := e.b.Approve("NOSUCH", local); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	if _, err := e.b.Approve(id, Actor{Kind: "root"}); !errors.Is(err, ErrBadActor) {
		t.Fatalf("bad actor: %v", err)
	}
	e.tunnel(e.jo, "pump-07:23").Close()
	if err := e.b.Deny(id, local); !errors.Is(err, ErrNotPending) {
		t.Fatalf("deny active: %v", err)
	}
}

func TestCentralAndDualControl(t *testing.T) {
	e := newEnv(t)
	id := e.request(e.jo, "pump-09:23")
	if _, err := e.b.Approve(id, local); !errors.Is(err, ErrPolicy) {
		t.Fatalf("local on a central device: %v", err)
	}
	if _, err := e.b.Approve(id, Actor{Kind: KindCentral}); !errors.Is(err, ErrBadActor) {
		t.Fatalf("central without approver: %v", err)
	}
	if _, err := e.b.Approve(id, central); err != nil {
		t.Fatal(err)
	}
	e.tunnel(e.jo, "pump-09:23").Close()

	dual := e.request(e.jo, "pump-11:23")
	g, err := e.b.Approve(dual, local)
	if err != nil || g.State != StatePending {
		t.Fatalf("%+v %v", g, err)
	}
	ev := e.ev.wait(t, EvApprove, func(ev Event) bool { return ev.Grant == dual })
	if ev.Complete || fmt.Sprint(ev.Waiting) != "[central]" {
		t.Fatalf("%+v", ev)
	}
	if _, err := e.b.Approve(dual, local); !errors.Is(err, ErrAlreadyApproved) {
		t.Fatalf("local twice: %v", err)
	}
	re := e.refused(e.jo, "pump-11:23")
	if re.Code != CodePending || !strings.Contains(re.Reason, "central approval") || strings.Contains(re.Reason, "local approval") {
		t.Fatalf("%+v", re)
	}
	if g, err = e.b.Approve(dual, central); err != nil || g.State != StateActive || len(g.Approvals) != 2 {
		t.Fatalf("%+v %v", g, err)
	}
	c := e.tunnel(e.jo, "pump-11:23")
	// Revoke by central cuts it.
	if err := e.b.Revoke(dual, central); err != nil {
		t.Fatal(err)
	}
	waitCut(t, c)
	if err := e.b.Revoke(dual, central); !errors.Is(err, ErrNotActive) {
		t.Fatalf("revoke twice: %v", err)
	}
}

func approveTunnel(e *env, target string) (string, net.Conn) {
	id := e.request(e.jo, target)
	if _, err := e.b.Approve(id, local); err != nil {
		e.t.Fatal(err)
	}
	return id, e.tunnel(e.jo, target)
}

func TestExpiryCutsTunnel(t *testing.T) {
	e := newEnv(t)
	id, c := approveTunnel(e, "pump-07:23")
	e.roundTrip(c, "status")
	e.clock.Advance(59 * time.Minute)
	e.roundTrip(c, "still here")
	e.clock.Advance(time.Minute)
	waitCut(t, c)
	end := e.ev.wait(t, EvSessionEnd, nil)
	e.ev.wait(t, EvGrantExpired, func(ev Event) bool { return ev.Grant == id })
	if end.Reason != "grant expired" || end.Hash == "" || end.ToDevice != int64(len("hello\nstatus\nstill here\n")) {
		t.Fatalf("%+v", end)
	}
	e.led.wait(t, LEDState{})
	// The recording verifies and ends with the hash of the event.
	if end.Recording != filepath.Base(e.rec.Path(end.Session)) {
		t.Fatalf("recording %q", end.Recording)
	}
	f, err := os.Open(e.rec.Path(end.Session))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	if err := recording.Replay(f, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), end.Hash) || !strings.Contains(out.String(), `"echo: status."`) ||
		!strings.Contains(out.String(), "approved by "+local.String()) {
		t.Fatalf("timeline:\n%s", out.String())
	}
}

func TestPrefixLockCutsSessionAndRevokes(t *testing.T) {
	e := newEnv(t)
	id, c := approveTunnel(e, "pump-07:23")
	// A lock on another org's prefix leaves the session alone.
	if _, err := e.auth.AddLock("spiffe://"+td+"/vendor/other-medical/*", time.Time{}, "", local); err != nil {
		t.Fatal(err)
	}
	e.roundTrip(c, "still here")
	until := e.clock.Now().Add(2 * time.Hour)
	if _, err := e.auth.AddLock("spiffe://"+td+"/vendor/acme-medical/*", until, "incident 77", central); err != nil {
		t.Fatal(err)
	}
	waitCut(t, c)
	rev := e.ev.wait(t, EvRevoke, func(ev Event) bool { return ev.Grant == id })
	if rev.Reason != "identity locked" || rev.Actor == nil || rev.Actor.Approver != central.Approver {
		t.Fatalf("revoke event %+v", rev)
	}
	if end := e.ev.wait(t, EvSessionEnd, nil); end.Reason != "identity locked" || end.Hash == "" {
		t.Fatalf("session end %+v", end)
	}
	e.led.wait(t, LEDState{})
	if n := e.ev.count(authority.EvLockAdd); n != 0 {
		t.Fatalf("the broker emitted %d lock events: they are the authority's", n)
	}
	s := e.b.Snapshot()
	if len(s.Locks) != 2 || len(s.Grants) != 0 || len(s.Sessions) != 0 || s.Recent[0].State != StateRevoked {
		t.Fatalf("snapshot %+v", s)
	}
	if re := e.refused(e.jo, "pump-07:23"); re.Code != CodeIdentity || !strings.Contains(re.Reason, "incident 77") {
		t.Fatalf("%+v", re)
	}
	// The broker checks the authority itself when Authorize does not.
	e.b.o.Authorize = defaultAuthorize
	if re := e.refused(e.jo, "pump-07:23"); re.Code != CodeLocked || !strings.Contains(re.Reason, "by spiffe://"+td+"/vendor/acme-medical/*") {
		t.Fatalf("%+v", re)
	}
	// The lock ends by itself; a new request is possible.
	e.clock.Advance(2 * time.Hour)
	e.authWait(authority.EvLockRemove)
	if ok, _ := e.auth.Locked(joURI); ok {
		t.Fatal("still locked")
	}
	if re := e.refused(e.jo, "pump-07:23"); re.Code != CodeRevoked && re.Code != CodeNoGrant {
		t.Fatalf("after the lock: %+v", re)
	}
}

func TestTamperCutsAndLatches(t *testing.T) {
	e := newEnv(t)
	_, c := approveTunnel(e, "pump-07:23")
	_, c2 := approveTunnel(e, "pump-07:8080")
	if err := e.auth.SetTamper(true); err != nil {
		t.Fatal(err)
	}
	waitCut(t, c)
	waitCut(t, c2)
	for _, port := range []int{23, 8080} {
		if end := e.ev.wait(t, EvSessionEnd, func(ev Event) bool { return ev.Port == port }); end.Reason != "tamper" {
			t.Fatalf("%+v", end)
		}
	}
	if n := e.ev.count(authority.EvTamper); n != 0 {
		t.Fatalf("the broker emitted %d tamper events: they are the authority's", n)
	}
	if !e.b.Snapshot().Tamper {
		t.Fatal("snapshot does not show the latch")
	}
	e.auth.SetTamper(false)
	if re := e.refused(e.jo, "pump-07:23"); re.Code != CodeTamper {
		t.Fatalf("latched: %+v", re)
	}
	if err := e.auth.ClearTamper(central); err != nil {
		t.Fatal(err)
	}
	e.tunnel(e.jo, "pump-07:23").Close()
}

func TestEndSessionKeepsGrant(t *testing.T) {
	e := newEnv(t)
	_, c := approveTunnel(e, "pump-07:23")
	s := e.b.Snapshot()
	if len(s.Sessions) != 1 || len(s.Grants) != 1 {
		t.Fatalf("%+v", s)
	}
	if err := e.b.EndSession(strings.ToLower(s.Sessions[0].ID), central); err != nil {
		t.Fatal(err)
	}
	waitCut(t, c)
	if err := e.b.EndSession("X-1", central); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	c2 := e.tunnel(e.jo, "pump-07:23")
	c2.Close()
	end := e.ev.wait(t, EvSessionEnd, func(ev Event) bool { return strings.HasSuffix(ev.Session, "-2") })
	if end.Reason != "closed" {
		t.Fatalf("%+v", end)
	}
}

func TestRestartPersistence(t *testing.T) {
	e := newEnv(t)
	id := e.request(e.jo, "pump-07:23")
	if _, err := e.b.Approve(id, local); err != nil {
		t.Fatal(err)
	}
	pend := e.request(e.jo, "pump-11:23")
	e.stop()
	// Time while the gateway is down does not count: requests and grants
	// keep the time they had left (a clock that jumped would otherwise
	// extend or end them).
	e.clock.Advance(20 * time.Minute)
	e.ev = newEvents()
	e.start()
	s := e.b.Snapshot()
	if len(s.Grants) != 1 || s.Grants[0].ID != id || s.Grants[0].Approvals[0].Actor.UID != 1000 || len(s.Requests) != 1 {
		t.Fatalf("grants after restart: %+v %+v", s.Grants, s.Requests)
	}
	if left := s.Grants[0].Deadline.Sub(e.clock.Now()); left != time.Hour {
		t.Fatalf("grant left %s after restart, want the hour it had", left)
	}
	e.clock.Advance(15 * time.Minute)
	e.ev.wait(t, EvRequestExpired, func(ev Event) bool { return ev.Grant == pend })
	c := e.tunnel(e.jo, "pump-07:23")
	// The grant's expiry was rescheduled from the store.
	e.clock.Advance(45 * time.Minute)
	waitCut(t, c)
	e.ev.wait(t, EvGrantExpired, func(ev Event) bool { return ev.Grant == id })
}

func TestRecordingTamperNamesFrame(t *testing.T) {
	e := newEnv(t)
	_, c := approveTunnel(e, "pump-07:23")
	e.roundTrip(c, "secret-setting=1")
	c.Close()
	end := e.ev.wait(t, EvSessionEnd, nil)
	path := e.rec.Path(end.Session)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte("secret-setting=1"))
	data[i] = 'S'
	var out bytes.Buffer
	err = recording.Replay(bytes.NewReader(data), &out)
	var ce *recording.ChainError
	if !errors.As(err, &ce) || ce.Frame != 3 {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "FAILED: recording frame 3") {
		t.Fatalf("%s", out.String())
	}
}

func TestRecordingStoreFull(t *testing.T) {
	var delivered atomic.Bool // central has the session-end events
	e := newEnvRec(t, recording.StoreOptions{MaxBytes: 400, Delivered: func(uint64) (bool, error) { return delivered.Load(), nil }})
	_, c := approveTunnel(e, "pump-07:23")
	e.roundTrip(c, strings.Repeat("x", 300)) // past the cap: a live session goes on
	re := e.refused(e.jo, "pump-07:23")
	if re.Status != 503 || re.Code != CodeStorageFull || re.Reason != storageFull {
		t.Fatalf("%+v", re)
	}
	ev := e.ev.wait(t, EvRefused, func(ev Event) bool { return ev.Code == CodeStorageFull })
	if ev.Reason != storageFull || ev.Grant == "" {
		t.Fatalf("%+v", ev)
	}
	// Nothing else breaks: the live session, other decisions, requests.
	e.roundTrip(c, "still here")
	if re := e.refused(e.jo, "pump-07:2222"); re.Code != CodePortNotAllowed {
		t.Fatalf("%+v", re)
	}
	e.request(e.jo, "pump-09:23")
	if s := e.b.Snapshot(); len(s.Sessions) != 1 {
		t.Fatalf("sessions %+v", s.Sessions)
	}
	// Delivered but still live: never removed, so still full.
	delivered.Store(true)
	if re := e.refused(e.jo, "pump-07:23"); re.Code != CodeStorageFull {
		t.Fatalf("%+v", re)
	}
	// Once it ended and central has its end event, the store makes room.
	c.Close()
	end := e.ev.wait(t, EvSessionEnd, nil)
	e.tunnel(e.jo, "pump-07:23").Close()
	if _, err := os.Stat(e.rec.Path(end.Session)); !os.IsNotExist(err) {
		t.Fatalf("delivered recording kept: %v", err)
	}
}

func TestProtocolErrors(t *testing.T) {
	e := newEnv(t)
	send := func(req string) string {
		t.Helper()
		tc, err := tls.Dial("tcp", e.addr, e.jo.tls)
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(tc, req); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(tc).ReadString('\n')
		return line
	}
	cases := []struct{ name, req, want string }{
		{"GET", "GET http://pump-07:23/ HTTP/1.1\r\nHost: pump-07\r\n\r\n", "HTTP/1.1 405 "},
		{"garbage", "hello\r\n\r\n", "HTTP/1.1 400 "},
		{"no port", "CONNECT pump-07 HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
		{"huge header", "CONNECT pump-07:23 HTTP/1.1\r\nX: " + strings.Repeat("a", 5000) + "\r\n\r\n", "HTTP/1.1 431 "},
		{"many headers", "CONNECT pump-07:23 HTTP/1.1\r\n" + strings.Repeat("X: a\r\n", 100) + "\r\n", "HTTP/1.1 431 "},
		{"ok head", "CONNECT pump-07:23 HTTP/1.1\r\nHost: pump-07:23\r\n\r\n", "HTTP/1.1 403 no grant yet"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := send(c.req); !strings.HasPrefix(got, c.want) {
				t.Fatalf("got %q want %q", got, c.want)
			}
		})
	}
	// No client certificate: the handshake fails and the attempt is an event.
	cfg := e.jo.tls.Clone()
	cfg.Certificates = nil
	tc, err := tls.Dial("tcp", e.addr, cfg)
	if err == nil {
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(tc, "CONNECT pump-07:23 HTTP/1.1\r\n\r\n")
		_, err = tc.Read(make([]byte, 10))
		tc.Close()
	}
	if err == nil {
		t.Fatal("connection without client certificate answered")
	}
	e.ev.wait(t, EvRefused, func(ev Event) bool { return ev.Code == CodeHandshake && ev.Reason == HandshakeNoCertificate })
}

func TestUnreachableDevice(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Devices[0].Host = "gone.seg"
	})
	id := e.request(e.jo, "pump-07:23")
	if _, err := e.b.Approve(id, local); err != nil {
		t.Fatal(err)
	}
	if re := e.refused(e.jo, "pump-07:23"); re.Status != 502 || re.Code != CodeUnreachable {
		t.Fatalf("%+v", re)
	}
}

func TestNewValidates(t *testing.T) {
	st, err := OpenStore(filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	au, err := authority.Open(authority.Options{Path: filepath.Join(t.TempDir(), "authority.db"), TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	defer au.Close()
	rs, err := recording.OpenStore(t.TempDir(), recording.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gc := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil }
	auth := defaultAuthorize
	bad := []Options{
		{},
		{Store: st},
		{Store: st, Authority: au},
		{Store: st, Authority: au, Recordings: rs},
		{Store: st, Recordings: rs, GetCertificate: gc, Authorize: auth},
		{Store: st, Authority: au, Recordings: rs, GetCertificate: gc},
		{Store: st, Authority: au, Recordings: rs, GetCertificate: gc, Authorize: auth, Devices: []Device{{ID: "a", Approval: []string{"root"}, MaxSession: time.Hour}}},
		{Store: st, Authority: au, Recordings: rs, GetCertificate: gc, Authorize: auth, Devices: []Device{{ID: "a", Approval: []string{KindLocal}}}},
		{Store: st, Authority: au, Recordings: rs, GetCertificate: gc, Authorize: auth, Devices: []Device{{ID: "a", Approval: nil, MaxSession: time.Hour}}},
		{Store: st, Authority: au, Recordings: rs, GetCertificate: gc, Authorize: auth, Devices: []Device{{ID: "a", Approval: []string{KindLocal}, MaxSession: 1}, {ID: "a", Approval: []string{KindLocal}, MaxSession: 1}}},
		{Store: st, Authority: au, Recordings: rs, GetCertificate: gc, Authorize: auth, Devices: []Device{{Approval: []string{KindLocal}, MaxSession: 1}}},
	}
	for i, o := range bad {
		if _, err := New(o); err == nil {
			t.Errorf("case %d accepted", i)
		}
	}
	good := Options{Store: st, Authority: au, Recordings: rs, GetCertificate: gc, Authorize: auth}
	if b, err := New(good); err != nil {
		t.Fatal(err)
	} else {
		_ = b.Close()
	}
	// A second process cannot open the same store.
	if _, err := OpenStore(filepath.Join(filepath.Dir(st.db.Path()), "a.db")); err == nil || !strings.Contains(err.Error(), "locked by another") {
		t.Fatalf("second open: %v", err)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		e := newEnv(t)
		_, c := approveTunnel(e, "pump-07:23")
		e.refused(e.jo, "pump-07:2222")
		_ = c
		e.stop() // cuts the live session, waits for every connection goroutine
		waitCut(t, c)
		c.Close()
	}()
	// Goroutines that called Done may still be returning: allow a bounded
	// number of scheduler yields.
	n := 0
	for i := 0; i < 1000; i++ {
		if n = runtime.NumGoroutine(); n <= before+1 { // +1: echo server's cleanup runs later
			return
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	buf := make([]byte, 1<<16)
	t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
}

func TestDenyHoldThenNewRequest(t *testing.T) {
	e := newEnv(t)
	id := e.request(e.jo, "pump-07:23")
	if err := e.b.Deny(strings.ToLower(id), central); err != nil { // any approver kind may deny
		t.Fatal(err)
	}
	ev := e.ev.wait(t, EvDeny, nil)
	if ev.Actor.Kind != KindCentral || ev.Grant != id {
		t.Fatalf("%+v", ev)
	}
	if err := e.b.Deny(id, local); !errors.Is(err, ErrNotPending) {
		t.Fatalf("deny twice: %v", err)
	}
	if err := e.b.Deny("NOSUCH", local); !errors.Is(err, ErrNotFound) {
		t.Fatalf("%v", err)
	}
	e.clock.Advance(14 * time.Minute)
	if re := e.refused(e.jo, "pump-07:23"); re.Code != CodeDenied || re.Request != id {
		t.Fatalf("%+v", re)
	}
	e.clock.Advance(time.Minute)
	if re := e.refused(e.jo, "pump-07:23"); re.Code != CodeNoGrant || re.Request == id {
		t.Fatalf("after the hold: %+v", re)
	}
	s := e.b.Snapshot()
	if len(s.Recent) != 1 || s.Recent[0].State != StateDenied || s.Recent[0].ClosedBy.Approver != central.Approver {
		t.Fatalf("%+v", s.Recent)
	}
}

func TestSetDevices(t *testing.T) {
	e := newEnv(t)
	devs := testDevices()
	devs[0].Ports = []int{8080}
	if err := e.b.SetDevices(devs); err != nil {
		t.Fatal(err)
	}
	if re := e.refused(e.jo, "pump-07:23"); re.Code != CodePortNotAllowed {
		t.Fatalf("%+v", re)
	}
	if err := e.b.SetDevices(append(devs, devs[0])); err == nil {
		t.Fatal("duplicate accepted")
	}
}
