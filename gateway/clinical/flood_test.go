package clinical

import (
	"bufio"
	"context"
	"net"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestHandshakeFlood: 1,000 connections that never finish the handshake are
// timed out with bounded memory, while an allowed session keeps working and
// a new one can start.
func TestHandshakeFlood(t *testing.T) {
	const n = 1000
	e := newEnv(t, echo, func(_ *Options, d *DeviceOptions) {
		d.HandshakeTimeout = 2 * time.Second
		d.MaxPending, d.MaxPerSource = n+10, n+10
	})
	live := dial(t, e.addr(), e.p.good(t))
	defer live.Close()
	roundTrip(t, live, "before")
	before := heapInUse()
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", e.addr())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte{0x16, 0x03, 0x01}) // a record header, never finished
		conns = append(conns, c)
	}
	during := heapInUse()
	roundTrip(t, live, "during the flood")
	fresh := dial(t, e.addr(), e.p.good(t))
	roundTrip(t, fresh, "new session during the flood")
	fresh.Close()
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("stalled handshake got bytes")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("stalled handshake not timed out by the server")
		}
		c.Close()
	}
	roundTrip(t, live, "after the flood")
	after := heapInUse()
	t.Logf("heap in use: before %d KiB, with %d stalled handshakes %d KiB (%d B each), after %d KiB",
		before>>10, n, during>>10, int64(during-before)/n, after>>10)
	if during > before+64<<20 {
		t.Fatalf("heap grew by %d MiB for %d stalled handshakes", (during-before)>>20, n)
	}
	if after > before+8<<20 {
		t.Fatalf("heap not released: before %d, after %d", before, after)
	}
	if c := e.s.Snapshot()[0].Counters; c.HandshakeFailures[ReasonHandshakeTimeout] != n {
		t.Fatalf("counters %+v", c)
	}
	ev := e.ev.wait(t, EvHandshakeFailed, func(ev Event) bool { return ev.Reason == ReasonHandshakeTimeout })
	if ev.Suppressed != 0 {
		t.Fatalf("first event carries %d suppressed", ev.Suppressed)
	}
}

var sslscanLine = regexp.MustCompile(`^(Accepted|Preferred)\s+(\S+)\s+\d+ bits\s+(\S+)`)

// TestSSLScan scans a device listener with sslscan: nothing below TLS 1.2,
// only ECDHE + AEAD suites, and a client certificate is required.
func TestSSLScan(t *testing.T) {
	sslscan := needTool(t, "sslscan")
	openssl := needTool(t, "openssl")
	e := newEnv(t, echo, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// With a client certificate, so that TLS 1.2 suites can be enumerated
	// (the handshake needs one).
	// sslscan sends the leaf without its intermediate: trust that too here.
	c := e.p.good(t)
	pool := e.p.pool.Clone()
	pool.AddCert(e.p.ca.CA.Intermediate)
	e.pol.pool.Store(pool)
	out, err := exec.CommandContext(ctx, sslscan, "--no-colour", "--no-heartbleed", "--no-fallback",
		"--certs="+c.certFile, "--pk="+c.keyFile, e.addr()).CombinedOutput()
	if err != nil {
		t.Fatalf("sslscan: %v\n%s", err, out)
	}
	enabled := map[string]bool{}
	suites := 0
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		for _, v := range []string{"SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"} {
			if strings.HasPrefix(line, v+" ") && strings.HasSuffix(line, "enabled") {
				enabled[v] = true
			}
		}
		m := sslscanLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		suites++
		proto, suite := m[2], m[3]
		if proto != "TLSv1.2" && proto != "TLSv1.3" {
			t.Errorf("accepted below TLS 1.2: %s", line)
		}
		aead := strings.Contains(suite, "GCM") || strings.Contains(suite, "CHACHA20")
		ecdhe := proto == "TLSv1.3" || strings.HasPrefix(suite, "ECDHE-")
		if !aead || !ecdhe {
			t.Errorf("non-AEAD or non-ECDHE suite accepted: %s", line)
		}
	}
	if suites < 4 || !enabled["TLSv1.2"] || !enabled["TLSv1.3"] {
		t.Fatalf("sslscan found %d suites, protocols %v:\n%s\nevents: %+v", suites, enabled, out, e.ev.all())
	}
	for _, v := range []string{"SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"} {
		if enabled[v] {
			t.Errorf("%s enabled", v)
		}
	}
	e.pol.pool.Store(e.p.pool)
	// Client certificate required: the server asks for one and a TLS 1.2
	// handshake without it fails.
	cout, _ := exec.CommandContext(ctx, openssl, "s_client", "-connect", e.addr(), "-tls1_2", "-CAfile", e.p.rootFile).CombinedOutput()
	if !strings.Contains(string(cout), "Acceptable client certificate CA names") {
		t.Errorf("no certificate request:\n%s", cout)
	}
	if strings.Contains(string(cout), "Verify return code: 0") && !strings.Contains(string(cout), "alert") {
		t.Errorf("TLS 1.2 handshake without a client certificate succeeded:\n%s", cout)
	}
	e.ev.wait(t, EvRefused, func(ev Event) bool { return ev.Reason == ReasonNoCertificate })
	t.Logf("sslscan: %d suites accepted, protocols %v", suites, enabled)
}
