package access

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// syncBuf is a goroutine-safe writer that signals every write.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
	ch chan struct{}
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
	default:
	}
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuf) wait(t *testing.T, sub string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for !strings.Contains(s.String(), sub) {
		select {
		case <-s.ch:
		case <-deadline:
			t.Fatalf("output lacks %q:\n%s", sub, s.String())
		}
	}
}

func TestConnectClientEndToEnd(t *testing.T) {
	e := newEnv(t)
	cclock := clockwork.NewFakeClock()
	out := &syncBuf{ch: make(chan struct{}, 1)}
	cl := e.client(e.jo, "pump-07:23")
	cl.Clock, cl.Out, cl.RetryEvery = cclock, out, 5*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	local, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	out.wait(t, "no grant yet: request ")
	req := e.ev.wait(t, EvRequest, nil)
	// Keeps retrying with visible progress while pending.
	if err := cclock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	cclock.Advance(5 * time.Second)
	out.wait(t, "request "+req.Grant+" pending since")
	if err := cclock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	cclock.Advance(5 * time.Second)
	out.wait(t, "still waiting for approval of "+req.Grant)
	if _, err := e.b.Approve(req.Grant, local2()); err != nil {
		t.Fatal(err)
	}
	if err := cclock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	cclock.Advance(5 * time.Second)
	out.wait(t, "connected to pump-07:23")
	br := bufio.NewReader(local)
	fmt.Fprintf(local, "ping\n")
	_ = local.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := br.ReadString('\n'); err != nil || line != "echo: ping\n" {
		t.Fatalf("%q %v", line, err)
	}
	// Revoke: the local connection is closed too.
	if err := e.b.Revoke(req.Grant, local2()); err != nil {
		t.Fatal(err)
	}
	if _, err := br.ReadString('\n'); err == nil {
		t.Fatal("local connection survived the revoke")
	}
	out.wait(t, "to pump-07:23 ended: revoked")

	// A refusal that will not resolve by waiting is printed and ends the connection.
	cl2 := e.client(e.jo, "pump-07:7001")
	var out2 bytes.Buffer
	cl2.Out = &out2
	_, err = cl2.DialWait(context.Background())
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != CodeClinicalPort || !strings.Contains(out2.String(), "refused: port 7001 is the clinical port of pump-07") {
		t.Fatalf("%v %q", err, out2.String())
	}
}

func local2() Actor { return Actor{Kind: KindLocal, Via: "admin", UID: 0} }

func TestConnectClientGivesUp(t *testing.T) {
	e := newEnv(t)
	cclock := clockwork.NewFakeClock()
	var out syncBuf
	out.ch = make(chan struct{}, 1)
	cl := e.client(e.jo, "pump-07:23")
	cl.Clock, cl.Out, cl.RetryEvery, cl.MaxWait = cclock, &out, time.Second, 2*time.Second
	errc := make(chan error, 1)
	go func() { _, err := cl.DialWait(context.Background()); errc <- err }()
	for i := 0; i < 2; i++ {
		if err := cclock.BlockUntilContext(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
		cclock.Advance(time.Second)
	}
	err := <-errc
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != CodePending || !strings.Contains(out.String(), "gave up after 2s") {
		t.Fatalf("%v\n%s", err, out.String())
	}
	// The gateway is not there.
	cl.Gateway = "127.0.0.1:1"
	if _, err := cl.DialTunnel(context.Background()); err == nil || !strings.Contains(err.Error(), "connect to gateway") {
		t.Fatal(err)
	}
}

func TestLoadClientTLS(t *testing.T) {
	e := newEnv(t)
	cfg, err := LoadClientTLS(e.jo.certFile, e.jo.keyFile, e.pki.rootFile)
	if err != nil {
		t.Fatal(err)
	}
	cl := &Client{Gateway: e.addr, Target: "pump-07:23", TLS: cfg}
	_, err = cl.DialTunnel(context.Background())
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != CodeNoGrant {
		t.Fatalf("%v", err)
	}
	if _, err := LoadClientTLS(e.jo.certFile, e.jo.keyFile, e.jo.keyFile); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Fatal(err)
	}
	if _, err := LoadClientTLS(e.jo.certFile, e.pki.rootFile, e.pki.rootFile); err == nil {
		t.Fatal("bad key accepted")
	}
	if _, err := LoadClientTLS(e.jo.certFile, e.jo.keyFile, "/nonexistent"); err == nil {
		t.Fatal("missing CA accepted")
	}
	if _, err := (&Client{Gateway: e.addr}).DialTunnel(context.Background()); err == nil {
		t.Fatal("nil TLS accepted")
	}
	// A renewed certificate is picked up at the next handshake: swap the
	// files for a certificate of another identity and see it named.
	other := e.pki.vendor(t, "other", "spiffe://"+td+"/vendor/other-medical/ann", e.pki.ca, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	for _, f := range [][2]string{{other.certFile, e.jo.certFile}, {other.keyFile, e.jo.keyFile}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err = cl.DialTunnel(context.Background())
	if !errors.As(err, &re) || re.Code != CodeOtherDevice {
		t.Fatalf("after the swap: %v", err)
	}
	// The gateway's certificate must chain to the given CA.
	wrongRoot := t.TempDir() + "/r.crt"
	writePEM(t, wrongRoot, "CERTIFICATE", e.pki.wrong.CA.Root.Raw)
	cfg2, err := LoadClientTLS(e.jo.certFile, e.jo.keyFile, wrongRoot)
	if err != nil {
		t.Fatal(err)
	}
	cl.TLS = cfg2
	if _, err := cl.DialTunnel(context.Background()); err == nil || !strings.Contains(err.Error(), "check --cert, --key and --ca") {
		t.Fatal(err)
	}
}
