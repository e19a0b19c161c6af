package siem

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire"
)

// receiver is a strict RFC 5424 receiver on loopback: it reads RFC 6587
// octet-counted frames and parses each message; a malformed frame fails
// the test. kill closes the listener and resets every connection.
type receiver struct {
	t        *testing.T
	addr     string
	tls      *tls.Config
	got      chan syslogMsg
	raw      chan string
	killAt   int // kill after this many frames in total; 0: never
	killed   chan struct{}
	mu       sync.Mutex
	ln       net.Listener
	conns    []net.Conn
	n        int
	wg       sync.WaitGroup
	isKilled bool
}

func startReceiver(t *testing.T, addr string, tlsConf *tls.Config, killAt int) *receiver {
	r := &receiver{t: t, addr: addr, tls: tlsConf, got: make(chan syslogMsg, 1000), raw: make(chan string, 1000),
		killAt: killAt, killed: make(chan struct{})}
	r.listen()
	t.Cleanup(r.kill)
	return r
}

func (r *receiver) listen() {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	if r.tls != nil {
		ln = tls.NewListener(ln, r.tls)
	}
	r.mu.Lock()
	r.ln, r.addr, r.isKilled = ln, ln.Addr().String(), false
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			if r.isKilled {
				r.mu.Unlock()
				_ = c.Close()
				return
			}
			r.conns = append(r.conns, c)
			r.mu.Unlock()
			r.wg.Add(1)
			go r.serve(c)
		}
	}()
}

func (r *receiver) serve(c net.Conn) {
	defer r.wg.Done()
	br := bufio.NewReader(c)
	for {
		lenText, err := br.ReadString(' ')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSuffix(lenText, " "))
		if err != nil || n < 1 || lenText[0] == '0' {
			r.t.Errorf("bad MSG-LEN %q", lenText)
			return
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(br, buf); err != nil {
			return
		}
		m, err := parseRFC5424(string(buf))
		if err != nil {
			r.t.Errorf("receiver: %v: %q", err, buf)
			return
		}
		r.got <- m
		r.raw <- string(buf)
		r.mu.Lock()
		r.n++
		kill := r.killAt > 0 && r.n == r.killAt
		r.mu.Unlock()
		if kill {
			r.kill()
			close(r.killed)
			return
		}
	}
}

// kill stops the receiver like a crash: the listener closes and every
// connection is reset (SO_LINGER 0), losing what it had not read.
func (r *receiver) kill() {
	r.mu.Lock()
	if r.isKilled {
		r.mu.Unlock()
		return
	}
	r.isKilled = true
	_ = r.ln.Close()
	for _, c := range r.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		} else if tl, ok := c.(*tls.Conn); ok {
			if tc, ok := tl.NetConn().(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
		}
		_ = c.Close()
	}
	r.conns = nil
	r.mu.Unlock()
}

// restart listens again on the same address.
func (r *receiver) restart(killAt int) {
	r.mu.Lock()
	r.killAt, r.n = killAt, 0
	r.mu.Unlock()
	r.listen()
}

func seqLine(seq uint64) wire.Line {
	return event(seq, "vendor.request", "info", map[string]any{"device": "pump-07", "grant": fmt.Sprintf("G-%d", seq)})
}

type sinkEnv struct {
	clk   *clockwork.FakeClock
	q     *Queue
	sink  *SyslogSink
	notes chan string
	stop  func()
}

func newSinkEnv(t *testing.T, addr string, tlsConf *tls.Config) *sinkEnv {
	t.Helper()
	clk := clockwork.NewFakeClockAt(testNow)
	q := openTestQueue(t, filepath.Join(t.TempDir(), "syslog.db"), 0)
	enc, _ := NewEncoder(FormatSyslog, EncoderOptions{Version: "test", Clock: clk})
	s, err := NewSyslogSink(SyslogOptions{Addr: addr, TLS: tlsConf, Encoder: enc, Queue: q, Clock: clk,
		MinBackoff: time.Second, MaxBackoff: 4 * time.Second, Settle: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	notes := make(chan string, 1000)
	s.hook = func(ev string) { notes <- ev }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	e := &sinkEnv{clk: clk, q: q, sink: s, notes: notes}
	e.stop = func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}
	t.Cleanup(e.stop)
	return e
}

func (e *sinkEnv) await(t *testing.T, ev string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-e.notes:
			if got == ev {
				return
			}
		case <-timeout:
			t.Fatalf("no %q from the sink", ev)
		}
	}
}

// advance moves the fake clock once the sink waits on it.
func (e *sinkEnv) advance(t *testing.T, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.clk.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("sink never waited on its clock: %v", err)
	}
	e.clk.Advance(d)
}

func recvSeqs(t *testing.T, r *receiver, n int) ([]uint64, []string) {
	t.Helper()
	var seqs []uint64
	var raws []string
	timeout := time.After(10 * time.Second)
	for len(seqs) < n {
		select {
		case m := <-r.got:
			v, _ := m.param("wardgate@32473", "seq")
			s, _ := strconv.ParseUint(v, 10, 64)
			seqs = append(seqs, s)
			raws = append(raws, <-r.raw)
		case <-timeout:
			t.Fatalf("received %d of %d: %v", len(seqs), n, seqs)
		}
	}
	return seqs, raws
}

func checkRun(t *testing.T, name string, seqs []uint64, from uint64) {
	t.Helper()
	for i, s := range seqs {
		if s != from+uint64(i) {
			t.Fatalf("%s: order broken at %d: %v", name, i, seqs)
		}
	}
}

// TestSyslogKillAndRestart kills the receiver in the middle of a stream,
// restarts it, and shows that no record is lost, order is kept, and only
// records not yet confirmed are sent again.
func TestSyslogKillAndRestart(t *testing.T) {
	r := startReceiver(t, "127.0.0.1:0", nil, 55)
	e := newSinkEnv(t, r.addr, nil)
	e.await(t, "connected")
	// Phase 1: 30 records delivered and confirmed.
	for i := uint64(1); i <= 30; i++ {
		if err := e.sink.Send(seqLine(i)); err != nil {
			t.Fatal(err)
		}
	}
	first, _ := recvSeqs(t, r, 30)
	checkRun(t, "phase 1", first, 1)
	e.advance(t, 2*time.Second)
	e.await(t, "confirmed")
	if n := e.q.Len(); n != 0 {
		t.Fatalf("queue holds %d after settle: %+v", n, e.sink.Stats())
	}
	// Phase 2: the receiver dies after its 55th record, mid-stream.
	var batch []wire.Line
	for i := uint64(31); i <= 100; i++ {
		batch = append(batch, seqLine(i))
	}
	if err := e.sink.SendBatch(batch); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.killed:
	case <-time.After(10 * time.Second):
		t.Fatal("receiver was not killed")
	}
	before, beforeRaw := recvSeqs(t, r, 25)
	checkRun(t, "before the kill", before, 31)
	e.await(t, "lost")
	if e.sink.Stats().Connected {
		t.Error("Stats says connected after the kill")
	}
	r.restart(0)
	e.advance(t, time.Second) // backoff
	e.await(t, "connected")
	after, afterRaw := recvSeqs(t, r, 70)
	checkRun(t, "after the restart", after, 31) // the unconfirmed part again, then the rest
	for i := range beforeRaw {
		if beforeRaw[i] != afterRaw[i] {
			t.Fatalf("a resent record differs from the first copy:\n%s\n%s", beforeRaw[i], afterRaw[i])
		}
	}
	e.advance(t, 2*time.Second)
	e.await(t, "confirmed")
	st := e.sink.Stats()
	if st.Queued != 0 || st.Delivered != 100 || st.Written < 30+25+70 || st.Written > 30+70+70 || st.Connects != 2 {
		t.Errorf("stats %+v", st)
	}
	select {
	case m := <-r.got:
		t.Errorf("unexpected extra record %+v", m)
	default:
	}
}

// TestSyslogQueuedWhileDown: records sent while the receiver is down wait
// on disk; the backoff grows to its cap; they arrive in order once it is
// up.
func TestSyslogQueuedWhileDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	e := newSinkEnv(t, addr, nil)
	for i := uint64(1); i <= 10; i++ {
		_ = e.sink.Send(seqLine(i))
	}
	for _, d := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		e.await(t, "dial_failed")
		e.advance(t, d) // a shorter advance would not release the wait
	}
	e.await(t, "dial_failed")
	if st := e.sink.Stats(); st.Queued != 10 || st.LastError == "" || st.Connected {
		t.Fatalf("while down: %+v", st)
	}
	r := startReceiver(t, addr, nil, 0)
	e.advance(t, 4*time.Second) // capped
	seqs, _ := recvSeqs(t, r, 10)
	checkRun(t, "after the outage", seqs, 1)
}

// TestSyslogMutualTLS delivers over TLS with a client certificate, and a
// receiver the sink does not trust gets nothing.
func TestSyslogMutualTLS(t *testing.T) {
	pki := certstest.NewMini(t)
	srv := pki.Server(t)
	client := pki.Issue(t, "central", "spiffe://hospital.example/svc/central")
	serverConf := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{srv.TLS()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.Roots()}
	r := startReceiver(t, "127.0.0.1:0", serverConf, 0)
	conf := pki.ClientTLS(client)
	conf.ServerName = ""
	e := newSinkEnv(t, r.addr, conf) // ServerName from the address: 127.0.0.1 is in the certificate
	for i := uint64(1); i <= 5; i++ {
		_ = e.sink.Send(seqLine(i))
	}
	seqs, _ := recvSeqs(t, r, 5)
	checkRun(t, "tls", seqs, 1)

	other := certstest.NewMini(t)
	r2 := startReceiver(t, "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{other.Server(t).TLS()}}, 0)
	e2 := newSinkEnv(t, r2.addr, pki.ClientTLS(client))
	_ = e2.sink.Send(seqLine(1))
	e2.await(t, "dial_failed")
	if st := e2.sink.Stats(); st.Queued != 1 || !strings.Contains(st.LastError, "tls handshake") {
		t.Errorf("untrusted receiver: %+v", st)
	}
}

func TestParseSyslogTarget(t *testing.T) {
	for _, c := range []struct {
		in      string
		addr    string
		tls     bool
		wantErr string
	}{
		{"tcp://siem.example:6514", "siem.example:6514", false, ""},
		{"tls://[::1]:6514", "[::1]:6514", true, ""},
		{"udp://siem.example:514", "", false, "UDP"},
		{"siem.example:514", "", false, "tcp://HOST:PORT"},
		{"tcp://siem.example", "", false, "tcp://HOST:PORT"},
		{"tcp://siem.example:514/x", "", false, "tcp://HOST:PORT"},
		{"http://siem.example:514", "", false, "tcp://HOST:PORT"},
	} {
		addr, useTLS, err := ParseSyslogTarget(c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: err %v, want %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil || addr != c.addr || useTLS != c.tls {
			t.Errorf("%s: %q %v %v", c.in, addr, useTLS, err)
		}
	}
	if _, err := NewSyslogSink(SyslogOptions{}); err == nil {
		t.Error("NewSyslogSink accepted empty options")
	}
}

// TestWrappedCEFOverSyslog: --format cef with a syslog target sends CEF
// as the MSG of an RFC 5424 message.
func TestWrappedCEFOverSyslog(t *testing.T) {
	r := startReceiver(t, "127.0.0.1:0", nil, 0)
	e := newSinkEnv(t, r.addr, nil)
	e.sink.o.Encoder, _ = NewEncoder(FormatCEF, EncoderOptions{Version: "test", Clock: e.clk})
	_ = e.sink.SendBatch([]wire.Line{seqLine(7)})
	select {
	case m := <-r.got:
		if _, err := parseCEF(m.Msg); err != nil || m.MsgID != "vendor.request" {
			t.Errorf("wrapped CEF: %v %+v", err, m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received")
	}
}

func seqLines(from, to uint64) []wire.Line {
	var out []wire.Line
	for i := from; i <= to; i++ {
		out = append(out, seqLine(i))
	}
	return out
}
