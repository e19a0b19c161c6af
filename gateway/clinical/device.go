package clinical

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"time"

	"github.com/wardgate/wardgate/gateway/front"
)

// Link states.
const (
	linkUnknown int32 = iota
	linkUp
	linkDown
)

var linkStateNames = [...]string{"unknown", "up", "down"}

// device is one incarnation of a device's listener and link.
type device struct {
	s    *Server
	o    DeviceOptions
	st   *stats
	ln   net.Listener
	fr   *front.Front
	tcfg *tls.Config

	ctx    context.Context
	cancel context.CancelFunc
	serial *serialLink

	linkMu    sync.Mutex
	linkState int32
	linkSince time.Time

	mu        sync.Mutex
	conns     map[*conn]struct{}
	accepting bool
	stopped   bool
	wg        sync.WaitGroup
	startOnce sync.Once
	lnOnce    sync.Once
}

func newDevice(s *Server, o DeviceOptions, st *stats) (*device, error) {
	ln := o.Listener
	if ln == nil {
		var err error
		ln, err = s.o.Listen("tcp", o.Listen)
		if err != nil {
			return nil, fmt.Errorf("device %s: clinical.listen %s: %w (is another program or device using this port?)", o.ID, o.Listen, err)
		}
	}
	d := &device{s: s, o: o, st: st, ln: ln, conns: map[*conn]struct{}{}, accepting: true}
	d.fr = front.New(ln, front.Options{
		Limits: front.Limits{MaxConns: o.MaxConns, MaxPending: o.MaxPending, MaxPerSource: o.MaxPerSource, HandshakeTimeout: o.HandshakeTimeout},
		Clock:  s.o.Clock,
		Logger: s.o.Logger,
		OnRefused: func(source, reason string) {
			if reason == front.ReasonConnLimit {
				return // reported by handle with the identity
			}
			d.st.inc(d.st.refus, reason)
			d.s.emit(Event{Kind: EvLimit, Device: o.ID, Remote: source, Reason: reason,
				Detail: "connection refused by a limit; raise max_per_source/max_pending if this client is legitimate"}, d.st)
		},
		OnAcceptError: func(err error, retry time.Duration) {
			d.s.emit(Event{Kind: EvListenerError, Device: o.ID, Reason: "accept", Detail: err.Error()}, d.st)
			d.s.o.Logger.Warn("accept failed; retrying", "device", o.ID, "err", err, "retry_in", retry)
		},
	})
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.tcfg = d.tlsConfig()
	if o.Serial != nil {
		d.serial = &serialLink{d: d, cfg: *o.Serial}
	}
	return d, nil
}

func (d *device) tlsConfig() *tls.Config {
	o := d.s.o
	inner := front.ServerConfig(o.GetCertificate, o.Clock.Now)
	// The outer config holds the session ticket keys (kept across
	// handshakes); each handshake gets a copy with the current trust bundle
	// and its connection's verification.
	outer := front.ServerConfig(o.GetCertificate, o.Clock.Now)
	outer.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		nb, ok := h.Conn.(*nbConn)
		if !ok || nb.owner == nil {
			return nil, errors.New("internal error: unknown connection")
		}
		cfg := inner.Clone()
		cfg.ClientCAs = o.ClientCAs()
		cfg.VerifyConnection = nb.owner.verify
		return cfg, nil
	}
	return outer
}

func (d *device) start() {
	d.startOnce.Do(func() {
		d.wg.Add(1)
		go d.serve()
		if d.serial != nil {
			d.wg.Add(1)
			go d.serial.run(d.ctx)
		}
	})
}

func (d *device) closeListener() {
	d.lnOnce.Do(func() { _ = d.fr.Close() })
}

// stopAccepting closes the listener; live sessions go on.
func (d *device) stopAccepting() {
	d.mu.Lock()
	d.accepting = false
	d.mu.Unlock()
	d.closeListener()
}

// stop closes the listener, ends every session with reason and waits for
// the device's goroutines.
func (d *device) stop(reason string) {
	d.mu.Lock()
	d.stopped, d.accepting = true, false
	conns := make([]*conn, 0, len(d.conns))
	for c := range d.conns {
		conns = append(conns, c)
	}
	d.mu.Unlock()
	d.cancel()
	d.closeListener()
	for _, c := range conns {
		c.cut(reason, false)
	}
	if d.serial != nil {
		d.serial.shutdown()
	}
	d.wg.Wait()
}

func (d *device) liveCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.conns)
}

func (d *device) connsMatching(match func(identity string) bool) []*conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*conn
	for c := range d.conns {
		if match(c.identity) {
			out = append(out, c)
		}
	}
	return out
}

func (d *device) setLink(state int32, detail string) {
	d.linkMu.Lock()
	old := d.linkState
	if old == state {
		d.linkMu.Unlock()
		return
	}
	d.linkState, d.linkSince = state, d.s.o.Clock.Now()
	d.linkMu.Unlock()
	kind := EvLinkUp
	if state == linkDown {
		kind = EvLinkDown
		d.st.linkDowns.Add(1)
		d.s.o.Logger.Warn("device link down", "device", d.o.ID, "link", d.linkName(), "err", detail)
	} else if old == linkDown {
		d.s.o.Logger.Info("device link up again", "device", d.o.ID, "link", d.linkName())
	}
	d.s.emit(Event{Kind: kind, Device: d.o.ID, Reason: linkStateNames[state], Detail: detail}, d.st)
}

func (d *device) linkName() string {
	if d.serial != nil {
		c := d.serial.cfg
		return fmt.Sprintf("serial %s %d %d%s%s %s", c.Port, c.Baud, c.DataBits, strings.ToUpper(c.Parity[:1]), c.StopBits, c.Flow)
	}
	return "tcp " + d.o.TCP
}

func (d *device) status() DeviceStatus {
	d.linkMu.Lock()
	ls, since := d.linkState, d.linkSince
	d.linkMu.Unlock()
	ds := DeviceStatus{ID: d.o.ID, Listen: d.ln.Addr().String(), Link: d.linkName(), LinkState: linkStateNames[ls],
		LinkSince: since, Allow: append([]string(nil), d.o.Allow...), Counters: d.st.snapshot(), Conns: []ConnInfo{}}
	d.mu.Lock()
	for c := range d.conns {
		ds.Conns = append(ds.Conns, ConnInfo{Identity: c.identity, Remote: c.remote, Since: c.since,
			ToDevice: c.toDev.Load(), FromDevice: c.fromDev.Load()})
	}
	d.mu.Unlock()
	return ds
}

func (d *device) sweep(now time.Time) {
	d.mu.Lock()
	var cut []*conn
	var why []string
	for c := range d.conns {
		if now.Sub(c.since) >= d.o.MaxLifetime {
			cut, why = append(cut, c), append(why, ReasonMaxLifetime)
			continue
		}
		if b := c.toDev.Load() + c.fromDev.Load(); b != c.idleBytes {
			c.idleBytes, c.idleSince = b, now
		} else if now.Sub(c.idleSince) >= d.o.IdleTimeout {
			cut, why = append(cut, c), append(why, ReasonIdle)
		}
	}
	d.mu.Unlock()
	for i, c := range cut {
		c.cut(why[i], false)
	}
}

// serve accepts connections through the front until the listener is
// closed; the front's caps refuse what is over them.
func (d *device) serve() {
	defer d.wg.Done()
	_ = d.fr.Serve(d.ctx, func(fc *front.Conn) {
		d.st.accepted.Add(1)
		d.handle(fc)
	})
}

// conn is one client connection.
type conn struct {
	d      *device
	raw    net.Conn
	nb     *nbConn
	tc     *tls.Conn
	fc     *front.Conn
	remote string
	since  time.Time

	identity string   // set by verify
	refusal  *refusal // set by verify on refusal

	toDev, fromDev atomic.Int64
	reason         atomic.Pointer[string]

	devMu sync.Mutex
	dev   net.Conn // TCP link

	idleBytes int64 // sweeper only (under d.mu)
	idleSince time.Time
}

type refusal struct {
	reason, claimed string
	err             error
}

func (r *refusal) Error() string { return r.err.Error() }

// verify is the connection's tls.Config.VerifyConnection.
func (c *conn) verify(cs tls.ConnectionState) error {
	chain := cs.PeerCertificates
	if len(chain) == 0 {
		c.refusal = &refusal{reason: ReasonNoCertificate, err: errors.New("no client certificate")}
		return c.refusal
	}
	id, reason, err := c.d.s.o.Authorize(c.d.o.ID, chain)
	c.identity = id
	if err != nil {
		if reason == "" {
			reason = ReasonRefused
		}
		c.refusal = &refusal{reason: reason, claimed: claimedURI(chain[0]), err: err}
		return c.refusal
	}
	return nil
}

func claimedURI(leaf *x509.Certificate) string {
	if len(leaf.URIs) == 0 {
		return ""
	}
	s := leaf.URIs[0].String()
	if len(s) > 256 {
		s = s[:256]
	}
	return s
}

// cut ends the session: hard closes at once without close_notify, soft
// wakes both relay directions so the session closes cleanly. The first
// reason wins.
func (c *conn) cut(reason string, hard bool) {
	first := c.reason.CompareAndSwap(nil, &reason)
	c.devMu.Lock()
	dev := c.dev
	c.devMu.Unlock()
	if hard {
		_ = c.raw.Close()
		if dev != nil {
			_ = dev.Close()
		}
		return
	}
	if !first {
		return
	}
	past := time.Unix(1, 0)
	_ = c.raw.SetDeadline(past)
	if dev != nil {
		_ = dev.SetDeadline(past)
	}
}

func (c *conn) cutReason() string {
	if r := c.reason.Load(); r != nil {
		return *r
	}
	return ""
}

// handle serves one accepted connection: handshake and authorization,
// limits, link, relay. The front closes raw and frees its slot after.
func (d *device) handle(fc *front.Conn) {
	s := d.s
	c := &conn{d: d, raw: fc.Conn, fc: fc, remote: fc.RemoteAddr().String()}
	c.nb = newNBConn(fc.Conn)
	c.nb.owner = c
	c.tc = tls.Server(c.nb, d.tcfg)
	if err := c.tc.HandshakeContext(d.ctx); err != nil {
		d.handshakeFailed(c, err)
		return
	}
	c.since = s.o.Clock.Now()
	c.idleSince = c.since
	if !fc.Establish() {
		d.refuse(c, EvLimit, ReasonDeviceLimit, fmt.Sprintf("device already has %d sessions (max_connections)", d.o.MaxConns))
		_ = c.tc.Close()
		return
	}
	d.mu.Lock()
	stopped := d.stopped
	if !stopped {
		d.conns[c] = struct{}{}
	}
	d.mu.Unlock()
	if stopped {
		_ = c.tc.Close()
		return
	}
	defer func() {
		d.mu.Lock()
		delete(d.conns, c)
		d.mu.Unlock()
		s.sessionEnded()
	}()
	// A lock added after Authorize ran but before the session was
	// registered is caught here; later ones by the lock subscription.
	if locked, _ := s.locked(c.identity); locked {
		c.cut(ReasonLocked, true)
		d.refuse(c, EvRefused, ReasonLocked, "identity was locked during the handshake")
		return
	}
	if d.serial != nil {
		d.relaySerial(c)
	} else {
		d.relayTCP(c)
	}
}

func (d *device) refuse(c *conn, kind, reason, detail string) {
	d.st.inc(d.st.refus, reason)
	d.s.emit(Event{Kind: kind, Device: d.o.ID, Identity: c.identity, Remote: c.remote, Reason: reason, Detail: detail}, d.st)
}

func (d *device) handshakeFailed(c *conn, err error) {
	var ref *refusal
	if c.refusal != nil {
		ref = c.refusal
	} else if strings.Contains(err.Error(), "didn't provide a certificate") {
		ref = &refusal{reason: ReasonNoCertificate, err: errors.New("the client sent no certificate: configure the client's certificate and key")}
	}
	if ref != nil {
		d.st.inc(d.st.hsFail, ref.reason)
		d.st.inc(d.st.auth, ref.reason)
		d.s.emit(Event{Kind: EvRefused, Device: d.o.ID, Identity: c.identity, Claimed: ref.claimed, Remote: c.remote,
			Reason: ref.reason, Detail: ref.err.Error()}, d.st)
		return
	}
	reason := ReasonProtocol
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		reason = ReasonHandshakeTimeout
	case errors.Is(err, context.Canceled):
		return // device stopping
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed):
		reason = ReasonClientGone
	}
	d.st.inc(d.st.hsFail, reason)
	// The TLS error text can quote what the client sent (offered versions,
	// protocols): events carry a fixed description, the log a capped cause.
	d.s.o.Logger.Debug("clinical handshake failed", "device", d.o.ID, "remote", c.remote, "reason", reason, "err", capText(err.Error()))
	d.s.emit(Event{Kind: EvHandshakeFailed, Device: d.o.ID, Remote: c.remote, Reason: reason, Detail: handshakeDetail[reason]}, d.st)
}

func (d *device) sessionStart(c *conn) {
	d.st.sessions.Add(1)
	d.st.live.Add(1)
	d.s.emit(Event{Kind: EvSessionStart, Device: d.o.ID, Identity: c.identity, Remote: c.remote, Time: c.since}, d.st)
}

func (d *device) sessionEnd(c *conn, reason string) {
	d.st.live.Add(-1)
	now := d.s.o.Clock.Now()
	d.s.emit(Event{Kind: EvSessionEnd, Device: d.o.ID, Identity: c.identity, Remote: c.remote, Reason: reason,
		ToDevice: c.toDev.Load(), FromDevice: c.fromDev.Load(), Duration: now.Sub(c.since), Time: now}, d.st)
}

// closeClient ends the client side: close_notify unless the cut was hard
// (the raw connection is then already closed).
func (c *conn) closeClient() {
	_ = c.tc.Close()
}

func (d *device) relayTCP(c *conn) {
	ctx, cancel := context.WithTimeout(d.ctx, d.o.DialTimeout)
	dev, err := d.s.o.Dial(ctx, "tcp", d.o.TCP)
	cancel()
	if err != nil {
		d.setLink(linkDown, fmt.Sprintf("cannot reach the device at %s: %v (check the device's power, cable and address)", d.o.TCP, err))
		d.refuse(c, EvSessionEnd, ReasonLinkDown, "device link down")
		c.closeClient()
		return
	}
	d.setLink(linkUp, "")
	c.devMu.Lock()
	c.dev = dev
	c.devMu.Unlock()
	if r := c.cutReason(); r != "" { // cut while dialing
		_ = dev.Close()
		c.closeClient()
		return
	}
	d.sessionStart(c)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // device -> client
		defer wg.Done()
		err := readDevice(dev, c.tc, &c.fromDev, &d.st.fromDev)
		var se *sideError
		switch {
		case err == nil:
			_ = c.tc.CloseWrite()
			if cw, ok := c.raw.(closeWriter); ok {
				_ = cw.CloseWrite()
			}
		case errors.As(err, &se):
			c.cut(ReasonClientError, false)
		default:
			if c.cutReason() == "" {
				d.setLink(linkDown, "device connection failed during a session: "+err.Error())
				c.cut(ReasonLinkDown, false)
			}
		}
	}()
	err = readTLS(c.tc, c.nb, dev, &c.toDev, &d.st.toDev)
	var se *sideError
	switch {
	case err == nil:
		if cw, ok := dev.(closeWriter); ok {
			_ = cw.CloseWrite()
		} else {
			c.cut(ReasonClosed, false)
		}
	case errors.As(err, &se) && se.device:
		if c.cutReason() == "" {
			d.setLink(linkDown, "writing to the device failed: "+err.Error())
			c.cut(ReasonLinkDown, false)
		}
	default:
		c.cut(ReasonClientError, false)
	}
	wg.Wait()
	_ = dev.Close()
	c.closeClient()
	reason := c.cutReason()
	if reason == "" {
		reason = ReasonClosed
	}
	d.sessionEnd(c, reason)
}

func (d *device) relaySerial(c *conn) {
	l := d.serial
	if why := l.attach(c); why != "" {
		if why == ReasonBusy {
			d.refuse(c, EvBusy, ReasonBusy, "the serial port is in use by another session; one client at a time")
		} else {
			d.refuse(c, EvSessionEnd, ReasonLinkDown, "serial port not available")
		}
		c.closeClient()
		return
	}
	d.sessionStart(c)
	err := readTLS(c.tc, c.nb, serialWriter{l, c}, &c.toDev, &d.st.toDev)
	var se *sideError
	switch {
	case err == nil:
		c.cut(ReasonClosed, false)
	case errors.As(err, &se) && se.device:
		c.cut(ReasonLinkDown, false)
	default:
		c.cut(ReasonClientError, false)
	}
	l.detach(c)
	c.closeClient()
	d.sessionEnd(c, c.cutReason())
}

// handshakeDetail describes each handshake failure reason for events.
var handshakeDetail = map[string]string{
	ReasonProtocol:         "TLS handshake failed: the client does not speak TLS 1.2+ with the gateway's suites, or sent a malformed handshake",
	ReasonHandshakeTimeout: "the client did not complete the TLS handshake in time",
	ReasonClientGone:       "the client closed the connection during the handshake",
}

// capText bounds a string taken from an error for logs.
func capText(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
