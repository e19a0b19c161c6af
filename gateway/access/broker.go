package access

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/gateway/access/recording"
	"github.com/wardgate/wardgate/gateway/authority"
	"github.com/wardgate/wardgate/gateway/front"
	"github.com/wardgate/wardgate/hal"
)

// Options configure a Broker. Store, Authority, Recordings and
// GetCertificate are required; other zero values take the defaults
// documented per field.
type Options struct {
	Store   *Store
	Devices []Device

	// Authority owns locks and the tamper latch. The broker refuses locked
	// identities and, while the latch is set, every vendor; it cuts the
	// sessions (and revokes the grants) a new lock covers and every session
	// at tamper. Lock and tamper events are the authority's.
	Authority *authority.Authority
	// Recordings stores session recordings. Its cap gates new sessions only
	// (ErrFull refuses with CodeStorageFull); live sessions are never cut
	// for space. The broker creates and closes recordings; whoever publishes
	// EvSessionEnd calls Recordings.Ended with the event's sequence number.
	Recordings *recording.Store

	// GetCertificate returns the gateway's current server certificate.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ClientCAs returns the trust bundle vendor chains must verify against
	// (checked on every connection with the injected clock). Nil skips this
	// check and leaves chain verification to Authorize (then required).
	ClientCAs func() *x509.CertPool
	// Authorize decides whether the peer's chain (as presented, leaf first;
	// already verified against ClientCAs when that is set) is accepted and
	// which vendor identity it names. On error, reason (if not empty) is the
	// one line shown to the vendor. Nil: ParseVendorURI on the leaf's URI SAN.
	Authorize func(chain []*x509.Certificate) (VendorIdentity, string, error)
	// Dial opens the connection to a device (default: net.Dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// OpenSerial opens a device's serial service console (default
	// hal.OpenSerial).
	OpenSerial func(hal.SerialConfig) (io.ReadWriteCloser, error)
	// Secrets reads the secret of an injected service account (default:
	// ReadSecret, a 0600 file or a systemd credential).
	Secrets func(Injection) ([]byte, error)

	// Events receives every audit event, synchronously and outside the
	// broker's locks; it must not block for long. Nil drops events.
	Events func(Event)
	// LED is called with the amber LED state whenever it changes (and once at
	// start): pending requests -> blinking, several pending -> double
	// blink, live session -> steady.
	LED func(LEDState)

	Clock  clockwork.Clock // default: real clock
	Logger *slog.Logger    // default: discard; a component attribute is added

	RequestTTL  time.Duration // pending request lifetime (default 15m)
	RefusalHold time.Duration // how long denied/revoked/expired is reported before a fresh request (default 15m)
	DialTimeout time.Duration // device dial, wall-clock (default 10s)
	Limits      Limits        // CONNECT head limits
	// ConnLimits cap the vendor listener (front.Limits); zero fields take
	// DefaultConnLimits. HandshakeTimeout bounds the TLS handshake and the
	// CONNECT head (wall clock).
	ConnLimits front.Limits
	// EventWindow is the window refusal events are folded in (default 10s,
	// on Clock): per source address and refusal code, the first refusal is
	// reported at once and the others in one summary when the window ends.
	EventWindow time.Duration

	noted func() // tests: called after every refusal was noted
}

// DefaultConnLimits apply to zero fields of Options.ConnLimits.
var DefaultConnLimits = front.Limits{MaxConns: 128, MaxPending: 32, MaxPerSource: 8, HandshakeTimeout: 10 * time.Second,
	HandshakeRate: 50}

// DefaultEventWindow applies when Options.EventWindow is zero.
const DefaultEventWindow = 10 * time.Second

// Broker is the brokered vendor channel: it owns requests, grants and live
// sessions. All methods are safe for concurrent use.
type Broker struct {
	o      Options
	log    *slog.Logger
	clock  clockwork.Clock
	folder *front.Folder
	unsub  func()

	mu       sync.Mutex
	devices  map[string]Device
	grants   map[string]*Grant
	sessions map[string]*session
	timers   map[string]clockwork.Timer
	closed   bool

	checkpointTimer clockwork.Timer
	conns           map[net.Conn]struct{}
	runs            map[int]context.CancelFunc // of running Runs, cancelled by Close
	nextRun         int

	ended    endedLog          // recently ended sessions, for the status API
	consoles map[string]string // serial console port -> session holding it (under mu)

	ledMu  sync.Mutex
	led    LEDState
	ledSet bool

	wg sync.WaitGroup
}

// New loads persisted state, expires what ran out while the gateway was down
// (emitting events) and schedules the remaining expiries.
func New(o Options) (*Broker, error) {
	if o.Store == nil {
		return nil, errors.New("access: Options.Store is required")
	}
	if o.Authority == nil {
		return nil, errors.New("access: Options.Authority is required")
	}
	if o.Recordings == nil {
		return nil, errors.New("access: Options.Recordings is required")
	}
	if o.GetCertificate == nil {
		return nil, errors.New("access: Options.GetCertificate is required")
	}
	if o.ClientCAs == nil && o.Authorize == nil {
		return nil, errors.New("access: Options.ClientCAs or Options.Authorize must verify vendor certificates")
	}
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
	if o.Authorize == nil {
		o.Authorize = defaultAuthorize
	}
	if o.OpenSerial == nil {
		o.OpenSerial = func(c hal.SerialConfig) (io.ReadWriteCloser, error) { return hal.OpenSerial(c.WithDefaults()) }
	}
	if o.Secrets == nil {
		o.Secrets = ReadSecret
	}
	if o.RequestTTL <= 0 {
		o.RequestTTL = 15 * time.Minute
	}
	if o.RefusalHold <= 0 {
		o.RefusalHold = 15 * time.Minute
	}
	o.ConnLimits = o.ConnLimits.WithDefaults(DefaultConnLimits)
	if o.EventWindow <= 0 {
		o.EventWindow = DefaultEventWindow
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	b := &Broker{
		o: o, log: o.Logger.With("component", "access"), clock: o.Clock,
		folder:  &front.Folder{Window: o.EventWindow},
		devices: map[string]Device{}, grants: map[string]*Grant{},
		sessions: map[string]*session{}, timers: map[string]clockwork.Timer{},
		conns: map[net.Conn]struct{}{}, runs: map[int]context.CancelFunc{},
	}
	devs, err := validateDevices(o.Devices)
	if err != nil {
		return nil, err
	}
	b.devices = devs
	if err := b.load(); err != nil {
		return nil, err
	}
	b.unsub = o.Authority.Subscribe(b.onAuthority)
	b.updateLED()
	return b, nil
}

func validateDevices(ds []Device) (map[string]Device, error) {
	out := map[string]Device{}
	for _, d := range ds {
		if d.ID == "" {
			return nil, errors.New("access: device without id")
		}
		if _, dup := out[d.ID]; dup {
			return nil, fmt.Errorf("access: duplicate device %q", d.ID)
		}
		if len(d.Approval) == 0 {
			return nil, fmt.Errorf("access: device %s: empty approval policy", d.ID)
		}
		for _, k := range d.Approval {
			if k != KindLocal && k != KindCentral {
				return nil, fmt.Errorf("access: device %s: approval %q is neither local nor central", d.ID, k)
			}
		}
		if d.MaxSession <= 0 {
			return nil, fmt.Errorf("access: device %s: max_session must be positive", d.ID)
		}
		if err := validateVendorExtras(d); err != nil {
			return nil, err
		}
		d.Ports = slices.Clone(d.Ports)
		d.Approval = slices.Clone(d.Approval)
		out[d.ID] = d
	}
	return out, nil
}

// SetDevices replaces the device table (configuration reload). Existing
// requests and grants keep the policy and deadline they were created with;
// new CONNECTs are checked against the new table.
func (b *Broker) SetDevices(ds []Device) error {
	devs, err := validateDevices(ds)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.devices = devs
	b.mu.Unlock()
	return nil
}

func (b *Broker) load() error {
	s := b.o.Store
	now := b.clock.Now()
	err := s.each(bucketGrants, func(k string, v []byte) error {
		var g Grant
		if err := json.Unmarshal(v, &g); err != nil {
			return fmt.Errorf("grant %s: %w", k, err)
		}
		if !g.Closed.IsZero() && now.Sub(g.Closed) > 7*24*time.Hour {
			return nil // history older than a week stays in the event log only
		}
		b.grants[g.ID] = &g
		return nil
	})
	var legacy map[string]legacyRecording
	if err == nil {
		err = s.each(bucketRecordings, func(k string, v []byte) error {
			var r legacyRecording
			if json.Unmarshal(v, &r) == nil && !r.Ended.IsZero() {
				if legacy == nil {
					legacy = map[string]legacyRecording{}
				}
				legacy[k] = r
			}
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("access: load store: %w", err)
	}
	var evs []Event
	b.mu.Lock()
	evs = append(evs, b.unendedLocked(now, legacy)...)
	for _, g := range b.grants {
		if g.State == StatePending || g.State == StateActive {
			if g.Remaining > 0 {
				// Counted in running time: the clock at start does not
				// extend or shorten what was left.
				g.Deadline = now.Add(g.Remaining)
			}
			evs = append(evs, b.scheduleLocked(g, now)...)
		}
	}
	b.checkpointTimer = b.clock.AfterFunc(CheckpointEvery, b.checkpoint)
	b.mu.Unlock()
	b.emit(evs)
	return nil
}

// unendedLocked reports the recordings whose session never ended (the
// gateway stopped during it) with a session-end event, so that their end is
// published and the store may prune them once central has it. Recordings of
// an older version that ended then are reported with their real end.
func (b *Broker) unendedLocked(now time.Time, legacy map[string]legacyRecording) []Event {
	var evs []Event
	for _, id := range b.o.Recordings.Unended() {
		if _, live := b.sessions[id]; live {
			continue
		}
		ev := Event{Time: now, Kind: EvSessionEnd, Session: id, Reason: "gateway stopped during the session",
			Recording: filepath.Base(b.o.Recordings.Path(id))}
		if i := strings.LastIndexByte(id, '-'); i > 0 {
			if g, ok := b.grants[id[:i]]; ok {
				ev.Grant, ev.Vendor, ev.Device = g.ID, g.Vendor, g.Device
			}
		}
		if r, ok := legacy[id]; ok {
			ev.Reason = "session ended at " + r.Ended.UTC().Format(time.RFC3339) + ", before this gateway version"
			ev.Hash = r.Hash
		}
		evs = append(evs, ev)
	}
	return evs
}

// Close stops timers, unsubscribes from the authority, stops Run and cuts
// every live session. It does not close the Store, the Authority or the
// recording store. Idempotent.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	for _, cancel := range b.runs {
		cancel()
	}
	for k, t := range b.timers {
		t.Stop()
		delete(b.timers, k)
	}
	if b.checkpointTimer != nil {
		b.checkpointTimer.Stop()
	}
	for _, g := range b.grants {
		if g.State == StatePending || g.State == StateActive {
			b.persistGrantLocked(g) // the time left, as of now
		}
	}
	cut := b.allSessionsLocked()
	for c := range b.conns {
		_ = c.Close()
	}
	b.mu.Unlock()
	b.unsub()
	for _, s := range cut {
		s.cut("gateway shutting down")
	}
	b.wg.Wait()
	return nil
}

// --- events and LED ---

func (b *Broker) emit(evs []Event) {
	if b.o.Events == nil {
		return
	}
	for _, e := range evs {
		b.o.Events(e)
	}
}

func (b *Broker) updateLED() {
	b.ledMu.Lock()
	defer b.ledMu.Unlock()
	b.mu.Lock()
	st := b.ledLocked()
	b.mu.Unlock()
	if b.ledSet && st == b.led {
		return
	}
	b.led, b.ledSet = st, true
	if b.o.LED != nil {
		b.o.LED(st)
	}
}

func (b *Broker) ledLocked() LEDState {
	var st LEDState
	n := 0
	for _, g := range b.grants {
		if g.State == StatePending {
			n++
		}
	}
	st.Pending, st.Several = n > 0, n > 1
	st.Live = len(b.sessions) > 0
	return st
}

// --- ids ---

const idAlphabet = "ABCDEFGHJKMNPQRSTVWXYZ23456789" // no 0/O, 1/I/L, U

func (b *Broker) newIDLocked() string {
	for {
		var raw [6]byte
		_, _ = rand.Read(raw[:])
		id := make([]byte, len(raw))
		for i, c := range raw {
			id[i] = idAlphabet[int(c)%len(idAlphabet)]
		}
		if _, dup := b.grants[string(id)]; !dup {
			return string(id)
		}
	}
}

func normID(id string) string { return strings.ToUpper(strings.TrimSpace(id)) }

// --- timers ---

// scheduleLocked arms the expiry timer of a pending or active grant, or
// expires it now if its deadline passed.
func (b *Broker) scheduleLocked(g *Grant, now time.Time) []Event {
	key := "grant:" + g.ID
	if t, ok := b.timers[key]; ok {
		t.Stop()
		delete(b.timers, key)
	}
	if b.closed || g.State != StatePending && g.State != StateActive {
		return nil
	}
	d := g.Deadline.Sub(now)
	if d <= 0 {
		// Only reached while loading or for fresh grants: no sessions exist.
		evs, _ := b.expireLocked(g, now)
		return evs
	}
	id, deadline := g.ID, g.Deadline
	b.timers[key] = b.clock.AfterFunc(d, func() { b.onDeadline(id, deadline) })
	return nil
}

func (b *Broker) onDeadline(id string, deadline time.Time) {
	b.mu.Lock()
	g, ok := b.grants[id]
	if b.closed || !ok || !g.Deadline.Equal(deadline) {
		b.mu.Unlock()
		return
	}
	delete(b.timers, "grant:"+id)
	evs, cut := b.expireLocked(g, b.clock.Now())
	b.mu.Unlock()
	cutAll(cut, "grant expired")
	b.emit(evs)
	b.updateLED()
}

// expireLocked ends a pending request or active grant whose deadline passed.
func (b *Broker) expireLocked(g *Grant, now time.Time) ([]Event, []*session) {
	kind := EvRequestExpired
	if g.State == StateActive {
		kind = EvGrantExpired
	}
	g.State = StateExpired
	g.Closed = now
	g.End = EndExpired
	g.ClosedBy = &Actor{Kind: KindSystem, Via: "expiry"}
	b.persistGrantLocked(g)
	cut := b.sessionsOfLocked(func(s *session) bool { return s.info.Grant == g.ID })
	return []Event{{Time: now, Kind: kind, Grant: g.ID, Vendor: g.Vendor, Device: g.Device, Ports: g.Ports, Until: g.Deadline, End: EndExpired}}, cut
}

// --- persistence helpers (errors are logged: the in-memory state stays
// authoritative and the next write retries the record) ---

func (b *Broker) persistGrantLocked(g *Grant) {
	if g.State == StatePending || g.State == StateActive {
		g.Remaining = max(g.Deadline.Sub(b.clock.Now()), time.Nanosecond)
	} else {
		g.Remaining = 0
	}
	if err := b.o.Store.put(bucketGrants, g.ID, g); err != nil {
		b.log.Error("persist grant failed", "grant", g.ID, "err", err)
	}
}

// CheckpointEvery is how often the time left of pending requests and active
// grants is saved.
const CheckpointEvery = time.Minute

// checkpoint saves the time left of every pending request and active grant.
func (b *Broker) checkpoint() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	for _, g := range b.grants {
		if g.State == StatePending || g.State == StateActive {
			b.persistGrantLocked(g)
		}
	}
	b.checkpointTimer = b.clock.AfterFunc(CheckpointEvery, b.checkpoint)
}

// --- sessions helpers ---

func (b *Broker) sessionsOfLocked(match func(*session) bool) []*session {
	var out []*session
	for _, s := range b.sessions {
		if match(s) {
			out = append(out, s)
		}
	}
	return out
}

func (b *Broker) allSessionsLocked() []*session {
	return b.sessionsOfLocked(func(*session) bool { return true })
}

func cutAll(ss []*session, reason string) {
	for _, s := range ss {
		s.cut(reason)
	}
}

// --- command entry points ---

// Approve records actor's approval of pending request id. The grant becomes
// active (valid for the device's max_session from now) once every kind in the
// device's policy approved, by distinct persons. Errors: ErrNotFound,
// ErrNotPending, ErrPolicy, ErrAlreadyApproved, ErrSamePerson, ErrBadActor,
// and, for a central actor whose request's ports grew, ErrBinding (use
// ApproveBound).
func (b *Broker) Approve(id string, actor Actor) (Grant, error) {
	return b.ApproveBound(id, actor, nil)
}

// ApproveBound is Approve for an approval that names what it approves: it
// is refused with ErrBinding unless bind matches the request's vendor,
// device and ports exactly. A nil bind is accepted from local actors, and
// from central actors only while the request's ports never grew (Rev 0):
// then it approves what the request event announced.
func (b *Broker) ApproveBound(id string, actor Actor, bind *Binding) (Grant, error) {
	if !actor.Valid() || actor.Kind == KindSystem {
		return Grant{}, ErrBadActor
	}
	id = normID(id)
	b.mu.Lock()
	g, ok := b.grants[id]
	if !ok {
		b.mu.Unlock()
		return Grant{}, fmt.Errorf("request %s: %w", id, ErrNotFound)
	}
	if g.State != StatePending {
		st := g.State
		b.mu.Unlock()
		return Grant{}, fmt.Errorf("request %s is %s: %w", id, st, ErrNotPending)
	}
	if !slices.Contains(g.Policy, actor.Kind) {
		b.mu.Unlock()
		return Grant{}, fmt.Errorf("device %s needs %s approval, not %s: %w", g.Device, strings.Join(g.Policy, "+"), actor.Kind, ErrPolicy)
	}
	if slices.ContainsFunc(g.Approvals, func(a Approval) bool { return a.Actor.Kind == actor.Kind }) {
		b.mu.Unlock()
		return Grant{}, fmt.Errorf("request %s: %w (%s)", id, ErrAlreadyApproved, actor.Kind)
	}
	if i := slices.IndexFunc(g.Approvals, func(a Approval) bool {
		return authority.SamePerson(a.Actor, actor) || a.Actor.String() == actor.String()
	}); i >= 0 {
		first := g.Approvals[i].Actor.String()
		b.mu.Unlock()
		return Grant{}, fmt.Errorf("request %s: %s approved it as %s: %w", id, actor.String(), first, ErrSamePerson)
	}
	switch {
	case bind != nil:
		if diff := bind.match(g); diff != "" {
			b.mu.Unlock()
			return Grant{}, fmt.Errorf("request %s: the approval names %s: %w; sign a new approval for the request as it is", id, diff, ErrBinding)
		}
	case actor.Kind == KindCentral && g.Rev > 0:
		b.mu.Unlock()
		return Grant{}, fmt.Errorf("request %s: its ports grew to %s since it was announced: %w; sign an approval naming vendor, device and ports", id, portList(g.Ports), ErrBinding)
	}
	now := b.clock.Now()
	g.Approvals = append(g.Approvals, Approval{Actor: actor, At: now})
	waiting := g.missing()
	ev := Event{Time: now, Kind: EvApprove, Grant: g.ID, Vendor: g.Vendor, Device: g.Device, Ports: g.Ports, Actor: &actor, Waiting: waiting}
	evs := []Event{ev}
	if len(waiting) == 0 {
		maxS := time.Hour
		if d, ok := b.devices[g.Device]; ok {
			maxS = d.MaxSession
		}
		g.State = StateActive
		g.Approved = now
		g.Deadline = now.Add(maxS)
		evs[0].Complete = true
		evs[0].Until = g.Deadline
		evs = append(evs, b.applyExtensionLocked(g, now)...)
		evs[0].Until = g.Deadline // an extension's: its grant's new expiry
	}
	b.persistGrantLocked(g)
	evs = append(evs, b.scheduleLocked(g, now)...)
	out := cloneGrant(g)
	b.mu.Unlock()
	b.log.Info("vendor request approved", "grant", id, "actor", actor.String(), "active", len(waiting) == 0)
	b.emit(evs)
	b.updateLED()
	return out, nil
}

// ApproveByButton approves the only pending request as Actor{Kind: local, Via:
// button}. ErrNoneOrMany if zero or several requests are pending: then
// nothing is approved (the LED double-blinks while several are pending).
func (b *Broker) ApproveByButton() (Grant, error) {
	b.mu.Lock()
	var ids []string
	for _, g := range b.grants {
		if g.State == StatePending {
			ids = append(ids, g.ID)
		}
	}
	b.mu.Unlock()
	if len(ids) != 1 {
		return Grant{}, fmt.Errorf("%d requests pending: %w", len(ids), ErrNoneOrMany)
	}
	return b.Approve(ids[0], Actor{Kind: KindLocal, Via: "button", UID: -1})
}

// Deny refuses pending request id. Any local or central actor may deny.
func (b *Broker) Deny(id string, actor Actor) error {
	return b.close(normID(id), actor, StateDenied, EvDeny, "")
}

// Revoke ends a pending request or an active grant and cuts its sessions.
// Any local or central actor may revoke.
func (b *Broker) Revoke(id string, actor Actor) error {
	return b.close(normID(id), actor, StateRevoked, EvRevoke, "")
}

// RetireDevice revokes every pending request and active grant of device
// (cutting their sessions) with reason "device retired", as actor, and
// returns the ids revoked. Retired devices refuse new CONNECTs on their
// own (Device.Retired).
func (b *Broker) RetireDevice(device string, actor Actor) ([]string, error) {
	if !actor.Valid() {
		return nil, ErrBadActor
	}
	b.mu.Lock()
	var ids []string
	var evs []Event
	var cut []*session
	for _, g := range b.grants {
		if g.Device != device || (g.State != StatePending && g.State != StateActive) {
			continue
		}
		e, c, err := b.closeLocked(g, actor, StateRevoked, EvRevoke, "device retired")
		if err != nil {
			continue
		}
		ids = append(ids, g.ID)
		evs, cut = append(evs, e...), append(cut, c...)
	}
	b.mu.Unlock()
	slices.Sort(ids)
	cutAll(cut, "device retired")
	b.emit(evs)
	b.updateLED()
	return ids, nil
}

func (b *Broker) close(id string, actor Actor, to State, kind, reason string) error {
	if !actor.Valid() {
		return ErrBadActor
	}
	b.mu.Lock()
	g, ok := b.grants[id]
	if !ok {
		b.mu.Unlock()
		return fmt.Errorf("request %s: %w", id, ErrNotFound)
	}
	evs, cut, err := b.closeLocked(g, actor, to, kind, reason)
	b.mu.Unlock()
	if err != nil {
		return err
	}
	cutAll(cut, string(to)+" by "+actor.String())
	b.log.Info("vendor grant closed", "grant", id, "state", to, "actor", actor.String())
	b.emit(evs)
	b.updateLED()
	return nil
}

func (b *Broker) closeLocked(g *Grant, actor Actor, to State, kind, reason string) ([]Event, []*session, error) {
	switch {
	case to == StateDenied && g.State != StatePending:
		return nil, nil, fmt.Errorf("request %s is %s: %w", g.ID, g.State, ErrNotPending)
	case g.State != StatePending && g.State != StateActive:
		return nil, nil, fmt.Errorf("grant %s is %s: %w", g.ID, g.State, ErrNotActive)
	}
	now := b.clock.Now()
	g.State = to
	g.Closed = now
	g.End = grantEnd(to, reason)
	a := actor
	g.ClosedBy = &a
	b.persistGrantLocked(g)
	if t, ok := b.timers["grant:"+g.ID]; ok {
		t.Stop()
		delete(b.timers, "grant:"+g.ID)
	}
	cut := b.sessionsOfLocked(func(s *session) bool { return s.info.Grant == g.ID })
	return []Event{{Time: now, Kind: kind, Grant: g.ID, Vendor: g.Vendor, Device: g.Device, Ports: g.Ports, Actor: &a, Reason: reason, End: g.End}}, cut, nil
}

// ButtonShortPress revokes every grant that has a live session (which cuts
// them), as Actor{local, button}. ErrNoSession if none is live.
func (b *Broker) ButtonShortPress() (int, error) {
	actor := Actor{Kind: KindLocal, Via: "button", UID: -1}
	b.mu.Lock()
	seen := map[string]bool{}
	var evs []Event
	var cut []*session
	for _, s := range b.sessions {
		if seen[s.info.Grant] {
			continue
		}
		seen[s.info.Grant] = true
		if g, ok := b.grants[s.info.Grant]; ok {
			e, c, err := b.closeLocked(g, actor, StateRevoked, EvRevoke, "button short press")
			if err == nil {
				evs, cut = append(evs, e...), append(cut, c...)
				continue
			}
		}
		cut = append(cut, s)
	}
	b.mu.Unlock()
	if len(seen) == 0 {
		return 0, ErrNoSession
	}
	cutAll(cut, "ended by button press")
	b.emit(evs)
	b.updateLED()
	return len(cut), nil
}

// EndSession cuts one live session; its grant stays active.
func (b *Broker) EndSession(sessionID string, actor Actor) error {
	if !actor.Valid() {
		return ErrBadActor
	}
	b.mu.Lock()
	s, ok := b.sessions[normID(sessionID)]
	b.mu.Unlock()
	if !ok {
		return fmt.Errorf("session %s: %w", sessionID, ErrNotFound)
	}
	s.cut("ended by " + actor.String())
	return nil
}

// onAuthority applies a change of the authority: a new lock revokes the
// pending and active grants of the identities it covers and cuts their
// sessions; a tamper cuts every session.
func (b *Broker) onAuthority(c authority.Change) {
	switch {
	case c.Lock != nil:
		l := *c.Lock
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return
		}
		var evs []Event
		var cut []*session
		for _, g := range b.grants {
			if (g.State == StatePending || g.State == StateActive) && l.Matches(g.Vendor) {
				e, cs, err := b.closeLocked(g, l.Actor, StateRevoked, EvRevoke, "identity locked")
				if err == nil {
					evs, cut = append(evs, e...), append(cut, cs...)
				}
			}
		}
		cut = append(cut, b.sessionsOfLocked(func(s *session) bool { return l.Matches(s.info.Vendor) })...)
		b.mu.Unlock()
		if len(evs) > 0 || len(cut) > 0 {
			b.log.Warn("lock: vendor grants revoked and sessions cut", "identity", l.Identity, "grants", len(evs), "sessions", len(cut))
		}
		cutAll(cut, "identity locked")
		b.emit(evs)
		b.updateLED()
	case c.Tamper:
		b.mu.Lock()
		cut := b.allSessionsLocked()
		b.mu.Unlock()
		if len(cut) > 0 {
			b.log.Warn("tamper: vendor sessions cut", "sessions", len(cut))
		}
		cutAll(cut, "tamper")
	}
}

// Snapshot returns the current state (copies).
func (b *Broker) Snapshot() Snapshot {
	locks, tamper := b.o.Authority.Locks(), b.o.Authority.Tampered()
	if locks == nil {
		locks = []authority.Lock{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now()
	s := Snapshot{Time: now, Tamper: tamper, Locks: locks, LED: b.ledLocked(),
		Requests: []Grant{}, Grants: []Grant{}, Recent: []Grant{}, Sessions: []SessionInfo{}}
	for _, g := range b.grants {
		switch g.State {
		case StatePending:
			s.Requests = append(s.Requests, cloneGrant(g))
		case StateActive:
			s.Grants = append(s.Grants, cloneGrant(g))
		default:
			s.Recent = append(s.Recent, cloneGrant(g))
		}
	}
	byTime := func(x []Grant) {
		sort.Slice(x, func(i, j int) bool { return x[i].Requested.Before(x[j].Requested) })
	}
	byTime(s.Requests)
	byTime(s.Grants)
	sort.Slice(s.Recent, func(i, j int) bool { return s.Recent[i].Closed.After(s.Recent[j].Closed) })
	if len(s.Recent) > 50 {
		s.Recent = s.Recent[:50]
	}
	for _, ss := range b.sessions {
		s.Sessions = append(s.Sessions, ss.snapshot())
	}
	sort.Slice(s.Sessions, func(i, j int) bool { return s.Sessions[i].Start.Before(s.Sessions[j].Start) })
	return s
}

func cloneGrant(g *Grant) Grant {
	c := *g
	c.Ports = slices.Clone(g.Ports)
	c.Policy = slices.Clone(g.Policy)
	c.Approvals = slices.Clone(g.Approvals)
	if g.ClosedBy != nil {
		a := *g.ClosedBy
		c.ClosedBy = &a
	}
	return c
}

// --- the CONNECT decision ---

// refusal is a refused CONNECT.
type refusal struct {
	status int
	code   string
	reason string
	grant  string
}

func (r *refusal) Error() string { return r.reason }

func waitingFor(g *Grant) string {
	var parts []string
	for _, k := range g.missing() {
		switch k {
		case KindLocal:
			parts = append(parts, "local approval (approve button on the gateway, or `wardgate grant approve "+g.ID+"`)")
		case KindCentral:
			parts = append(parts, "central approval (a signed approve command for "+g.ID+")")
		}
	}
	return "waiting for " + strings.Join(parts, " and ")
}

// decide finds the grant for vendor v reaching dev:port, recording a request
// when there is none. It returns the active grant, or a refusal.
func (b *Broker) decide(v VendorIdentity, dev Device, port int, reason string) (Grant, *refusal, []Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now()
	var pending, latest *Grant
	for _, g := range b.grants {
		if g.Vendor != v.URI || g.Device != dev.ID || g.Extends != "" {
			continue
		}
		switch g.State {
		case StateActive:
			if slices.Contains(g.Ports, port) && now.Before(g.Deadline) {
				return cloneGrant(g), nil, nil
			}
		case StatePending:
			pending = g
		}
		if g.State != StatePending && (latest == nil || g.Closed.After(latest.Closed) || g.Closed.Equal(latest.Closed) && g.Requested.After(latest.Requested)) && !g.Closed.IsZero() {
			latest = g
		}
	}
	off := offHours(dev, now)
	if off == OffHoursRefuse {
		return Grant{}, &refusal{403, CodeOffHours, "outside the device's service hours; ask again within them or call the device's owner", ""}, nil
	}
	if pending != nil {
		var evs []Event
		if !slices.Contains(pending.Ports, port) && len(pending.Approvals) > 0 {
			// An approval was given for the request as it stood: never
			// widen it under that approval.
			return Grant{}, &refusal{403, CodePending, fmt.Sprintf("request %s for port %s already has an approval by %s; port %d is not part of it: ask again once the request is decided",
				pending.ID, portList(pending.Ports), pending.Approvals[0].Actor.String(), port), pending.ID}, nil
		}
		if !slices.Contains(pending.Ports, port) {
			pending.Rev++
			pending.Ports = append(pending.Ports, port)
			slices.Sort(pending.Ports)
			b.persistGrantLocked(pending)
			evs = append(evs, Event{Time: now, Kind: EvRequest, Grant: pending.ID, Vendor: v.URI, Device: dev.ID, Port: port, Ports: pending.Ports, Reason: pending.Reason, Waiting: pending.missing(), Until: pending.Deadline})
		}
		return Grant{}, &refusal{403, CodePending, fmt.Sprintf("request %s pending since %s, %s", pending.ID, pending.Requested.UTC().Format(time.RFC3339), waitingFor(pending)), pending.ID}, evs
	}
	var prefix, code = "no grant yet", CodeNoGrant
	if latest != nil && now.Sub(latest.Closed) < b.o.RefusalHold {
		by := ""
		if latest.ClosedBy != nil {
			by = " by " + latest.ClosedBy.String()
		}
		switch latest.State {
		case StateDenied:
			return Grant{}, &refusal{403, CodeDenied, fmt.Sprintf("request %s was denied%s at %s; contact the device owner before asking again", latest.ID, by, latest.Closed.UTC().Format(time.RFC3339)), latest.ID}, nil
		case StateRevoked:
			return Grant{}, &refusal{403, CodeRevoked, fmt.Sprintf("grant %s was revoked%s at %s; contact the device owner before asking again", latest.ID, by, latest.Closed.UTC().Format(time.RFC3339)), latest.ID}, nil
		case StateExpired:
			what := "grant"
			if latest.Approved.IsZero() {
				what = "request"
			}
			prefix, code = fmt.Sprintf("%s %s expired at %s", what, latest.ID, latest.Deadline.UTC().Format(time.RFC3339)), CodeExpired
		}
	}
	g := &Grant{
		ID: b.newIDLocked(), Vendor: v.URI, Org: v.Org, Person: v.Person, Device: dev.ID,
		Ports: []int{port}, Reason: reason, Policy: offHoursPolicy(dev, off), State: StatePending,
		Requested: now, Deadline: now.Add(b.requestTTL(dev)),
	}
	b.grants[g.ID] = g
	b.persistGrantLocked(g)
	evs := []Event{{Time: now, Kind: EvRequest, Grant: g.ID, Vendor: v.URI, Device: dev.ID, Port: port, Ports: g.Ports, Reason: reason, Waiting: g.missing(), Until: g.Deadline}}
	evs = append(evs, b.scheduleLocked(g, now)...)
	return Grant{}, &refusal{403, code, fmt.Sprintf("%s: request %s recorded, %s", prefix, g.ID, waitingFor(g)), g.ID}, evs
}
