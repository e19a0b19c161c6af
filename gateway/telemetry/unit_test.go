package telemetry

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testnet"
	"github.com/wardgate/wardgate/wire"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire/brokertest"
)

func TestBackoffBounds(t *testing.T) {
	p := &Publisher{opts: Options{BackoffMin: time.Second, BackoffMax: time.Minute}}
	for attempt, max := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
		for range 50 {
			if d := p.backoff(attempt); d < max/2 || d > max {
				t.Fatalf("attempt %d: %s outside [%s, %s]", attempt, d, max/2, max)
			}
		}
	}
	for range 50 {
		if d := p.backoff(40); d < 30*time.Second || d > time.Minute {
			t.Fatalf("capped backoff %s", d)
		}
	}
}

// TestReconnectWaitsOnClock: reconnection attempts happen only when the
// injected clock passes the backoff delay.
func TestReconnectWaitsOnClock(t *testing.T) {
	pki := certstest.NewMini(t)
	gw := pki.Gateway(t, "gw-test")
	port := testnet.FreePort(t) // nothing listens there
	opts := gatewayOptions(t, pki, fmt.Sprintf("ssl://127.0.0.1:%d", port), "gw-test", gw, t.TempDir())
	fc := clockwork.NewFakeClock()
	opts.Clock = fc
	opts.BackoffMin, opts.BackoffMax = time.Second, 4*time.Second
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	runPublisher(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	step := 50 * time.Millisecond
	for want := uint64(1); want <= 4; want++ {
		for p.Stats().Attempts < want {
			if ctx.Err() != nil {
				t.Fatalf("attempt %d never made", want)
			}
			time.Sleep(time.Millisecond)
		}
		// Advance the fake clock in steps until the next attempt: it must
		// come after at least half the nominal delay, at most the cap.
		nominal := min(opts.BackoffMin<<(want-1), opts.BackoffMax)
		var advanced time.Duration
		for p.Stats().Attempts < want+1 {
			if advanced > nominal+time.Second || ctx.Err() != nil {
				t.Fatalf("no attempt %d after advancing %s", want+1, advanced)
			}
			fc.Advance(step)
			advanced += step
			time.Sleep(2 * time.Millisecond)
		}
		if advanced < nominal/2 {
			t.Fatalf("attempt %d came after %s, before half of %s", want+1, advanced, nominal)
		}
	}
	if s := p.Stats().Outbox.Session; s != 1 {
		t.Fatalf("failed attempts consumed sessions: %d", s)
	}
}

// TestOutboxFullThroughPublisher: while the broker is away, a small
// outbox drops the oldest metrics (counted and reported), never an event.
func TestOutboxFullThroughPublisher(t *testing.T) {
	pki := certstest.NewMini(t)
	broker := brokertest.StartMosquitto(t, pki)
	cons := startConsumer(t, pki, broker.URL, "gw-test")
	broker.Stop()
	gw := pki.Gateway(t, "gw-test")
	opts := gatewayOptions(t, pki, broker.URL, "gw-test", gw, t.TempDir())
	opts.OutboxMax = 16 << 10
	alarms := make(chan Alarm, 64)
	opts.OnAlarm = func(a Alarm) {
		select {
		case alarms <- a:
		default:
		}
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	var events []uint64
	var firstMetric uint64
	for i := range 300 {
		s, err := p.PublishMetrics(sampleMetrics())
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			firstMetric = s
		}
		if i%10 == 0 {
			e, err := p.Event(wire.Event{Kind: "test.full", Attrs: map[string]string{"i": fmt.Sprint(i)}})
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, e)
		}
	}
	st := p.Stats().Outbox
	if st.Lost == 0 || st.Bytes > opts.OutboxMax {
		t.Fatalf("outbox %+v", st)
	}
	lost := st.Lost
	broker.Start()
	runPublisher(t, p)
	checkDeliveredSet(t, cons, "gw-test", events)
	if cons.has("gw-test", firstMetric) {
		t.Fatal("the oldest metric was delivered; it should have been dropped first")
	}
	// Priorities: every backlog event arrived before any backlog metric.
	cons.mu.Lock()
	lastEvent, firstMetricAt := -1, -1
	for i, l := range cons.lines {
		switch l.Kind {
		case "event":
			lastEvent = i
		case "metrics":
			if firstMetricAt < 0 {
				firstMetricAt = i
			}
		}
	}
	cons.mu.Unlock()
	if firstMetricAt >= 0 && firstMetricAt < lastEvent {
		t.Fatalf("a metric (line %d) overtook an event (line %d)", firstMetricAt, lastEvent)
	}
	// The next metrics message reports the loss.
	seq, err := p.PublishMetrics(sampleMetrics())
	if err != nil {
		t.Fatal(err)
	}
	cons.waitFor(t, 20*time.Second, "metrics with loss counter", func() bool { return cons.has("gw-test", seq) })
	l, _ := cons.get("gw-test", seq)
	found := false
	for _, r := range l.Body.([]map[string]any) {
		if v, _ := r["v"].(float64); r["n"] == wire.MetricOutboxLost && v >= float64(lost) {
			found = true
		}
	}
	if !found {
		t.Fatalf("loss counter %d not in %v", lost, l.Body)
	}
	_ = filepath.Join
}

func checkDeliveredSet(t *testing.T, cons *consumer, gw string, seqs []uint64) {
	t.Helper()
	cons.waitFor(t, 30*time.Second, fmt.Sprintf("%d events", len(seqs)), func() bool {
		for _, s := range seqs {
			if !cons.has(gw, s) {
				return false
			}
		}
		return true
	})
}

func TestRunLeavesNoGoroutines(t *testing.T) {
	pki := certstest.NewMini(t)
	broker := brokertest.StartMosquitto(t, pki)
	gw := pki.Gateway(t, "gw-test")
	before := runtime.NumGoroutine()
	opts := gatewayOptions(t, pki, broker.URL, "gw-test", gw, t.TempDir())
	opts.Metrics = sampleMetrics
	opts.Inventory = sampleInventory
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	stop := runPublisher(t, p)
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Sent < 2 {
		if time.Now().After(deadline) {
			t.Fatal("nothing sent")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	deadline = time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Run, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
	// After a clean stop the death was published by the gateway itself.
	if st := p.Stats(); st.Connected {
		t.Fatalf("still connected: %+v", st)
	}
}

func TestNewValidates(t *testing.T) {
	_, err := New(Options{GatewayID: "GW_1"})
	if err == nil {
		t.Fatal("New accepted an empty configuration")
	}
	for _, want := range []string{"not a DNS label", "no broker URL", "hooks are required", "no outbox path"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
