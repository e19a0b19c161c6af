package agent

import (
	"sort"

	"github.com/wardgate/wardgate/wire"
)

// Alarms live here and nowhere else: a kind (snake_case, e.g. tamper,
// certificate_expired, state_not_saved) with the message a person reads.
// A raised alarm is an event, lights the red LED (indicatorLoop) and goes
// to central in the next status message (statusLoop); both are woken at
// once. Raising a raised alarm again only updates its message.

// raise and clear track alarms (red LED, status, telemetry).
func (a *Agent) raise(kind, msg string) {
	a.alarmsMu.Lock()
	_, had := a.alarms[kind]
	a.alarms[kind] = msg
	a.alarmsMu.Unlock()
	if !had {
		a.events.emit(a.clock.Now(), "alarm.raised", wire.SeverityAlarm, map[string]string{"alarm": kind, "message": msg})
		a.alarmChanged()
	}
}

func (a *Agent) clear(kind string) {
	a.alarmsMu.Lock()
	_, had := a.alarms[kind]
	delete(a.alarms, kind)
	a.alarmsMu.Unlock()
	if had {
		a.events.emit(a.clock.Now(), "alarm.cleared", wire.SeverityInfo, map[string]string{"alarm": kind})
		a.alarmChanged()
	}
}

func (a *Agent) alarmList() []string {
	a.alarmsMu.Lock()
	defer a.alarmsMu.Unlock()
	out := make([]string, 0, len(a.alarms))
	for k, m := range a.alarms {
		out = append(out, k+": "+m)
	}
	sort.Strings(out)
	return out
}

// alarmChanged wakes the LED and status loops.
func (a *Agent) alarmChanged() {
	if a.hw != nil {
		a.hw.poke()
	}
	select {
	case a.statusWake <- struct{}{}:
	default:
	}
}
