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
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardgate/wardgate/gateway/access/recording"
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

// TLSConfig returns the server TLS configuration of the vendor listener. The
// client certificate is requested and then verified by the broker (against
// ClientCAs with the injected clock, then Authorize), so that a refused
// vendor gets a 403 with a reason instead of a bare handshake failure.
func (b *Broker) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: b.o.GetCertificate,
		ClientAuth:     tls.RequireAnyClientCert,
		NextProtos:     []string{"http/1.1"},
		Time:           b.clock.Now,
	}
}

// Run serves the vendor channel on ln (a plain TCP listener: TLS happens
// here) until ctx is done or ln fails, then cuts every session and returns
// after all its goroutines exited.
func (b *Broker) Run(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cfg := b.TLSConfig()
	stop := make(chan struct{})
	var lwg sync.WaitGroup
	lwg.Add(1)
	go func() {
		defer lwg.Done()
		select {
		case <-ctx.Done():
		case <-stop:
		}
		_ = ln.Close()
	}()
	var err error
	for {
		var c net.Conn
		c, err = ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				err = nil
			} else {
				err = fmt.Errorf("vendor listener: %w", err)
			}
			break
		}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			_ = c.Close()
			break
		}
		b.conns[c] = struct{}{}
		b.wg.Add(1)
		b.mu.Unlock()
		go func() {
			defer b.wg.Done()
			b.handle(ctx, c, cfg)
			b.mu.Lock()
			delete(b.conns, c)
			b.mu.Unlock()
		}()
	}
	close(stop)
	lwg.Wait()
	b.mu.Lock()
	cut := b.allSessionsLocked()
	for c := range b.conns {
		_ = c.Close()
	}
	b.mu.Unlock()
	cutAll(cut, "gateway shutting down")
	b.wg.Wait()
	return err
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
func (b *Broker) handle(ctx context.Context, raw net.Conn, cfg *tls.Config) {
	defer raw.Close()
	remote := raw.RemoteAddr().String()
	ev := Event{Kind: EvRefused, Remote: remote}
	refuse := func(w io.Writer, r *refusal) {
		if w != nil {
			respond(w, r.status, r.code, r.reason, r.grant)
		}
		e := ev
		e.Time, e.Code, e.Reason, e.Grant = b.clock.Now(), r.code, r.reason, r.grant
		b.log.Info("vendor connection refused", "remote", remote, "vendor", e.Vendor, "device", e.Device, "port", e.Port, "code", r.code, "reason", r.reason)
		b.emit([]Event{e})
	}
	_ = raw.SetDeadline(time.Now().Add(b.o.HandshakeTimeout))
	tc := tls.Server(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		refuse(nil, &refusal{0, CodeHandshake, "TLS handshake failed: " + err.Error(), ""})
		return
	}
	br := bufio.NewReaderSize(tc, 4096)
	req, err := ReadConnect(br, b.o.Limits)
	switch {
	case errors.Is(err, ErrHeadersTooLarge):
		refuse(tc, &refusal{431, CodeHeadersTooLarge, "request headers too large", ""})
		return
	case errors.Is(err, ErrMalformed):
		refuse(tc, &refusal{400, CodeMalformed, err.Error(), ""})
		return
	case err != nil:
		b.log.Debug("vendor connection closed before a request", "remote", remote, "err", err)
		return
	case req.Method != "CONNECT":
		refuse(tc, &refusal{405, CodeMethod, "method " + oneLine(req.Method) + " not allowed: this is a CONNECT proxy (curl --proxy https://GATEWAY:PORT ... DEVICE:PORT)", ""})
		return
	}
	ev.Device, ev.Port = req.Host, req.Port
	now := b.clock.Now()

	chain := tc.ConnectionState().PeerCertificates
	if b.o.ClientCAs != nil {
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		_, err := chain[0].Verify(x509.VerifyOptions{Roots: b.o.ClientCAs(), Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		if err != nil {
			refuse(tc, &refusal{403, CodeBadCert, certReason(err, chain[0], now), ""})
			return
		}
	}
	vid, why, err := b.o.Authorize(chain)
	if err != nil {
		if why == "" {
			why = "vendor identity not accepted"
		}
		b.log.Info("vendor identity refused", "remote", remote, "err", err)
		refuse(tc, &refusal{403, CodeIdentity, why, ""})
		return
	}
	ev.Vendor = vid.URI
	if locked, why := b.IsLocked(vid.URI); locked {
		refuse(tc, &refusal{403, CodeLocked, why, ""})
		return
	}
	if isIPLiteral(req.Host) {
		refuse(tc, &refusal{403, CodeIPLiteral, "target " + req.Host + " is an address: name the device (DEVICE:PORT), vendors never reach addresses", ""})
		return
	}
	b.mu.Lock()
	dev, known := b.devices[req.Host]
	tamper := b.tamper
	b.mu.Unlock()
	if !known {
		refuse(tc, &refusal{404, CodeUnknownDevice, "unknown device " + req.Host + ": check the device name with the device owner", ""})
		return
	}
	if dev.Org != vid.Org {
		refuse(tc, &refusal{403, CodeOtherDevice, fmt.Sprintf("device %s is not serviced by %s", dev.ID, vid.Org), ""})
		return
	}
	if dev.ClinicalPort != 0 && req.Port == dev.ClinicalPort && !slices.Contains(dev.Ports, req.Port) {
		refuse(tc, &refusal{403, CodeClinicalPort, fmt.Sprintf("port %d is the clinical port of %s, not a service port (service ports: %s)", req.Port, dev.ID, portList(dev.Ports)), ""})
		return
	}
	if !slices.Contains(dev.Ports, req.Port) {
		refuse(tc, &refusal{403, CodePortNotAllowed, fmt.Sprintf("port %d not allowed on %s (service ports: %s)", req.Port, dev.ID, portList(dev.Ports)), ""})
		return
	}
	if tamper {
		refuse(tc, &refusal{403, CodeTamper, "gateway tamper switch tripped: vendor access disabled until the device owner clears it", ""})
		return
	}
	g, ref, evs := b.decide(vid, dev, req.Port, oneLine(req.Reason()))
	b.emit(evs)
	if ref != nil {
		b.updateLED()
		refuse(tc, ref)
		return
	}
	ev.Grant = g.ID
	b.pruneRecordings()
	if b.recBytes.Load() >= b.o.RecordingMaxBytes {
		refuse(tc, &refusal{503, CodeStorageFull, "session recording storage full: the gateway waits for central to acknowledge older recordings", g.ID})
		return
	}
	dctx, cancel := context.WithTimeout(ctx, b.o.DialTimeout)
	dc, err := b.o.Dial(dctx, "tcp", net.JoinHostPort(dev.Host, strconv.Itoa(req.Port)))
	cancel()
	if err != nil {
		b.log.Warn("device dial failed", "device", dev.ID, "port", req.Port, "err", err)
		refuse(tc, &refusal{502, CodeUnreachable, fmt.Sprintf("device %s port %d does not answer", dev.ID, req.Port), g.ID})
		return
	}
	s, ref := b.startSession(g, vid, dev, req.Port, raw, dc, remote)
	if ref != nil {
		_ = dc.Close()
		refuse(tc, ref)
		return
	}
	_ = raw.SetDeadline(time.Time{})
	_, err = fmt.Fprintf(tc, "HTTP/1.1 200 Connection established\r\nX-Wardgate-Session: %s\r\nX-Wardgate-Grant-Expires: %s\r\n\r\n", s.info.ID, g.Deadline.UTC().Format(time.RFC3339))
	if err != nil {
		s.cut("vendor went away")
	}
	s.relay(tc, br)
	b.endSession(s)
}

func portList(ps []int) string {
	var out []string
	for _, p := range ps {
		out = append(out, strconv.Itoa(p))
	}
	return strings.Join(out, ", ")
}

// session is one live tunnel.
type session struct {
	b       *Broker
	info    SessionInfo
	raw     net.Conn // vendor TCP connection (closing it cuts without TLS close_notify)
	dev     net.Conn
	rec     *recording.Writer
	once    sync.Once
	reason  atomic.Pointer[string]
	toDev   atomic.Int64
	fromDev atomic.Int64
}

func (s *session) cut(reason string) {
	s.once.Do(func() {
		s.reason.Store(&reason)
		_ = s.raw.Close()
		_ = s.dev.Close()
	})
}

func (s *session) snapshot() SessionInfo {
	i := s.info
	i.ToDevice, i.FromDev = s.toDev.Load(), s.fromDev.Load()
	return i
}

func (b *Broker) startSession(g Grant, vid VendorIdentity, dev Device, port int, raw, dc net.Conn, remote string) (*session, *refusal) {
	b.mu.Lock()
	cur, ok := b.grants[g.ID]
	now := b.clock.Now()
	switch {
	case b.closed:
		b.mu.Unlock()
		return nil, &refusal{503, CodeUnreachable, "gateway shutting down", g.ID}
	case b.tamper:
		b.mu.Unlock()
		return nil, &refusal{403, CodeTamper, "gateway tamper switch tripped: vendor access disabled until the device owner clears it", g.ID}
	case !ok || cur.State != StateActive || !now.Before(cur.Deadline):
		b.mu.Unlock()
		return nil, &refusal{403, CodeRevoked, "grant " + g.ID + " ended while connecting", g.ID}
	}
	if locked, why := b.isLockedLocked(vid.URI, now); locked {
		b.mu.Unlock()
		return nil, &refusal{403, CodeLocked, why, g.ID}
	}
	cur.Sessions++
	b.persistGrantLocked(cur)
	id := fmt.Sprintf("%s-%d", cur.ID, cur.Sessions)
	file := id + ".cbor"
	s := &session{b: b, raw: raw, dev: dc, info: SessionInfo{
		ID: id, Grant: cur.ID, Vendor: vid.URI, Device: dev.ID, Port: port, Remote: remote, Start: now,
		Recording: filepath.Join(b.o.RecordingDir, file),
	}}
	rec, err := recording.Create(s.info.Recording, recording.Header{Session: id, Grant: cur.ID, Vendor: vid.URI, Device: dev.ID, Port: port, Start: now},
		func(n int64) { b.recBytes.Add(n) })
	if err != nil {
		b.mu.Unlock()
		b.log.Error("cannot create session recording", "session", id, "err", err)
		return nil, &refusal{503, CodeStorageFull, "cannot record the session on the gateway; no unrecorded access is allowed", g.ID}
	}
	s.rec = rec
	rr := &recordingRec{Session: id, File: file, Start: now}
	b.recs[id] = rr
	if err := b.o.Store.put(bucketRecordings, id, rr); err != nil {
		b.log.Error("persist recording index failed", "err", err)
	}
	b.sessions[id] = s
	b.mu.Unlock()
	b.log.Info("vendor session started", "session", id, "vendor", vid.URI, "device", dev.ID, "port", port)
	b.emit([]Event{{Time: now, Kind: EvSessionStart, Grant: cur.ID, Session: id, Vendor: vid.URI, Device: dev.ID, Port: port, Remote: remote, Until: g.Deadline, Recording: file}})
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

func (s *session) pipe(src io.Reader, dst net.Conn, dir recording.Direction, n *atomic.Int64) {
	buf := make([]byte, 32<<10)
	b := s.b
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if rerr := s.rec.Write(dir, b.clock.Now(), buf[:k]); rerr != nil {
				b.log.Error("session recording failed: cutting session", "session", s.info.ID, "err", rerr)
				s.cut("recording failed")
				return
			}
			if b.recBytes.Load() > b.o.RecordingMaxBytes {
				b.pruneRecordings()
				if b.recBytes.Load() > b.o.RecordingMaxBytes {
					s.cut("recording storage full")
					return
				}
			}
			if _, werr := dst.Write(buf[:k]); werr != nil {
				s.cut("write failed")
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

func (b *Broker) endSession(s *session) {
	s.cut("closed")
	reason := "closed"
	if r := s.reason.Load(); r != nil {
		reason = *r
	}
	now := b.clock.Now()
	hash, err := s.rec.Close(now, reason)
	if err != nil {
		b.log.Error("closing session recording failed", "session", s.info.ID, "err", err)
	}
	b.mu.Lock()
	delete(b.sessions, s.info.ID)
	if rr, ok := b.recs[s.info.ID]; ok {
		rr.Ended, rr.Hash, rr.Size = now, hex.EncodeToString(hash), s.rec.Size()
		if err := b.o.Store.put(bucketRecordings, rr.Session, rr); err != nil {
			b.log.Error("persist recording index failed", "err", err)
		}
	}
	b.mu.Unlock()
	info := s.snapshot()
	b.log.Info("vendor session ended", "session", info.ID, "reason", reason, "to_device", info.ToDevice, "from_device", info.FromDev)
	b.emit([]Event{{Time: now, Kind: EvSessionEnd, Grant: info.Grant, Session: info.ID, Vendor: info.Vendor, Device: info.Device, Port: info.Port,
		Remote: info.Remote, ToDevice: info.ToDevice, FromDev: info.FromDev, Duration: now.Sub(info.Start), Hash: hex.EncodeToString(hash),
		Reason: reason, Recording: filepath.Base(info.Recording)}})
	b.updateLED()
}

// AckRecording marks the session-end event of sessionID as acknowledged by
// central, which makes its recording eligible for removal when the disk cap
// is reached (oldest first). ErrNotFound if unknown.
func (b *Broker) AckRecording(sessionID string) error {
	b.mu.Lock()
	rr, ok := b.recs[normID(sessionID)]
	if !ok {
		b.mu.Unlock()
		return fmt.Errorf("recording %s: %w", sessionID, ErrNotFound)
	}
	rr.Acked = true
	err := b.o.Store.put(bucketRecordings, rr.Session, rr)
	b.mu.Unlock()
	b.pruneRecordings()
	return err
}

// RecordingDir returns where session recordings are written.
func (b *Broker) RecordingDir() string { return b.o.RecordingDir }

// pruneRecordings removes acknowledged, ended recordings, oldest first, while
// disk use exceeds the cap.
func (b *Broker) pruneRecordings() {
	if b.recBytes.Load() < b.o.RecordingMaxBytes {
		return
	}
	b.mu.Lock()
	var cand []*recordingRec
	for _, r := range b.recs {
		if r.Acked && !r.Ended.IsZero() {
			cand = append(cand, r)
		}
	}
	sort.Slice(cand, func(i, j int) bool { return cand[i].Start.Before(cand[j].Start) })
	var evs []Event
	for _, r := range cand {
		if b.recBytes.Load() < b.o.RecordingMaxBytes {
			break
		}
		if err := os.Remove(filepath.Join(b.o.RecordingDir, r.File)); err != nil && !errors.Is(err, os.ErrNotExist) {
			b.log.Error("removing recording failed", "file", r.File, "err", err)
			continue
		}
		b.recBytes.Add(-r.Size)
		delete(b.recs, r.Session)
		b.deleteLocked(bucketRecordings, r.Session)
		evs = append(evs, Event{Time: b.clock.Now(), Kind: EvRecordingPrune, Session: r.Session, Hash: r.Hash, Recording: r.File})
	}
	b.mu.Unlock()
	b.emit(evs)
}
