package certs

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
)

// EventKind names a Manager event (stable; used in telemetry).
type EventKind string

// Event kinds.
const (
	EventRenewed       EventKind = "renewed"
	EventRekeyed       EventKind = "rekeyed"
	EventRenewalFailed EventKind = "renewal_failed"
	EventExpiring      EventKind = "expiring" // UsedPercent 50 or 90
	EventExpired       EventKind = "expired"
	EventRootsChanged  EventKind = "roots_changed"
	// EventRootsRejected: the CA offered a root without continuity
	// (AcceptRoots); the old roots stay. Err says which.
	EventRootsRejected EventKind = "roots_rejected"
	// EventRootsTrusted: a roots refresh was accepted after a rejection.
	EventRootsTrusted   EventKind = "roots_trusted"
	EventReenrollNeeded EventKind = "reenroll_needed"
	EventClockInsane    EventKind = "clock_insane"
	// EventRenewalOverdue: renewal keeps failing past half the lifetime
	// (UsedPercent 50) or past 90% (UsedPercent 90, critical). Sent once
	// per threshold and certificate.
	EventRenewalOverdue EventKind = "renewal_overdue"
)

// Event is something the Manager reports. Fields not relevant to the kind
// are zero.
type Event struct {
	Kind EventKind
	Time time.Time
	// Serial (hex) and NotAfter of the certificate concerned (the new one
	// for renewed/rekeyed).
	Serial   string
	NotAfter time.Time
	// UsedPercent of the lifetime, for expiring and renewal_overdue (50 or
	// 90).
	UsedPercent int
	// Attempt (consecutive failures so far) and Retry (delay to the next
	// attempt), for renewal_failed.
	Attempt int
	Retry   time.Duration
	// Err is the cause, for renewal_failed, reenroll_needed, clock_insane.
	Err error
	// Roots is the number of trusted roots, for roots_changed.
	Roots int
}

// Status is a snapshot of the Manager's state for `wardgate status`.
type Status struct {
	Subject        string    `json:"subject"`
	URI            string    `json:"uri,omitempty"`
	Serial         string    `json:"serial"`
	NotBefore      time.Time `json:"not_before"`
	NotAfter       time.Time `json:"not_after"`
	NextRenewal    time.Time `json:"next_renewal"`
	Renewals       int       `json:"renewals"`
	Rekeys         int       `json:"rekeys"`
	Failures       int       `json:"consecutive_failures"`
	LastError      string    `json:"last_error,omitempty"`
	LastErrorTime  time.Time `json:"last_error_time,omitzero"`
	Expired        bool      `json:"expired"`
	ReenrollNeeded bool      `json:"reenroll_needed"`
	ClockInsane    bool      `json:"clock_insane"`
	Roots          int       `json:"roots"`
	// Overdue is 0 while renewal is on time, 50 when it keeps failing past
	// half the lifetime, 90 past 90% (critical) and after expiry.
	Overdue int `json:"renewal_overdue_percent"`
}

// ManagerOptions configures a Manager. CA is required.
type ManagerOptions struct {
	CA CA
	// Store persists renewed certificates and roots; nil keeps them in
	// memory only.
	Store *Store
	// Bundle is updated by roots refreshes; nil means a new empty bundle.
	Bundle *Bundle
	Clock  clockwork.Clock
	Logger *slog.Logger
	// OnEvent receives events synchronously from the Manager's goroutine;
	// it must not block for long.
	OnEvent func(Event)
	// RekeyEvery makes every Nth renewal a re-key; 0 never re-keys.
	RekeyEvery int
	// NotBefore is the binary's build time: before it, the clock is
	// considered insane and nothing is renewed.
	NotBefore time.Time
	// RetryMin and RetryMax bound the exponential backoff after a failed
	// renewal (defaults 2s and 5m).
	RetryMin, RetryMax time.Duration
	// RootsEvery is the roots refresh interval (default 1h; negative: never).
	RootsEvery time.Duration
	// PinnedRoots are SHA-256 fingerprints (hex, colons allowed) of roots
	// accepted from a refresh without a cross-signature (see AcceptRoots).
	PinnedRoots []string
	// MaxSleep bounds every wait, so that wall-clock jumps are noticed
	// (default 1m).
	MaxSleep time.Duration
	// AttemptTimeout bounds one CA call (default 30s).
	AttemptTimeout time.Duration
	// OutageRetry caps the delay between attempts once renewal fails past
	// half the lifetime or after expiry (default 30s), so that recovery
	// follows the CA's return quickly instead of waiting out RetryMax.
	OutageRetry time.Duration
	// ProbeEvery is how often, between attempts during an outage, a CA
	// that has a health endpoint (a Health(ctx) error method, as
	// StepClient's GET /health) is probed; an answer triggers an attempt at
	// once (default 5s; negative: never).
	ProbeEvery time.Duration
	// Jitter returns a random duration in [-max, max]; default uniform.
	Jitter func(max time.Duration) time.Duration
}

// current is one installed certificate with its renewal plan.
type current struct {
	tls      *tls.Certificate
	chain    []*x509.Certificate
	received time.Time
	plan     plan
}

// plan is when things happen for one certificate.
type plan struct {
	start, half, ninety, renewAt, notAfter time.Time
}

// planFor computes the schedule of leaf, received at received (zero if
// unknown). Lifetime is measured from max(NotBefore, received) so that a
// CA's backdating (step-ca: 1 minute) does not pull renewal forward.
// renewAt is at 2/3 of the lifetime plus jitter (|jitter| <= lifetime/20).
func planFor(leaf *x509.Certificate, received time.Time, jitter func(time.Duration) time.Duration) plan {
	start := leaf.NotBefore
	if received.After(start) && received.Before(leaf.NotAfter) {
		start = received
	}
	life := leaf.NotAfter.Sub(start)
	p := plan{
		start:    start,
		half:     start.Add(life / 2),
		ninety:   start.Add(life * 9 / 10),
		renewAt:  start.Add(life * 2 / 3),
		notAfter: leaf.NotAfter,
	}
	if jitter != nil {
		p.renewAt = p.renewAt.Add(jitter(life / 20))
	}
	return p
}

// Manager keeps the gateway's certificate fresh: it renews at about 2/3 of
// the lifetime, re-keys every N renewals, refreshes the roots, recovers
// after expiry when the CA allows it, and swaps the certificate atomically.
// GetCertificate and GetClientCertificate only read an atomic pointer: a
// handshake never waits for, nor triggers, a renewal. Safe for concurrent
// use; Run must be called at most once at a time.
type Manager struct {
	o          ManagerOptions
	log        *slog.Logger
	cur        atomic.Pointer[current]
	kick       chan struct{}
	attemptMu  sync.Mutex // one CA attempt at a time (scheduled or operator)
	mu         sync.Mutex // guards st and the flags below
	st         Status
	sent50     bool
	sent90     bool
	sentEx     bool
	sentRE     bool
	sentCI     bool
	rejected   bool // the last roots refresh was rejected
	sentOver50 bool
	sentOver90 bool
	nextProbe  time.Time
	sinceRekey int
	nextTry    time.Time // after failures: the next attempt
	nextRoots  time.Time
	// testHookWaiting, if set, is called by Run each time it starts
	// waiting with no Kick pending (tests only).
	testHookWaiting func()
}

// NewManager returns a Manager. It loads the identity from o.Store when one
// is stored (and the roots); with no store or nothing stored, call Install.
func NewManager(o ManagerOptions) (*Manager, error) {
	if o.CA == nil {
		return nil, errors.New("certs manager: no CA")
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Bundle == nil {
		o.Bundle = &Bundle{}
	}
	if o.RetryMin <= 0 {
		o.RetryMin = 2 * time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 5 * time.Minute
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = o.RetryMin
	}
	if o.RootsEvery == 0 {
		o.RootsEvery = time.Hour
	}
	if o.MaxSleep <= 0 {
		o.MaxSleep = time.Minute
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 30 * time.Second
	}
	if o.OutageRetry <= 0 {
		o.OutageRetry = 30 * time.Second
	}
	if o.ProbeEvery == 0 {
		o.ProbeEvery = 5 * time.Second
	}
	if o.Jitter == nil {
		o.Jitter = func(max time.Duration) time.Duration {
			if max <= 0 {
				return 0
			}
			return time.Duration(rand.Int64N(int64(2*max)+1)) - max
		}
	}
	m := &Manager{o: o, log: o.Logger.With("component", "certs"), kick: make(chan struct{}, 1)}
	if o.Store != nil {
		if roots, err := o.Store.LoadRoots(); err == nil {
			o.Bundle.Set(roots)
		}
		key, chain, err := o.Store.Load()
		switch {
		case err == nil:
			if err := m.install(key, chain, time.Time{}); err != nil {
				return nil, err
			}
		case errors.Is(err, ErrNoIdentity):
		default:
			return nil, err
		}
	}
	return m, nil
}

// Install makes key and chain the current certificate (and saves them in
// the store, if any). Used after enrollment and with the development CA.
func (m *Manager) Install(key crypto.Signer, chain []*x509.Certificate) error {
	if m.o.Store != nil {
		if err := m.o.Store.Save(key, chain); err != nil {
			return err
		}
	}
	if err := m.install(key, chain, m.o.Clock.Now()); err != nil {
		return err
	}
	m.Kick()
	return nil
}

func (m *Manager) install(key crypto.Signer, chain []*x509.Certificate, received time.Time) error {
	tc, err := TLSCertificate(key, chain)
	if err != nil {
		return err
	}
	c := &current{tls: tc, chain: chain, received: received, plan: planFor(chain[0], received, m.o.Jitter)}
	m.cur.Store(c)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent50, m.sent90, m.sentEx, m.sentRE = false, false, false, false
	m.sentOver50, m.sentOver90 = false, false
	m.st.Overdue = 0
	m.nextTry, m.nextProbe = time.Time{}, time.Time{}
	leaf := chain[0]
	m.st.Subject = leaf.Subject.CommonName
	m.st.URI = ""
	if len(leaf.URIs) > 0 {
		m.st.URI = leaf.URIs[0].String()
	}
	m.st.Serial = leaf.SerialNumber.Text(16)
	m.st.NotBefore, m.st.NotAfter = leaf.NotBefore, leaf.NotAfter
	m.st.NextRenewal = c.plan.renewAt
	m.st.Expired = false
	m.st.ReenrollNeeded = false
	m.st.Failures = 0
	return nil
}

// Kick makes Run re-evaluate its schedule now (e.g. after Install). It
// does not force a renewal.
func (m *Manager) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// RenewNow makes Run renew (or re-key, when due) at once instead of at the
// scheduled time, e.g. on an operator's request.
func (m *Manager) RenewNow() {
	m.mu.Lock()
	m.nextTry = m.o.Clock.Now()
	m.mu.Unlock()
	m.Kick()
}

// GetCertificate is for tls.Config.GetCertificate.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := m.cur.Load()
	if c == nil {
		return nil, ErrNoIdentity
	}
	return c.tls, nil
}

// GetClientCertificate is for tls.Config.GetClientCertificate. With no
// certificate yet it sends none.
func (m *Manager) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	c := m.cur.Load()
	if c == nil {
		return &tls.Certificate{}, nil
	}
	return c.tls, nil
}

// Current returns the current certificate (nil before enrollment). Do not
// modify it.
func (m *Manager) Current() *tls.Certificate {
	if c := m.cur.Load(); c != nil {
		return c.tls
	}
	return nil
}

// Chain returns the current chain, leaf first (nil before enrollment).
func (m *Manager) Chain() []*x509.Certificate {
	if c := m.cur.Load(); c != nil {
		return c.chain
	}
	return nil
}

// Signer returns the current private key (nil before enrollment). After a
// re-key it is a different key: take it again for every signature.
func (m *Manager) Signer() crypto.Signer {
	if c := m.cur.Load(); c != nil {
		return c.tls.PrivateKey.(crypto.Signer)
	}
	return nil
}

// Roots returns the trust bundle the Manager refreshes.
func (m *Manager) Roots() *Bundle { return m.o.Bundle }

// Status returns a snapshot.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.st
	s.Roots = len(m.o.Bundle.Roots())
	if c := m.cur.Load(); c != nil {
		s.Expired = !m.o.Clock.Now().Before(c.plan.notAfter)
	}
	return s
}

func (m *Manager) emit(e Event) {
	e.Time = m.o.Clock.Now()
	lvl := slog.LevelInfo
	switch e.Kind {
	case EventRenewalFailed, EventExpiring, EventRenewalOverdue:
		lvl = slog.LevelWarn
	case EventExpired, EventReenrollNeeded, EventClockInsane, EventRootsRejected:
		lvl = slog.LevelError
	}
	attrs := []any{"event", string(e.Kind)}
	if e.Serial != "" {
		attrs = append(attrs, "serial", e.Serial, "not_after", e.NotAfter.UTC().Format(time.RFC3339))
	}
	if e.Err != nil {
		attrs = append(attrs, "err", e.Err.Error())
	}
	if e.Retry > 0 {
		attrs = append(attrs, "attempt", e.Attempt, "retry_in", e.Retry.String())
	}
	m.log.Log(context.Background(), lvl, "identity "+string(e.Kind), attrs...)
	if m.o.OnEvent != nil {
		m.o.OnEvent(e)
	}
}

// Run keeps the certificate fresh until ctx is done; it returns ctx's
// error after its work stopped. A renewal never runs inside a handshake.
func (m *Manager) Run(ctx context.Context) error {
	// A Kick from before Run (Install) is covered by the first step.
	select {
	case <-m.kick:
	default:
	}
	for {
		wait := m.step(ctx)
		if wait > m.o.MaxSleep {
			wait = m.o.MaxSleep
		}
		if wait < 0 {
			wait = 0
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if wait == 0 {
			continue
		}
		t := m.o.Clock.NewTimer(wait)
		if m.testHookWaiting != nil && len(m.kick) == 0 {
			m.testHookWaiting()
		}
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.Chan():
		case <-m.kick:
			t.Stop()
		}
	}
}

// step does whatever is due now and returns how long to wait.
func (m *Manager) step(ctx context.Context) time.Duration {
	now := m.o.Clock.Now()
	if !m.o.NotBefore.IsZero() && now.Before(m.o.NotBefore) {
		m.mu.Lock()
		m.st.ClockInsane = true
		first := !m.sentCI
		m.sentCI = true
		m.mu.Unlock()
		if first {
			m.emit(Event{Kind: EventClockInsane, Err: fmt.Errorf("%w (clock %s, build %s)", ErrClockInsane,
				now.UTC().Format(time.RFC3339), m.o.NotBefore.UTC().Format(time.RFC3339))})
		}
		return m.o.RetryMin
	}
	m.mu.Lock()
	m.st.ClockInsane, m.sentCI = false, false
	m.mu.Unlock()

	if m.o.RootsEvery > 0 && !now.Before(m.nextRoots) {
		m.refreshRoots(ctx)
		now = m.o.Clock.Now()
	}
	next := m.nextRoots
	if m.o.RootsEvery <= 0 {
		next = now.Add(m.o.MaxSleep)
	}

	c := m.cur.Load()
	if c == nil {
		m.mu.Lock()
		m.st.ReenrollNeeded = true
		first := !m.sentRE
		m.sentRE = true
		m.mu.Unlock()
		if first {
			m.emit(Event{Kind: EventReenrollNeeded, Err: ErrNoIdentity})
		}
		return next.Sub(now)
	}
	m.thresholdEvents(c, now)

	m.mu.Lock()
	due := c.plan.renewAt
	if !m.nextTry.IsZero() {
		due = m.nextTry
	}
	probe := m.nextProbe
	m.mu.Unlock()
	if now.Before(due) && !probe.IsZero() && !now.Before(probe) {
		if m.probe(ctx) {
			due = now
		}
		now = m.o.Clock.Now()
	}
	if !now.Before(due) {
		m.attempt(ctx, c, scheduled)
		return 0
	}
	next = earliest(next, due)
	m.mu.Lock()
	if !m.nextProbe.IsZero() {
		next = earliest(next, m.nextProbe)
	}
	m.mu.Unlock()
	m.mu.Lock()
	if !m.sent50 {
		next = earliest(next, c.plan.half)
	}
	if !m.sent90 {
		next = earliest(next, c.plan.ninety)
	}
	if !m.sentEx {
		next = earliest(next, c.plan.notAfter)
	}
	m.mu.Unlock()
	return next.Sub(now)
}

// healthChecker is a CA with a cheap health endpoint.
type healthChecker interface {
	Health(ctx context.Context) error
}

// probe asks a CA with a health endpoint whether it answers again; it
// reports true when it does. Without one it never reports true.
func (m *Manager) probe(ctx context.Context) bool {
	hc, ok := m.o.CA.(healthChecker)
	m.mu.Lock()
	m.nextProbe = time.Time{}
	m.mu.Unlock()
	if !ok || m.o.ProbeEvery <= 0 {
		return false
	}
	actx, cancel := context.WithTimeout(ctx, min(m.o.AttemptTimeout, 5*time.Second))
	defer cancel()
	if err := hc.Health(actx); err != nil {
		m.mu.Lock()
		m.nextProbe = m.o.Clock.Now().Add(m.o.ProbeEvery)
		m.mu.Unlock()
		return false
	}
	m.log.Info("the CA answers its health check again; renewing now")
	return true
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (m *Manager) thresholdEvents(c *current, now time.Time) {
	leaf := c.chain[0]
	base := Event{Serial: leaf.SerialNumber.Text(16), NotAfter: leaf.NotAfter}
	m.mu.Lock()
	var evs []Event
	if !m.sentEx && !now.Before(c.plan.notAfter) {
		m.sentEx, m.sent90, m.sent50 = true, true, true
		m.st.Expired = true
		e := base
		e.Kind = EventExpired
		evs = append(evs, e)
	} else if !m.sent90 && !now.Before(c.plan.ninety) {
		m.sent90, m.sent50 = true, true
		e := base
		e.Kind, e.UsedPercent = EventExpiring, 90
		evs = append(evs, e)
	} else if !m.sent50 && !now.Before(c.plan.half) {
		m.sent50 = true
		e := base
		e.Kind, e.UsedPercent = EventExpiring, 50
		evs = append(evs, e)
	}
	if m.st.Failures > 0 {
		evs = append(evs, m.overdueLocked(c, now)...)
	}
	m.mu.Unlock()
	for _, e := range evs {
		m.emit(e)
	}
}

func (m *Manager) refreshRoots(ctx context.Context) {
	actx, cancel := context.WithTimeout(ctx, m.o.AttemptTimeout)
	defer cancel()
	roots, err := m.o.CA.Roots(actx)
	now := m.o.Clock.Now()
	if err != nil || len(roots) == 0 {
		if err == nil {
			err = fmt.Errorf("%w: no roots", ErrCABadResponse)
		}
		m.log.Warn("roots refresh failed", "err", err.Error())
		m.nextRoots = now.Add(min(m.o.RootsEvery, m.o.RetryMax))
		return
	}
	m.nextRoots = now.Add(m.o.RootsEvery)
	pinned := make([]string, 0, len(m.o.PinnedRoots))
	for _, p := range m.o.PinnedRoots {
		pinned = append(pinned, strings.ToLower(strings.ReplaceAll(p, ":", "")))
	}
	roots, err = AcceptRoots(m.o.Bundle.Roots(), roots, pinned, now)
	if err != nil {
		m.log.Error("roots refresh refused: keeping the trusted roots", "err", err.Error())
		m.mu.Lock()
		m.rejected = true
		m.mu.Unlock()
		m.emit(Event{Kind: EventRootsRejected, Err: err, Roots: len(m.o.Bundle.Roots())})
		return
	}
	m.mu.Lock()
	was := m.rejected
	m.rejected = false
	m.mu.Unlock()
	if was {
		m.emit(Event{Kind: EventRootsTrusted, Roots: len(roots)})
	}
	if m.o.Bundle.Set(roots) {
		if m.o.Store != nil {
			if err := m.o.Store.SaveRoots(roots); err != nil {
				m.log.Error("save roots failed", "err", err.Error())
			}
		}
		m.emit(Event{Kind: EventRootsChanged, Roots: len(roots)})
	}
}

// backoff returns the delay after n consecutive failures: RetryMin*2^(n-1)
// capped at RetryMax, minus up to a quarter of jitter, never above RetryMax.
func backoff(n int, lo, hi time.Duration, jitter func(time.Duration) time.Duration) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	if d > hi {
		d = hi
	}
	if jitter != nil {
		j := jitter(d / 8)
		d = d - d/8 + j // in [3/4 d, d]
	}
	if d > hi {
		d = hi
	}
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d
}

// attemptMode says what one attempt does.
type attemptMode int

const (
	scheduled  attemptMode = iota // renew or re-key as the schedule says
	forceRenew                    // an operator's renewal
	forceRekey                    // an operator's re-key
)

// RenewOnce renews the current certificate at once (rekey: with a new key
// pair), on an operator's request, through the same path as scheduled
// renewals: the new chain is checked, stored, swapped in and reported as
// an event; a failure is a renewal_failed event and the old certificate
// stays. It waits for an attempt already in progress. It returns the new
// leaf, or ErrNoIdentity before enrollment.
func (m *Manager) RenewOnce(ctx context.Context, rekey bool) (*x509.Certificate, error) {
	mode := forceRenew
	if rekey {
		mode = forceRekey
	}
	m.attemptMu.Lock()
	c := m.cur.Load()
	m.attemptMu.Unlock()
	if c == nil {
		return nil, ErrNoIdentity
	}
	leaf, err := m.attempt(ctx, c, mode)
	m.Kick()
	return leaf, err
}

// attempt renews (or re-keys, or recovers) c once. A scheduled attempt for
// a certificate that was replaced meanwhile does nothing.
func (m *Manager) attempt(ctx context.Context, c *current, mode attemptMode) (*x509.Certificate, error) {
	m.attemptMu.Lock()
	defer m.attemptMu.Unlock()
	if now := m.cur.Load(); now != c {
		if mode == scheduled {
			return nil, nil
		}
		c = now
	}
	now := m.o.Clock.Now()
	actx, cancel := context.WithTimeout(ctx, m.o.AttemptTimeout)
	defer cancel()
	key := c.tls.PrivateKey.(crypto.Signer)
	rekey := false
	var chain []*x509.Certificate
	var err error
	m.mu.Lock()
	rekeyDue := m.o.RekeyEvery > 0 && m.sinceRekey+1 >= m.o.RekeyEvery
	m.mu.Unlock()
	switch {
	case !now.Before(c.plan.notAfter):
		chain, err = m.o.CA.RenewExpired(actx, c.tls)
	case mode == forceRekey || (mode == scheduled && rekeyDue):
		rekey = true
		var nk crypto.Signer
		nk, err = GenerateKey()
		if err == nil {
			var csr *x509.CertificateRequest
			if csr, err = CSRFromCert(c.chain[0], nk); err == nil {
				chain, err = m.o.CA.Rekey(actx, c.tls, csr)
				key = nk
			}
		}
	default:
		chain, err = m.o.CA.Renew(actx, c.tls)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err == nil {
		err = m.checkNew(c, key, chain)
	}
	if err == nil && m.o.Store != nil {
		err = m.o.Store.Save(key, chain)
	}
	if err == nil {
		err = m.install(key, chain, m.o.Clock.Now())
	}
	if err != nil {
		m.failed(c, err)
		return nil, err
	}
	m.mu.Lock()
	m.st.Renewals++
	if rekey {
		m.st.Rekeys++
		m.sinceRekey = 0
	} else {
		m.sinceRekey++
	}
	m.st.LastError = ""
	m.mu.Unlock()
	kind := EventRenewed
	if rekey {
		kind = EventRekeyed
	}
	m.emit(Event{Kind: kind, Serial: chain[0].SerialNumber.Text(16), NotAfter: chain[0].NotAfter})
	return chain[0], nil
}

// checkNew refuses a chain that does not fit: wrong key, other names,
// untrusted, or not currently valid. The old certificate stays in use.
func (m *Manager) checkNew(c *current, key crypto.Signer, chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return fmt.Errorf("%w: empty certificate chain", ErrCABadResponse)
	}
	leaf, old := chain[0], c.chain[0]
	if !keyMatches(key, leaf) {
		return fmt.Errorf("%w: certificate is not for our key", ErrCABadResponse)
	}
	if leaf.Subject.CommonName != old.Subject.CommonName || !sameURIs(leaf, old) {
		return fmt.Errorf("%w: certificate names changed (%q -> %q)", ErrCABadResponse, old.Subject.CommonName, leaf.Subject.CommonName)
	}
	now := m.o.Clock.Now()
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("%w: new certificate already expired", ErrCABadResponse)
	}
	if len(m.o.Bundle.Roots()) > 0 {
		inter := x509.NewCertPool()
		for _, ic := range chain[1:] {
			inter.AddCert(ic)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: m.o.Bundle.Pool(), Intermediates: inter,
			CurrentTime: leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return fmt.Errorf("%w: new certificate does not chain to a trusted root: %w", ErrCABadResponse, err)
		}
	}
	return nil
}

func sameURIs(a, b *x509.Certificate) bool {
	if len(a.URIs) != len(b.URIs) {
		return false
	}
	for i := range a.URIs {
		if a.URIs[i].String() != b.URIs[i].String() {
			return false
		}
	}
	return true
}

// overdueLocked returns the renewal_overdue events due for c at now while
// renewals fail, and records them; m.mu is held.
func (m *Manager) overdueLocked(c *current, now time.Time) []Event {
	leaf := c.chain[0]
	base := Event{Kind: EventRenewalOverdue, Serial: leaf.SerialNumber.Text(16), NotAfter: leaf.NotAfter}
	var evs []Event
	if !m.sentOver50 && !now.Before(c.plan.half) {
		m.sentOver50 = true
		m.st.Overdue = 50
		if now.Before(c.plan.ninety) {
			e := base
			e.UsedPercent = 50
			evs = append(evs, e)
		}
	}
	if !m.sentOver90 && !now.Before(c.plan.ninety) {
		m.sentOver90 = true
		m.st.Overdue = 90
		e := base
		e.UsedPercent = 90
		evs = append(evs, e)
	}
	return evs
}

// inOutage reports whether c's renewal is past half its lifetime: from
// there on a failure is an outage and retries are at most OutageRetry
// apart.
func inOutage(c *current, now time.Time) bool { return !now.Before(c.plan.half) }

func (m *Manager) failed(c *current, err error) {
	now := m.o.Clock.Now()
	m.mu.Lock()
	m.st.Failures++
	n := m.st.Failures
	m.st.LastError = err.Error()
	m.st.LastErrorTime = now
	d := backoff(n, m.o.RetryMin, m.o.RetryMax, m.o.Jitter)
	var over []Event
	m.nextProbe = time.Time{}
	if inOutage(c, now) {
		d = min(d, m.o.OutageRetry)
		over = m.overdueLocked(c, now)
		if _, ok := m.o.CA.(healthChecker); ok && m.o.ProbeEvery > 0 && m.o.ProbeEvery < d {
			m.nextProbe = now.Add(m.o.ProbeEvery)
		}
	}
	m.nextTry = now.Add(d)
	m.st.NextRenewal = m.nextTry
	reenroll := errors.Is(err, ErrRenewAfterExpiryNotAllowed)
	firstRE := reenroll && !m.sentRE
	if reenroll {
		m.sentRE = true
		m.st.ReenrollNeeded = true
	}
	m.mu.Unlock()
	leaf := c.chain[0]
	m.emit(Event{Kind: EventRenewalFailed, Serial: leaf.SerialNumber.Text(16), NotAfter: leaf.NotAfter, Attempt: n, Retry: d, Err: err})
	for _, e := range over {
		m.emit(e)
	}
	if firstRE {
		m.emit(Event{Kind: EventReenrollNeeded, Serial: leaf.SerialNumber.Text(16), NotAfter: leaf.NotAfter, Err: err})
	}
}

// IdentityDir is where the gateway's identity lives under its state
// directory.
func IdentityDir(stateDir string) string { return filepath.Join(stateDir, "identity") }
