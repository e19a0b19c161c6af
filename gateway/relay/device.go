package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
)

// device serves one device's listener.
type device struct {
	s   *Server
	cfg Device
	l   net.Listener

	mu       sync.Mutex
	conns    map[*conn]struct{}
	perSrc   map[string]int
	stopped  bool
	wg       sync.WaitGroup
	serialMu sync.Mutex // one client owns a serial link at a time

	linkKnown atomic.Bool
	linkUp    atomic.Bool
	c         counters
}

func newDevice(s *Server, cfg Device, l net.Listener) *device {
	return &device{s: s, cfg: cfg, l: l, conns: map[*conn]struct{}{}, perSrc: map[string]int{},
		c: counters{hsFail: map[string]uint64{}}}
}

// serve accepts until the listener closes, then waits for its connections.
func (d *device) serve() {
	defer d.wg.Wait()
	backoff := time.Duration(0)
	for {
		nc, err := d.l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or a transient error: back off, keep serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			d.s.log.Warn("accept failed; backing off", "device", d.cfg.ID, "err", err, "backoff", backoff)
			<-d.s.clock.After(backoff)
			continue
		}
		backoff = 0
		c, ok := d.admit(nc)
		if !ok {
			continue
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer d.release(c)
			c.handle()
		}()
	}
}

// admit applies the connection limits.
func (d *device) admit(nc net.Conn) (*conn, bool) {
	src, _, _ := net.SplitHostPort(nc.RemoteAddr().String())
	d.mu.Lock()
	limit := ""
	switch {
	case d.stopped:
		limit = "stopping"
	case len(d.conns) >= d.cfg.MaxConns:
		limit = "max_connections"
	case d.perSrc[src] >= d.cfg.MaxPerSource:
		limit = "max_per_source"
	}
	if limit != "" {
		d.mu.Unlock()
		nc.Close()
		d.c.refused.Add(1)
		d.s.emit(EvLimit, d.cfg.ID, limit, map[string]string{"remote": nc.RemoteAddr().String(), "limit": limit})
		return nil, false
	}
	c := &conn{d: d, raw: nc, src: src, since: d.s.clock.Now()}
	d.conns[c] = struct{}{}
	d.perSrc[src]++
	d.mu.Unlock()
	return c, true
}

func (d *device) release(c *conn) {
	d.mu.Lock()
	delete(d.conns, c)
	if d.perSrc[c.src]--; d.perSrc[c.src] <= 0 {
		delete(d.perSrc, c.src)
	}
	d.mu.Unlock()
}

func (d *device) closeListener() { d.l.Close() }

// stop closes the listener and cuts every connection.
func (d *device) stop(reason string) {
	d.mu.Lock()
	d.stopped = true
	conns := make([]*conn, 0, len(d.conns))
	for c := range d.conns {
		conns = append(conns, c)
	}
	d.mu.Unlock()
	d.l.Close()
	for _, c := range conns {
		c.cut(reason)
	}
}

func (d *device) cut(identity, reason string) int {
	prefix, isPrefix := strings.CutSuffix(identity, "*")
	d.mu.Lock()
	var hit []*conn
	for c := range d.conns {
		id := c.identity()
		if id != "" && (id == identity || isPrefix && strings.HasPrefix(id, prefix)) {
			hit = append(hit, c)
		}
	}
	d.mu.Unlock()
	for _, c := range hit {
		c.cut(reason)
		d.s.emit(EvCut, d.cfg.ID, "", map[string]string{"identity": c.identity(), "remote": c.raw.RemoteAddr().String(), "reason": reason})
	}
	return len(hit)
}

func (d *device) setLink(up bool, cause error) {
	was, known := d.linkUp.Swap(up), d.linkKnown.Swap(true)
	if known && was == up {
		return
	}
	if up {
		d.s.emit(EvLinkUp, d.cfg.ID, "", map[string]string{"target": d.target()})
		return
	}
	msg := "unknown"
	if cause != nil {
		msg = cause.Error()
	}
	d.s.emit(EvLinkDown, d.cfg.ID, "", map[string]string{"target": d.target(), "error": msg})
}

func (d *device) target() string {
	if d.cfg.Serial != nil {
		return d.cfg.Serial.Port
	}
	return d.cfg.TCP
}

func (d *device) snapshot() DeviceSnapshot {
	s := DeviceSnapshot{ID: d.cfg.ID, Listen: d.cfg.Listen, Link: "tcp", Target: d.target(),
		Connections: d.c.conns.Load(), ToDevice: d.c.toDev.Load(), FromDevice: d.c.fromDev.Load(),
		AuthFailures: d.c.authFail.Load(), Refused: d.c.refused.Load(), HandshakeFailures: map[string]uint64{}, Live: []ConnInfo{}}
	if d.cfg.Serial != nil {
		s.Link = "serial"
	}
	if d.linkKnown.Load() {
		up := d.linkUp.Load()
		s.LinkUp = &up
	}
	d.c.hsMu.Lock()
	for k, v := range d.c.hsFail {
		s.HandshakeFailures[k] = v
	}
	d.c.hsMu.Unlock()
	d.mu.Lock()
	for c := range d.conns {
		if id := c.identity(); id != "" {
			s.Live = append(s.Live, ConnInfo{Identity: id, Remote: c.raw.RemoteAddr().String(), Since: c.since,
				ToDevice: c.toDev.Load(), FromDevice: c.fromDev.Load()})
		}
	}
	d.mu.Unlock()
	return s
}

// conn is one client connection.
type conn struct {
	d     *device
	raw   net.Conn
	src   string
	since time.Time

	id             atomic.Pointer[string]
	toDev, fromDev atomic.Uint64
	mu             sync.Mutex
	backend        io.Closer
}

func (c *conn) identity() string {
	if p := c.id.Load(); p != nil {
		return *p
	}
	return ""
}

// cut closes both sides at once.
func (c *conn) cut(reason string) {
	c.mu.Lock()
	b := c.backend
	c.mu.Unlock()
	c.raw.Close()
	if b != nil {
		b.Close()
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (c *conn) handle() {
	d, s := c.d, c.d.s
	defer c.raw.Close()
	auth := &connAuth{device: d.cfg.ID}
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), ctxKey{}, auth), d.cfg.HandshakeTimeout)
	tc := tls.Server(c.raw, s.tlsCfg)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		remote := c.raw.RemoteAddr().String()
		if auth.reason != "" {
			d.c.authFail.Add(1)
			s.emit(EvAuthFailure, d.cfg.ID, auth.reason, map[string]string{"identity": auth.identity, "remote": remote, "reason": auth.reason})
			return
		}
		reason := handshakeReason(err, ctx)
		d.c.hsMu.Lock()
		d.c.hsFail[reason]++
		d.c.hsMu.Unlock()
		s.emit(EvHandshakeFailure, d.cfg.ID, reason, map[string]string{"remote": remote, "reason": reason})
		return
	}
	id := auth.identity
	c.id.Store(&id)
	d.c.conns.Add(1)

	backend, err := d.open()
	if err != nil {
		if errors.Is(err, errBusy) {
			s.emit(EvBusy, d.cfg.ID, "busy", map[string]string{"identity": id, "remote": c.raw.RemoteAddr().String()})
		}
		_ = tc.Close() // close_notify: a clean close the client can tell from a crash
		return
	}
	defer backend.Close()
	c.mu.Lock()
	c.backend = backend
	c.mu.Unlock()
	c.relay(tc, backend)
}

var errBusy = errors.New("serial link in use by another client")

// open connects to the device's link.
func (d *device) open() (io.ReadWriteCloser, error) {
	if sc := d.cfg.Serial; sc != nil {
		if !d.serialMu.TryLock() {
			return nil, errBusy
		}
		p, err := d.s.o.OpenSerial(*sc)
		if err != nil {
			d.serialMu.Unlock()
			d.setLink(false, err)
			return nil, err
		}
		d.setLink(true, nil)
		return &serialLink{ReadWriteCloser: p, unlock: d.serialMu.Unlock}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bc, err := d.s.o.Dial(ctx, "tcp", d.cfg.TCP)
	if err != nil {
		d.setLink(false, err)
		return nil, err
	}
	d.setLink(true, nil)
	return bc, nil
}

// serialLink releases the device's serial ownership on close.
type serialLink struct {
	io.ReadWriteCloser
	once   sync.Once
	unlock func()
}

func (l *serialLink) Close() error {
	err := l.ReadWriteCloser.Close()
	l.once.Do(l.unlock)
	return err
}

type closeWriter interface{ CloseWrite() error }

// relay copies both ways until both directions ended, with half-close,
// an idle timeout and a maximum lifetime.
func (c *conn) relay(client *tls.Conn, backend io.ReadWriteCloser) {
	d := c.d
	clock := d.s.clock
	var last atomic.Int64
	last.Store(clock.Now().UnixNano())
	stop := make(chan struct{})
	var idle clockwork.Timer
	check := func() {
		select {
		case <-stop:
			return
		default:
		}
		quiet := clock.Since(time.Unix(0, last.Load()))
		if quiet >= d.cfg.IdleTimeout {
			c.cut("idle")
			return
		}
		idle.Reset(d.cfg.IdleTimeout - quiet)
	}
	idle = clock.AfterFunc(d.cfg.IdleTimeout, check)
	lifetime := clock.AfterFunc(d.cfg.MaxLifetime, func() {
		d.s.emit(EvCut, d.cfg.ID, "", map[string]string{"identity": c.identity(), "remote": c.raw.RemoteAddr().String(), "reason": "max_lifetime"})
		c.cut("max_lifetime")
	})
	defer func() { close(stop); idle.Stop(); lifetime.Stop() }()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // device -> client
		defer wg.Done()
		err := pump(client, backend, &c.fromDev, &d.c.fromDev, &last, clock)
		if err == nil {
			_ = client.CloseWrite() // device finished: close_notify, keep reading
		} else {
			if !isClosed(err) {
				d.setLink(false, err)
			}
			c.cut("device link failed")
		}
	}()
	err := pump(backend, client, &c.toDev, &d.c.toDev, &last, clock)
	if cw, ok := backend.(closeWriter); ok && err == nil {
		_ = cw.CloseWrite() // client finished: let the device answer, then end
	} else {
		c.cut("client done")
	}
	wg.Wait()
}

// pump copies src to dst through a pooled buffer, counting bytes.
func pump(dst io.Writer, src io.Reader, connCount, devCount *atomic.Uint64, last *atomic.Int64, clock clockwork.Clock) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(clock.Now().UnixNano())
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
			connCount.Add(uint64(n))
			devCount.Add(uint64(n))
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe)
}

// handshakeReason classifies a failed handshake for counters and events.
func handshakeReason(err error, ctx context.Context) string {
	msg := err.Error()
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case strings.Contains(msg, "didn't provide a certificate") || strings.Contains(msg, "client didn't provide"):
		return "no_certificate"
	case strings.Contains(msg, "protocol version") || strings.Contains(msg, "no cipher suite") || strings.Contains(msg, "unsupported"):
		return "protocol"
	case errors.Is(err, io.EOF) || strings.Contains(msg, "reset by peer") || strings.Contains(msg, "EOF"):
		return "client_closed"
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return "not_tls"
	}
	return "other"
}
