package monitor

import (
	"slices"
	"time"
)

// Status is the monitor's state for `wardgate status`.
type Status struct {
	Enabled bool `json:"enabled"`
	// Findings are the most recent findings, oldest first (bounded).
	Findings []Finding `json:"findings"`
	// Counts are the findings raised since start, by kind.
	Counts     map[string]int      `json:"counts"`
	Baselines  []BaselineStatus    `json:"baselines"`
	Controls   []ExceptionControls `json:"controls"`
	Neighbours NeighbourStatus     `json:"neighbours"`
	// Learned counts the clinical identities and approvers learned.
	LearnedIdentities int `json:"learned_identities"`
	LearnedApprovers  int `json:"learned_approvers"`
}

// BaselineStatus summarises one device's traffic baseline.
type BaselineStatus struct {
	Device   string    `json:"device"`
	Owner    string    `json:"owner"`
	Learning bool      `json:"learning"`     // still inside baseline_window
	Until    time.Time `json:"learned_from"` // when the baseline is in force
	// Slots is how many of the 168 hours of the week have a sample.
	Slots int `json:"slots"`
	// LastHour is the last complete hour's traffic.
	LastHourToDevice   int64     `json:"last_hour_bytes_to_device"`
	LastHourFromDevice int64     `json:"last_hour_bytes_from_device"`
	LastHourSessions   int64     `json:"last_hour_sessions"`
	LastActivity       time.Time `json:"last_activity"`
}

// NeighbourStatus is what the last neighbour scan saw.
type NeighbourStatus struct {
	Interface string `json:"interface,omitempty"`
	Seen      int    `json:"seen"`
	Unknown   int    `json:"unknown"`
	Error     string `json:"error,omitempty"`
}

// Status returns a snapshot of the monitor's state.
func (m *Monitor) Status() Status {
	ctl := m.Controls()
	m.mu.Lock()
	defer m.mu.Unlock()
	st := Status{Enabled: m.set.mon.On(), Findings: slices.Clone(m.recent), Counts: map[string]int{}, Controls: ctl,
		Baselines:  []BaselineStatus{},
		Neighbours: NeighbourStatus{Interface: m.set.mon.SegmentInterface, Seen: m.neigh.seen, Unknown: m.neigh.unknown, Error: m.neigh.err}}
	if st.Findings == nil {
		st.Findings = []Finding{}
	}
	for k, v := range m.counts {
		st.Counts[k] = v
	}
	now := m.clock.Now()
	for _, dev := range m.set.cfg.Devices {
		dt := m.traffic[dev.ID]
		if dt == nil {
			continue
		}
		b := BaselineStatus{Device: dev.ID, Owner: dev.Owner, Until: dt.b.FirstSeen.Add(m.set.mon.BaselineWindow.D()),
			LastHourToDevice: int64(dt.b.LastHour[metToDevice]), LastHourFromDevice: int64(dt.b.LastHour[metFromDevice]),
			LastHourSessions: int64(dt.b.LastHour[metSessions]), LastActivity: dt.b.LastSeen}
		b.Learning = now.Before(b.Until)
		for _, s := range dt.b.Week {
			if s.N > 0 {
				b.Slots++
			}
		}
		st.Baselines = append(st.Baselines, b)
	}
	if !m.closed {
		st.LearnedIdentities = m.st.count(bucketIdentities)
		st.LearnedApprovers = m.st.count(bucketApprovers)
	}
	return st
}
