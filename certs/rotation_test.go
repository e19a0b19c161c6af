package certs

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rotationResult are the figures of one rotation-under-load run.
type rotationResult struct {
	Rotations        int
	Handshakes       int64
	FailedHandshakes int64
	Streams          int
	DroppedStreams   int64
	StreamMessages   int64
	Elapsed          time.Duration
	FirstErr         error
}

// runRotationUnderLoad serves mTLS with a Manager on a fake clock while
// handshakers dial continuously and long-lived streams echo, and rotates
// the certificate `rotations` times (every second one a re-key). After each
// rotation it checks that a new handshake gets the new certificate.
func runRotationUnderLoad(t testing.TB, h *mgrHarness, rotations, streams, handshakers int) rotationResult {
	t.Helper()
	v := NewVerifier(h.dev.Bundle(), h.clk)
	policy := PeerPolicy{TrustDomain: testTD, Allow: []Pattern{MustCompilePattern("spiffe://hospital.example/svc/*")}}
	l, err := tls.Listen("tcp", "127.0.0.1:0", v.ServerTLSConfig(h.m, policy, nil))
	if err != nil {
		t.Fatal(err)
	}
	var srvWG sync.WaitGroup
	conns := sync.Map{}
	srvWG.Add(1)
	go func() {
		defer srvWG.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Store(c, true)
			srvWG.Add(1)
			go func() {
				defer srvWG.Done()
				defer conns.Delete(c)
				defer c.Close()
				_, _ = io.Copy(c, c) // echo
			}()
		}
	}()
	clientCert, err := h.dev.Issue(IssueOptions{URI: ServiceURI(testTD, "pump-server"), Lifetime: 12 * time.Hour, NotBefore: h.clk.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	ccfg := v.ClientTLSConfig(staticSource(&clientCert), "gw-01")
	dial := func() (*tls.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := (&tls.Dialer{Config: ccfg}).DialContext(ctx, "tcp", l.Addr().String())
		if err != nil {
			return nil, err
		}
		return c.(*tls.Conn), nil
	}
	var res rotationResult
	var firstErr atomic.Pointer[error]
	setErr := func(err error) { firstErr.CompareAndSwap(nil, &err) }
	start := time.Now()

	// Long-lived streams: ping-pong lines until stopped.
	stop := make(chan struct{})
	var cliWG sync.WaitGroup
	var msgs, dropped atomic.Int64
	for i := 0; i < streams; i++ {
		c, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		cliWG.Add(1)
		go func(c *tls.Conn) {
			defer cliWG.Done()
			defer c.Close()
			r := bufio.NewReader(c)
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				msg := fmt.Sprintf("ping %d\n", n)
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(c, msg); err != nil {
					dropped.Add(1)
					setErr(fmt.Errorf("stream write: %w", err))
					return
				}
				line, err := r.ReadString('\n')
				if err != nil || line != msg {
					dropped.Add(1)
					setErr(fmt.Errorf("stream read: %q %w", line, err))
					return
				}
				msgs.Add(1)
				time.Sleep(2 * time.Millisecond) // pace the stream, not a synchronisation
			}
		}(c)
	}
	// Handshakers: new connections as fast as they go (bounded count).
	var hs, failed atomic.Int64
	const maxHandshakes = 200000
	for i := 0; i < handshakers; i++ {
		cliWG.Add(1)
		go func() {
			defer cliWG.Done()
			for hs.Load() < maxHandshakes {
				select {
				case <-stop:
					return
				default:
				}
				c, err := dial()
				if err == nil {
					_, err = c.Write([]byte{1})
					if err == nil {
						_, err = io.ReadFull(c, make([]byte, 1))
					}
					c.Close()
				}
				hs.Add(1)
				if err != nil {
					failed.Add(1)
					setErr(fmt.Errorf("handshake: %w", err))
				}
			}
		}()
	}
	servedSerial := func() string {
		c, err := dial()
		if err != nil {
			failed.Add(1)
			setErr(err)
			return ""
		}
		defer c.Close()
		hs.Add(1)
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
	}
	for i := 1; i <= rotations; i++ {
		// Let some load run on the current certificate.
		for n := hs.Load(); hs.Load() < n+50; {
			time.Sleep(time.Millisecond)
		}
		h.idle()
		next := h.m.Status().NextRenewal
		h.clk.Advance(next.Sub(h.clk.Now()))
		e := h.ev.wait(t, map[bool]EventKind{true: EventRekeyed, false: EventRenewed}[i%2 == 0], 20*time.Second)
		if got := servedSerial(); got != e.Serial {
			t.Fatalf("rotation %d: new handshake got serial %s, want the new %s", i, got, e.Serial)
		}
		res.Rotations++
	}
	for n := hs.Load(); hs.Load() < n+50; {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	cliWG.Wait()
	res.Elapsed = time.Since(start)
	l.Close()
	conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
	srvWG.Wait()
	res.Handshakes, res.FailedHandshakes = hs.Load(), failed.Load()
	res.Streams, res.DroppedStreams, res.StreamMessages = streams, dropped.Load(), msgs.Load()
	if p := firstErr.Load(); p != nil {
		res.FirstErr = *p
	}
	return res
}

// TestRotationUnderLoad: continuous new handshakes and long-lived streams
// across 4 rotations (2 re-keys): 0 failed handshakes, 0 dropped streams.
func TestRotationUnderLoad(t *testing.T) {
	h := newMgrHarness(t, time.Hour, func(o *ManagerOptions) { o.RekeyEvery = 2 })
	res := runRotationUnderLoad(t, h, 4, 8, 3)
	t.Logf("%d rotations, %d handshakes (%d failed), %d streams (%d dropped, %d messages) in %s",
		res.Rotations, res.Handshakes, res.FailedHandshakes, res.Streams, res.DroppedStreams, res.StreamMessages, res.Elapsed.Round(time.Millisecond))
	if res.FailedHandshakes != 0 {
		t.Errorf("failed handshakes: %d (first error %v)", res.FailedHandshakes, res.FirstErr)
	}
	if res.DroppedStreams != 0 {
		t.Errorf("dropped streams: %d (first error %v)", res.DroppedStreams, res.FirstErr)
	}
	if res.Rotations < 3 || res.Handshakes < 100 || res.StreamMessages < int64(res.Streams) {
		t.Errorf("too little load: %+v", res)
	}
}
