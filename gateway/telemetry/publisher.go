package telemetry

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardgate/wardgate/gateway/front"

	"github.com/wardgate/wardgate/wire"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/gateway/telemetry/outbox"
	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/envelope"
)

// Alarm kinds reported through Options.OnAlarm (outbox alarms too:
// outbox.AlarmFull, outbox.AlarmEventsDropped, outbox.AlarmWriteFailed).
const (
	// AlarmPublishRefused: the broker refused our publish or subscribe (ACL);
	// usually the gateway id does not match the certificate's name.
	AlarmPublishRefused = "publish_refused"
	// AlarmIdentityMismatch: the signing certificate does not name GatewayID.
	AlarmIdentityMismatch = "identity_mismatch"
	// AlarmConnectRefused: the broker refused the connection (bad
	// certificate or not authorised).
	AlarmConnectRefused = "connect_refused"
)

// Alarm is a condition an operator must act on.
type Alarm struct {
	Kind    string
	Message string
}

// CommandHandler executes a verified command and returns a short result.
// It runs on the Publisher's command goroutine, one command at a time.
type CommandHandler func(ctx context.Context, c command.Command) (result string, err error)

// Options configures a Publisher. Fields marked required must be set.
type Options struct {
	GatewayID string // required; the topic segment and the certificate's name
	Site      string
	Version   string // agent version, reported in birth
	// ConfigHash is the hex SHA-256 of the configuration file.
	ConfigHash string
	// Brokers are mqtts://HOST:PORT URLs (ssl:// and tls:// work too), at
	// least one. The publisher connects to one at a time and moves to the
	// next when a connection fails or is lost; the outbox keeps every
	// message until a broker acknowledged it, so a failover loses nothing
	// (central removes the duplicates a failover can cause by seq).
	Brokers []string
	// TLSConfig returns the client TLS configuration for a new connection
	// to the broker at host: GetClientCertificate with the rotating gateway
	// certificate and verification of host's certificate against the trust
	// bundle. Required.
	TLSConfig func(host string) *tls.Config
	// SBOM is the hex SHA-256 of the binary's SBOM, sent in birth.
	SBOM string
	// Signer returns the current gateway key and chain (leaf first). Every
	// message is signed at send time with the current key. Required.
	Signer func() (crypto.Signer, []*x509.Certificate)
	Clock  clockwork.Clock // default: real clock
	Logger *slog.Logger    // default: discard
	// MetricsInterval is how often Metrics is sampled; default 60s.
	MetricsInterval time.Duration
	// Metrics returns a snapshot; nil disables periodic metrics.
	Metrics func() wire.Metrics
	// Inventory returns the current inventory; nil disables inventory and
	// accountability messages.
	Inventory func() wire.Inventory
	// OutboxPath is the outbox file (STATE_DIR/telemetry.db). Required.
	OutboxPath string
	// OutboxMax caps the outbox in bytes (mqtt.outbox_max); 0: no cap.
	// A quarter of it is kept for security events (outbox.Options.Reserve).
	OutboxMax int64
	// OutboxReserve is the part of OutboxMax only security events may use
	// (mqtt.outbox_reserve); 0: a quarter of OutboxMax.
	OutboxReserve int64
	// OnAlarm is called on alarms; keep it short.
	OnAlarm func(Alarm)
	// Commands executes approve/deny/revoke/lock/unlock/end-session.
	// rebirth and inventory are handled here. nil rejects them.
	Commands CommandHandler
	// VerifyApprover decides whether a command signer is an approver; nil
	// rejects every command.
	VerifyApprover command.VerifyApprover
	// Permit, when set, decides whether the verified command's approver may
	// run it (approver scopes), before rebirth and inventory run here and
	// before Commands; its error is the reply's reason.
	Permit func(command.Command) error
	// VerifyCentral decides whether a command signer is central itself
	// (spiffe://TD/svc/central). Central may only ask for a resync: its
	// signature is accepted for rebirth and inventory, never for anything
	// else. It also checks central's endorsement of a restrictive command
	// delivered after its signer's certificate expired. nil: only
	// approvers may send rebirth and inventory, and endorsements are
	// ignored.
	VerifyCentral command.VerifyApprover
	// LockSetTopics are retained topics carrying signed lock sets
	// (lockset.Topics); each message on them goes to LockSets. The broker
	// delivers a retained set right after the subscription, so a gateway
	// that was offline converges at its birth.
	LockSetTopics []string
	// LockSets receives each lock-set message (unverified). It runs on the
	// MQTT client's goroutine: keep it short or serialize inside.
	LockSets func(topic string, data []byte)
	// Window bounds unacknowledged publishes; default 256.
	Window int
	// BackoffMin and BackoffMax bound reconnect delays; defaults 1s, 60s.
	BackoffMin, BackoffMax time.Duration
	// Timeout bounds connect, subscribe and final publishes; default 10s.
	Timeout time.Duration
	// KeepAlive is the MQTT keepalive; default 30s.
	KeepAlive time.Duration
	// AccountabilityEvery is the accountability/inventory period; default 24h.
	AccountabilityEvery time.Duration
	// NoSync disables the outbox fsync (benchmarks only).
	NoSync bool
}

// Stats describe the publisher.
type Stats struct {
	Outbox    outbox.Stats
	Connected bool
	Session   uint64
	Sent      uint64 // publishes acknowledged since start
	Resent    uint64 // publishes sent again after doubt
	Refused   uint64 // publish/subscribe refusals detected
	Attempts  uint64 // connection attempts since start
	// Broker is the URL of the broker in use (or tried last).
	Broker    string
	Failovers uint64 // moves to another broker since start
}

// Publisher sends telemetry. Create it with New, run it with Run.
type Publisher struct {
	opts   Options
	clock  clockwork.Clock
	log    *slog.Logger
	ob     *outbox.Outbox
	nonces *command.NonceStore
	// rejects folds rejected commands per reason (see commandLoop).
	rejects front.Folder
	cmds    chan []byte

	connected atomic.Bool
	session   atomic.Uint64
	deathSeq  atomic.Uint64 // of the current connection, for rebirth
	sent      atomic.Uint64
	resent    atomic.Uint64
	refused   atomic.Uint64
	attempts  atomic.Uint64
	broker    atomic.Uint64 // index into opts.Brokers of the broker in use
	failovers atomic.Uint64

	closeOnce sync.Once
	closeErr  error

	// refusal detection: the head seq in flight when the connection was
	// lost, and how many times in a row.
	lostStrikes int // connections closed right after publishing, in a row
	subStrikes  int // command subscriptions ended by a connection loss in a row
}

// New validates opts and opens the outbox.
func New(opts Options) (*Publisher, error) {
	var errs []error
	if !envelope.ValidGatewayID(opts.GatewayID) {
		errs = append(errs, fmt.Errorf("telemetry: gateway id %q is not a DNS label", opts.GatewayID))
	}
	if len(opts.Brokers) == 0 {
		errs = append(errs, errors.New("telemetry: no broker URL (set mqtt.brokers)"))
	}
	for _, b := range opts.Brokers {
		if u, err := url.Parse(b); err != nil || u.Hostname() == "" {
			errs = append(errs, fmt.Errorf("telemetry: broker %q is not a URL such as mqtts://broker.hospital.example:8883", b))
		}
	}
	if opts.TLSConfig == nil || opts.Signer == nil {
		errs = append(errs, errors.New("telemetry: TLSConfig and Signer hooks are required"))
	}
	if opts.OutboxPath == "" {
		errs = append(errs, errors.New("telemetry: no outbox path"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.MetricsInterval, 60*time.Second)
	def(&opts.BackoffMin, time.Second)
	def(&opts.BackoffMax, 60*time.Second)
	def(&opts.Timeout, 10*time.Second)
	def(&opts.KeepAlive, 30*time.Second)
	def(&opts.AccountabilityEvery, 24*time.Hour)
	if opts.Window <= 0 {
		opts.Window = 256
	}
	p := &Publisher{opts: opts, clock: opts.Clock, log: opts.Logger.With("component", "telemetry"),
		cmds: make(chan []byte, 16)}
	ob, err := outbox.Open(opts.OutboxPath, outbox.Options{
		MaxBytes: opts.OutboxMax, Reserve: opts.OutboxReserve, Clock: opts.Clock, Logger: opts.Logger, NoSync: opts.NoSync,
		OnAlarm: func(kind, msg string) { p.alarm(kind, msg) },
	})
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	p.ob = ob
	p.rejects.Window = rejectWindow
	p.nonces, err = command.NewNonceStore(ob.DB())
	if err != nil {
		ob.Close()
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	return p, nil
}

func (p *Publisher) alarm(kind, msg string) {
	p.log.Warn("telemetry alarm", "alarm", kind, "message", msg)
	if p.opts.OnAlarm != nil {
		p.opts.OnAlarm(Alarm{Kind: kind, Message: msg})
	}
}

// Close closes the outbox. Call it after Run returned. Idempotent.
func (p *Publisher) Close() error {
	p.closeOnce.Do(func() { p.closeErr = p.ob.Close() })
	return p.closeErr
}

// Stats returns the publisher's state.
func (p *Publisher) Stats() Stats {
	return Stats{Outbox: p.ob.Stats(), Connected: p.connected.Load(), Session: p.session.Load(),
		Sent: p.sent.Load(), Resent: p.resent.Load(), Refused: p.refused.Load(), Attempts: p.attempts.Load(),
		Broker: p.opts.Brokers[p.broker.Load()%uint64(len(p.opts.Brokers))], Failovers: p.failovers.Load()}
}

// Delivered reports whether message seq (as returned by Event, Status and
// the like) has left the gateway: the broker acknowledged it and it was
// not dropped. False while it waits, and for a seq not handed out yet.
// Use it to keep local data until central has the matching event; see
// outbox.Outbox.Delivered for the exact contract. It fails with
// outbox.ErrClosed after Close.
func (p *Publisher) Delivered(seq uint64) (bool, error) {
	return p.ob.Delivered(seq)
}

func (p *Publisher) enqueue(class outbox.Class, kind envelope.Kind, body []byte) (uint64, error) {
	return p.ob.Enqueue(outbox.Record{Class: class, Kind: string(kind), Time: p.clock.Now().UnixMilli(), Body: body})
}

// Event durably queues a security event and returns its sequence number
// once it is on disk. Events are dropped only when security events alone
// fill the outbox, oldest first (Stats.Outbox.LostEvents and the alarm
// outbox.AlarmEventsDropped say so); Delivered tells whether one reached
// the broker.
func (p *Publisher) Event(e wire.Event) (uint64, error) {
	body, err := wire.EventBody(e)
	if err != nil {
		return 0, err
	}
	return p.enqueue(outbox.ClassEvent, envelope.KindEvent, body)
}

// Status queues a status message (droppable when the outbox is full).
func (p *Publisher) Status(s wire.Status) (uint64, error) {
	if s.Alarms == nil {
		s.Alarms = []string{}
	}
	body, err := envelope.Marshal(s)
	if err != nil {
		return 0, err
	}
	return p.enqueue(outbox.ClassBulk, envelope.KindStatus, body)
}

// PublishMetrics queues a metrics message built from m; the outbox figures
// are filled in here. Metrics are the first dropped when the outbox is full.
func (p *Publisher) PublishMetrics(m wire.Metrics) (uint64, error) {
	st := p.ob.Stats()
	now := p.clock.Now()
	m.OutboxDepth, m.OutboxLost, m.OutboxAge = st.Depth, st.Lost, 0
	if !st.Oldest.IsZero() && now.After(st.Oldest) {
		m.OutboxAge = now.Sub(st.Oldest)
	}
	body, err := envelope.EncodePack(wire.MetricsPack(m, now))
	if err != nil {
		return 0, err
	}
	return p.enqueue(outbox.ClassBulk, envelope.KindMetrics, body)
}

// PublishInventory queues an inventory message (an event: dropped only as
// Event describes). Call it
// when the inventory changed; the Publisher also sends it on birth and
// every AccountabilityEvery.
func (p *Publisher) PublishInventory(inv wire.Inventory) (uint64, error) {
	body, err := wire.InventoryBody(inv)
	if err != nil {
		return 0, err
	}
	return p.enqueue(outbox.ClassEvent, envelope.KindInventory, body)
}

// Run connects, sends and reconnects until ctx is cancelled. Call it once.
// It returns
// nil after a clean shutdown (a death message was published when
// connected), after every goroutine it started has exited.
func (p *Publisher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { p.commandLoop(ctx) })
	wg.Go(func() { p.scheduleLoop(ctx) })

	attempt := 0
	var session, deathSeq uint64
	for ctx.Err() == nil {
		if session == 0 {
			var err error
			if session, err = p.ob.NextSession(); err != nil {
				return err
			}
			if deathSeq, err = p.ob.ReserveSeq(); err != nil {
				return err
			}
		}
		used, healthy, err := p.connection(ctx, session, deathSeq)
		if ctx.Err() != nil {
			if !used {
				p.spendDeathSeq(session, deathSeq)
			}
			return nil
		}
		if err != nil {
			p.log.Warn("telemetry connection ended", "err", err, "session", session)
		}
		if used {
			session, deathSeq = 0, 0 // the broker knew this session: take a new one
		}
		if healthy {
			attempt = 0
		}
		// Move on to the next broker (a cluster's other node, or a standby)
		// at once; back off only after a whole round of them failed.
		n := uint64(len(p.opts.Brokers))
		d := p.opts.BackoffMin / 2
		if n > 1 {
			p.broker.Add(1)
			p.failovers.Add(1)
			p.log.Info("telemetry moves to the next broker", "broker", p.opts.Brokers[p.broker.Load()%n])
		}
		if n == 1 || p.broker.Load()%n == 0 {
			d = p.backoff(attempt)
			attempt++
		}
		select {
		case <-ctx.Done():
			if session != 0 {
				p.spendDeathSeq(session, deathSeq)
			}
			return nil
		case <-p.clock.After(d):
		}
	}
	return nil
}

// spendDeathSeq queues the death of a session that never reached a broker
// under its reserved seq, so that consumers see no gap.
func (p *Publisher) spendDeathSeq(session, seq uint64) {
	body, _ := envelope.Marshal(wire.Death{Reason: "offline"})
	err := p.ob.EnqueueReserved(outbox.Record{Seq: seq, Class: outbox.ClassEvent, Kind: string(envelope.KindDeath),
		Time: p.clock.Now().UnixMilli(), Body: body})
	if err != nil {
		p.log.Warn("telemetry: unused death seq not queued; consumers will see a gap", "seq", seq, "session", session, "err", err)
	}
}

// backoff returns a delay in [d/2, d] with d = BackoffMin * 2^attempt
// capped at BackoffMax.
func (p *Publisher) backoff(attempt int) time.Duration {
	d := p.opts.BackoffMin
	for i := 0; i < attempt && d < p.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, p.opts.BackoffMax)
	half := d / 2
	return half + rand.N(half+1)
}

func (p *Publisher) signed(key crypto.Signer, chain []*x509.Certificate, session, seq uint64, t int64, kind envelope.Kind, historical bool, body []byte) ([]byte, error) {
	payload, err := envelope.EncodePayload(&envelope.Envelope{Version: envelope.Version, Gateway: p.opts.GatewayID,
		Session: session, Seq: seq, Time: t, Kind: kind, Historical: historical, Body: body})
	if err != nil {
		return nil, err
	}
	return envelope.Sign(key, chain, payload)
}

type inflight struct {
	seq uint64
	tok paho.Token
}

// connection runs one broker connection. used reports whether the broker
// accepted it (so its session and Will are spent), healthy whether it got
// as far as a working command subscription (which resets the backoff).
func (p *Publisher) connection(ctx context.Context, session, deathSeq uint64) (used, healthy bool, err error) {
	key, chain := p.opts.Signer()
	if key == nil || len(chain) == 0 {
		return false, false, errors.New("no gateway certificate yet")
	}
	if !envelope.CertNamesGateway(chain[0], p.opts.GatewayID) {
		p.alarm(AlarmIdentityMismatch, fmt.Sprintf("the gateway certificate does not name gateway %q: set gateway.id to the certificate's name, or re-enroll", p.opts.GatewayID))
	}
	deathBody, _ := envelope.Marshal(wire.Death{Reason: "offline"})
	death, err := p.signed(key, chain, session, deathSeq, p.clock.Now().UnixMilli(), envelope.KindDeath, false, deathBody)
	if err != nil {
		return false, false, err
	}
	p.attempts.Add(1)
	brokerURL := p.opts.Brokers[p.broker.Load()%uint64(len(p.opts.Brokers))]
	u, _ := url.Parse(brokerURL) // checked by New
	tlsConf := p.opts.TLSConfig(u.Hostname())
	if tlsConf == nil {
		return false, false, errors.New("no TLS configuration for the broker yet")
	}
	lost := make(chan struct{})
	var lostOnce sync.Once
	markLost := func() { lostOnce.Do(func() { close(lost) }) }

	co := paho.NewClientOptions().
		AddBroker(brokerURL).
		SetClientID(p.opts.GatewayID).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetTLSConfig(tlsConf).
		SetBinaryWill(wire.Topic(p.opts.GatewayID, envelope.KindDeath), death, 1, false).
		SetKeepAlive(p.opts.KeepAlive).
		SetPingTimeout(p.opts.Timeout).
		SetConnectTimeout(p.opts.Timeout).
		SetWriteTimeout(p.opts.Timeout).
		SetOrderMatters(false).
		SetMaxResumePubInFlight(p.opts.Window).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			p.log.Warn("telemetry connection lost", "err", err)
			markLost()
		})
	client := paho.NewClient(co)
	ct := client.Connect()
	if err := p.wait(ctx, ct); err != nil {
		client.Disconnect(0)
		if ct.Error() != nil && isRefusal(ct.Error()) {
			p.alarm(AlarmConnectRefused, fmt.Sprintf("the broker refused the connection (%v): check that the broker trusts the gateway's CA and that the gateway's certificate is valid", ct.Error()))
		}
		return false, false, fmt.Errorf("connect to %s: %w", brokerURL, err)
	}
	p.session.Store(session)
	p.deathSeq.Store(deathSeq)
	p.connected.Store(true)
	defer p.connected.Store(false)
	p.log.Info("telemetry connected", "broker", brokerURL, "session", session)

	liveFrom := p.ob.Stats().NextSeq
	// Subscribe to commands. A refused subscription (SUBACK 0x80) is the
	// one ACL refusal MQTT 3.1.1 reports to the client.
	cmdTopic := wire.CommandTopic(p.opts.GatewayID)
	st := client.Subscribe(cmdTopic, 1, func(_ paho.Client, m paho.Message) {
		select {
		case p.cmds <- m.Payload():
		default:
			p.log.Warn("telemetry command dropped: too many pending commands")
		}
	})
	refusedMsg := fmt.Sprintf("the broker refused our subscription to %s: its ACL does not allow this gateway (gateway.id %q must equal the certificate's name, and the ACL must allow wardgate/v1/%%u/#)", cmdTopic, p.opts.GatewayID)
	if err := p.wait(ctx, st); err != nil {
		client.Disconnect(0)
		// Some brokers (RabbitMQ) close the connection on a refused
		// subscription instead of answering 0x80.
		p.subStrikes++
		if p.subStrikes == 3 {
			p.refused.Add(1)
			p.alarm(AlarmPublishRefused, refusedMsg+"; the broker closed the connection 3 times in a row on it")
		}
		return true, false, fmt.Errorf("subscribe %s: %w", cmdTopic, err)
	}
	p.subStrikes = 0
	if sub, ok := st.(*paho.SubscribeToken); ok && sub.Result()[cmdTopic] == 0x80 {
		p.refused.Add(1)
		p.alarm(AlarmPublishRefused, refusedMsg)
		p.enqueueAlarmEvent(AlarmPublishRefused, cmdTopic)
	}
	if p.opts.LockSets != nil && len(p.opts.LockSetTopics) > 0 {
		filters := map[string]byte{}
		for _, t := range p.opts.LockSetTopics {
			filters[t] = 1
		}
		lt := client.SubscribeMultiple(filters, func(_ paho.Client, m paho.Message) {
			p.opts.LockSets(m.Topic(), m.Payload())
		})
		if err := p.wait(ctx, lt); err != nil {
			client.Disconnect(0)
			return true, false, fmt.Errorf("subscribe to lock sets: %w", err)
		}
		if sub, ok := lt.(*paho.SubscribeToken); ok {
			for topic, code := range sub.Result() {
				if code == 0x80 {
					p.refused.Add(1)
					p.alarm(AlarmPublishRefused, fmt.Sprintf("the broker refused our subscription to %s: its ACL must let gateways read the lock-set topics (see docs/scale.md)", topic))
				}
			}
		}
	}
	if err := p.enqueueBirth(chain, deathSeq); err != nil {
		p.log.Error("telemetry birth not queued", "err", err)
	}
	if p.opts.Inventory != nil {
		if _, err := p.PublishInventory(p.opts.Inventory()); err != nil {
			p.log.Error("telemetry inventory not queued", "err", err)
		}
	}

	err = p.sendLoop(ctx, client, session, liveFrom, lost)
	if ctx.Err() != nil {
		// Clean shutdown: publish the death ourselves (the broker drops the
		// Will on DISCONNECT), then disconnect.
		dt := client.Publish(wire.Topic(p.opts.GatewayID, envelope.KindDeath), 1, false, death)
		dt.WaitTimeout(p.opts.Timeout)
		client.Disconnect(250)
		return true, true, nil
	}
	client.Disconnect(0)
	return true, true, err
}

func (p *Publisher) enqueueBirth(chain []*x509.Certificate, deathSeq uint64) error {
	b := wire.Birth{Gateway: p.opts.GatewayID, Site: p.opts.Site, Version: p.opts.Version, Chain: wire.ChainDER(chain),
		ConfigHash: p.opts.ConfigHash, SBOM: p.opts.SBOM, DeathSeq: deathSeq}
	if p.opts.Inventory != nil {
		b.Inventory = p.opts.Inventory().Summary()
	}
	body, err := wire.BirthBody(b)
	if err != nil {
		return err
	}
	_, err = p.enqueue(outbox.ClassUrgent, envelope.KindBirth, body)
	return err
}

func (p *Publisher) enqueueAlarmEvent(kind, topic string) {
	_, _ = p.Event(wire.Event{Kind: "telemetry." + kind, Severity: wire.SeverityAlarm, Attrs: map[string]string{"topic": topic}})
}

func isRefusal(err error) bool {
	return errors.Is(err, packets.ErrorRefusedNotAuthorised) || errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) ||
		errors.Is(err, packets.ErrorRefusedIDRejected)
}

// wait waits for a token, ctx or the timeout.
func (p *Publisher) wait(ctx context.Context, t paho.Token) error {
	timer := p.clock.NewTimer(p.opts.Timeout)
	defer timer.Stop()
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.Chan():
		return errors.New("timed out waiting for the broker")
	}
}

// sendLoop publishes from the outbox with at most Window unacknowledged
// messages until the connection is lost or ctx is done.
func (p *Publisher) sendLoop(ctx context.Context, client paho.Client, session, liveFrom uint64, lost <-chan struct{}) error {
	var (
		mu      sync.Mutex
		pending = map[uint64]bool{} // in flight on this connection
	)
	isPending := func(s uint64) bool { mu.Lock(); defer mu.Unlock(); return pending[s] }
	queue := make(chan inflight, p.opts.Window)
	freed := make(chan struct{}, 1)
	ackErr := make(chan error, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	// The acker outlives ctx until sendLoop returns, so that a shutdown can
	// drain in-flight acknowledgements.
	ackCtx, stopAcker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAcker()
	up := func() bool {
		select {
		case <-lost:
			return false
		default:
			return client.IsConnectionOpen()
		}
	}
	wg.Go(func() { ackErr <- p.acker(ackCtx, queue, lost, up, freed, &mu, pending) })

	connectedAt := p.clock.Now()
	published := 0
	defer func() {
		if ctx.Err() == nil {
			p.noteLoss(p.clock.Since(connectedAt), published)
		}
	}()

	for {
		mu.Lock()
		room := p.opts.Window - len(pending)
		mu.Unlock()
		if room > 0 {
			recs, err := p.ob.Peek(room, isPending)
			if err != nil {
				return err
			}
			if len(recs) > 0 {
				key, chain := p.opts.Signer()
				for _, r := range recs {
					msg, err := p.signed(key, chain, session, r.Seq, r.Time, envelope.Kind(r.Kind), r.Seq < liveFrom, r.Body)
					if err != nil {
						p.log.Error("telemetry message cannot be signed; dropping it", "seq", r.Seq, "kind", r.Kind, "err", err)
						_ = p.ob.Discard(r.Seq) // lost, not delivered
						continue
					}
					mu.Lock()
					pending[r.Seq] = true
					mu.Unlock()
					tok := client.Publish(wire.Topic(p.opts.GatewayID, envelope.Kind(r.Kind)), 1, false, msg)
					published++
					select {
					case queue <- inflight{seq: r.Seq, tok: tok}:
					case <-lost:
						return errors.New("connection lost")
					case <-ctx.Done():
						return nil
					}
				}
				continue
			}
		}
		select {
		case <-ctx.Done():
			// Let in-flight publishes finish (bounded) so they are not resent.
			p.drain(&mu, pending, lost, freed)
			return nil
		case <-lost:
			return errors.New("connection lost")
		case err := <-ackErr:
			return err
		case <-p.ob.Ready():
		case <-freed:
		}
	}
}

// drain waits up to Timeout for pending publishes to be acknowledged.
func (p *Publisher) drain(mu *sync.Mutex, pending map[uint64]bool, lost <-chan struct{}, freed <-chan struct{}) {
	deadline := p.clock.NewTimer(p.opts.Timeout)
	defer deadline.Stop()
	for {
		mu.Lock()
		n := len(pending)
		mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-deadline.Chan():
			return
		case <-lost:
			return
		case <-freed:
		}
	}
}

// acker deletes messages whose PUBACK arrived on a connection that is still
// up, in batches. A token completed with an error, or after the connection
// was lost, leaves the message in the outbox to be resent.
func (p *Publisher) acker(ctx context.Context, queue <-chan inflight, lost <-chan struct{}, up func() bool, freed chan<- struct{}, mu *sync.Mutex, pending map[uint64]bool) error {
	var batch []uint64
	var doubt []uint64
	flush := func() error {
		mu.Lock()
		for _, s := range doubt {
			delete(pending, s)
		}
		mu.Unlock()
		if len(doubt) > 0 {
			p.resent.Add(uint64(len(doubt)))
			select {
			case freed <- struct{}{}:
			default:
			}
		}
		doubt = doubt[:0]
		if len(batch) == 0 {
			return nil
		}
		err := p.ob.Ack(batch...)
		mu.Lock()
		for _, s := range batch {
			delete(pending, s)
		}
		mu.Unlock()
		p.sent.Add(uint64(len(batch)))
		batch = batch[:0]
		select {
		case freed <- struct{}{}:
		default:
		}
		return err
	}
	handle := func(f inflight) {
		// Do not trust a token completed around a connection loss: paho may
		// complete tokens without a PUBACK when the connection drops.
		if f.tok.Error() == nil && up() {
			batch = append(batch, f.seq)
		} else {
			doubt = append(doubt, f.seq)
		}
	}
	for {
		var f inflight
		select {
		case <-ctx.Done():
			return flush()
		case f = <-queue:
		}
		select {
		case <-f.tok.Done():
		case <-lost:
		case <-ctx.Done():
			// shutting down: give the token the drain period
			select {
			case <-f.tok.Done():
			case <-lost:
			case <-p.clock.After(p.opts.Timeout):
			}
		}
		handle(f)
		// Take every further completed token without waiting.
	more:
		for len(batch)+len(doubt) < 512 {
			select {
			case g := <-queue:
				select {
				case <-g.tok.Done():
				case <-lost:
				case <-ctx.Done():
				}
				handle(g)
			default:
				break more
			}
		}
		if err := flush(); err != nil {
			return err
		}
	}
}

// refusalWindow: a connection that publishes and is closed by the broker
// sooner than this counts as a refusal strike.
const refusalWindow = 5 * time.Second

// noteLoss counts connections the broker closed shortly after we published
// on them. mosquitto 2.0 answers a publish its ACL denies (MQTT 3.1.1, QoS
// 1) with a PUBACK and then closes the connection; RabbitMQ closes it. Three
// such connections in a row raise AlarmPublishRefused.
func (p *Publisher) noteLoss(lived time.Duration, published int) {
	if lived >= refusalWindow || published == 0 {
		p.lostStrikes = 0
		return
	}
	p.lostStrikes++
	if p.lostStrikes == 3 {
		p.refused.Add(1)
		p.alarm(AlarmPublishRefused, fmt.Sprintf("the broker closed the connection right after our publishes 3 times in a row: it probably refuses them (ACL); gateway.id %q must equal the certificate's name and the ACL must allow wardgate/v1/%%u/#", p.opts.GatewayID))
	}
}
