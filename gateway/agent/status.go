package agent

import (
	"context"
	"strings"
	"time"

	"github.com/wardgate/wardgate/wire"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/monitor"
	"github.com/wardgate/wardgate/gateway/telemetry"
	"github.com/wardgate/wardgate/hal"
)

// Status is the answer of GET /v1/status and `wardgate status --json`.
// Its keys are stable (docs/security-team.md, "Admin API").
type Status struct {
	Time     time.Time      `json:"time"`
	Gateway  GatewayStatus  `json:"gateway"`
	Identity certs.Status   `json:"identity"`
	Devices  []DeviceStatus `json:"devices"`
	// Retired lists the devices out of service (no listener; kept in the
	// inventory).
	Retired   []RetiredDevice `json:"retired_devices,omitempty"`
	Vendor    access.Snapshot `json:"vendor"`
	Telemetry TelemetryStatus `json:"telemetry"`
	Hardware  hal.State       `json:"hardware"`
	Alarms    []string        `json:"alarms"`
	Events    []recentEvent   `json:"recent_events"`
	// Monitor is the monitor's findings, baselines, controls and neighbour
	// scan (absent when the agent has none).
	Monitor *monitor.Status `json:"monitor,omitempty"`
}

// RetiredDevice is a device out of service in Status.
type RetiredDevice struct {
	ID         string `json:"id"`
	Retired    string `json:"retired"` // YYYY-MM-DD
	ReplacedBy string `json:"replaced_by,omitempty"`
}

// GatewayStatus names the gateway and its configuration.
type GatewayStatus struct {
	ID         string    `json:"id"`
	Site       string    `json:"site"`
	Version    string    `json:"version"`
	ConfigHash string    `json:"config_hash"`
	Started    time.Time `json:"started"`
	State      string    `json:"state"` // ok, degraded or alarm
	Why        []string  `json:"why,omitempty"`
}

// TelemetryStatus is the telemetry part of Status.
type TelemetryStatus struct {
	Broker       string    `json:"broker"` // the broker in use (or tried last) of mqtt.brokers
	Failovers    uint64    `json:"failovers"`
	Connected    bool      `json:"connected"`
	Session      uint64    `json:"session"`
	Sent         uint64    `json:"sent"`
	Resent       uint64    `json:"resent"`
	Refused      uint64    `json:"refused"`
	Queued       int       `json:"queued"`
	QueuedBytes  int64     `json:"queued_bytes"`
	OldestQueued time.Time `json:"oldest_queued,omitzero"`
	Lost         uint64    `json:"metrics_dropped"`
	NextSeq      uint64    `json:"next_seq"`
}

func telemetryStatus(st telemetry.Stats) TelemetryStatus {
	return TelemetryStatus{Broker: st.Broker, Failovers: st.Failovers, Connected: st.Connected, Session: st.Session, Sent: st.Sent, Resent: st.Resent,
		Refused: st.Refused, Queued: st.Outbox.Depth, QueuedBytes: st.Outbox.Bytes, OldestQueued: st.Outbox.Oldest,
		Lost: st.Outbox.Lost, NextSeq: st.Outbox.NextSeq}
}

// Status returns a snapshot of everything `wardgate status` shows.
func (a *Agent) Status() Status {
	cfg := a.cfg()
	s := Status{
		Time: a.clock.Now(),
		Gateway: GatewayStatus{ID: cfg.Gateway.ID, Site: cfg.Gateway.Site, Version: a.o.Version,
			ConfigHash: cfg.Hash, Started: a.start},
		Identity:  a.ident.Status(),
		Devices:   a.clin.status(),
		Vendor:    a.access.Snapshot(),
		Telemetry: telemetryStatus(a.tel.Stats()),
		Hardware:  a.hw.board.State(),
		Alarms:    a.alarmList(),
		Events:    a.events.snapshot(),
		Monitor:   a.monitorStatus(),
	}
	for i := range cfg.Devices {
		if d := &cfg.Devices[i]; d.IsRetired() {
			s.Retired = append(s.Retired, RetiredDevice{ID: d.ID, Retired: d.Retired.String(), ReplacedBy: d.ReplacedBy})
		}
	}
	s.Gateway.State = "ok"
	if !s.Telemetry.Connected {
		s.Gateway.State = "degraded"
		s.Gateway.Why = append(s.Gateway.Why, "telemetry broker unreachable (events are kept until it answers)")
	}
	if a.certLeft() < 0.25 {
		s.Gateway.State = "degraded"
		s.Gateway.Why = append(s.Gateway.Why, "less than 25% of the certificate lifetime left")
	}
	if len(s.Alarms) > 0 {
		s.Gateway.State = "alarm"
	}
	return s
}

// statusEvery is how often a status message goes out when nothing changed.
const statusEvery = 10 * time.Minute

// statusLoop is the one place status messages are published from: when the
// state or the alarms change (checked every second and at once when an
// alarm is raised or cleared) and every statusEvery otherwise. It also
// raises certificate_expired the moment the certificate runs out.
func (a *Agent) statusLoop(ctx context.Context) error {
	tick := a.clock.NewTicker(time.Second)
	defer tick.Stop()
	hb := a.hw.board.Kicker.Monitor("agent-status", 30*time.Second)
	defer hb.Stop()
	var last time.Time
	lastKey := ""
	for {
		hb.Beat()
		if left := a.certLeft(); left <= 0 {
			a.raise("certificate_expired", "the gateway certificate expired; the gateway keeps trying to renew it")
		}
		a.publishStatus(&last, &lastKey)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.Chan():
		case <-a.statusWake:
		}
	}
}

// publishStatus sends a status message when the state or the alarms
// changed, and every statusEvery otherwise.
func (a *Agent) publishStatus(last *time.Time, lastKey *string) {
	st := a.Status()
	key := st.Gateway.State + "|" + strings.Join(st.Alarms, "|")
	now := a.clock.Now()
	if key == *lastKey && now.Sub(*last) < statusEvery {
		return
	}
	msg := strings.Join(st.Gateway.Why, "; ")
	if _, err := a.tel.Status(wire.Status{State: st.Gateway.State, UptimeS: int64(now.Sub(a.start) / time.Second),
		Alarms: append([]string{}, st.Alarms...), Message: msg}); err != nil {
		a.log.Warn("status not queued", "err", err)
		return
	}
	*last, *lastKey = now, key
}
