package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/telemetry"
)

// eventSink is where the agent's events go: the log, telemetry (signed,
// durable) and a bounded in-memory list for `wardgate status`. Payload
// bytes never reach it: components hand over identities, ids, counts and
// reasons only.
type eventSink struct {
	log     *slog.Logger
	publish func(telemetry.Event) (uint64, error) // nil until telemetry runs

	mu     sync.Mutex
	recent []recentEvent
}

type recentEvent struct {
	Time     time.Time         `json:"time"`
	Kind     string            `json:"kind"`
	Severity string            `json:"severity"`
	Attrs    map[string]string `json:"attrs"`
}

const recentEvents = 50

func (s *eventSink) emit(now time.Time, kind, severity string, attrs map[string]string) {
	if severity == "" {
		severity = telemetry.SeverityInfo
	}
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
	case telemetry.SeverityWarning:
		level = slog.LevelWarn
	case telemetry.SeverityAlarm:
		level = slog.LevelError
	}
	s.log.Log(context.Background(), level, "event", args...)
	s.mu.Lock()
	s.recent = append(s.recent, recentEvent{Time: now, Kind: kind, Severity: severity, Attrs: attrs})
	if len(s.recent) > recentEvents {
		s.recent = s.recent[len(s.recent)-recentEvents:]
	}
	pub := s.publish
	s.mu.Unlock()
	if pub != nil {
		if _, err := pub(telemetry.Event{Kind: kind, Severity: severity, Attrs: attrs}); err != nil {
			s.log.Error("event not queued for telemetry", "event", kind, "err", err)
		}
	}
}

func (s *eventSink) setPublisher(p func(telemetry.Event) (uint64, error)) {
	s.mu.Lock()
	s.publish = p
	s.mu.Unlock()
}

func (s *eventSink) snapshot() []recentEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recentEvent(nil), s.recent...)
}

// accessEvent flattens a vendor-access event into telemetry attributes.
func accessEvent(e access.Event) (kind, severity string, attrs map[string]string) {
	attrs = map[string]string{}
	b, _ := json.Marshal(e)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for k, v := range m {
		if k == "kind" || k == "time" {
			continue
		}
		switch x := v.(type) {
		case string:
			attrs[k] = x
		case map[string]any:
			if k == "actor" {
				attrs[k] = actorString(e.Actor)
				continue
			}
			vb, _ := json.Marshal(x)
			attrs[k] = string(vb)
		case []any:
			parts := make([]string, len(x))
			for i, p := range x {
				parts[i] = fmt.Sprint(p)
			}
			attrs[k] = strings.Join(parts, ",")
		default:
			attrs[k] = fmt.Sprint(x)
		}
	}
	if e.Kind == access.EvLockAdd || e.Kind == access.EvLockRemove {
		attrs["identity"] = attrs["vendor"] // a lock names any identity, not only vendors
		delete(attrs, "vendor")
	}
	if e.Duration > 0 {
		attrs["duration"] = e.Duration.Round(time.Millisecond).String()
	}
	severity = telemetry.SeverityInfo
	switch e.Kind {
	case access.EvRefused, access.EvLockAdd, access.EvRevoke:
		severity = telemetry.SeverityWarning
	case access.EvTamper:
		severity = telemetry.SeverityAlarm
	}
	return e.Kind, severity, attrs
}

func actorString(a *access.Actor) string {
	if a == nil {
		return ""
	}
	return a.String()
}
