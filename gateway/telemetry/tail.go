package telemetry

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/wardgate/wardgate/wire"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/wire/envelope"
)

// TailOptions configures Tail.
type TailOptions struct {
	BrokerURL string      // required
	TLSConfig *tls.Config // client certificate + RootCAs; required
	// Verify decides whether a signer chain is trusted (for example
	// envelope.RootsVerifier(trust bundle)). Required.
	Verify envelope.ChainVerifier
	// Gateway limits the subscription to one gateway; "" for all.
	Gateway string
	// ClientID defaults to "wardgate-tail-<unix ms>".
	ClientID string
	// Persistent asks the broker to keep the session (CleanSession false)
	// so that messages published while tail is away are delivered later.
	Persistent bool
	// Out receives one JSON object per line. Required unless Emit is set.
	Out io.Writer
	// Emit, when set, receives the lines instead of Out (for example a
	// wire/siem sink in another format): in order, in batches of what
	// arrived together (at most 256), so that a disk-queued sink commits
	// a burst in one transaction. An error stops Tail.
	Emit func([]wire.Line) error
	// GapGrace is how long a missing seq may stay missing before it is
	// reported as a gap; default 5m.
	GapGrace time.Duration
	Clock    clockwork.Clock
	Logger   *slog.Logger
	// OnLine, when set, is called with every line after it was written.
	OnLine func(wire.Line)
	// Ready, when set, is closed once the subscription is in place.
	Ready chan<- struct{}
}

// Tail subscribes to wardgate/v1/+/# (or one gateway), verifies every
// message, de-duplicates on (gateway, seq), and writes one JSON line per
// message, verification failure and gap to Out (or hands the line to
// Emit) until ctx is cancelled.
func Tail(ctx context.Context, o TailOptions) error {
	if o.BrokerURL == "" || o.TLSConfig == nil || o.Verify == nil || (o.Out == nil && o.Emit == nil) {
		return errors.New("tail: broker URL, TLS configuration, verifier and output are required")
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.GapGrace <= 0 {
		o.GapGrace = 5 * time.Minute
	}
	log := o.Logger.With("component", "telemetry-tail")
	if o.ClientID == "" {
		o.ClientID = fmt.Sprintf("wardgate-tail-%d", o.Clock.Now().UnixMilli())
	}
	filter := wire.TopicPrefix + "+/#"
	if o.Gateway != "" {
		filter = wire.TopicPrefix + o.Gateway + "/#"
	}
	type msg struct {
		topic   string
		payload []byte
	}
	msgs := make(chan msg, 256)
	var readyOnce sync.Once
	subs := make(chan paho.Token, 4) // subscriptions made on (re)connect
	handler := func(_ paho.Client, m paho.Message) {
		select {
		case msgs <- msg{m.Topic(), m.Payload()}:
		case <-ctx.Done():
		}
	}
	co := paho.NewClientOptions().AddBroker(o.BrokerURL).SetClientID(o.ClientID).
		SetProtocolVersion(4).SetCleanSession(!o.Persistent).SetTLSConfig(o.TLSConfig).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10 * time.Second).SetOrderMatters(true).
		SetOnConnectHandler(func(c paho.Client) {
			select {
			case subs <- c.Subscribe(filter, 1, handler):
			default:
			}
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) { log.Warn("tail connection lost", "err", err) })
	if o.Persistent {
		co.SetResumeSubs(true)
	}
	client := paho.NewClient(co)
	client.Connect()
	defer client.Disconnect(250)

	emit := o.Emit
	if emit == nil {
		enc := json.NewEncoder(o.Out)
		emit = func(ls []wire.Line) error {
			for _, l := range ls {
				if err := enc.Encode(l); err != nil {
					return err
				}
			}
			return nil
		}
	}
	tr := wire.NewTracker(o.GapGrace)
	write := func(ls ...wire.Line) error {
		if len(ls) == 0 {
			return nil
		}
		if err := emit(ls); err != nil {
			return fmt.Errorf("tail: write: %w", err)
		}
		if o.OnLine != nil {
			for _, l := range ls {
				o.OnLine(l)
			}
		}
		return nil
	}
	tick := o.Clock.NewTicker(10 * time.Second)
	defer tick.Stop()
	var sub paho.Token
	var subDone <-chan struct{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case t := <-subs:
			sub, subDone = t, t.Done() // the newest connection's subscription
		case <-subDone:
			if err := sub.Error(); err != nil {
				log.Error("tail subscribe failed", "filter", filter, "err", err)
			} else if st, ok := sub.(*paho.SubscribeToken); ok && st.Result()[filter] == 0x80 {
				log.Error("tail subscription refused by the broker: check the ACL for this certificate", "filter", filter)
			} else if o.Ready != nil {
				readyOnce.Do(func() { close(o.Ready) })
			}
			sub, subDone = nil, nil
		case <-tick.Chan():
			for _, g := range tr.Gaps(o.Clock.Now()) {
				if err := write(wire.Line{Alert: "gap", Gateway: g.Gateway, GapFrom: g.From, GapTo: g.To}); err != nil {
					return err
				}
			}
		case m := <-msgs:
			batch := []msg{m}
		drain:
			for len(batch) < 256 {
				select {
				case m := <-msgs:
					batch = append(batch, m)
				default:
					break drain
				}
			}
			lines := make([]wire.Line, 0, len(batch))
			for _, m := range batch {
				l, ok := wire.Inspect(m.topic, m.payload, o.Verify, o.Clock.Now())
				if ok {
					if tr.Observe(l.Gateway, l.Seq, o.Clock.Now()) {
						continue // duplicate
					}
					if b, isBirth := l.Body.(map[string]any); isBirth && l.Kind == string(envelope.KindBirth) {
						if ds, ok := b["death_seq"].(uint64); ok && ds > 0 {
							tr.Optional(l.Gateway, ds, o.Clock.Now())
						}
					}
				}
				lines = append(lines, l)
			}
			if err := write(lines...); err != nil {
				return err
			}
		}
	}
}
