package telemetry

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/brokertest"
	"github.com/wardgate/wardgate/wire/envelope"
)

// ingest consumes the cluster's quorum queue over AMQP, as central
// instances share it, reconnecting to whichever node answers; it records
// every security event's seq and counts duplicates.
type ingest struct {
	mu    sync.Mutex
	seen  map[uint64]int
	dups  int
	total int
	ch    chan struct{}
}

func (in *ingest) run(ctx context.Context, t *testing.T, urls []string) {
	for i := 0; ctx.Err() == nil; i++ {
		conn, err := amqp.DialConfig(urls[i%len(urls)], amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond): // a node is down: try the other
			}
			continue
		}
		ch, err := conn.Channel()
		if err == nil {
			err = ch.Qos(256, 0, false)
		}
		var msgs <-chan amqp.Delivery
		if err == nil {
			msgs, err = ch.Consume(brokertest.IngestQueue, "", false, false, false, false, nil)
		}
		if err != nil {
			conn.Close()
			continue
		}
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	loop:
		for {
			select {
			case <-ctx.Done():
				conn.Close()
				return
			case <-closed:
				break loop
			case d, ok := <-msgs:
				if !ok {
					break loop
				}
				in.add(d.Body)
				_ = d.Ack(false)
			}
		}
		conn.Close()
	}
}

func (in *ingest) add(body []byte) {
	s, err := envelope.Parse(body)
	if err != nil {
		return
	}
	e, err := envelope.DecodePayload(s.Payload)
	if err != nil || e.Kind != envelope.KindEvent {
		return
	}
	in.mu.Lock()
	in.seen[e.Seq]++
	in.total++
	if in.seen[e.Seq] > 1 {
		in.dups++
	}
	in.mu.Unlock()
	select {
	case in.ch <- struct{}{}:
	default:
	}
}

func (in *ingest) missing(seqs []uint64) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	n := 0
	for _, s := range seqs {
		if in.seen[s] == 0 {
			n++
		}
	}
	return n
}

// TestRabbitClusterNodeKill: a gateway with brokers [node1, node2] of a
// two-node RabbitMQ cluster publishes security events under load; node1
// is killed (SIGKILL) and restarted; every event reaches the quorum queue
// central consumes (duplicates allowed, counted by seq).
func TestRabbitClusterNodeKill(t *testing.T) {
	restarted := make(chan struct{})
	pki := certstest.NewMini(t)
	start := time.Now()
	c := brokertest.StartRabbitCluster(t, pki, "gw-test")
	t.Logf("cluster started in %s", time.Since(start).Round(time.Second))
	// A loaded machine may still be starting the rabbit app on node 1.
	var out string
	var err error
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Second) {
		if out, err = c.Nodes[0].Ctl("cluster_status"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("cluster_status: %v\n%s", err, out)
	}
	if !strings.Contains(out, "wga") || !strings.Contains(out, "wgb") {
		t.Fatalf("the nodes did not form a cluster:\n%s", out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &ingest{seen: map[uint64]int{}, ch: make(chan struct{}, 1)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); in.run(ctx, t, []string{c.AMQP[1], c.AMQP[0]}) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	gw := pki.Gateway(t, "gw-test")
	opts := gatewayOptions(t, pki, c.Nodes[0].URL, "gw-test", gw, t.TempDir())
	opts.Brokers = []string{c.Nodes[0].URL, c.Nodes[1].URL}
	opts.NoSync = true
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	runPublisher(t, p)

	const total, killAt, perTick = 3000, 1000, 20
	var seqs []uint64
	tick := time.NewTicker(10 * time.Millisecond) // about 2,000 events/s offered
	defer tick.Stop()
	var killed time.Time
	var failover time.Duration
	sentAtKill := uint64(0)
	deadline := time.After(5 * time.Minute)
	for len(seqs) < total || failover == 0 {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("bounded run over: %d events queued, failover %s, stats %+v", len(seqs), failover, p.Stats())
		}
		for i := 0; i < perTick && len(seqs) < total; i++ {
			s, err := p.Event(wire.Event{Kind: "authority.lock_add", Severity: wire.SeverityWarning,
				Attrs: map[string]string{"identity": "spiffe://hospital.example/vendor/acme/bob"}})
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, s)
		}
		st := p.Stats()
		if killed.IsZero() && len(seqs) >= killAt && st.Sent > 0 {
			killed = time.Now()
			c.Nodes[0].Kill()
			sentAtKill = p.Stats().Sent // acknowledgements in flight at the kill are not failover
			t.Logf("node1 killed after %d events queued, %d acknowledged", len(seqs), sentAtKill)
			go func() { c.Nodes[0].Start(); close(restarted) }() // restarted at once; rejoins the cluster
		}
		if !killed.IsZero() && failover == 0 && st.Connected && st.Sent > sentAtKill && st.Broker == c.Nodes[1].URL {
			failover = time.Since(killed)
			t.Logf("publishing again through node2 %s after the kill", failover.Round(time.Millisecond))
		}
		if !killed.IsZero() && failover == 0 && st.Connected && st.Sent > sentAtKill+100 && st.Broker == c.Nodes[0].URL {
			failover = time.Since(killed)
			t.Logf("publishing again through the restarted node1 %s after the kill", failover.Round(time.Millisecond))
		}
	}
	// node1 must be back before the test ends: the cleanup stops node2,
	// and a node restarting after a kill waits for its peer.
	select {
	case <-restarted:
	case <-time.After(3 * time.Minute):
		t.Fatal("node1 did not come back within 3 minutes of its restart")
	}
	wait := time.After(3 * time.Minute)
	for in.missing(seqs) > 0 {
		select {
		case <-in.ch:
		case <-time.After(time.Second):
		case <-wait:
			t.Fatalf("%d of %d security events never reached the ingest queue (stats %+v)", in.missing(seqs), total, p.Stats())
		}
	}
	for _, l := range c.Nodes[1].LogLines(8, "[error]", "[warning]") {
		t.Logf("node2: %s", l)
	}
	in.mu.Lock()
	t.Logf("all %d security events consumed from the quorum queue: %d messages, %d duplicates (removed by seq); failover %s; %d failovers",
		total, in.total, in.dups, failover.Round(time.Millisecond), p.Stats().Failovers)
	in.mu.Unlock()
}
