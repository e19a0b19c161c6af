package access

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wardgate/wardgate/gateway/access/recording"
	"github.com/wardgate/wardgate/gateway/front"
)

// ParseVendorURI extracts the vendor identity from a URI of the form
// spiffe://TRUST-DOMAIN/vendor/ORG/PERSON.
func ParseVendorURI(u *url.URL) (VendorIdentity, error) {
	if u == nil || u.Scheme != "spiffe" || u.Host == "" {
		return VendorIdentity{}, errors.New("not a spiffe URI")
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 3 || parts[0] != "vendor" || parts[1] == "" || parts[2] == "" {
		return VendorIdentity{}, fmt.Errorf("%s is not a vendor identity (spiffe://TD/vendor/ORG/PERSON)", u)
	}
	return VendorIdentity{URI: u.String(), Org: parts[1], Person: parts[2]}, nil
}

func defaultAuthorize(chain []*x509.Certificate) (VendorIdentity, string, error) {
	for _, u := range chain[0].URIs {
		if v, err := ParseVendorURI(u); err == nil {
			return v, "", nil
		}
	}
	return VendorIdentity{}, "certificate carries no vendor identity (spiffe://TD/vendor/ORG/PERSON)", errors.New("no vendor URI SAN")
}

// TLSConfig returns the server TLS configuration of the vendor listener:
// the gateway's policy (front.ServerConfig: TLS 1.2 or later, AEAD suites
// only) with ALPN http/1.1. The client certificate is required and then
// verified by the broker (against ClientCAs with the injected clock, then
// Authorize), so that a refused vendor gets a 403 with a reason instead of a
// bare handshake failure.
func (b *Broker) TLSConfig() *tls.Config {
	cfg := front.ServerConfig(b.o.GetCertificate, b.clock.Now)
	cfg.NextProtos = []string{"http/1.1"}
	return cfg
}

// Run serves the vendor channel on ln (a plain TCP listener: TLS happens
// here, through a front.Front under Options.ConnLimits) until ctx is done or
// Close is called, then cuts every session, reports the refusals still
// folded and returns nil after all its goroutines exited. Accept errors
// never end it (they are logged). Run on a closed Broker closes ln and
// returns ErrClosed.
func (b *Broker) Run(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		_ = ln.Close()
		return ErrClosed
	}
	run := b.nextRun
	b.nextRun++
	b.runs[run] = cancel
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.runs, run)
		b.mu.Unlock()
	}()

	cfg := b.TLSConfig()
	f := front.New(ln, front.Options{
		Limits: b.o.ConnLimits, Clock: b.clock, Logger: b.log,
		OnRefused: b.frontRefused,
		OnAcceptError: func(err error, retry time.Duration) {
			b.log.Warn("vendor listener: accept failed", "err", err, "retry_in", retry)
		},
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := b.clock.NewTicker(b.o.EventWindow)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.Chan():
				b.flushRefusals(b.clock.Now())
			}
		}
	}()
	// Serve waits for its handlers: end their sessions and handshakes as
	// soon as ctx is done.
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		cut := b.allSessionsLocked()
		for c := range b.conns {
			_ = c.Close()
		}
		b.mu.Unlock()
		cutAll(cut, "gateway shutting down")
	})
	defer stop()
	_ = f.Serve(ctx, func(c *front.Conn) { b.handle(ctx, c, cfg) })
	wg.Wait()
	// Report what is still folded rather than lose it.
	b.flushRefusals(b.clock.Now().Add(b.o.EventWindow))
	return nil
}

// track registers c to be closed when Run stops; it returns false (and
// closes c) when that already happened.
func (b *Broker) track(ctx context.Context, c net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || ctx.Err() != nil {
		_ = c.Close()
		return false
	}
	b.conns[c] = struct{}{}
	return true
}

func (b *Broker) untrack(c net.Conn) {
	b.mu.Lock()
	delete(b.conns, c)
	b.mu.Unlock()
}

// --- refusal events, folded per source and code ---

// frontRefused reports a connection refused by a front cap.
func (b *Broker) frontRefused(source, reason string) {
	var code, why string
	lim := b.o.ConnLimits
	switch reason {
	case front.ReasonPendingLimit:
		code, why = CodePendingLimit, fmt.Sprintf("%d vendor handshakes already in progress", lim.MaxPending)
	case front.ReasonSourceLimit:
		code, why = CodeSourceLimit, fmt.Sprintf("%d vendor connections already open from this address", lim.MaxPerSource)
	case front.ReasonConnLimit:
		code, why = CodeConnLimit, fmt.Sprintf("gateway busy: %d vendor sessions already established", lim.MaxConns)
	case front.ReasonRateLimit:
		code, why = CodeRateLimit, fmt.Sprintf("more than %d new vendor connections per second", lim.HandshakeRate)
	default:
		return
	}
	b.noteRefusal(source, Event{Time: b.clock.Now(), Kind: EvRefused, Remote: source, Code: code, Reason: why})
}

// noteRefusal emits ev (an EvRefused) if it is the first of its source and
// code in the current window; otherwise it is counted for the summary.
func (b *Broker) noteRefusal(source string, ev Event) {
	first := b.folder.Note(ev.Time, source, ev.Code)
	if first {
		ev.Count = 1
		b.log.Info("vendor connection refused", "remote", ev.Remote, "vendor", ev.Vendor, "device", ev.Device, "port", ev.Port, "code", ev.Code, "reason", ev.Reason)
		b.emit([]Event{ev})
	}
	if b.o.noted != nil {
		b.o.noted()
	}
}

// flushRefusals emits one summary per (source, code) whose window ended by
// now with refusals not yet reported.
func (b *Broker) flushRefusals(now time.Time) {
	for _, f := range b.folder.Flush(now) {
		ev := Event{Time: now, Kind: EvRefused, Remote: f.Source, Code: f.Reason, Count: f.Count,
			Reason: fmt.Sprintf("%d more like this in the last %s", f.Count, b.o.EventWindow)}
		if f.Source == "*" { // the folder ran out of keys and merged sources
			ev.Remote = ""
			ev.Reason = fmt.Sprintf("%d more like this from many sources in the last %s", f.Count, b.o.EventWindow)
		}
		b.log.Info("vendor connections refused", "remote", ev.Remote, "code", ev.Code, "count", ev.Count)
		b.emit([]Event{ev})
	}
}

// handshakeReason classifies a failed TLS handshake into one of the fixed
// Handshake* reasons, never quoting the error.
func handshakeReason(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return HandshakeTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return HandshakeClientGone
	case strings.Contains(err.Error(), "client didn't provide a certificate"):
		return HandshakeNoCertificate
	}
	return HandshakeProtocol
}

// maxEventText caps strings taken from a request (device name, reason
// header) in events and answers.
const maxEventText = 128

// printable makes s one printable ASCII line of at most n bytes.
func printable(s string, n int) string {
	cut := len(s) > n
	if cut {
		s = s[:n]
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c >= 0x7f {
			b[i] = '?'
		}
	}
	if cut {
		b = append(b, "..."...)
	}
	return string(b)
}

// respond writes a complete non-tunnel answer.
func respond(w io.Writer, status int, code, reason, grant string) {
	line := oneLine(reason)
	var sb strings.Builder
	fmt.Fprintf(&sb, "HTTP/1.1 %d %s\r\n", status, line)
	sb.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	if code != "" {
		fmt.Fprintf(&sb, "X-Wardgate-Refusal: %s\r\n", code)
	}
	if grant != "" {
		fmt.Fprintf(&sb, "X-Wardgate-Request: %s\r\n", grant)
	}
	if status == 405 {
		sb.WriteString("Allow: CONNECT\r\n")
	}
	fmt.Fprintf(&sb, "Content-Length: %d\r\nConnection: close\r\n\r\n%s\n", len(line)+1, line)
	_, _ = io.WriteString(w, sb.String())
}

// oneLine makes s safe as an HTTP reason phrase.
func oneLine(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c >= 0x7f {
			b[i] = ' '
		}
	}
	if len(b) > 400 {
		b = append(b[:397], "..."...)
	}
	return string(b)
}

func certReason(err error, leaf *x509.Certificate, now time.Time) string {
	var inv x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		if now.After(leaf.NotAfter) {
			return fmt.Sprintf("client certificate expired at %s: get a new short-lived certificate from your CA", leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		return fmt.Sprintf("client certificate (or its issuer) is not valid at %s: check the clocks and get a new certificate", now.UTC().Format(time.RFC3339))
	case errors.As(err, &ua):
		return "client certificate is not issued by a CA this gateway trusts: use the certificate the hospital's CA issued to you"
	case errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage:
		return "client certificate is not valid for TLS client authentication"
	}
	return "client certificate does not verify: " + err.Error()
}

// handle serves one vendor connection.
func (b *Broker) handle(ctx context.Context, raw *front.Conn, cfg *tls.Config) {
	if !b.track(ctx, raw) {
		return
	}
	defer b.untrack(raw)
	remote := raw.RemoteAddr().String()
	ev := Event{Kind: EvRefused, Remote: remote}
	refuse := func(w io.Writer, r *refusal) {
		if w != nil {
			respond(w, r.status, r.code, r.reason, r.grant)
		}
		if ctx.Err() != nil {
			return // shutting down: not the vendor's doing
		}
		e := ev
		e.Time, e.Code, e.Reason, e.Grant = b.clock.Now(), r.code, printable(r.reason, 400), r.grant
		b.noteRefusal(raw.Source, e)
	}
	tc := tls.Server(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		refuse(nil, &refusal{0, CodeHandshake, handshakeReason(err), ""})
		return
	}
	br := bufio.NewReaderSize(tc, 4096)
	req, err := ReadConnect(br, b.o.Limits)
	var ne net.Error
	switch {
	case errors.Is(err, ErrHeadersTooLarge):
		refuse(tc, &refusal{431, CodeHeadersTooLarge, "request headers too large", ""})
		return
	case errors.As(err, &ne) && ne.Timeout():
		refuse(nil, &refusal{0, CodeHandshake, HandshakeTimeout, ""})
		return
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed):
		b.log.Debug("vendor connection closed before a request", "remote", remote)
		return
	case errors.Is(err, ErrMalformed):
		refuse(tc, &refusal{400, CodeMalformed, err.Error(), ""})
		return
	case err != nil:
		b.log.Debug("vendor connection failed before a request", "remote", remote, "err", err)
		return
	case req.Method != "CONNECT" && !isAPI(req):
		refuse(tc, &refusal{405, CodeMethod, "method " + printable(req.Method, 16) + " not allowed: this is a CONNECT proxy (curl --proxy https://GATEWAY:PORT ... DEVICE:PORT); vendors may also GET /v1/me", ""})
		return
	}
	api := req.Method != "CONNECT"
	host := printable(req.Host, maxEventText)
	if !api {
		ev.Device, ev.Port = host, req.Port
	}
	if !raw.Establish() {
		// The front reported the refusal (CodeConnLimit).
		respond(tc, 503, CodeBusy, fmt.Sprintf("gateway busy: %d vendor sessions already established; try again later", b.o.ConnLimits.MaxConns), "")
		return
	}
	// Establish cleared the handshake deadline: keep one until the tunnel
	// starts, so a vendor that stops reading cannot hold the answer.
	_ = raw.SetDeadline(time.Now().Add(b.o.ConnLimits.HandshakeTimeout + b.o.DialTimeout))

	vid, ref := b.identify(tc, remote)
	if ref != nil {
		refuse(tc, ref)
		return
	}
	ev.Vendor = vid.URI
	if api {
		b.serveAPI(tc, vid, req)
		return
	}
	dev, ref := b.checkTarget(vid, req.Host, req.Port)
	if ref != nil {
		refuse(tc, ref)
		return
	}
	if err := b.o.Authority.CheckClock(); err != nil {
		refuse(tc, &refusal{403, CodeClockBehind, "the gateway's clock is behind trusted time: vendor access waits until it is set right; tell the device owner", ""})
		return
	}
	g, ref, evs := b.decide(vid, dev, req.Port, printable(req.Reason(), maxEventText))
	b.emit(evs)
	if ref != nil {
		b.updateLED()
		refuse(tc, ref)
		return
	}
	ev.Grant = g.ID
	dc, ref := b.openDevice(ctx, dev, req.Port, g.ID)
	if ref != nil {
		refuse(tc, ref)
		return
	}
	s, ref := b.startSession(g, vid, dev, req.Port, raw, dc, remote)
	if ref != nil {
		_ = dc.Close()
		b.releaseConsole(dev, req.Port)
		refuse(tc, ref)
		return
	}
	s.release = func() { b.releaseConsole(dev, req.Port) }
	if in, ok := injectionFor(dev, req.Port); ok {
		// The login dialogue runs before the answer: give it its time.
		_ = raw.SetDeadline(time.Now().Add(b.o.ConnLimits.HandshakeTimeout + max(in.Timeout, DefaultInjectTimeout)))
	}
	leftover, account, ref := b.injectLogin(s, dev, req.Port, vid)
	if ref != nil {
		respond(tc, ref.status, ref.code, ref.reason, ref.grant)
		s.cutAs(EndInjectFailed, ref.reason)
		b.endSession(s)
		return
	}
	_ = raw.SetDeadline(time.Time{})
	extra := ""
	if account != "" {
		extra = "X-Wardgate-Injected: " + account + "\r\n"
	}
	_, err = fmt.Fprintf(tc, "HTTP/1.1 200 Connection established\r\nX-Wardgate-Session: %s\r\nX-Wardgate-Grant: %s\r\nX-Wardgate-Grant-Expires: %s\r\n%s\r\n", s.info.ID, g.ID, g.Deadline.UTC().Format(time.RFC3339), extra)
	if err != nil {
		s.cutAs(EndClosed, "vendor went away")
	}
	if len(leftover) > 0 {
		if _, err := tc.Write(leftover); err != nil {
			s.cutAs(EndClosed, "vendor went away")
		}
		s.fromDev.Add(int64(len(leftover)))
	}
	s.relay(tc, br)
	b.endSession(s)
}

// identify verifies the peer's chain (ClientCAs with the injected clock,
// then Authorize) and the locks: the vendor identity, or a refusal.
func (b *Broker) identify(tc *tls.Conn, remote string) (VendorIdentity, *refusal) {
	now := b.clock.Now()
	chain := tc.ConnectionState().PeerCertificates
	if b.o.ClientCAs != nil {
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		_, err := chain[0].Verify(x509.VerifyOptions{Roots: b.o.ClientCAs(), Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		if err != nil {
			return VendorIdentity{}, &refusal{403, CodeBadCert, certReason(err, chain[0], now), ""}
		}
	}
	vid, why, err := b.o.Authorize(chain)
	if err != nil {
		if why == "" {
			why = "vendor identity not accepted"
		}
		b.log.Info("vendor identity refused", "remote", remote, "err", err)
		return VendorIdentity{}, &refusal{403, CodeIdentity, why, ""}
	}
	if locked, why := b.o.Authority.Locked(vid.URI); locked {
		return vid, &refusal{403, CodeLocked, why, ""}
	}
	return vid, nil
}

// checkTarget checks that vendor vid may ask for host:port (a device it
// services, a service port or the console, no tamper).
func (b *Broker) checkTarget(vid VendorIdentity, hostRaw string, port int) (Device, *refusal) {
	host := printable(hostRaw, maxEventText)
	if isIPLiteral(hostRaw) {
		return Device{}, &refusal{403, CodeIPLiteral, "target " + host + " is an address: name the device (DEVICE:PORT), vendors never reach addresses", ""}
	}
	b.mu.Lock()
	dev, known := b.devices[hostRaw]
	b.mu.Unlock()
	if !known {
		return Device{}, &refusal{404, CodeUnknownDevice, "unknown device " + host + ": check the device name with the device owner", ""}
	}
	if dev.Retired {
		why := "device " + dev.ID + " is retired (out of service)"
		if dev.ReplacedBy != "" {
			why += "; it was replaced by " + dev.ReplacedBy
		}
		return Device{}, &refusal{403, CodeRetired, why, ""}
	}
	if dev.Org != vid.Org {
		return Device{}, &refusal{403, CodeOtherDevice, fmt.Sprintf("device %s is not serviced by %s", dev.ID, vid.Org), ""}
	}
	switch {
	case port == ConsolePort && dev.Console == nil:
		return Device{}, &refusal{403, CodePortNotAllowed, fmt.Sprintf("device %s has no service console (service ports: %s)", dev.ID, portList(servicePorts(dev))), ""}
	case port == ConsolePort:
	case dev.ClinicalPort != 0 && port == dev.ClinicalPort:
		return Device{}, &refusal{403, CodeClinicalPort, fmt.Sprintf("port %d is the clinical port of %s, never open to vendors (service ports: %s)", port, dev.ID, portList(servicePorts(dev))), ""}
	case !slices.Contains(dev.Ports, port):
		return Device{}, &refusal{403, CodePortNotAllowed, fmt.Sprintf("port %d not allowed on %s (service ports: %s)", port, dev.ID, portList(servicePorts(dev))), ""}
	}
	if b.o.Authority.Tampered() {
		return Device{}, &refusal{403, CodeTamper, "gateway tamper switch tripped: vendor access disabled until the device owner clears it", ""}
	}
	return dev, nil
}

// servicePorts lists the ports a vendor may ask for: dev.Ports without the
// clinical port.
func servicePorts(dev Device) []int {
	ps := slices.DeleteFunc(slices.Clone(dev.Ports), func(p int) bool { return p == dev.ClinicalPort })
	if dev.Console != nil {
		ps = append(ps, ConsolePort)
	}
	return ps
}

func portList(ps []int) string {
	var out []string
	for _, p := range ps {
		out = append(out, PortName(p))
	}
	return strings.Join(out, ", ")
}

// session is one live tunnel.
type session struct {
	b       *Broker
	info    SessionInfo
	raw     net.Conn // vendor TCP connection (closing it cuts without TLS close_notify)
	dev     io.ReadWriteCloser
	rec     *recording.Writer
	once    sync.Once
	reason  atomic.Pointer[string]
	code    atomic.Pointer[EndReason]
	release func() // frees the console, if any (after the device side closed)
	sniffed atomic.Bool
	toDev   atomic.Int64
	fromDev atomic.Int64
}

// cut ends the session with a free-text reason (its EndReason is derived
// from the text); cutAs names the EndReason.
func (s *session) cut(reason string) { s.cutAs(classifyEnd(reason), reason) }

func (s *session) cutAs(code EndReason, reason string) {
	s.once.Do(func() {
		s.reason.Store(&reason)
		s.code.Store(&code)
		// Recorded before the vendor's connection closes, so that the vendor
		// who asks why right after sees the reason.
		i := s.info
		i.End, i.EndReason, i.EndDetail = s.b.clock.Now(), code, reason
		s.b.ended.add(i)
		_ = s.raw.Close()
		_ = s.dev.Close()
	})
}

func (s *session) snapshot() SessionInfo {
	i := s.info
	i.ToDevice, i.FromDev = s.toDev.Load(), s.fromDev.Load()
	return i
}

// storageFull is shown to a vendor refused because the recording store is
// full.
const storageFull = "the gateway's recording store is full; recordings are removed once central has their session-end events; the clinical path is unaffected"

// startSession registers the session (so a cut reaches it from now on) and
// creates its recording outside the broker's lock.
func (b *Broker) startSession(g Grant, vid VendorIdentity, dev Device, port int, raw net.Conn, dc io.ReadWriteCloser, remote string) (*session, *refusal) {
	b.mu.Lock()
	cur, ok := b.grants[g.ID]
	now := b.clock.Now()
	switch {
	case b.closed:
		b.mu.Unlock()
		return nil, &refusal{503, CodeUnreachable, "gateway shutting down", g.ID}
	case b.o.Authority.Tampered():
		b.mu.Unlock()
		return nil, &refusal{403, CodeTamper, "gateway tamper switch tripped: vendor access disabled until the device owner clears it", g.ID}
	case !ok || cur.State != StateActive || !now.Before(cur.Deadline):
		b.mu.Unlock()
		return nil, &refusal{403, CodeRevoked, "grant " + g.ID + " ended while connecting", g.ID}
	}
	// The authority notifies its subscribers after a lock or the latch is
	// in force, and onAuthority takes b.mu: a session registered here after
	// these checks is cut by it.
	if locked, why := b.o.Authority.Locked(vid.URI); locked {
		b.mu.Unlock()
		return nil, &refusal{403, CodeLocked, why, g.ID}
	}
	cur.Sessions++
	b.persistGrantLocked(cur)
	id := fmt.Sprintf("%s-%d", cur.ID, cur.Sessions)
	s := &session{b: b, raw: raw, dev: dc, info: SessionInfo{
		ID: id, Grant: cur.ID, Vendor: vid.URI, Device: dev.ID, Port: port, Remote: remote, Start: now,
		Recording: b.o.Recordings.Path(id),
	}}
	b.sessions[id] = s
	var approvedBy []string
	for _, ap := range cur.Approvals {
		approvedBy = append(approvedBy, ap.Actor.String())
	}
	b.mu.Unlock()

	rec, err := b.o.Recordings.Create(id, recording.Header{Session: id, Grant: cur.ID, Vendor: vid.URI, Device: dev.ID, Port: port, Start: now,
		ApprovedBy: approvedBy})
	if err != nil {
		b.mu.Lock()
		delete(b.sessions, id)
		b.mu.Unlock()
		if errors.Is(err, recording.ErrFull) {
			b.log.Warn("vendor session refused: recording store full", "grant", g.ID, "err", err)
			return nil, &refusal{503, CodeStorageFull, storageFull, g.ID}
		}
		b.log.Error("cannot create session recording", "session", id, "err", err)
		return nil, &refusal{503, CodeStorageFull, "cannot record the session on the gateway; no unrecorded access is allowed", g.ID}
	}
	s.rec = rec
	b.log.Info("vendor session started", "session", id, "vendor", vid.URI, "device", dev.ID, "port", port)
	b.emit([]Event{{Time: now, Kind: EvSessionStart, Grant: cur.ID, Session: id, Vendor: vid.URI, Device: dev.ID, Port: port, Remote: remote, Until: g.Deadline, Recording: filepath.Base(s.info.Recording)}})
	b.updateLED()
	return s, nil
}

// relay copies both ways, recording every chunk, until both directions end
// or the session is cut.
func (s *session) relay(vendor *tls.Conn, vr io.Reader) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.pipe(vr, s.dev, recording.ToDevice, &s.toDev)
	}()
	go func() {
		defer wg.Done()
		s.pipe(s.dev, vendor, recording.FromDevice, &s.fromDev)
	}()
	wg.Wait()
}

type closeWriter interface{ CloseWrite() error }

func (s *session) pipe(src io.Reader, dst io.Writer, dir recording.Direction, n *atomic.Int64) {
	buf := make([]byte, 32<<10)
	b := s.b
	for {
		k, err := src.Read(buf)
		if k > 0 && dir == recording.ToDevice && s.sniffed.CompareAndSwap(false, true) {
			s.noteEncrypted(buf[:k])
		}
		if k > 0 {
			if rerr := s.rec.Write(dir, b.clock.Now(), buf[:k]); rerr != nil {
				b.log.Error("session recording failed: cutting session", "session", s.info.ID, "err", rerr)
				s.cutAs(EndRecordingFailed, "recording failed")
				return
			}
			if _, werr := dst.Write(buf[:k]); werr != nil {
				s.cutAs(EndWriteFailed, "write failed")
				return
			}
			n.Add(int64(k))
		}
		if err == io.EOF {
			if cw, ok := dst.(closeWriter); ok && cw.CloseWrite() == nil {
				return
			}
			s.cut("closed")
			return
		}
		if err != nil {
			s.cut("closed")
			return
		}
	}
}

// endSession closes the recording and reports the session's end. The
// publisher of the event calls Recordings.Ended.
func (b *Broker) endSession(s *session) {
	s.cutAs(EndClosed, "closed")
	if s.release != nil {
		s.release()
	}
	reason, code := "closed", EndClosed
	if r := s.reason.Load(); r != nil {
		reason = *r
	}
	if c := s.code.Load(); c != nil {
		code = *c
	}
	now := b.clock.Now()
	hash, err := s.rec.Close(now, reason)
	if err != nil {
		b.log.Error("closing session recording failed", "session", s.info.ID, "err", err)
	}
	b.mu.Lock()
	delete(b.sessions, s.info.ID)
	b.mu.Unlock()
	info := s.snapshot()
	ended := info
	ended.End, ended.EndReason, ended.EndDetail = now, code, reason
	b.ended.add(ended)
	b.log.Info("vendor session ended", "session", info.ID, "reason", reason, "to_device", info.ToDevice, "from_device", info.FromDev)
	b.emit([]Event{{Time: now, Kind: EvSessionEnd, Grant: info.Grant, Session: info.ID, Vendor: info.Vendor, Device: info.Device, Port: info.Port,
		Remote: info.Remote, ToDevice: info.ToDevice, FromDev: info.FromDev, Duration: now.Sub(info.Start), Hash: hex.EncodeToString(hash),
		Reason: reason, End: code, Recording: filepath.Base(info.Recording)}})
	b.updateLED()
}
