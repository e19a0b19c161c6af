package access

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

// BenchmarkTunnelRoundTrip measures a 1 KiB line echoed through an approved,
// recorded tunnel (TLS, relay, two recorded frames per round trip).
func BenchmarkTunnelRoundTrip(b *testing.B) {
	e := newEnv(b)
	id := e.request(e.jo, "pump-07:23")
	if _, err := e.b.Approve(id, local); err != nil {
		b.Fatal(err)
	}
	c := e.tunnel(e.jo, "pump-07:23")
	defer c.Close()
	line := strings.Repeat("x", 1023) + "\n"
	want := len("echo: ") + len(line)
	buf := make([]byte, want)
	br := bufio.NewReader(c)
	b.SetBytes(int64(len(line) + want))
	for b.Loop() {
		if _, err := io.WriteString(c, line); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(br, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConnectDecision measures a refused CONNECT end to end (TLS
// handshake, chain verification, Authorize, grant lookup). The handshake
// rate limit is off: the env's clock is fake, so once the limit's tokens
// were spent the listener would wait for a refill that never comes.
func BenchmarkConnectDecision(b *testing.B) {
	e := newEnv(b, func(o *Options) { o.ConnLimits.HandshakeRate = -1 })
	e.request(e.jo, "pump-07:23")
	for b.Loop() {
		if c, err := e.dial(e.jo, "pump-07:23"); err == nil {
			c.Close()
			b.Fatal("accepted")
		}
	}
}

func BenchmarkReadConnect(b *testing.B) {
	in := "CONNECT pump-07:23 HTTP/1.1\r\nHost: pump-07:23\r\nUser-Agent: curl/7.88.1\r\nProxy-Connection: Keep-Alive\r\nX-Reason: alarm\r\n\r\n"
	r := strings.NewReader(in)
	br := bufio.NewReader(r)
	for b.Loop() {
		r.Reset(in)
		br.Reset(r)
		if _, err := ReadConnect(br, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
