package clinical

import (
	"io"
	"testing"
)

// BenchmarkPingPong64 measures a 64-byte round trip through the relay.
func BenchmarkPingPong64(b *testing.B) {
	e := newEnv(b, echo, nil)
	c := dial(b, e.addr(), e.p.good(b))
	defer c.Close()
	msg := make([]byte, 64)
	got := make([]byte, 64)
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			b.Fatal(err)
		}
	}
}
