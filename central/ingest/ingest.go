package ingest

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/envelope"
)

// Options configures an Ingester.
type Options struct {
	Store *store.Store // required
	// Brokers are mqtts:// URLs, tried in order. Run needs them or AMQP.
	Brokers []string
	// AMQP, instead of Brokers, consumes a quorum queue shared with other
	// central instances (amqp.go, docs/scale.md).
	AMQP *AMQPOptions
	// ClientID is the MQTT client id (wardgate-central-ID): the broker
	// keeps central's session (CleanSession false), so messages sent while
	// central is down arrive when it is back.
	ClientID string
	// TLSConfig is the client TLS configuration (central's certificate,
	// the trust bundle as RootCAs). Required for Run.
	TLSConfig *tls.Config
	// Verify decides whether a message signer's chain is trusted. Required.
	Verify envelope.ChainVerifier
	// Signer and Chain sign resync commands (central's key and
	// certificate, spiffe://TD/svc/central). Without them no resync is
	// asked for.
	Signer crypto.Signer
	Chain  []*x509.Certificate
	// Publish sends a command; default: the MQTT connection.
	Publish func(topic string, payload []byte) error
	// ReorderWindow: how long an out-of-order message waits for the
	// missing ones; default 10s.
	ReorderWindow time.Duration
	// ResyncInterval: the least time between resync requests to one
	// gateway; default 1m.
	ResyncInterval time.Duration
	// OfflineAfter: a silent gateway is offline after this; default 10m.
	OfflineAfter time.Duration
	// Retention is applied once an hour.
	Retention store.Retention
	KeepAlive time.Duration // default 30s
	Clock     clockwork.Clock
	Logger    *slog.Logger
	// OnChange is called after each stored batch (for live pages); keep
	// it short.
	OnChange func(Change)
	// OnLine, when set, receives every received message as wardgate tail
	// sees it (verified lines and alert lines), before de-duplication, from
	// the MQTT client's goroutines: it may block (back-pressure on the
	// broker) but must be safe for concurrent use.
	OnLine func(wire.Line)
	// OnApplied, when set, is told of every verified message applied, in
	// order, after its batch is stored, on the processing goroutine: it
	// must not block (central/commands queues births, replies and lock-set
	// events for its own goroutine).
	OnApplied func(m *envelope.Message)
	// OnConnected, when set, is called after each successful subscription
	// (central/commands re-publishes the retained lock sets then).
	OnConnected func()
}

// Change says what a stored batch touched.
type Change struct {
	Gateways []string
	Events   int
	Findings int
}

// Stats are counters since start, for /metrics.
type Stats struct {
	Received, Verified, Rejected, Duplicates, Late, Gaps, Resyncs, Stored uint64
	FindingsFolded                                                        uint64
	Held                                                                  int64
	Connected                                                             bool
	// StoreLatency is the distribution of message time to commit.
	StoreLatency Histogram
}

type raw struct {
	topic    string
	payload  []byte
	received time.Time
}

type item struct {
	raw
	line wire.Line
	msg  *envelope.Message // nil when not verified
	// done, when set, is called once the item's batch committed (true)
	// or failed (false): the AMQP source acknowledges or requeues.
	done func(stored bool)
}

// Ingester is the intake. Create it with New.
type Ingester struct {
	o     Options
	clock clockwork.Clock
	log   *slog.Logger
	in    chan item

	gws map[string]*gwState // owned by the processing goroutine
	// findings folded per gateway and kind within a minute
	fold map[string]*foldState
	// messages applied in the second from rateStart, and in the one
	// before (owned by the processing goroutine; see busy)
	rateStart       time.Time
	rateN, ratePrev int

	client                                                                  atomic.Pointer[paho.Client]
	connected                                                               atomic.Bool
	received, verified, rejected, dups, late, gaps, resyncs, stored, folded atomic.Uint64
	held                                                                    atomic.Int64
	amqpPub                                                                 atomic.Pointer[amqpPub]
	retainWarned                                                            atomic.Bool
	lastFlow                                                                time.Time // shared mode; owned by the processing goroutine
	waiting                                                                 bool      // shared mode: some gateway waits for seqs; likewise
	latMu                                                                   sync.Mutex
	lat                                                                     Histogram
}

type foldState struct {
	start time.Time
	n     int
}

// New checks o and loads the gateways' state from the store.
func New(ctx context.Context, o Options) (*Ingester, error) {
	if o.Store == nil || o.Verify == nil {
		return nil, errors.New("ingest: a store and a verifier are required")
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ReorderWindow, 10*time.Second)
	def(&o.ResyncInterval, time.Minute)
	def(&o.OfflineAfter, 10*time.Minute)
	def(&o.KeepAlive, 30*time.Second)
	if o.AMQP != nil && o.AMQP.Prefetch <= 0 {
		o.AMQP.Prefetch = 1000
	}
	o.Verify = cachedVerifier(o.Verify)
	in := &Ingester{o: o, clock: o.Clock, log: o.Logger.With("component", "central-ingest"),
		in: make(chan item, 4096), gws: map[string]*gwState{}, fold: map[string]*foldState{}}
	gws, err := o.Store.Gateways(ctx)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	for _, g := range gws {
		st := newState(g)
		if g.Stale {
			st.needBirth, st.needInv = true, true
		}
		in.gws[g.ID] = st
	}
	return in, nil
}

// Stats returns the counters.
func (in *Ingester) Stats() Stats {
	in.latMu.Lock()
	h := in.lat
	in.latMu.Unlock()
	return Stats{Received: in.received.Load(), Verified: in.verified.Load(), Rejected: in.rejected.Load(),
		Duplicates: in.dups.Load(), Late: in.late.Load(), Gaps: in.gaps.Load(), Resyncs: in.resyncs.Load(),
		Stored: in.stored.Load(), FindingsFolded: in.folded.Load(), Held: in.held.Load(),
		Connected: in.connected.Load(), StoreLatency: h}
}

// Handle verifies one received message and queues it for processing. It
// is what the MQTT subscription calls; tests and tools may call it too.
// It blocks when the queue is full (back-pressure on the broker).
func (in *Ingester) Handle(ctx context.Context, topic string, payload []byte) {
	in.handle(ctx, topic, payload, nil)
}

// handle is Handle with the source's completion hook (see item.done).
func (in *Ingester) handle(ctx context.Context, topic string, payload []byte, done func(bool)) {
	now := in.clock.Now()
	in.received.Add(1)
	if strings.HasSuffix(topic, "/lockset") {
		if done != nil {
			done(true) // the shared queue holds them too: acknowledged, not stored
		}
		return // central's own retained lock sets (central/commands), not telemetry
	}
	line, msg, _ := wire.InspectMessage(topic, payload, in.o.Verify, now)
	if in.o.OnLine != nil {
		in.o.OnLine(line)
	}
	var keep []byte // events keep their signed bytes (a session-end event is archived as received)
	if msg != nil && msg.Kind == envelope.KindEvent {
		keep = payload
	}
	select {
	case in.in <- item{raw: raw{topic: topic, payload: keep, received: now}, line: line, msg: msg, done: done}:
	case <-ctx.Done():
	}
}

// Run processes messages and, when brokers are configured, keeps the MQTT
// subscription up, until ctx is cancelled.
func (in *Ingester) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if len(in.o.Brokers) > 0 {
		if in.o.TLSConfig == nil {
			return errors.New("ingest: brokers without a TLS configuration")
		}
		wg.Add(1)
		go func() { defer wg.Done(); in.mqttLoop(ctx) }()
	}
	if in.o.AMQP != nil && len(in.o.AMQP.URLs) > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); in.amqpLoop(ctx) }()
	}
	err := in.process(ctx)
	wg.Wait()
	return err
}

func (in *Ingester) mqttLoop(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		healthy := in.connection(ctx)
		if healthy {
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-in.clock.After(backoff):
		}
		backoff = min(backoff*2, time.Minute)
	}
}

// connection runs one MQTT connection (a new paho client each time) until
// it is lost or ctx ends; it reports whether it got as far as subscribing.
func (in *Ingester) connection(ctx context.Context) bool {
	lost := make(chan struct{})
	var once sync.Once
	co := paho.NewClientOptions().
		SetClientID(in.o.ClientID).
		SetProtocolVersion(4).
		SetCleanSession(false).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetTLSConfig(in.o.TLSConfig.Clone()).
		SetKeepAlive(in.o.KeepAlive).
		SetConnectTimeout(10 * time.Second).
		SetWriteTimeout(10 * time.Second).
		SetOrderMatters(false). // verify messages in parallel; ordering is ours
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			in.log.Warn("mqtt connection lost", "err", err)
			once.Do(func() { close(lost) })
		})
	for _, b := range in.o.Brokers {
		co.AddBroker(b)
	}
	c := paho.NewClient(co)
	t := c.Connect()
	if !waitToken(ctx, t) || t.Error() != nil {
		in.log.Warn("mqtt connect failed", "brokers", strings.Join(in.o.Brokers, ","), "err", t.Error())
		c.Disconnect(0)
		return false
	}
	// Verifying (an ECDSA check per message) is most of a message's cost:
	// a fixed pool of workers, one per core, does it in parallel. paho's
	// per-message goroutines only hand messages over, so they stay small
	// instead of each growing a stack for the verification.
	work := make(chan paho.Message, 256)
	stop := make(chan struct{})
	var workers sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				select {
				case m := <-work:
					in.Handle(ctx, m.Topic(), m.Payload())
				case <-stop:
					return
				}
			}
		}()
	}
	defer func() { close(stop); workers.Wait() }()
	st := c.Subscribe(wire.TopicPrefix+"+/#", 1, func(_ paho.Client, m paho.Message) {
		select {
		case work <- m:
		case <-stop:
		}
	})
	if !waitToken(ctx, st) || st.Error() != nil {
		in.log.Warn("mqtt subscribe failed", "err", st.Error())
		c.Disconnect(0)
		return false
	}
	if sub, ok := st.(*paho.SubscribeToken); ok {
		for topic, code := range sub.Result() {
			if code == 0x80 {
				in.log.Error("the broker refused central's subscription: its ACL must let central read wardgate/v1/# and write wardgate/v1/+/cmd", "topic", topic)
			}
		}
	}
	in.client.Store(&c)
	in.connected.Store(true)
	in.log.Info("mqtt subscribed", "topic", wire.TopicPrefix+"+/#")
	if in.o.OnConnected != nil {
		in.o.OnConnected()
	}
	select {
	case <-ctx.Done():
	case <-lost:
	}
	in.connected.Store(false)
	in.client.Store(nil)
	c.Disconnect(250)
	return true
}

func waitToken(ctx context.Context, t paho.Token) bool {
	select {
	case <-t.Done():
		return true
	case <-ctx.Done():
		return false
	}
}

func (in *Ingester) publish(topic string, payload []byte) error {
	return in.Publish(topic, payload, false)
}

// Publish sends payload on topic with QoS 1 (retained when retain is set)
// over central's MQTT connection, or through Options.Publish when set
// (which ignores retain). It fails when central is not connected. Safe
// for concurrent use.
func (in *Ingester) Publish(topic string, payload []byte, retain bool) error {
	if in.o.Publish != nil {
		return in.o.Publish(topic, payload)
	}
	if in.shared() {
		return in.amqpPublish(topic, payload, retain)
	}
	cp := in.client.Load()
	if cp == nil {
		return errors.New("not connected to a broker")
	}
	t := (*cp).Publish(topic, 1, retain, payload)
	if !t.WaitTimeout(10 * time.Second) {
		return errors.New("publish timed out")
	}
	return t.Error()
}

// maxBatch bounds the messages stored in one transaction.
const maxBatch = 2000

// process is the single goroutine that owns the per-gateway state. It
// takes whatever is queued as one batch and stores it in one transaction.
func (in *Ingester) process(ctx context.Context) error {
	period := max(in.o.ReorderWindow/4, 50*time.Millisecond)
	tick := in.clock.NewTicker(period)
	defer tick.Stop()
	lastPrune, lastHouse := time.Time{}, time.Time{}
	for {
		var batch []item
		var recheck <-chan time.Time
		if in.shared() && in.waiting {
			// Another instance is committing what this one waits for.
			recheck = in.clock.After(25 * time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-recheck:
		case it := <-in.in:
			batch = append(batch, it)
		drain:
			for len(batch) < maxBatch {
				select {
				case it := <-in.in:
					batch = append(batch, it)
				default:
					break drain
				}
			}
		case <-tick.Chan():
		}
		now := in.clock.Now()
		b := &batchWork{in: in, ctx: ctx, now: now, dirty: map[string]bool{}}
		if in.shared() {
			b.sharedBefore(ctx, batch)
		}
		for _, it := range batch {
			b.receive(it)
		}
		if in.shared() {
			in.waiting = b.sharedCheck(ctx)
		}
		// Housekeeping walks every gateway: on ticks, not on every batch.
		if len(batch) == 0 || now.Sub(lastHouse) >= period {
			lastHouse = now
			b.housekeeping()
		}
		if err := b.commit(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			in.log.Error("store batch failed; the messages of this batch are lost unless the gateways resend", "err", err, "messages", len(batch))
			b.failed()
		} else {
			for _, d := range b.done {
				d(true)
			}
		}
		if in.o.Retention != (store.Retention{}) && now.Sub(lastPrune) >= time.Hour {
			lastPrune = now
			if n, err := in.o.Store.Prune(ctx, now, in.o.Retention); err != nil {
				in.log.Error("retention prune failed", "err", err)
			} else if n > 0 {
				in.log.Info("retention pruned rows", "rows", n)
			}
			if in.shared() {
				if _, err := in.o.Store.PruneSeqs(ctx, 4*maxHeld); err != nil {
					in.log.Error("seq marks prune failed", "err", err)
				}
			}
		}
	}
}

// Histogram is a fixed-bucket latency histogram (seconds).
type Histogram struct {
	Counts [len(Buckets) + 1]uint64
	Sum    float64
	N      uint64
}

// Buckets are the upper bounds, in seconds, of Histogram.Counts (the last
// count is +Inf).
var Buckets = [...]float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

func (h *Histogram) observe(s float64) {
	i := sort.SearchFloat64s(Buckets[:], s)
	h.Counts[i]++
	h.Sum += s
	h.N++
}

// Quantile estimates quantile q (0..1) as a bucket's upper bound.
func (h Histogram) Quantile(q float64) float64 {
	if h.N == 0 {
		return 0
	}
	want := uint64(q * float64(h.N))
	var acc uint64
	for i, c := range h.Counts {
		acc += c
		if acc >= want && acc > 0 {
			if i < len(Buckets) {
				return Buckets[i]
			}
			return 120
		}
	}
	return 120
}
