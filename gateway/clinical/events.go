package clinical

import (
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Event is something that happened on the clinical path. It never carries
// device payload bytes.
type Event struct {
	Time   time.Time
	Kind   string // Ev* constants
	Device string
	// Identity is the peer identity Authorize named (also on refusal when
	// it was known).
	Identity string
	// Claimed is the first URI SAN of a refused peer's certificate,
	// unverified, for investigation only.
	Claimed string
	Remote  string // client IP:port
	Reason  string // Reason* code or the reason Authorize gave
	Detail  string // operator-readable explanation
	// Suppressed counts events of the same device, kind and reason folded
	// into this one by the rate limit since the previous one.
	Suppressed int
	// Session end: bytes relayed each way and the session's duration.
	ToDevice, FromDevice int64
	Duration             time.Duration
}

// Severity is the telemetry severity of the event: refusals, failed
// handshakes and limits warn, a device link going down is an alarm.
func (e Event) Severity() string {
	switch e.Kind {
	case EvRefused, EvHandshakeFailed, EvLimit, EvBusy, EvListenerError:
		return "warning"
	case EvLinkDown:
		return "alarm"
	}
	return "info"
}

// Attrs returns the event's telemetry attributes: empty fields are left
// out, numbers stay decimal integers, durations are Go durations.
func (e Event) Attrs() map[string]string {
	attrs := map[string]string{"device": e.Device}
	add := func(k, v string) {
		if v != "" {
			attrs[k] = v
		}
	}
	add("identity", e.Identity)
	add("claimed", e.Claimed)
	add("remote", e.Remote)
	add("reason", e.Reason)
	add("detail", e.Detail)
	if e.Suppressed > 0 {
		attrs["suppressed"] = strconv.Itoa(e.Suppressed)
	}
	if e.Kind == EvSessionEnd {
		attrs["to_device"] = strconv.FormatInt(e.ToDevice, 10)
		attrs["from_device"] = strconv.FormatInt(e.FromDevice, 10)
		attrs["duration"] = e.Duration.Round(time.Millisecond).String()
	}
	return attrs
}

// Counters are per device, monotonic across reloads of the same device id.
type Counters struct {
	BytesToDevice   int64 `json:"bytes_to_device"`
	BytesFromDevice int64 `json:"bytes_from_device"`
	// Accepted counts TCP connections accepted, Sessions those that reached
	// the device; Live is the sessions open now.
	Accepted int64 `json:"accepted"`
	Sessions int64 `json:"sessions"`
	Live     int64 `json:"live"`
	// HandshakeFailures counts failed handshakes by reason (authorization
	// refusals included), AuthFailures only those Authorize refused,
	// Refused clients turned away after the handshake or at accept (limits,
	// busy serial port, link down).
	HandshakeFailures map[string]int64 `json:"handshake_failures,omitempty"`
	AuthFailures      map[string]int64 `json:"auth_failures,omitempty"`
	Refused           map[string]int64 `json:"refused,omitempty"`
	LinkDowns         int64            `json:"link_downs"`
	EventsSuppressed  int64            `json:"events_suppressed"`
}

// stats are one device's counters, shared by its successive incarnations.
type stats struct {
	toDev, fromDev, accepted, sessions, live, linkDowns, suppressed atomic.Int64

	mu                  sync.Mutex
	hsFail, auth, refus map[string]int64
}

func newStats() *stats {
	return &stats{hsFail: map[string]int64{}, auth: map[string]int64{}, refus: map[string]int64{}}
}

func (s *stats) inc(m map[string]int64, reason string) {
	s.mu.Lock()
	m[reason]++
	s.mu.Unlock()
}

func (s *stats) snapshot() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Counters{
		BytesToDevice: s.toDev.Load(), BytesFromDevice: s.fromDev.Load(),
		Accepted: s.accepted.Load(), Sessions: s.sessions.Load(), Live: s.live.Load(),
		HandshakeFailures: maps.Clone(s.hsFail), AuthFailures: maps.Clone(s.auth), Refused: maps.Clone(s.refus),
		LinkDowns: s.linkDowns.Load(), EventsSuppressed: s.suppressed.Load(),
	}
}

// limiter folds events of the same key beyond a burst per window.
type limiter struct {
	window time.Duration
	mu     sync.Mutex
	keys   map[limitKey]*limitState
}

type limitKey struct{ kind, device, reason, identity string }

type limitState struct {
	start      time.Time // window start
	count      int       // events emitted in this window
	suppressed int
	pending    Event // the latest folded event, emitted at flush
}

// burst is how many events of one key may go out per window: one for
// refusals and failures, more for the sessions of an identity.
func burst(kind string) int {
	switch kind {
	case EvSessionStart, EvSessionEnd:
		return 10
	case EvLinkUp, EvLinkDown:
		return 3
	}
	return 1
}

// admit returns whether ev may go out now (with its Suppressed count set).
func (l *limiter) admit(ev *Event, st *stats) bool {
	k := limitKey{ev.Kind, ev.Device, ev.Reason, ""}
	if ev.Kind == EvSessionStart || ev.Kind == EvSessionEnd {
		k.identity = ev.Identity
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.keys[k]
	if s == nil {
		s = &limitState{start: ev.Time}
		l.keys[k] = s
	} else if ev.Time.Sub(s.start) >= l.window {
		s.start, s.count = ev.Time, 0
	}
	if s.count < burst(ev.Kind) {
		s.count++
		ev.Suppressed, s.suppressed = s.suppressed, 0
		return true
	}
	s.suppressed++
	s.pending = *ev
	if st != nil {
		st.suppressed.Add(1)
	}
	return false
}

// flush returns, for every key whose window ended with events folded, the
// last folded event carrying the count of the others, and forgets idle keys.
func (l *limiter) flush(now time.Time) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for k, s := range l.keys {
		if now.Sub(s.start) < l.window {
			continue
		}
		if s.suppressed > 0 {
			ev := s.pending
			ev.Suppressed = s.suppressed - 1
			s.suppressed, s.start, s.count = 0, now, 1
			out = append(out, ev)
			continue
		}
		delete(l.keys, k)
	}
	return out
}
