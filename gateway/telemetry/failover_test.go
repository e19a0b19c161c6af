package telemetry

import (
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/brokertest"
)

// TestBrokerFailover: with two brokers, the publisher uses the first; when
// it dies, the publisher moves to the second and every security event,
// those queued while it was moving included, reaches a consumer.
func TestBrokerFailover(t *testing.T) {
	pki := certstest.NewMini(t)
	a := brokertest.StartMosquitto(t, pki)
	b := brokertest.StartMosquitto(t, pki)
	consA := startConsumer(t, pki, a.URL, "gw-test")
	consB := startConsumer(t, pki, b.URL, "gw-test")
	gw := pki.Gateway(t, "gw-test")
	opts := gatewayOptions(t, pki, a.URL, "gw-test", gw, t.TempDir())
	opts.Brokers = []string{a.URL, b.URL}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	runPublisher(t, p)
	seen := func(seq uint64) bool { return consA.has("gw-test", seq) || consB.has("gw-test", seq) }
	var seqs []uint64
	send := func(n int) {
		for range n {
			s, err := p.Event(wire.Event{Kind: "authority.lock_add", Severity: wire.SeverityWarning})
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, s)
		}
	}
	send(10)
	consA.waitFor(t, 20*time.Second, "the first events on broker A", func() bool {
		for _, s := range seqs {
			if !consA.has("gw-test", s) {
				return false
			}
		}
		return true
	})
	if st := p.Stats(); st.Broker != a.URL || !st.Connected {
		t.Fatalf("before the failure: %+v", st)
	}

	a.Stop()
	send(10) // queued while the gateway finds out and moves
	consB.waitFor(t, 30*time.Second, "every event on A or B after A died", func() bool {
		for _, s := range seqs {
			if !seen(s) {
				return false
			}
		}
		return true
	})
	st := p.Stats()
	if st.Broker != b.URL || st.Failovers == 0 {
		t.Fatalf("after the failure: broker %s, failovers %d", st.Broker, st.Failovers)
	}
	if len(consB.alerts()) > 0 {
		t.Errorf("alerts on broker B: %+v", consB.alerts())
	}
}
