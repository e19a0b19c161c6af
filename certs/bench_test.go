package certs

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// benchServer is an mTLS echo-one-byte server with the Verifier's config.
func benchServer(b *testing.B) (addr string, ccfg *tls.Config, closeFn func()) {
	b.Helper()
	clk := clockwork.NewRealClock()
	dev := newDevCA(b, clk, time.Hour)
	v := NewVerifier(dev.Bundle(), clk)
	srvCert, err := dev.Issue(IssueOptions{URI: GatewayURI(testTD, "gw-01"), DNSNames: []string{"gw-01"}})
	if err != nil {
		b.Fatal(err)
	}
	cliCert, err := dev.Issue(IssueOptions{URI: ServiceURI(testTD, "pump-server")})
	if err != nil {
		b.Fatal(err)
	}
	policy := PeerPolicy{TrustDomain: testTD, Allow: []Pattern{MustCompilePattern("spiffe://hospital.example/svc/*")}}
	l, err := tls.Listen("tcp", "127.0.0.1:0", v.ServerTLSConfig(staticSource(&srvCert), policy, nil))
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				buf := make([]byte, 1)
				if _, err := io.ReadFull(c, buf); err == nil {
					_, _ = c.Write(buf)
				}
			}(c)
		}
	}()
	return l.Addr().String(), v.ClientTLSConfig(staticSource(&cliCert), "gw-01"), func() { l.Close() }
}

func benchHandshakes(b *testing.B, resume bool) {
	addr, ccfg, closeFn := benchServer(b)
	defer closeFn()
	if resume {
		ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	}
	resumed := 0
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := (&tls.Dialer{Config: ccfg}).DialContext(ctx, "tcp", addr)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		tc := c.(*tls.Conn)
		// The round trip also receives the TLS 1.3 session ticket.
		if _, err := tc.Write([]byte{1}); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(tc, make([]byte, 1)); err != nil {
			b.Fatal(err)
		}
		if tc.ConnectionState().DidResume {
			resumed++
		}
		tc.Close()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "handshakes/s")
	if resume && b.N > 1 && resumed < b.N/2 {
		b.Fatalf("only %d of %d handshakes resumed", resumed, b.N)
	}
	if !resume && resumed > 0 {
		b.Fatalf("%d handshakes resumed without a session cache", resumed)
	}
}

// BenchmarkHandshakeFull: full mTLS 1.3 handshakes (ECDSA P-256 both sides,
// peer verification with SPIFFE policy) over loopback, one byte echoed.
func BenchmarkHandshakeFull(b *testing.B) { benchHandshakes(b, false) }

// BenchmarkHandshakeResumed: the same with TLS 1.3 session resumption
// (VerifyConnection still runs on the resumed peer chain).
func BenchmarkHandshakeResumed(b *testing.B) { benchHandshakes(b, true) }

// BenchmarkVerify: Verifier.Verify of a two-certificate chain.
func BenchmarkVerify(b *testing.B) {
	clk := clockwork.NewRealClock()
	dev := newDevCA(b, clk, time.Hour)
	v := NewVerifier(dev.Bundle(), clk)
	tc, _ := dev.Issue(IssueOptions{URI: VendorURI(testTD, "acme", "jane")})
	chain := leafChain(b, tc)
	p := PeerPolicy{TrustDomain: testTD, Allow: []Pattern{MustCompilePattern("spiffe://hospital.example/vendor/acme/*")}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(chain, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRotationUnderLoad: one op is a run of 3 rotations under 8
// streams and 3 handshakers; reports handshakes/s during rotation and the
// failure counts (both must be 0).
func BenchmarkRotationUnderLoad(b *testing.B) {
	var hs, failed, dropped int64
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		h := newMgrHarness(b, time.Hour, func(o *ManagerOptions) { o.RekeyEvery = 2 })
		res := runRotationUnderLoad(b, h, 3, 8, 3)
		h.stop()
		hs += res.Handshakes
		failed += res.FailedHandshakes
		dropped += res.DroppedStreams
		elapsed += res.Elapsed
	}
	b.ReportMetric(float64(hs)/elapsed.Seconds(), "handshakes/s")
	b.ReportMetric(float64(failed), "failed_handshakes")
	b.ReportMetric(float64(dropped), "dropped_streams")
	if failed+dropped > 0 {
		b.Fatalf("failed handshakes %d, dropped streams %d", failed, dropped)
	}
}
