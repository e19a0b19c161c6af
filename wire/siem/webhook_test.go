package siem

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/wire"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

type hookReq struct {
	header http.Header
	body   []byte
}

// hookServer is a real HTTPS server on loopback that verifies every
// request with Verify and answers with the next status from codes
// (200 once they are used up).
type hookServer struct {
	*httptest.Server
	mu    sync.Mutex
	codes []int
	reqs  chan hookReq
}

func newHookServer(t *testing.T, clk clockwork.Clock, codes ...int) *hookServer {
	h := &hookServer{codes: codes, reqs: make(chan hookReq, 100)}
	h.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := Verify(testSecret, r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), body, clk.Now(), 0); err != nil {
			t.Errorf("server: %v", err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		h.mu.Lock()
		code := http.StatusOK
		if len(h.codes) > 0 {
			code, h.codes = h.codes[0], h.codes[1:]
		}
		h.mu.Unlock()
		h.reqs <- hookReq{r.Header.Clone(), body}
		w.WriteHeader(code)
	}))
	h.StartTLS()
	t.Cleanup(h.Close)
	return h
}

type hookEnv struct {
	clk   *clockwork.FakeClock
	w     *Webhook
	notes chan string
}

func newHookEnv(t *testing.T, srv *hookServer, clk *clockwork.FakeClock) *hookEnv {
	q := openTestQueue(t, filepath.Join(t.TempDir(), "webhook.db"), 0)
	w, err := NewWebhook(WebhookOptions{URL: srv.URL + "/hook", Secret: testSecret, Client: srv.Client(), Queue: q,
		Clock: clk, MinBackoff: time.Second, MaxBackoff: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	notes := make(chan string, 100)
	w.hook = func(ev string) { notes <- ev }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return &hookEnv{clk: clk, w: w, notes: notes}
}

func (e *hookEnv) await(t *testing.T, ev string) {
	t.Helper()
	select {
	case got := <-e.notes:
		if got != ev {
			t.Fatalf("webhook said %q, want %q", got, ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no %q from the webhook", ev)
	}
}

func nextReq(t *testing.T, h *hookServer) hookReq {
	t.Helper()
	select {
	case r := <-h.reqs:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no request")
	}
	return hookReq{}
}

func TestNotable(t *testing.T) {
	for _, c := range []struct {
		line wire.Line
		typ  string
	}{
		{lineCases[0].line, TypeVendorRequest},
		{lineCases[2].line, TypeAlarm},    // hardware.tamper, alarm
		{lineCases[1].line, ""},           // clinical.refused, warning
		{lineCases[9].line, ""},           // status alarm: not an event
		{lineCases[13].line, TypeFinding}, // verify_failed
		{lineCases[14].line, TypeFinding}, // gap
	} {
		typ, ok := Notable(c.line)
		if typ != c.typ || ok != (c.typ != "") {
			t.Errorf("%+v: %q %v, want %q", c.line.Alert+c.line.Kind, typ, ok, c.typ)
		}
	}
}

// TestWebhookDelivers posts signed notifications in order, retries a 503
// and a network-level 429 with backoff, keeps the delivery id across
// retries, and ignores lines that are not notable.
func TestWebhookDelivers(t *testing.T) {
	clk := clockwork.NewFakeClockAt(testNow)
	srv := newHookServer(t, clk, http.StatusServiceUnavailable, http.StatusTooManyRequests)
	e := newHookEnv(t, srv, clk)
	if err := e.w.Send(lineCases[1].line); err != nil { // refused: ignored
		t.Fatal(err)
	}
	// request, verify_failed, metrics (ignored)
	if err := e.w.SendBatch([]wire.Line{lineCases[0].line, lineCases[13].line, lineCases[11].line}); err != nil {
		t.Fatal(err)
	}
	first := nextReq(t, srv) // 503
	e.await(t, "failed")
	advanceWhenWaiting(t, clk, time.Second)
	second := nextReq(t, srv) // 429
	e.await(t, "failed")
	advanceWhenWaiting(t, clk, 2*time.Second)
	third := nextReq(t, srv) // 200
	e.await(t, "delivered")
	if first.header.Get(HeaderDelivery) != third.header.Get(HeaderDelivery) || string(first.body) != string(second.body) {
		t.Error("a retry changed the delivery id or body")
	}
	if first.header.Get(HeaderTimestamp) == third.header.Get(HeaderTimestamp) {
		t.Error("a retry was not signed anew")
	}
	var n Notification
	if err := json.Unmarshal(third.body, &n); err != nil {
		t.Fatal(err)
	}
	if n.Type != TypeVendorRequest || n.Event != "vendor.request" || n.ClassID != 2001 || n.Attrs["device"] != "pump-07" ||
		n.ID != third.header.Get(HeaderDelivery) || third.header.Get(HeaderType) != TypeVendorRequest ||
		!strings.HasPrefix(n.Text, "Vendor access requested on gw-icu3-12") || n.Line.Seq != 17 {
		t.Errorf("notification %+v", n)
	}
	fourth := nextReq(t, srv)
	e.await(t, "delivered")
	if err := json.Unmarshal(fourth.body, &n); err != nil || n.Type != TypeFinding || n.Severity != "critical" {
		t.Errorf("finding %+v %v", n, err)
	}
	if st := e.w.Stats(); st.Delivered != 2 || st.Failures != 2 || st.Queued != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestWebhookRejected: a 4xx other than 408/429 is not retried.
func TestWebhookRejected(t *testing.T) {
	clk := clockwork.NewFakeClockAt(testNow)
	srv := newHookServer(t, clk, http.StatusBadRequest)
	e := newHookEnv(t, srv, clk)
	_ = e.w.Send(lineCases[0].line)
	nextReq(t, srv)
	e.await(t, "rejected")
	if st := e.w.Stats(); st.Rejected != 1 || st.Queued != 0 || !strings.Contains(st.LastError, "400") {
		t.Errorf("stats %+v", st)
	}
}

// TestWebhookTamperedBody: what the server received verifies; the same
// request with one byte of the body changed, another secret, or an old
// timestamp does not.
func TestWebhookTamperedBody(t *testing.T) {
	clk := clockwork.NewFakeClockAt(testNow)
	srv := newHookServer(t, clk)
	e := newHookEnv(t, srv, clk)
	_ = e.w.Send(lineCases[14].line)
	r := nextReq(t, srv)
	e.await(t, "delivered")
	ts, sig := r.header.Get(HeaderTimestamp), r.header.Get(HeaderSignature)
	if err := Verify(testSecret, ts, sig, r.body, clk.Now(), 0); err != nil {
		t.Fatalf("untouched body: %v", err)
	}
	tampered := []byte(strings.Replace(string(r.body), `"gap_from":30`, `"gap_from":31`, 1))
	if string(tampered) == string(r.body) {
		t.Fatal("test did not change the body")
	}
	if err := Verify(testSecret, ts, sig, tampered, clk.Now(), 0); !errors.Is(err, ErrBadSignature) {
		t.Errorf("tampered body: %v", err)
	}
	if err := Verify([]byte("another-secret-of-enough-length"), ts, sig, r.body, clk.Now(), 0); !errors.Is(err, ErrBadSignature) {
		t.Errorf("other secret: %v", err)
	}
	if err := Verify(testSecret, ts, sig, r.body, clk.Now().Add(6*time.Minute), 0); !errors.Is(err, ErrStale) {
		t.Errorf("replayed later: %v", err)
	}
	for _, bad := range []string{"", "sha256=00", "v1=zz"} {
		if err := Verify(testSecret, ts, bad, r.body, clk.Now(), 0); !errors.Is(err, ErrBadSignature) {
			t.Errorf("signature %q: %v", bad, err)
		}
	}
	if err := Verify(testSecret, "yesterday", sig, r.body, clk.Now(), 0); !errors.Is(err, ErrStale) {
		t.Errorf("bad timestamp: %v", err)
	}
}

func TestWebhookOptions(t *testing.T) {
	q := openTestQueue(t, filepath.Join(t.TempDir(), "q.db"), 0)
	for _, c := range []struct {
		o    WebhookOptions
		want string
	}{
		{WebhookOptions{URL: "http://siem.example/hook", Secret: testSecret, Queue: q}, "https://"},
		{WebhookOptions{URL: "ftp://x", Secret: testSecret, Queue: q}, "https://"},
		{WebhookOptions{URL: "https://siem.example/hook", Secret: []byte("short"), Queue: q}, "at least 16"},
		{WebhookOptions{URL: "https://siem.example/hook", Secret: testSecret}, "queue"},
	} {
		if _, err := NewWebhook(c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v", c.o.URL, err)
		}
	}
	if _, err := NewWebhook(WebhookOptions{URL: "http://127.0.0.1:9/hook", Secret: testSecret, Queue: q}); err != nil {
		t.Errorf("loopback http: %v", err)
	}
}

func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	good, short := filepath.Join(dir, "good"), filepath.Join(dir, "short")
	_ = os.WriteFile(good, append(testSecret, '\n'), 0o600)
	_ = os.WriteFile(short, []byte("abc\n"), 0o600)
	if s, err := LoadSecret(good); err != nil || string(s) != string(testSecret) {
		t.Errorf("good: %q %v", s, err)
	}
	if _, err := LoadSecret(short); err == nil || !strings.Contains(err.Error(), "openssl rand") {
		t.Errorf("short: %v", err)
	}
	if _, err := LoadSecret(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

// TestSignKnownAnswer pins the signature scheme the docs show with
// openssl: HMAC-SHA256(secret, "v1:" + ts + ":" + body).
func TestSignKnownAnswer(t *testing.T) {
	got := Sign([]byte("0123456789abcdef"), time.Unix(1796155200, 0), []byte(`{"type":"finding"}`))
	const want = "v1=" + knownSig
	if got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

// knownSig was computed with openssl, as docs/siem.md shows:
// printf 'v1:1796155200:{"type":"finding"}' | openssl dgst -sha256 -hmac 0123456789abcdef -hex
const knownSig = "1b6cc9cda76706661555bb370876e8b304f03418c845002a705bf51cc136f8da"

func advanceWhenWaiting(t *testing.T, clk *clockwork.FakeClock, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clk.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("nobody waits on the clock: %v", err)
	}
	clk.Advance(d)
}

func writeCertPEM(t *testing.T, path string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
