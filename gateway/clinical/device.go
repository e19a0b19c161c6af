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
	tcfg *tls.Config

	ctx    context.Context
	cancel context.CancelFunc
	serial *serialLink

	linkMu    sync.Mutex
	linkState int32
	linkSince time.Time

	mu        sync.Mutex
	conns     map[*conn]struct{}
	pending   int
	perSource map[string]int
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
	d := &device{s: s, o: o, st: st, ln: ln, conns: map[*conn]struct{}{}, perSource: map[string]int{}, accepting: true}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.tcfg = d.tlsConfig()
	if o.Serial != nil {
		d.serial = &serialLink{d: d, cfg: *o.Serial}
	}
	return d, nil
}

// Cipher suites for TLS 1.2: ECDHE key exchange and AEAD only. TLS 1.3
// suites are all AEAD and not configurable.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

func (d *device) tlsConfig() *tls.Config {
	o := d.s.o
	inner := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     cipherSuites,
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256},
		GetCertificate:   o.GetCertificate,
		ClientAuth:       tls.RequireAnyClientCert,
		Time:             o.Clock.Now,
	}
	// The outer config holds the session ticket keys (kept across
	// handshakes); each handshake gets a copy with the current trust bundle
	// and its connection's verification.
	return &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     cipherSuites,
		CurvePreferences: inner.CurvePreferences,
		GetCertificate:   o.GetCertificate,
		ClientAuth:       tls.RequireAnyClientCert,
		Time:             o.Clock.Now,
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			nb, ok := h.Conn.(*nbConn)
			if !ok || nb.owner == nil {
				return nil, errors.New("internal error: unknown connection")
			}
			cfg := inner.Clone()
			cfg.ClientCAs = o.ClientCAs()
			cfg.VerifyConnection = nb.owner.verify
			return cfg, nil
		},
	}
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
	d.lnOnce.Do(func() { _ = d.ln.Close() })
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

func (d *device) connsOf(identity string) []*conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*conn
	for c := range d.conns {
		if c.identity == identity {
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

// temporary tells accept errors worth retrying after a pause.
func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// serve accepts connections until the listener is closed. Accept errors
// other than closing are retried with backoff from 5ms doubling to 1s.
func (d *device) serve() {
	defer d.wg.Done()
	var delay time.Duration
	for {
		raw, err := d.ln.Accept()
		if err != nil {
			if d.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else {
				delay = min(2*delay, time.Second)
			}
			if !temporary(err) {
				delay = time.Second
			}
			d.s.emit(Event{Kind: EvListenerError, Device: d.o.ID, Reason: "accept", Detail: err.Error()}, d.st)
			d.s.o.Logger.Warn("accept failed; retrying", "device", d.o.ID, "err", err, "retry_in", delay)
			select {
			case <-d.s.o.Clock.After(delay):
			case <-d.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		d.st.accepted.Add(1)
		ip := hostOf(raw.RemoteAddr())
		reason := ""
		d.mu.Lock()
		switch {
		case !d.accepting:
			reason = ReasonShutdown
		case d.o.MaxPending >= 0 && d.pending >= d.o.MaxPending:
			reason = ReasonPendingLimit
		case d.o.MaxPerSource >= 0 && d.perSource[ip] >= d.o.MaxPerSource:
			reason = ReasonSourceLimit
		default:
			d.pending++
			d.perSource[ip]++
			d.wg.Add(1)
		}
		d.mu.Unlock()
		if reason != "" {
			_ = raw.Close()
			if reason != ReasonShutdown {
				d.st.inc(d.st.refus, reason)
				d.s.emit(Event{Kind: EvLimit, Device: d.o.ID, Remote: raw.RemoteAddr().String(), Reason: reason,
					Detail: "connection refused by a limit; raise max_per_source/max_connections if this client is legitimate"}, d.st)
			}
			continue
		}
		go d.handle(raw, ip)
	}
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// conn is one client connection.
type conn struct {
	d      *device
	raw    net.Conn
	nb     *nbConn
	tc     *tls.Conn
	remote string
	since  time.Time
	gen    uint64 // cut generation before authorization

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
	c.gen = c.d.s.generation()
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

func (d *device) release(ip string, live bool, c *conn) {
	d.mu.Lock()
	if live {
		delete(d.conns, c)
	} else {
		d.pending--
	}
	d.perSource[ip]--
	if d.perSource[ip] <= 0 {
		delete(d.perSource, ip)
	}
	d.mu.Unlock()
}

// handle serves one accepted connection: handshake and authorization,
// limits, link, relay.
func (d *device) handle(raw net.Conn, ip string) {
	defer d.wg.Done()
	s := d.s
	c := &conn{d: d, raw: raw, remote: raw.RemoteAddr().String()}
	c.nb = newNBConn(raw)
	c.nb.owner = c
	c.tc = tls.Server(c.nb, d.tcfg)
	_ = raw.SetDeadline(time.Now().Add(d.o.HandshakeTimeout))
	if err := c.tc.HandshakeContext(d.ctx); err != nil {
		_ = raw.Close()
		d.release(ip, false, c)
		d.handshakeFailed(c, err)
		return
	}
	_ = raw.SetDeadline(time.Time{})
	c.since = s.o.Clock.Now()
	c.idleSince = c.since

	d.mu.Lock()
	full := d.o.MaxConns >= 0 && len(d.conns) >= d.o.MaxConns
	stopped := d.stopped
	d.pending--
	if !full && !stopped {
		d.conns[c] = struct{}{}
	} else {
		d.perSource[ip]--
	}
	d.mu.Unlock()
	if full || stopped {
		if full {
			d.refuse(c, EvLimit, ReasonDeviceLimit, fmt.Sprintf("device already has %d sessions (max_connections)", d.o.MaxConns))
		}
		_ = c.tc.Close()
		return
	}
	defer func() {
		d.release(ip, true, c)
		s.sessionEnded()
	}()
	if s.cutSince(c.identity, c.gen) {
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
	d.s.emit(Event{Kind: EvHandshakeFailed, Device: d.o.ID, Remote: c.remote, Reason: reason, Detail: err.Error()}, d.st)
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
