package front

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func TestFolder(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	f := &Folder{Window: 10 * time.Second, MaxKeys: 2}
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	if !f.Note(at(0), "10.0.0.1", "no_certificate") {
		t.Fatal("first occurrence not reported")
	}
	for i := 1; i <= 5; i++ {
		if f.Note(at(i), "10.0.0.1", "no_certificate") {
			t.Fatalf("occurrence %d reported, want folded", i)
		}
	}
	if !f.Note(at(1), "10.0.0.2", "no_certificate") {
		t.Fatal("another source's first not reported")
	}
	// The key table is full: a third source merges under "*".
	if !f.Note(at(2), "10.0.0.3", "no_certificate") || f.Note(at(3), "10.0.0.4", "no_certificate") {
		t.Fatal("merged key: first must report, second fold")
	}
	if got := f.Flush(at(9)); len(got) != 0 {
		t.Fatalf("flush before the window ended: %+v", got)
	}
	got := f.Flush(at(13))
	want := []Folded{
		{Source: "*", Reason: "no_certificate", Count: 1, First: at(3), Last: at(3)},
		{Source: "10.0.0.1", Reason: "no_certificate", Count: 5, First: at(1), Last: at(5)},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("flush = %+v\nwant %+v", got, want)
	}
	// Quiet keys are forgotten; the next occurrence reports at once again.
	f.Flush(at(40))
	f.Flush(at(60))
	if !f.Note(at(61), "10.0.0.1", "no_certificate") {
		t.Fatal("after a quiet window the first occurrence must report")
	}
}

// flakyListener fails Accept with EMFILE n times, then a permanent-looking
// error once, then serves the real listener.
type flakyListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.fails > 0 {
		l.fails--
		n := l.fails
		l.mu.Unlock()
		if n == 0 {
			return nil, fmt.Errorf("accept: %w", syscall.EINVAL)
		}
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

func TestServeSurvivesAcceptErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var errs []time.Duration
	f := New(&flakyListener{Listener: ln, fails: 6}, Options{OnAcceptError: func(err error, d time.Duration) {
		mu.Lock()
		errs = append(errs, d)
		mu.Unlock()
	}})
	served := make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- f.Serve(ctx, func(c *Conn) { close(served) }) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-served
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, time.Second}
	if fmt.Sprint(errs) != fmt.Sprint(want) {
		t.Fatalf("backoff %v, want %v", errs, want)
	}
}

func TestCaps(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusals := make(chan string, 100)
	f := New(ln, Options{Limits: Limits{MaxConns: 1, MaxPending: 10, MaxPerSource: 2, HandshakeTimeout: time.Minute},
		OnRefused: func(src, reason string) { refusals <- src + " " + reason }})
	release := make(chan struct{})
	established := make(chan bool, 10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() {
		done <- f.Serve(ctx, func(c *Conn) {
			established <- c.Establish()
			<-release
		})
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	if !<-established {
		t.Fatal("first connection not established")
	}
	dial()
	if <-established {
		t.Fatal("second session established beyond MaxConns 1")
	}
	if got := <-refusals; got != "127.0.0.1 conn_limit" {
		t.Fatalf("refusal %q", got)
	}
	// Both slots of 127.0.0.1 are held (the second until its handler
	// returns): a third connection is closed at once.
	c3 := dial()
	if got := <-refusals; got != "127.0.0.1 source_limit" {
		t.Fatalf("refusal %q", got)
	}
	c3.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c3.Read(make([]byte, 1)); err == nil {
		t.Fatal("over-cap connection not closed")
	}
	close(release)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p, l := f.Counts(); p != 0 || l != 0 {
		t.Fatalf("counts after serve: %d pending, %d live", p, l)
	}
}

func TestServerConfigPolicy(t *testing.T) {
	cfg := ServerConfig(nil, time.Now)
	if cfg.MinVersion != tls.VersionTLS12 || cfg.ClientAuth != tls.RequireAnyClientCert {
		t.Fatalf("policy %+v", cfg)
	}
	secure := map[uint16]bool{}
	for _, s := range tls.CipherSuites() {
		secure[s.ID] = true
	}
	for _, id := range cfg.CipherSuites {
		name := tls.CipherSuiteName(id)
		if !secure[id] || !(contains(name, "GCM") || contains(name, "CHACHA20")) || !contains(name, "ECDHE") {
			t.Errorf("suite %s is not ECDHE+AEAD", name)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestBudget(t *testing.T) {
	b := Budget{Limit: 1024, Base: 64, Clinical: 128, PerConn: 3}
	if got := b.VendorConns(); got != 277 {
		t.Fatalf("VendorConns = %d", got)
	}
	l, shrank := Limits{MaxConns: 128, MaxPending: 32, MaxPerSource: 8}.Fit(277)
	if shrank || l.MaxConns != 128 {
		t.Fatalf("fits already: %+v %v", l, shrank)
	}
	l, shrank = Limits{MaxConns: 128, MaxPending: 32, MaxPerSource: 8}.Fit(40)
	if !shrank || l.Total() > 40 || l.MaxPending < 1 || l.MaxConns < 1 {
		t.Fatalf("Fit(40) = %+v", l)
	}
	if got := (Budget{Limit: 100, Base: 64, Clinical: 128}).VendorConns(); got != 0 {
		t.Fatalf("negative budget = %d", got)
	}
	if _, err := ProcessBudget(0); err != nil {
		t.Fatal(err)
	}
}

func TestHandshakeRate(t *testing.T) {
	clock := clockwork.NewFakeClock()
	f := New(nil, Options{Clock: clock})
	f.mu.Lock()
	defer f.mu.Unlock()
	got := 0
	for range 10 {
		if f.takeTokenLocked(4) {
			got++
		}
	}
	if got != 4 {
		t.Fatalf("burst admitted %d, want 4", got)
	}
	clock.Advance(500 * time.Millisecond)
	got = 0
	for range 10 {
		if f.takeTokenLocked(4) {
			got++
		}
	}
	if got != 2 {
		t.Fatalf("after 0.5s admitted %d, want 2", got)
	}
	if !f.takeTokenLocked(0) {
		t.Fatal("rate 0 must be unlimited")
	}
}
