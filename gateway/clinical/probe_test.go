package clinical

import (
	"context"
	"net"
	"testing"
)

// TestProbeLinks: the probe learns the link state before any client
// connects, sends no payload, reports a dead device as link down and skips
// a device with a live session.
func TestProbeLinks(t *testing.T) {
	got := make(chan int, 4)
	e := newEnv(t, func(c net.Conn) {
		buf := make([]byte, 16)
		n, _ := c.Read(buf) // the probe closes without sending
		got <- n
	}, nil)
	if st := e.s.Snapshot()[0]; st.LinkState != "unknown" {
		t.Fatalf("link before probe: %s", st.LinkState)
	}
	e.s.ProbeLinks(context.Background())
	if n := <-got; n != 0 {
		t.Fatalf("the probe sent %d bytes", n)
	}
	e.ev.wait(t, EvLinkUp, nil)
	if st := e.s.Snapshot()[0]; st.LinkState != "up" || e.be.count() != 1 {
		t.Fatalf("after probe: %s, %d connections", st.LinkState, e.be.count())
	}

	// A live session: no probe.
	c := dial(t, e.addr(), e.p.good(t))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	<-got
	e.ev.wait(t, EvSessionStart, nil)
	e.s.ProbeLinks(context.Background())
	if n := e.be.count(); n != 2 {
		t.Fatalf("probe during a live session: %d backend connections", n)
	}
	c.Close()
	e.ev.wait(t, EvSessionEnd, nil)

	// The device goes away.
	e.be.ln.Close()
	e.s.ProbeLinks(context.Background())
	ev := e.ev.wait(t, EvLinkDown, nil)
	if st := e.s.Snapshot()[0]; st.LinkState != "down" || ev.Detail == "" {
		t.Fatalf("after the device went away: %s %q", st.LinkState, ev.Detail)
	}
}
