package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/hal"
)

// Device is one device's clinical front.
type Device struct {
	ID     string
	Listen string // HOST:PORT
	// Exactly one of TCP (HOST:PORT on the device segment) and Serial.
	TCP    string
	Serial *hal.SerialConfig
	// Limits; zero values take the defaults noted.
	MaxConns         int           // concurrent connections to the device (64)
	MaxPerSource     int           // concurrent connections from one address (16)
	HandshakeTimeout time.Duration // 10s
	IdleTimeout      time.Duration // 30m
	MaxLifetime      time.Duration // 24h
	// Policy is an opaque summary of who may connect; when it changes, the
	// device is restarted so that no connection outlives its permission.
	Policy string
}

func (d *Device) defaults() {
	if d.MaxConns <= 0 {
		d.MaxConns = 64
	}
	if d.MaxPerSource <= 0 {
		d.MaxPerSource = 16
	}
	if d.HandshakeTimeout <= 0 {
		d.HandshakeTimeout = 10 * time.Second
	}
	if d.IdleTimeout <= 0 {
		d.IdleTimeout = 30 * time.Minute
	}
	if d.MaxLifetime <= 0 {
		d.MaxLifetime = 24 * time.Hour
	}
}

// Options configure a Server. GetCertificate and Authorize are required.
type Options struct {
	// GetCertificate returns the gateway's current certificate.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ClientCAs returns the trust bundle, sent to clients as the acceptable
	// CA names (nil: none sent). Verification itself is Authorize's.
	ClientCAs func() *x509.CertPool
	// Authorize decides on a client's chain (leaf first) for a device. It
	// returns the identity (a URI) and, on refusal, a short reason code.
	Authorize func(device string, chain []*x509.Certificate) (identity, reason string, err error)
	// Listen opens device listeners (default net.Listen).
	Listen func(network, addr string) (net.Listener, error)
	// Dial reaches TCP devices (default net.Dialer with a 10 s timeout).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// OpenSerial opens serial links (default hal.OpenSerial).
	OpenSerial func(hal.SerialConfig) (io.ReadWriteCloser, error)
	// Events receives events synchronously; keep it short.
	Events func(Event)
	// EventEvery rate-limits repeated failure events per device and
	// reason (default 10s); the suppressed count goes with the next one.
	EventEvery time.Duration
	Clock      clockwork.Clock
	Logger     *slog.Logger
}

// Event kinds.
const (
	EvAuthFailure      = "clinical.auth_failure"      // identity, remote, reason
	EvHandshakeFailure = "clinical.handshake_failure" // remote, reason
	EvLimit            = "clinical.limit"             // remote, limit
	EvLinkDown         = "clinical.link_down"         // error
	EvLinkUp           = "clinical.link_up"
	EvCut              = "clinical.session_cut" // identity, remote, reason
	EvBusy             = "clinical.link_busy"   // serial link owned by another client
)

// Event is something operators and central should know. Never payload.
type Event struct {
	Time   time.Time
	Kind   string
	Device string
	Attrs  map[string]string
}

// Server is the clinical path of every device.
type Server struct {
	o      Options
	log    *slog.Logger
	clock  clockwork.Clock
	tlsCfg *tls.Config

	mu       sync.Mutex
	devices  map[string]*device
	draining bool
	wg       sync.WaitGroup

	limMu sync.Mutex
	lim   map[string]*limited
}

type limited struct {
	last       time.Time
	suppressed int
}

// New returns a Server with no devices; Update adds them.
func New(o Options) (*Server, error) {
	if o.GetCertificate == nil || o.Authorize == nil {
		return nil, errors.New("relay: GetCertificate and Authorize are required")
	}
	if o.Listen == nil {
		o.Listen = net.Listen
	}
	if o.Dial == nil {
		d := &net.Dialer{Timeout: 10 * time.Second}
		o.Dial = d.DialContext
	}
	if o.OpenSerial == nil {
		o.OpenSerial = func(c hal.SerialConfig) (io.ReadWriteCloser, error) { return hal.OpenSerial(c) }
	}
	if o.Events == nil {
		o.Events = func(Event) {}
	}
	if o.EventEvery <= 0 {
		o.EventEvery = 10 * time.Second
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{o: o, log: o.Logger.With("component", "clinical"), clock: o.Clock, devices: map[string]*device{}, lim: map[string]*limited{}}
	s.tlsCfg = serverTLS(o)
	return s, nil
}

// TLS: 1.3 preferred, 1.2 minimum, ECDHE + AEAD only, modern curves.
var (
	suites12 = []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
	curves = []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384}
)

type ctxKey struct{}

// connAuth carries the outcome of authorization from the handshake to the
// connection that performed it.
type connAuth struct {
	device   string
	identity string
	reason   string
}

func serverTLS(o Options) *tls.Config {
	base := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     suites12,
		CurvePreferences: curves,
		ClientAuth:       tls.RequireAnyClientCert,
		GetCertificate:   o.GetCertificate,
		Time:             o.Clock.Now,
	}
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		auth, _ := hello.Context().Value(ctxKey{}).(*connAuth)
		c := base.Clone()
		c.GetConfigForClient = nil
		if o.ClientCAs != nil {
			c.ClientCAs = o.ClientCAs()
		}
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if auth == nil {
				return errors.New("relay: connection without device context")
			}
			id, reason, err := o.Authorize(auth.device, cs.PeerCertificates)
			auth.identity = id
			if err != nil {
				if reason == "" {
					reason = "refused"
				}
				auth.reason = reason
				return err
			}
			return nil
		}
		return c, nil
	}
	return base
}

// Update makes the served devices those of devs: unchanged devices keep
// their listener and connections; changed ones are restarted; removed ones
// are stopped (their connections cut). New listeners are opened before
// anything is stopped: if one cannot be opened, nothing changes.
func (s *Server) Update(devs []Device) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return errors.New("relay: shutting down")
	}
	want := map[string]Device{}
	for _, d := range devs {
		d.defaults()
		want[d.ID] = d
	}
	type start struct {
		d Device
		l net.Listener
	}
	var starts []start
	for id, d := range want {
		if cur, ok := s.devices[id]; ok && reflect.DeepEqual(cur.cfg, d) {
			continue
		}
		var l net.Listener
		var err error
		if cur, ok := s.devices[id]; ok && cur.cfg.Listen == d.Listen {
			l = nil // reuse after stopping the old one, below
		} else if l, err = s.o.Listen("tcp", d.Listen); err != nil {
			for _, st := range starts {
				if st.l != nil {
					st.l.Close()
				}
			}
			return fmt.Errorf("device %s: listen %s: %w", id, d.Listen, err)
		}
		starts = append(starts, start{d, l})
	}
	for id, cur := range s.devices {
		if d, ok := want[id]; !ok || !reflect.DeepEqual(cur.cfg, d) {
			cur.stop("device configuration changed")
			delete(s.devices, id)
		}
	}
	for _, st := range starts {
		l := st.l
		if l == nil {
			var err error
			if l, err = s.o.Listen("tcp", st.d.Listen); err != nil {
				s.log.Error("listener could not be reopened", "device", st.d.ID, "err", err)
				continue
			}
		}
		dev := newDevice(s, st.d, l)
		s.devices[st.d.ID] = dev
		s.wg.Add(1)
		go func() { defer s.wg.Done(); dev.serve() }()
	}
	return nil
}

// CutIdentity cuts every live connection of identity (an exact URI, or a
// prefix ending in "*") on every device and returns how many were cut.
func (s *Server) CutIdentity(identity, reason string) int {
	s.mu.Lock()
	devs := make([]*device, 0, len(s.devices))
	for _, d := range s.devices {
		devs = append(devs, d)
	}
	s.mu.Unlock()
	n := 0
	for _, d := range devs {
		n += d.cut(identity, reason)
	}
	return n
}

// Shutdown stops accepting, lets live connections finish until ctx ends,
// then cuts them; it returns after every goroutine exited.
func (s *Server) Shutdown(ctx context.Context) {
	s.mu.Lock()
	s.draining = true
	devs := make([]*device, 0, len(s.devices))
	for _, d := range s.devices {
		devs = append(devs, d)
		d.closeListener()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	for _, d := range devs {
		d.stop("gateway shutting down")
	}
	<-done
}

// emit sends an event; failures (rateKey != "") are rate-limited.
func (s *Server) emit(kind, device, rateKey string, attrs map[string]string) {
	now := s.clock.Now()
	if rateKey != "" {
		key := device + "|" + kind + "|" + rateKey
		s.limMu.Lock()
		l := s.lim[key]
		if l == nil {
			l = &limited{}
			s.lim[key] = l
		}
		if !l.last.IsZero() && now.Sub(l.last) < s.o.EventEvery {
			l.suppressed++
			s.limMu.Unlock()
			return
		}
		if l.suppressed > 0 {
			attrs["suppressed"] = fmt.Sprint(l.suppressed)
		}
		l.last, l.suppressed = now, 0
		if len(s.lim) > 4096 { // bound memory under floods of distinct keys
			s.lim = map[string]*limited{key: l}
		}
		s.limMu.Unlock()
	}
	s.o.Events(Event{Time: now, Kind: kind, Device: device, Attrs: attrs})
}

// Snapshot returns every device's state, sorted by id.
func (s *Server) Snapshot() []DeviceSnapshot {
	s.mu.Lock()
	out := make([]DeviceSnapshot, 0, len(s.devices))
	for _, d := range s.devices {
		out = append(out, d.snapshot())
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// DeviceSnapshot is one device's state for `wardgate status` and metrics.
type DeviceSnapshot struct {
	ID                string            `json:"id"`
	Listen            string            `json:"listen"`
	Link              string            `json:"link"` // tcp or serial
	Target            string            `json:"target"`
	LinkUp            *bool             `json:"link_up"` // nil until first used
	Connections       uint64            `json:"connections"`
	ToDevice          uint64            `json:"to_device_bytes"`
	FromDevice        uint64            `json:"from_device_bytes"`
	HandshakeFailures map[string]uint64 `json:"handshake_failures"`
	AuthFailures      uint64            `json:"auth_failures"`
	Refused           uint64            `json:"refused_by_limits"`
	Live              []ConnInfo        `json:"live"`
}

// ConnInfo is one live connection.
type ConnInfo struct {
	Identity   string    `json:"identity"`
	Remote     string    `json:"remote"`
	Since      time.Time `json:"since"`
	ToDevice   uint64    `json:"to_device_bytes"`
	FromDevice uint64    `json:"from_device_bytes"`
}

// counters are per device, updated lock-free on the data path.
type counters struct {
	conns, toDev, fromDev, authFail, refused atomic.Uint64
	hsMu                                     sync.Mutex
	hsFail                                   map[string]uint64
}
