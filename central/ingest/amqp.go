package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// AMQPOptions configure the shared ingest: every central instance
// consumes one durable quorum queue of a RabbitMQ cluster, bound to
// amq.topic (the MQTT plugin's exchange) with wardgate.v1.#, over AMQP
// 0-9-1. RabbitMQ hands each message to one instance; a message is
// acknowledged only after the batch that stored it committed, so a
// central that dies loses nothing (its unacknowledged messages go to the
// others).
type AMQPOptions struct {
	// URLs are the cluster's nodes, tried in turn: amqps:// (central's
	// certificate from Options.TLSConfig; SASL EXTERNAL unless the URL
	// names a user) or amqp:// on loopback.
	URLs []string
	// Queue is the quorum queue's name; declared (idempotently) when
	// missing.
	Queue string
	// Prefetch bounds the unacknowledged messages this instance holds
	// (stored but not yet committed, or held for reordering); default 1000.
	Prefetch int
	// Name is the consumer tag, the connection name and this instance's
	// key in the seq marks: unique per instance (wardgate-central-ID).
	Name string
}

// IngestBinding is the routing key the queue is bound with: every MQTT
// topic under wardgate/v1/ (the MQTT plugin turns / into .).
const IngestBinding = "wardgate.v1.#"

// topicExchange is where the MQTT plugin publishes and subscribes.
const topicExchange = "amq.topic"

// TopicFromKey turns an AMQP routing key of the MQTT plugin back into the
// MQTT topic: the plugin swaps / and . (a . inside a topic level becomes
// /), so the reverse swaps them again.
func TopicFromKey(key string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, key)
}

// KeyFromTopic is the routing key the MQTT plugin uses for an MQTT topic.
func KeyFromTopic(topic string) string { return TopicFromKey(topic) }

// amqpPub is the publishing channel of the current connection (commands
// for gateways go out through amq.topic, the MQTT plugin delivers them).
type amqpPub struct {
	mu sync.Mutex
	ch *amqp.Channel
}

func (in *Ingester) shared() bool { return in.o.AMQP != nil }

// amqpLoop keeps one consuming connection up, moving across the URLs:
// a failed node is skipped at once; after a whole round failed it backs
// off (1 s doubling to 30 s).
func (in *Ingester) amqpLoop(ctx context.Context) {
	urls := in.o.AMQP.URLs
	backoff := time.Second
	for i := 0; ctx.Err() == nil; i++ {
		u := urls[i%len(urls)]
		wait := 100 * time.Millisecond
		if in.amqpConnection(ctx, u) {
			backoff = time.Second
		} else if (i+1)%len(urls) == 0 {
			wait = backoff
			backoff = min(backoff*2, 30*time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-in.clock.After(wait):
		}
	}
}

// redact drops the password of a URL for logs.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// amqpConnection runs one connection until it is lost or ctx ends; it
// reports whether it got as far as consuming.
func (in *Ingester) amqpConnection(ctx context.Context, raw string) bool {
	o := in.o.AMQP
	cfg := amqp.Config{Dial: amqp.DefaultDial(10 * time.Second), Heartbeat: 10 * time.Second,
		Properties: amqp.Table{"connection_name": "wardgate-central " + o.Name}}
	if strings.HasPrefix(raw, "amqps://") {
		if in.o.TLSConfig == nil {
			in.log.Error("amqps URL without a TLS configuration", "url", redact(raw))
			return false
		}
		cfg.TLSClientConfig = in.o.TLSConfig.Clone()
		if u, err := url.Parse(raw); err == nil && u.User == nil {
			cfg.SASL = []amqp.Authentication{&amqp.ExternalAuth{}}
		}
	}
	conn, err := amqp.DialConfig(raw, cfg)
	if err != nil {
		in.log.Warn("amqp connect failed", "url", redact(raw), "err", err)
		return false
	}
	defer conn.Close()
	msgs, err := in.amqpSetup(conn)
	if err != nil {
		in.log.Warn("amqp queue setup failed", "url", redact(raw), "queue", o.Queue, "err", err)
		return false
	}
	pub, err := conn.Channel()
	if err == nil {
		err = pub.Confirm(false)
	}
	if err != nil {
		in.log.Warn("amqp publishing channel failed", "url", redact(raw), "err", err)
		return false
	}
	in.amqpPub.Store(&amqpPub{ch: pub})
	in.connected.Store(true)
	in.log.Info("amqp consuming", "url", redact(raw), "queue", o.Queue)
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	// Verification is the costly part: several workers, the order is
	// restored by the processing goroutine.
	var wg sync.WaitGroup
	for range max(2, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range msgs {
				in.handle(ctx, TopicFromKey(d.RoutingKey), d.Body, func(stored bool) {
					// After a reconnection these fail: the broker has
					// already requeued the message (a duplicate, removed by seq).
					if stored {
						_ = d.Ack(false)
					} else {
						_ = d.Nack(false, true)
					}
				})
			}
		}()
	}
	select {
	case <-ctx.Done():
	case err := <-closed:
		in.log.Warn("amqp connection lost", "url", redact(raw), "err", err)
	}
	in.connected.Store(false)
	in.amqpPub.Store(nil)
	conn.Close() // closes msgs, so the workers end
	wg.Wait()
	return true
}

// amqpSetup declares the queue and its binding (idempotent) and starts
// consuming with manual acknowledgements.
func (in *Ingester) amqpSetup(conn *amqp.Connection) (<-chan amqp.Delivery, error) {
	o := in.o.AMQP
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Qos(o.Prefetch, 0, false); err != nil {
		return nil, fmt.Errorf("prefetch: %w", err)
	}
	// An existing queue is used as it is (its operator may have set a
	// group size or a delivery limit); a missing one is declared. A
	// passive declare of a missing queue closes the channel.
	if _, err := ch.QueueDeclarePassive(o.Queue, true, false, false, false, nil); err != nil {
		if ch, err = conn.Channel(); err != nil {
			return nil, err
		}
		if err := ch.Qos(o.Prefetch, 0, false); err != nil {
			return nil, fmt.Errorf("prefetch: %w", err)
		}
		err = declareQueue(ch, o.Queue)
		if err != nil {
			return nil, err
		}
	}
	if err := ch.QueueBind(o.Queue, IngestBinding, topicExchange, false, nil); err != nil {
		return nil, fmt.Errorf("bind %s to %s with %s: %w", o.Queue, topicExchange, IngestBinding, err)
	}
	msgs, err := ch.Consume(o.Queue, o.Name, false, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", o.Queue, err)
	}
	return msgs, nil
}

// declareQueue declares the durable quorum queue.
func declareQueue(ch *amqp.Channel, queue string) error {
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed {
			return fmt.Errorf("queue %s exists with other settings; it must be a durable quorum queue (x-queue-type: quorum): %w", queue, err)
		}
		if errors.As(err, &ae) && ae.Code == amqp.AccessRefused {
			return fmt.Errorf("central's user may not declare queue %s; give it configure permission on the queue: %w", queue, err)
		}
		return fmt.Errorf("declare queue %s: %w", queue, err)
	}
	return nil
}

// amqpPublish sends a command through amq.topic and waits for the
// broker's confirmation. AMQP cannot ask the MQTT plugin to retain a
// message: a retained publish (a lock set) reaches the gateways
// subscribed now, and is logged once.
func (in *Ingester) amqpPublish(topic string, payload []byte, retain bool) error {
	if retain && in.retainWarned.CompareAndSwap(false, true) {
		in.log.Info("with amqp: a retained publish reaches only the gateways connected now (the MQTT plugin retains only MQTT publishes); central sends lock sets to the others at their births", "topic", topic)
	}
	p := in.amqpPub.Load()
	if p == nil {
		return errors.New("not connected to a broker")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conf, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, topicExchange, KeyFromTopic(topic), false, false,
		amqp.Publishing{Body: payload, DeliveryMode: amqp.Persistent, Headers: amqp.Table{"x-mqtt-publish-qos": int8(1)}})
	if err != nil {
		return err
	}
	ok, err := conf.WaitContext(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("the broker refused the command on %s", topic)
	}
	return nil
}
