package ingest

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/central/store/storetest"
	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/brokertest"
	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/envelope"
)

// outbox is a test gateway's publisher: pre-signed messages (seq i+1 at
// index i) published over MQTT QoS 1 with a window of unacknowledged
// ones; on any failure it reconnects to the next broker and resends from
// the first unacknowledged message, as the gateway's outbox does (so a
// message may arrive twice, never not at all).
type outbox struct {
	id      string
	tls     *tls.Config
	topics  []string
	msgs    [][]byte
	acked   atomic.Int64 // messages acknowledged, in order
	resent  atomic.Int64
	lastAck atomic.Int64 // unix ns of the latest acknowledgement
	release func() int   // how many messages may be published by now
}

func (o *outbox) run(ctx context.Context, brokers []string) {
	const window = 32
	for k := 0; ctx.Err() == nil && int(o.acked.Load()) < len(o.msgs); k++ {
		opts := paho.NewClientOptions().AddBroker(brokers[k%len(brokers)]).SetClientID(o.id).SetTLSConfig(o.tls).
			SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
			SetWriteTimeout(5 * time.Second).SetKeepAlive(5 * time.Second)
		c := paho.NewClient(opts)
		if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
			c.Disconnect(0)
			select { // the broker is down: the next one after a pause
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		next := int(o.acked.Load())
		if k > 0 && next < len(o.msgs) {
			o.resent.Add(1)
		}
		var inflight []paho.Token
		failed := false
		for !failed && ctx.Err() == nil && int(o.acked.Load()) < len(o.msgs) {
			for len(inflight) < window && next < len(o.msgs) && next < o.release() {
				inflight = append(inflight, c.Publish(o.topics[next], 1, false, o.msgs[next]))
				next++
			}
			if len(inflight) == 0 {
				time.Sleep(5 * time.Millisecond) // paced by release
				continue
			}
			if !inflight[0].WaitTimeout(10*time.Second) || inflight[0].Error() != nil {
				failed = true
				break
			}
			inflight = inflight[1:]
			o.acked.Add(1)
			o.lastAck.Store(time.Now().UnixNano())
		}
		c.Disconnect(0)
	}
}

// TestAMQPClusterSharedIngest: gateways publish signed security events
// over MQTT into a two-node RabbitMQ cluster under load; two central
// ingesters share the cluster's quorum queue over AMQP into one
// PostgreSQL; one node is killed (SIGKILL) mid-load and restarted. Every
// published seq is stored exactly once, duplicates are counted, and no
// gap is recorded.
func TestAMQPClusterSharedIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("a RabbitMQ cluster and PostgreSQL: skipped with -short")
	}
	const gateways, events, rate = 8, 500, 800 // events per gateway; messages/s offered in all
	pki := certstest.NewMini(t)
	var ids []string
	for i := range gateways {
		ids = append(ids, fmt.Sprintf("gw-%02d", i))
	}
	dsn := storetest.Postgres(t)
	start := time.Now()
	c := brokertest.StartRabbitCluster(t, pki, ids...)
	var out string
	var err error
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
		if out, err = c.Nodes[0].Ctl("cluster_status"); (err == nil && strings.Contains(out, "wga") && strings.Contains(out, "wgb")) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || !strings.Contains(out, "wgb") {
		t.Fatalf("the nodes did not form a cluster: %v\n%s", err, out)
	}
	t.Logf("cluster up in %s", time.Since(start).Round(time.Second))

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	central := pki.Issue(t, "central", "spiffe://"+certstest.MiniTrustDomain+"/svc/central")
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("WARDGATE_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	var ins [2]*Ingester
	var sts [2]*store.Store
	for i := range 2 {
		st, err := store.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		// Instance 1 connects as in production: amqps with central's
		// certificate (SASL EXTERNAL); instance 2 with a password on loopback.
		urls := []string{c.AMQPS[0], c.AMQPS[1]}
		if i == 1 {
			urls = []string{c.AMQP[1], c.AMQP[0]}
		}
		in, err := New(ctx, Options{Store: st, Verify: envelope.RootsVerifier(pki.Roots()), Signer: central.Key, Chain: central.Chain,
			TLSConfig: pki.ClientTLS(central),
			AMQP: &AMQPOptions{URLs: urls, Queue: brokertest.IngestQueue, Prefetch: 500,
				Name: fmt.Sprintf("central-%d", i+1)},
			ReorderWindow: 10 * time.Second, Logger: logger.With("instance", i+1)})
		if err != nil {
			t.Fatal(err)
		}
		ins[i], sts[i] = in, st
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := in.Run(ctx); err != nil {
				t.Errorf("ingester %d: %v", i+1, err)
			}
		}()
	}
	waitFor(t, 60*time.Second, "both ingesters consuming", func() bool { return ins[0].Stats().Connected && ins[1].Stats().Connected })

	// Gateways with real keys; every message signed before the clock starts.
	began := time.Now()
	release := func() int { return int(time.Since(began).Seconds()*rate/gateways) + 1 }
	var boxes []*outbox
	for _, id := range ids {
		ident := pki.Gateway(t, id)
		g := gw{id: id, key: ident.Key, chain: ident.Chain}
		o := &outbox{id: id, tls: pki.ClientTLS(ident), release: release}
		topic, data := g.msg(t, 1, 1, time.Now(), envelope.KindBirth, wire.Birth{Gateway: id, Site: "s1", Version: "test"})
		o.topics, o.msgs = append(o.topics, topic), append(o.msgs, data)
		for seq := uint64(2); seq <= events+1; seq++ {
			topic, data := g.msg(t, 1, seq, time.Now(), envelope.KindEvent, wire.Event{Kind: "authority.lock_add", Severity: wire.SeverityWarning,
				Attrs: map[string]string{"identity": "spiffe://hospital.example/vendor/acme/bob", "n": fmt.Sprint(seq)}})
			o.topics, o.msgs = append(o.topics, topic), append(o.msgs, data)
		}
		boxes = append(boxes, o)
	}
	began = time.Now()
	for i, o := range boxes {
		wg.Add(1)
		go func() { defer wg.Done(); o.run(ctx, []string{c.Nodes[i%2].URL, c.Nodes[1-i%2].URL}) }()
	}
	total := gateways * (events + 1)
	acked := func() int {
		n := 0
		for _, o := range boxes {
			n += int(o.acked.Load())
		}
		return n
	}
	waitFor(t, 2*time.Minute, "a third of the messages acknowledged", func() bool { return acked() >= total/3 })
	killed := time.Now()
	ackedAtKill := acked()
	// The longest time without a new acknowledgement from the kill on.
	var stall atomic.Int64
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		last, since := acked(), time.Now()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if n := acked(); n != last || n == total {
				last, since = n, time.Now()
			} else if d := time.Since(since); d > time.Duration(stall.Load()) {
				stall.Store(int64(d))
			}
		}
	}()
	c.Nodes[0].Kill()
	t.Logf("node1 killed after %d of %d messages acknowledged", ackedAtKill, total)
	restarted := make(chan time.Duration, 1)
	go func() { c.Nodes[0].Start(); restarted <- time.Since(killed) }()
	// Publishing resumes when the queue has a majority again.
	waitFor(t, 4*time.Minute, "publishing to resume", func() bool { return acked() > ackedAtKill+gateways*32 })
	var back time.Duration
	select {
	case back = <-restarted:
	case <-time.After(3 * time.Minute):
		t.Fatal("node1 did not restart within 3 minutes")
	}
	waitFor(t, 4*time.Minute, "every message acknowledged by the broker", func() bool { return acked() == total })
	close(stop)
	count := func() (int, map[string]map[uint64]bool) {
		seen := map[string]map[uint64]bool{}
		n := 0
		_, _ = sts[0].Events(ctx, store.EventQuery{}, func(e store.Event) error {
			if seen[e.Gateway] == nil {
				seen[e.Gateway] = map[uint64]bool{}
			}
			seen[e.Gateway][e.Seq] = true
			n++
			return nil
		})
		return n, seen
	}
	waitFor(t, 3*time.Minute, "every message stored", func() bool { n, _ := count(); return n >= total })
	allStored := time.Since(killed)
	n, seen := count()
	if n != total {
		t.Fatalf("%d event rows, want %d (each message exactly once)", n, total)
	}
	for _, id := range ids {
		for seq := uint64(1); seq <= events+1; seq++ {
			if !seen[id][seq] {
				t.Errorf("%s seq %d lost", id, seq)
			}
		}
	}
	fs, _ := sts[0].Findings(ctx, "", 0)
	for _, f := range fs {
		t.Errorf("finding (a false gap or a rejected message): %+v", f)
	}
	// The rows settle once the throttled writes are flushed.
	waitFor(t, 30*time.Second, "gateway rows at their last seq", func() bool {
		for _, id := range ids {
			if g, err := sts[0].Gateway(ctx, id); err != nil || g.LastSeq != events+1 || g.Stale {
				return false
			}
		}
		return true
	})
	var resent int64
	for _, o := range boxes {
		resent += o.resent.Load()
	}
	s0, s1 := ins[0].Stats(), ins[1].Stats()
	if s0.Gaps+s1.Gaps != 0 || s0.Rejected+s1.Rejected != 0 || s0.Resyncs+s1.Resyncs != 0 {
		t.Fatalf("gaps %d+%d, rejected %d+%d, resyncs %d+%d", s0.Gaps, s1.Gaps, s0.Rejected, s1.Rejected, s0.Resyncs, s1.Resyncs)
	}
	t.Logf("%d messages from %d gateways stored exactly once; received %d+%d, duplicates removed %d+%d, late %d+%d; "+
		"publisher reconnects with resends %d; node1 back in %s; publishing stalled for %s at most; everything stored %s after the kill",
		total, gateways, s0.Received, s1.Received, s0.Duplicates, s1.Duplicates, s0.Late, s1.Late, resent,
		back.Round(100*time.Millisecond), time.Duration(stall.Load()).Round(100*time.Millisecond), allStored.Round(100*time.Millisecond))
	if s0.Received == 0 || s1.Received == 0 {
		t.Errorf("one instance received nothing: the queue was not shared (%d / %d)", s0.Received, s1.Received)
	}
	if got := s0.Received + s1.Received - s0.Duplicates - s1.Duplicates; got < uint64(total) {
		t.Errorf("received less duplicates %d < %d", got, total)
	}

	// Commands (resync requests) go out through amq.topic and reach the
	// gateway's MQTT subscription.
	ident := pki.Gateway(t, ids[0])
	got := make(chan []byte, 1)
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(c.Nodes[1].URL).SetClientID(ids[0] + "-cmd").SetTLSConfig(pki.ClientTLS(ident)))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("gateway subscriber: %v", tok.Error())
	}
	defer sub.Disconnect(0)
	if tok := sub.Subscribe(wire.CommandTopic(ids[0]), 1, func(_ paho.Client, m paho.Message) {
		select {
		case got <- m.Payload():
		default:
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	cmd, err := command.Sign(central.Key, central.Chain, ids[0], command.Rebirth, nil, time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := ins[1].publish(wire.CommandTopic(ids[0]), cmd); err != nil {
		t.Fatalf("command through AMQP: %v", err)
	}
	select {
	case p := <-got:
		if string(p) != string(cmd) {
			t.Fatal("the gateway received another payload")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the command published over AMQP never reached the gateway's MQTT subscription")
	}
}

// waitFor polls cond (bounded): the cluster, the publishers and two
// ingesters run on their own goroutines and processes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
