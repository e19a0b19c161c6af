package telemetry

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/certs/certstest"
)

// TestRejectedCommandsAreFolded: a flood of junk on the command topic costs
// one event and one reply at once and one summary event per window, never
// one per message, and no sender bytes reach the event.
func TestRejectedCommandsAreFolded(t *testing.T) {
	pki := certstest.NewMini(t)
	gw := pki.Gateway(t, "gw-test")
	opts := gatewayOptions(t, pki, "mqtts://127.0.0.1:1", "gw-test", gw, t.TempDir())
	clk := clockwork.NewFakeClock()
	opts.Clock = clk
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	before := p.ob.Len()
	for i := range 500 {
		p.handleCommand(context.Background(), []byte(strings.Repeat("\x1b[31mjunk", i%7+1)))
	}
	if got := p.ob.Len() - before; got != 2 {
		t.Fatalf("500 junk commands queued %d messages, want 2 (one event, one reply)", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.commandLoop(ctx) }()
	defer func() { cancel(); <-done }()
	if err := clk.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(rejectWindow + time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for p.ob.Len()-before != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no summary event after the window: %d messages queued", p.ob.Len()-before)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPrintableCapsAndCleans(t *testing.T) {
	if got := printable("a\x1bb\nc"+strings.Repeat("x", 300), 10); got != "a?b?cxxxxx" {
		t.Errorf("printable = %q", got)
	}
}
