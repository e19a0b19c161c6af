package access

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/gateway/access/recording"
)

// curlAPI calls the status API directly (not as a proxy) with curl.
func (e *env) curlAPI(t *testing.T, v vendor, method, path string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, needCurl(t), "-sS", "--max-time", "15", "-X", method, "-w", "\n%{http_code}",
		"--cert", v.certFile, "--key", v.keyFile, "--cacert", e.pki.rootFile, "https://"+e.addr+path)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %s %s: %v", method, path, err)
	}
	s := strings.TrimSpace(string(out))
	i := strings.LastIndexByte(s, '\n')
	code, err := strconv.Atoi(s[i+1:])
	if err != nil {
		t.Fatalf("curl output %q", s)
	}
	return code, []byte(s[:i])
}

func (e *env) status(t *testing.T, v vendor) *VendorStatus {
	t.Helper()
	st, err := e.client(v, "pump-07:23").Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestStatusAPIWithCurl: the vendor sees its own requests, grants and
// sessions with curl on the vendor listener, each ended session with its
// typed end reason; nobody else's.
func TestStatusAPIWithCurl(t *testing.T) {
	needCurl(t)
	e := newEnv(t)
	code, body := e.curlAPI(t, e.jo, "POST", "/v1/request?target=pump-07:23&reason=E42")
	var ans RequestAnswer
	if code != 200 || json.Unmarshal(body, &ans) != nil || ans.Code != CodeNoGrant || ans.Grant.State != StatePending || ans.Grant.Reason != "E42" {
		t.Fatalf("%d %s", code, body)
	}
	id := ans.Grant.ID
	code, body = e.curlAPI(t, e.jo, "GET", "/v1/me")
	var st VendorStatus
	if code != 200 || json.Unmarshal(body, &st) != nil || len(st.Requests) != 1 || st.Requests[0].ID != id ||
		st.Requests[0].Waiting[0] != KindLocal || st.Vendor != joURI {
		t.Fatalf("%d %s", code, body)
	}
	if _, err := e.b.Approve(id, Actor{Kind: KindLocal, Via: "admin", UID: 1000, Name: "nurse"}); err != nil {
		t.Fatal(err)
	}
	c := e.tunnel(e.jo, "pump-07:23")
	sid := InfoOf(c).Session
	if InfoOf(c).Grant != id || sid == "" {
		t.Fatalf("%+v", InfoOf(c))
	}
	_, body = e.curlAPI(t, e.jo, "GET", "/v1/me")
	st = VendorStatus{}
	_ = json.Unmarshal(body, &st)
	if len(st.Grants) != 1 || st.Grants[0].Approvers[0] != "local:nurse(uid=1000)" || len(st.Sessions) != 1 || st.Sessions[0].ID != sid ||
		st.Sessions[0].Recording != "" || st.Grants[0].Ports[0] != "23" {
		t.Fatalf("%s", body)
	}
	// Another vendor sees none of it.
	ann := e.pki.vendor(t, "ann", "spiffe://"+td+"/vendor/other-medical/ann", e.pki.ca, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	_, body = e.curlAPI(t, ann, "GET", "/v1/me")
	if strings.Contains(string(body), id) {
		t.Fatalf("another vendor sees jo's grant: %s", body)
	}
	// Revoked: the tunnel is cut and the reason is there.
	if err := e.b.Revoke(id, local2()); err != nil {
		t.Fatal(err)
	}
	waitCut(t, c)
	_, body = e.curlAPI(t, e.jo, "GET", "/v1/me")
	st = VendorStatus{}
	_ = json.Unmarshal(body, &st)
	s, ok := st.Session(sid)
	g, gok := st.Find(id)
	if !ok || s.EndReason != EndRevoked || !gok || g.End != EndRevoked || g.ClosedBy == "" {
		t.Fatalf("%s", body)
	}
	// Unknown paths and methods.
	code, _ = e.curlAPI(t, e.jo, "GET", "/v1/nothing")
	if code != 404 {
		t.Fatalf("unknown path: %d", code)
	}
	code, _ = e.curlAPI(t, e.jo, "DELETE", "/v1/me")
	if code != 405 {
		t.Fatalf("DELETE: %d", code)
	}
	// A locked vendor gets no status either.
	if _, err := e.auth.AddLock(joURI, time.Time{}, "test", Actor{Kind: KindLocal, Via: "admin"}); err != nil {
		t.Fatal(err)
	}
	code, _ = e.curlAPI(t, e.jo, "GET", "/v1/me")
	if code != 403 {
		t.Fatalf("locked: %d", code)
	}
}

// TestEndReasons: each way a session ends is recorded with its typed
// reason, visible to the vendor and in the session-end event.
func TestEndReasons(t *testing.T) {
	cases := []struct {
		name string
		cut  func(e *env, grant, session string)
		want EndReason
	}{
		{"expired", func(e *env, _, _ string) { e.clock.Advance(time.Hour + time.Second) }, EndExpired},
		{"revoked", func(e *env, g, _ string) { _ = e.b.Revoke(g, local2()) }, EndRevoked},
		{"locked", func(e *env, _, _ string) {
			_, _ = e.auth.AddLock(joURI, time.Time{}, "test", Actor{Kind: KindLocal, Via: "admin"})
		}, EndLocked},
		{"tamper", func(e *env, _, _ string) { _ = e.auth.SetTamper(true) }, EndTamper},
		{"button", func(e *env, _, _ string) { _, _ = e.b.ButtonShortPress() }, EndButton},
		{"ended by owner", func(e *env, _, s string) { _ = e.b.EndSession(s, local2()) }, EndByOwner},
		{"closed", func(e *env, _, _ string) {}, EndClosed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			id := e.request(e.jo, "pump-07:23")
			if _, err := e.b.Approve(id, local2()); err != nil {
				t.Fatal(err)
			}
			c := e.tunnel(e.jo, "pump-07:23")
			sid := InfoOf(c).Session
			if tc.want == EndClosed {
				c.Close()
			} else {
				tc.cut(e, id, sid)
				waitCut(t, c)
			}
			ev := e.ev.wait(t, EvSessionEnd, nil)
			if ev.End != tc.want || ev.Attrs()["end"] != string(tc.want) {
				t.Fatalf("event %+v", ev)
			}
			if tc.want == EndLocked {
				return // a locked vendor cannot ask
			}
			if tc.want == EndTamper {
				_ = e.auth.ClearTamper(local2())
			}
			s, ok := e.status(t, e.jo).Session(sid)
			if !ok || s.EndReason != tc.want || s.End.IsZero() {
				t.Fatalf("status %+v %v", s, ok)
			}
		})
	}
}

// TestExtension: an extension is approved like a grant (same policy),
// moves the expiry by at most max_session, and can be refused.
func TestExtension(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.request(e.jo, "pump-11:23") // pump-11: local+central, 30m
	if _, err := e.b.Approve(id, local2()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.Approve(id, Actor{Kind: KindCentral, Via: "command", Approver: "spiffe://" + td + "/approver/ciso/j"}); err != nil {
		t.Fatal(err)
	}
	g0 := e.status(t, e.jo).Grants[0]
	cl := e.client(e.jo, "pump-11:23")
	cl.Reason = "firmware flash"
	cl.RetryEvery = time.Second
	cl.Clock = e.clock
	out := &syncBuf{ch: make(chan struct{}, 1)}
	cl.Out = out
	waits := make(chan time.Time, 16)
	cl.sleepHook = func(u time.Time) { waits <- u }
	done := make(chan error, 1)
	var got time.Time
	go func() {
		var err error
		got, err = cl.Extend(ctx, 20*time.Minute)
		done <- err
	}()
	<-waits
	out.wait(t, "waiting for approval of ")
	xr := e.ev.wait(t, EvExtendRequest, nil)
	if xr.Extends != id || xr.Extend != 20*time.Minute || xr.Reason != "firmware flash" {
		t.Fatalf("%+v", xr)
	}
	// Too long: refused at once.
	if _, err := e.b.RequestExtension(VendorIdentity{URI: joURI, Org: "acme-medical"}, id, 31*time.Minute, ""); err == nil {
		t.Fatal("extension beyond max_session accepted")
	}
	e.clock.Advance(10 * time.Minute) // 20m left: +20m goes beyond max_session from now
	<-waits
	// Same policy: local alone is not enough.
	ap, err := e.b.Approve(xr.Grant, local2())
	if err != nil || ap.State != StatePending {
		t.Fatalf("%+v %v", ap, err)
	}
	if _, err := e.b.Approve(xr.Grant, Actor{Kind: KindCentral, Via: "command", Approver: "spiffe://" + td + "/approver/ciso/j"}); err != nil {
		t.Fatal(err)
	}
	e.ev.wait(t, EvExtended, nil)
	e.clock.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// max_session (30m) from the extension's approval bounds it: the grant
	// had 20m left, +20m is capped at 30m.
	want := e.clock.Now().Add(-time.Second).Add(30 * time.Minute)
	if !got.Equal(want) || got.Sub(g0.Expires) <= 0 {
		t.Fatalf("new expiry %s, want %s (was %s)", got, want, g0.Expires)
	}
	out.wait(t, "now expires at")
	// The grant's timer follows: not cut at the old expiry.
	c := e.tunnel(e.jo, "pump-11:23")
	e.clock.Advance(g0.Expires.Sub(e.clock.Now()) + time.Second)
	e.roundTrip(c, "still here")
	c.Close()

	// Refused: exit with the denial.
	go func() {
		_, err := cl.Extend(ctx, 10*time.Minute)
		done <- err
	}()
	<-waits
	xr2 := e.ev.wait(t, EvExtendRequest, func(ev Event) bool { return ev.Grant != xr.Grant })
	if err := e.b.Deny(xr2.Grant, local2()); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	err = <-done
	var ge *GrantError
	if !errors.As(err, &ge) || ge.Grant.State != StateDenied || !strings.Contains(err.Error(), "denied by local:uid=0") {
		t.Fatalf("%v", err)
	}
	// Only the owner of the grant can ask.
	ann := VendorIdentity{URI: "spiffe://" + td + "/vendor/acme-medical/ann", Org: "acme-medical"}
	if _, err := e.b.RequestExtension(ann, id, time.Minute, ""); err == nil {
		t.Fatal("another vendor extended jo's grant")
	}
}

// TestWatchWarnsAndSaysWhy: the client warns at 10, 5 and 1 minute before
// the end (on the injected clock), reports an extension and the end.
func TestWatchWarnsAndSaysWhy(t *testing.T) {
	e := newEnv(t)
	id := e.request(e.jo, "pump-07:23")
	if _, err := e.b.Approve(id, local2()); err != nil {
		t.Fatal(err)
	}
	cl := e.client(e.jo, "pump-07:23")
	cl.Clock, cl.PollEvery = e.clock, 20*time.Minute
	out := &syncBuf{ch: make(chan struct{}, 1)}
	cl.Out = out
	waits := make(chan time.Time, 16)
	cl.sleepHook = func(u time.Time) { waits <- u }
	g, err := cl.AwaitGrant(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out.wait(t, "grant "+id+" for pump-07 ports 23 approved by local:uid=0; expires at ")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { cl.Watch(ctx, g.ID, g.Expires); close(done) }()
	// Whenever Watch sleeps, move the clock to its wake-up; stop at each
	// expected line. Bounded, so a slow machine (qemu) fails, never hangs.
	deadline := time.After(60 * time.Second)
	await := func(w string) {
		t.Helper()
		for !strings.Contains(out.String(), w) {
			select {
			case u := <-waits:
				e.clock.Advance(u.Sub(e.clock.Now()))
			case <-out.ch:
			case <-done:
				if !strings.Contains(out.String(), w) {
					t.Fatalf("watch ended without %q:\n%s", w, out.String())
				}
			case <-deadline:
				t.Fatalf("no %q within 60s:\n%s", w, out.String())
			}
		}
	}
	for _, w := range []string{"ends in 10m0s", "ends in 5m0s", "ends in 1m0s", "grant " + id + " ended: expired"} {
		await(w)
	}
	cancel()
	<-done
}

// TestRecordingNotesEncryptedTunnels: a tunnel whose first vendor bytes
// are a TLS ClientHello or an SSH banner is noted in the recording.
func TestRecordingNotesEncryptedTunnels(t *testing.T) {
	e := newEnv(t)
	id := e.request(e.jo, "pump-07:23")
	if _, err := e.b.Approve(id, local2()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ first, want string }{
		{"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n", "## encrypted: tls: "},
		{"SSH-2.0-OpenSSH_9.2p1\r\n", "## encrypted: ssh: "},
		{"plain text\n", ""},
	} {
		c, err := e.dial(e.jo, "pump-07:23")
		if err != nil {
			t.Fatal(err)
		}
		sid := InfoOf(c).Session
		if _, err := c.Write([]byte(tc.first)); err != nil {
			t.Fatal(err)
		}
		_, _ = c.Read(make([]byte, 64))
		c.Close()
		e.ev.wait(t, EvSessionEnd, func(ev Event) bool { return ev.Session == sid })
		f, err := os.Open(e.rec.Path(sid))
		if err != nil {
			t.Fatal(err)
		}
		var text strings.Builder
		_, err = recording.ReplayText(f, &text)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if has := strings.Contains(text.String(), "## encrypted:"); has != (tc.want != "") || tc.want != "" && !strings.Contains(text.String(), tc.want+"the vendor's bytes are encrypted end to end") {
			t.Errorf("%q: %s", tc.first, text.String())
		}
	}
}
