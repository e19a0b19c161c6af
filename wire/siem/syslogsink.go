package siem

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/wire"
)

// ParseSyslogTarget reads tcp://HOST:PORT or tls://HOST:PORT.
func ParseSyslogTarget(s string) (addr string, useTLS bool, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "" {
		return "", false, fmt.Errorf("syslog target %q: use tcp://HOST:PORT or tls://HOST:PORT", s)
	}
	switch u.Scheme {
	case "tcp":
		return u.Host, false, nil
	case "tls":
		return u.Host, true, nil
	case "udp":
		return "", false, fmt.Errorf("syslog target %q: UDP loses messages silently; use tcp:// or tls://", s)
	}
	return "", false, fmt.Errorf("syslog target %q: use tcp://HOST:PORT or tls://HOST:PORT", s)
}

// SyslogOptions configure a SyslogSink.
type SyslogOptions struct {
	Addr string // HOST:PORT, required
	// TLS, when set, wraps the connection (ServerName defaults to the
	// host of Addr; set Certificates for mTLS). nil is plain TCP.
	TLS *tls.Config
	// Dial opens the TCP connection; nil is a net.Dialer with a 10 s
	// timeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Encoder formats the records; a non-syslog format is wrapped in an
	// RFC 5424 header (Encoder.Wrap). Required.
	Encoder *Encoder
	// Queue holds records until they are delivered. Required; the sink
	// does not close it.
	Queue *Queue
	// MinBackoff and MaxBackoff bound the wait between connection
	// attempts: it doubles from MinBackoff (default 1 s) up to MaxBackoff
	// (default 1 min) and resets once a connection delivered records.
	MinBackoff, MaxBackoff time.Duration
	// Settle is how long a connection must stay up after a record was
	// written before the record is deleted from the queue (default 2 s).
	// Plain syslog has no acknowledgement: when the receiver dies, what
	// was written in the last Settle is sent again on the next
	// connection, with the same sequenceId (at least once).
	Settle time.Duration
	// WriteTimeout bounds one write (default 10 s, wall clock).
	WriteTimeout time.Duration
	Clock        clockwork.Clock
	Logger       *slog.Logger
}

// SyslogStats are a SyslogSink's counters.
type SyslogStats struct {
	Queued    int    `json:"queued"`
	Dropped   Drops  `json:"dropped"`
	Written   uint64 `json:"written"`   // records written, resends included
	Delivered uint64 `json:"delivered"` // records deleted after Settle
	Connects  uint64 `json:"connects"`  // successful connections
	Connected bool   `json:"connected"`
	LastError string `json:"last_error,omitempty"`
}

// SyslogSink sends records over TCP or TLS with RFC 6587 octet counting.
// Send commits a record to the queue; Run delivers the queue in order,
// reconnecting with a capped backoff. Send is safe for concurrent use;
// Run is called once.
type SyslogSink struct {
	o                            SyslogOptions
	log                          *slog.Logger
	written, delivered, connects atomic.Uint64
	connected                    atomic.Bool
	mu                           sync.Mutex
	lastErr                      string
	drops                        dropWatch
	// hook, set by tests before Run, is told "connected", "lost",
	// "dial_failed" and "confirmed".
	hook func(string)
}

func (s *SyslogSink) note(ev string) {
	if s.hook != nil {
		s.hook(ev)
	}
}

// NewSyslogSink checks o and applies defaults.
func NewSyslogSink(o SyslogOptions) (*SyslogSink, error) {
	if o.Addr == "" || o.Encoder == nil || o.Queue == nil {
		return nil, errors.New("siem: syslog sink needs an address, an encoder and a queue")
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.Settle <= 0 {
		o.Settle = 2 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Dial == nil {
		d := &net.Dialer{Timeout: 10 * time.Second}
		o.Dial = d.DialContext
	}
	if o.TLS != nil {
		o.TLS = o.TLS.Clone()
		if o.TLS.ServerName == "" {
			host, _, _ := net.SplitHostPort(o.Addr)
			o.TLS.ServerName = host
		}
	}
	s := &SyslogSink{o: o, log: o.Logger.With("component", "siem-syslog", "target", o.Addr)}
	s.drops.check(o.Queue, o.Clock.Now(), s.log.Warn) // the baseline: earlier drops are not news
	return s, nil
}

// Send encodes l as an RFC 5424 message and commits it to the queue.
// Metrics and status lines are bulk: a full queue drops them first.
func (s *SyslogSink) Send(l wire.Line) error {
	return s.SendBatch([]wire.Line{l})
}

// SendBatch queues many lines in one transaction.
func (s *SyslogSink) SendBatch(ls []wire.Line) error {
	recs := make([]Record, 0, len(ls))
	for _, l := range ls {
		rec, err := s.o.Encoder.Encode(l)
		if err != nil {
			return err
		}
		recs = append(recs, Record{Data: s.o.Encoder.Wrap(l, rec), Bulk: Bulk(l)})
	}
	if err := s.o.Queue.PutBatch(recs); err != nil {
		return err
	}
	s.drops.check(s.o.Queue, s.o.Clock.Now(), s.log.Warn)
	return nil
}

// Stats returns the sink's counters.
func (s *SyslogSink) Stats() SyslogStats {
	s.mu.Lock()
	le := s.lastErr
	s.mu.Unlock()
	return SyslogStats{Queued: s.o.Queue.Len(), Dropped: s.o.Queue.Dropped(), Written: s.written.Load(),
		Delivered: s.delivered.Load(), Connects: s.connects.Load(), Connected: s.connected.Load(), LastError: le}
}

func (s *SyslogSink) setErr(err error) {
	s.mu.Lock()
	s.lastErr = err.Error()
	s.mu.Unlock()
}

// Run delivers queued records until ctx is cancelled. It returns nil on
// cancellation and only after its goroutines have exited.
func (s *SyslogSink) Run(ctx context.Context) error {
	defer s.connected.Store(false)
	backoff := s.o.MinBackoff
	for ctx.Err() == nil {
		conn, err := s.dial(ctx)
		if err == nil {
			s.connects.Add(1)
			s.connected.Store(true)
			s.log.Info("syslog connected")
			s.note("connected")
			var progressed bool
			progressed, err = s.serve(ctx, conn)
			if progressed {
				backoff = s.o.MinBackoff
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		s.setErr(err)
		if s.connected.Swap(false) {
			s.note("lost")
		} else {
			s.note("dial_failed")
		}
		s.log.Warn("syslog target unavailable; records stay queued", "err", err, "retry_in", backoff, "queued", s.o.Queue.Len())
		wait := s.o.Clock.NewTimer(backoff)
		select {
		case <-ctx.Done():
			wait.Stop()
			return nil
		case <-wait.Chan():
		}
		backoff = min(2*backoff, s.o.MaxBackoff)
	}
	return nil
}

func (s *SyslogSink) dial(ctx context.Context) (net.Conn, error) {
	conn, err := s.o.Dial(ctx, "tcp", s.o.Addr)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if s.o.TLS == nil {
		return conn, nil
	}
	tc := tls.Client(conn, s.o.TLS)
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return tc, nil
}

var errPeerClosed = errors.New("the receiver closed the connection")

type written struct {
	id uint64
	at time.Time
}

// serve writes the queue to conn in order. Records are deleted once conn
// stayed up for Settle after their write; when conn breaks, serve returns
// and the next connection starts again from the oldest record left.
func (s *SyslogSink) serve(ctx context.Context, conn net.Conn) (progressed bool, err error) {
	dead := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // receivers never talk; a read returns only when the connection ends
		defer wg.Done()
		defer close(dead)
		buf := make([]byte, 256)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
		}
	}()
	defer func() {
		_ = conn.Close()
		wg.Wait()
	}()
	var inflight []written
	var cursor uint64
	isDead := func() bool {
		select {
		case <-dead:
			return true
		default:
			return false
		}
	}
	for {
		if isDead() {
			return progressed, errPeerClosed
		}
		// Confirm what stayed up long enough.
		now := s.o.Clock.Now()
		n := 0
		for n < len(inflight) && !inflight[n].at.Add(s.o.Settle).After(now) {
			n++
		}
		if n > 0 {
			ids := make([]uint64, n)
			for i := range ids {
				ids[i] = inflight[i].id
			}
			if err := s.o.Queue.Delete(ids...); err != nil {
				return progressed, err
			}
			inflight = inflight[n:]
			s.delivered.Add(uint64(n))
			progressed = true
			s.note("confirmed")
		}
		items, err := s.o.Queue.After(cursor, 128)
		if err != nil {
			return progressed, err
		}
		if len(items) > 0 {
			var buf []byte
			for _, it := range items {
				buf = append(buf, Frame(it.Data)...)
			}
			at := s.o.Clock.Now() // before the write: the receiver may act on it at once
			_ = conn.SetWriteDeadline(time.Now().Add(s.o.WriteTimeout))
			if _, err := conn.Write(buf); err != nil {
				return progressed, fmt.Errorf("write: %w", err)
			}
			for _, it := range items {
				inflight = append(inflight, written{it.ID, at})
			}
			cursor = items[len(items)-1].ID
			s.written.Add(uint64(len(items)))
			continue
		}
		// Wait for new records, the next settle time or the end. The
		// timer is stopped after every wait so no stale timer lingers
		// (tests count the clock's waiters).
		var settle clockwork.Timer
		var settleC <-chan time.Time
		if len(inflight) > 0 {
			d := inflight[0].at.Add(s.o.Settle).Sub(s.o.Clock.Now())
			if d <= 0 {
				continue
			}
			settle = s.o.Clock.NewTimer(d)
			settleC = settle.Chan()
		}
		var waitErr error
		select {
		case <-ctx.Done():
			waitErr = ctx.Err()
		case <-dead:
			waitErr = errPeerClosed
		case <-s.o.Queue.Notify():
		case <-settleC:
		}
		if settle != nil {
			settle.Stop()
		}
		if waitErr != nil {
			return progressed, waitErr
		}
	}
}
