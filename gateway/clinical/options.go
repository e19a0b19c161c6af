package clinical

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/gateway/authority"
	"github.com/wardgate/wardgate/hal"
)

// Defaults applied to zero fields of DeviceOptions and Options.
const (
	DefaultMaxConns         = 64
	DefaultMaxPerSource     = 16
	DefaultMaxPending       = 256
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultIdleTimeout      = 30 * time.Minute
	DefaultMaxLifetime      = 24 * time.Hour
	DefaultDialTimeout      = 5 * time.Second
	DefaultEventWindow      = 10 * time.Second
	DefaultSweepInterval    = 250 * time.Millisecond
	DefaultSerialBackoffMin = 250 * time.Millisecond
	DefaultSerialBackoffMax = 10 * time.Second
)

// Options are the server's hooks, shared by all devices.
type Options struct {
	// GetCertificate returns the gateway's current certificate (required).
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ClientCAs returns the current trust bundle (required). It is read at
	// every handshake, so new roots apply to new handshakes; it names the
	// acceptable CAs to clients. Chain verification itself is Authorize's.
	ClientCAs func() *x509.CertPool
	// Authorize decides whether the peer chain (leaf first) may use the
	// device (required). It verifies the chain against the trust bundle,
	// the identity against the device's allow patterns, the certificate's
	// lifetime and locks. On refusal it returns a short reason code (e.g.
	// not_allowed, expired) and the identity when it is known. It runs
	// inside the handshake, also on resumed handshakes.
	Authorize func(deviceID string, chain []*x509.Certificate) (identity string, reason string, err error)
	// Locks is the gateway's lock authority: live sessions whose identity
	// a new lock covers are cut at once (reason locked), and a session
	// whose identity was locked during its handshake is refused. Nil: no
	// locks beyond what Authorize checks.
	Locks Locks
	// Listen opens a device's listener when DeviceOptions.Listener is nil;
	// nil means net.Listen.
	Listen func(network, addr string) (net.Listener, error)
	// Dial reaches TCP links; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// OpenSerial opens serial links; nil means OpenSerialPort.
	OpenSerial func(hal.SerialConfig) (io.ReadWriteCloser, error)
	// Clock drives idle and lifetime limits, backoff and event windows;
	// nil means the real clock.
	Clock clockwork.Clock
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// Events receives events (nil: none). Called synchronously; must not
	// block for long.
	Events func(Event)
	// EventWindow: at most one event per device, kind and reason in each
	// window; the next one carries the count of those folded in. Session
	// events are keyed by identity too. Default 10s.
	EventWindow time.Duration
	// SweepInterval is how often idle and lifetime limits are checked and
	// folded events flushed. Default 250ms.
	SweepInterval time.Duration
	// SerialBackoffMin and SerialBackoffMax bound the delay between attempts
	// to reopen a missing serial port. Defaults 250ms and 10s.
	SerialBackoffMin, SerialBackoffMax time.Duration
}

// Locks is what the relay needs of the lock authority
// (*authority.Authority implements it).
type Locks interface {
	Locked(identity string) (bool, string)
	Subscribe(fn func(authority.Change)) (cancel func())
}

// DeviceOptions configure one device's listener and link. Exactly one of TCP
// and Serial is set.
type DeviceOptions struct {
	ID string
	// Listen is the listener address (e.g. ":7001"); ignored when Listener
	// is set. The server then owns and closes Listener.
	Listen   string
	Listener net.Listener
	// TCP is the device's HOST:PORT.
	TCP string
	// Serial describes an RS-232 link.
	Serial *hal.SerialConfig
	// Allow and MaxCertLifetime are the device's peer policy. Authorize
	// enforces them; here they only tell Update that the policy changed
	// (which restarts the device) and appear in Snapshot.
	Allow           []string
	MaxCertLifetime time.Duration
	// MaxConns caps live sessions (default 64), MaxPerSource the
	// connections (handshaking or live) from one IP address (default 16),
	// MaxPending the handshakes in progress (default 256). Negative means
	// unlimited.
	MaxConns, MaxPerSource, MaxPending int
	// HandshakeTimeout (default 10s), IdleTimeout (no bytes either way;
	// default 30m), MaxLifetime (default 24h) and DialTimeout (TCP links;
	// default 5s) bound each connection.
	HandshakeTimeout, IdleTimeout, MaxLifetime, DialTimeout time.Duration
}

func (d DeviceOptions) withDefaults() DeviceOptions {
	def := func(v *int, x int) {
		if *v == 0 {
			*v = x
		}
	}
	def(&d.MaxConns, DefaultMaxConns)
	def(&d.MaxPerSource, DefaultMaxPerSource)
	def(&d.MaxPending, DefaultMaxPending)
	defd := func(v *time.Duration, x time.Duration) {
		if *v <= 0 {
			*v = x
		}
	}
	defd(&d.HandshakeTimeout, DefaultHandshakeTimeout)
	defd(&d.IdleTimeout, DefaultIdleTimeout)
	defd(&d.MaxLifetime, DefaultMaxLifetime)
	defd(&d.DialTimeout, DefaultDialTimeout)
	if d.Serial != nil {
		s := d.Serial.WithDefaults()
		d.Serial = &s
	}
	return d
}

func (d DeviceOptions) validate() error {
	var errs []error
	p := "device " + d.ID + ": "
	if d.ID == "" {
		errs = append(errs, errors.New("device id is empty"))
	}
	if d.Listener == nil && d.Listen == "" {
		errs = append(errs, errors.New(p+"clinical.listen is empty: give the address clinical systems connect to, e.g. \":7001\""))
	}
	switch {
	case d.TCP != "" && d.Serial != nil:
		errs = append(errs, errors.New(p+"link has both tcp and serial: keep one"))
	case d.TCP == "" && d.Serial == nil:
		errs = append(errs, errors.New(p+"link is missing: give link.tcp HOST:PORT or link.serial"))
	case d.TCP != "":
		if _, _, err := net.SplitHostPort(d.TCP); err != nil {
			errs = append(errs, fmt.Errorf(p+"link.tcp %q is not HOST:PORT: %w", d.TCP, err))
		}
	default:
		if err := d.Serial.Validate(); err != nil {
			errs = append(errs, fmt.Errorf(p+"link.%w", err))
		}
	}
	return errors.Join(errs...)
}

// same tells whether two (defaulted) device options need no restart.
func (d DeviceOptions) same(o DeviceOptions) bool {
	if d.Serial != nil && o.Serial != nil {
		if *d.Serial != *o.Serial {
			return false
		}
	} else if (d.Serial == nil) != (o.Serial == nil) {
		return false
	}
	return d.ID == o.ID && d.Listen == o.Listen && d.Listener == o.Listener && d.TCP == o.TCP &&
		slices.Equal(d.Allow, o.Allow) && d.MaxCertLifetime == o.MaxCertLifetime &&
		d.MaxConns == o.MaxConns && d.MaxPerSource == o.MaxPerSource && d.MaxPending == o.MaxPending &&
		d.HandshakeTimeout == o.HandshakeTimeout && d.IdleTimeout == o.IdleTimeout &&
		d.MaxLifetime == o.MaxLifetime && d.DialTimeout == o.DialTimeout
}

func (o Options) withDefaults() Options {
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Dial == nil {
		var d net.Dialer
		o.Dial = d.DialContext
	}
	if o.Listen == nil {
		o.Listen = net.Listen
	}
	if o.OpenSerial == nil {
		o.OpenSerial = OpenSerialPort
	}
	if o.EventWindow <= 0 {
		o.EventWindow = DefaultEventWindow
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.SerialBackoffMin <= 0 {
		o.SerialBackoffMin = DefaultSerialBackoffMin
	}
	if o.SerialBackoffMax < o.SerialBackoffMin {
		o.SerialBackoffMax = max(DefaultSerialBackoffMax, o.SerialBackoffMin)
	}
	return o
}

func (o Options) validate() error {
	var errs []error
	if o.GetCertificate == nil {
		errs = append(errs, errors.New("GetCertificate is required"))
	}
	if o.ClientCAs == nil {
		errs = append(errs, errors.New("ClientCAs is required"))
	}
	if o.Authorize == nil {
		errs = append(errs, errors.New("authorize is required"))
	}
	return errors.Join(errs...)
}
