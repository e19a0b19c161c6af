package agent

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardgate/wardgate/wire"

	"github.com/wardgate/wardgate/gateway/access"
)

// eventSink is where the agent's events go: the log, telemetry (signed,
// durable) and a bounded in-memory list for `wardgate status`. Payload
// bytes never reach it: components hand over identities, ids, counts and
// reasons only.
type eventSink struct {
	log     *slog.Logger
	publish func(wire.Event) (uint64, error) // nil until telemetry runs
	// observe, when set, sees every event after it was kept and handed to
	// telemetry (the monitor); it is called outside the sink's lock.
	observe atomic.Pointer[func(t time.Time, kind string, attrs map[string]string)]

	mu        sync.Mutex
	recent    []recentEvent
	early     []earlyEvent // emitted before the publisher was set
	earlyLost int
}

type recentEvent struct {
	Time     time.Time         `json:"time"`
	Kind     string            `json:"kind"`
	Severity string            `json:"severity"`
	Attrs    map[string]string `json:"attrs"`
}

const recentEvents = 50

// maxAttr caps every attribute value: events may quote what a peer sent
// (a claimed identity, a reason header) and must stay small.
const maxAttr = 256

// capAttrs makes every value printable and at most maxAttr bytes.
func capAttrs(attrs map[string]string) {
	for k, v := range attrs {
		clean := true
		for i := 0; i < len(v); i++ {
			if v[i] < 0x20 || v[i] >= 0x7f {
				clean = false
				break
			}
		}
		if clean && len(v) <= maxAttr {
			continue
		}
		b := []byte(v)
		for i, c := range b {
			if c < 0x20 || c >= 0x7f {
				b[i] = '?'
			}
		}
		if len(b) > maxAttr {
			b = append(b[:maxAttr-3], "..."...)
		}
		attrs[k] = string(b)
	}
}

// emit logs, keeps and publishes one event.
func (s *eventSink) emit(now time.Time, kind, severity string, attrs map[string]string) {
	s.emitThen(now, kind, severity, attrs, nil)
}

// maxEarly bounds the events kept while telemetry is not yet running.
const maxEarly = 1000

type earlyEvent struct {
	ev     wire.Event
	queued func(seq uint64)
}

// emitThen is emit that calls queued with the telemetry seq once the event
// is in the outbox (at once, or when telemetry starts for events emitted
// while the agent was being set up).
func (s *eventSink) emitThen(now time.Time, kind, severity string, attrs map[string]string, queued func(seq uint64)) {
	if severity == "" {
		severity = wire.SeverityInfo
	}
	capAttrs(attrs)
	args := make([]any, 0, 2*len(attrs)+2)
	args = append(args, "event", kind)
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, k, attrs[k])
	}
	level := slog.LevelInfo
	switch severity {
	case wire.SeverityWarning:
		level = slog.LevelWarn
	case wire.SeverityAlarm:
		level = slog.LevelError
	}
	s.log.Log(context.Background(), level, "event", args...)
	if obs := s.observe.Load(); obs != nil {
		defer (*obs)(now, kind, attrs)
	}
	s.mu.Lock()
	s.recent = append(s.recent, recentEvent{Time: now, Kind: kind, Severity: severity, Attrs: attrs})
	if len(s.recent) > recentEvents {
		s.recent = s.recent[len(s.recent)-recentEvents:]
	}
	pub := s.publish
	ev := wire.Event{Kind: kind, Severity: severity, Attrs: attrs}
	if pub == nil {
		if len(s.early) < maxEarly {
			s.early = append(s.early, earlyEvent{ev, queued})
		} else {
			s.earlyLost++
		}
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.publishOne(pub, earlyEvent{ev, queued})
}

func (s *eventSink) publishOne(pub func(wire.Event) (uint64, error), e earlyEvent) {
	seq, err := pub(e.ev)
	if err != nil {
		s.log.Error("event not queued for telemetry", "event", e.ev.Kind, "err", err)
		return
	}
	if e.queued != nil {
		e.queued(seq)
	}
}

// setPublisher starts publishing: events emitted before go out first, in
// order.
func (s *eventSink) setPublisher(p func(wire.Event) (uint64, error)) {
	s.mu.Lock()
	early, lost := s.early, s.earlyLost
	s.early, s.earlyLost = nil, 0
	s.publish = p
	s.mu.Unlock()
	for _, e := range early {
		s.publishOne(p, e)
	}
	if lost > 0 {
		s.log.Error("events emitted during start-up were not queued for telemetry", "lost", lost)
	}
}

func (s *eventSink) snapshot() []recentEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recentEvent(nil), s.recent...)
}

// accessEvent forwards a vendor-access event; a session end also tells
// the recording store which telemetry seq carries it, so the recording is
// pruned only after central has it.
func (a *Agent) accessEvent(e access.Event) {
	var queued func(uint64)
	if e.Kind == access.EvSessionEnd && e.Session != "" {
		queued = func(seq uint64) {
			if err := a.recs.Ended(e.Session, seq); err != nil {
				a.log.Warn("recording end not recorded", "session", e.Session, "err", err)
			}
		}
	}
	a.events.emitThen(e.Time, e.Kind, e.Severity(), e.Attrs(), queued)
}
