package agent

import (
	"context"
	"path/filepath"
	"time"

	"github.com/wardgate/wardgate/wire"

	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/monitor"
)

// offHoursFunc is the broker's view of a device's vendor.hours: nil when
// none are set, else the off-hours action outside them (gateway local time).
func offHoursFunc(v *config.DeviceVend) func(time.Time) string {
	if v == nil || v.Hours.IsZero() {
		return nil
	}
	hours, action := v.Hours, access.OffHoursRefuse
	if v.OffHours == config.OffHoursCentral {
		action = access.OffHoursCentral
	}
	return func(now time.Time) string {
		if hours.Contains(now.Local()) {
			return access.InHours
		}
		return action
	}
}

// setupMonitor opens the monitor (STATE_DIR/monitor.db) and feeds it with
// every event the sink sees.
func (a *Agent) setupMonitor() error {
	cfg := a.cfg()
	m, err := monitor.New(monitor.Options{
		Path:   filepath.Join(cfg.Gateway.StateDir, "monitor.db"),
		Config: cfg,
		Emit: func(f monitor.Finding) {
			a.events.emit(f.Time, f.Kind, f.Severity(), f.Attrs())
		},
		Traffic: a.monitorTraffic,
		Probe:   func(ctx context.Context) { a.clin.srv.ProbeLinks(ctx) },
		Env: monitor.Env{
			TelemetryOldest: func() (time.Time, bool) {
				if a.tel == nil {
					return time.Time{}, false
				}
				return a.tel.Stats().Outbox.Oldest, true
			},
			VendorPolicy:  a.vendorPolicy,
			LocksEnforced: func() bool { return a.access != nil && a.auth != nil },
		},
		ControlsChanged: a.controlsChanged,
		Clock:           a.clock,
		Logger:          a.o.Logger.With("component", "monitor"),
	})
	if err != nil {
		return err
	}
	a.mon = m
	obs := m.Observe
	a.events.observe.Store(&obs)
	return nil
}

// monitorTraffic hands the clinical relay's counters to the monitor.
func (a *Agent) monitorTraffic() []monitor.Traffic {
	var out []monitor.Traffic
	for _, d := range a.clin.status() {
		k := d.Counters
		out = append(out, monitor.Traffic{Device: d.ID, ToDevice: k.BytesToDevice, FromDevice: k.BytesFromDevice, Sessions: k.Sessions, Live: k.Live})
	}
	return out
}

// vendorPolicy is the vendor policy the broker enforces for a device: the
// same mapping the broker is given.
func (a *Agent) vendorPolicy(device string) (monitor.VendorPolicy, bool) {
	if a.access == nil {
		return monitor.VendorPolicy{}, false
	}
	for _, d := range accessDevices(a.cfg()) {
		if d.ID == device {
			return monitor.VendorPolicy{Approval: d.Approval, Ports: d.Ports, Hours: d.OffHours != nil}, true
		}
	}
	return monitor.VendorPolicy{}, false
}

// controlsChanged republishes the inventory, which carries the controls'
// live state.
func (a *Agent) controlsChanged() {
	if a.tel == nil {
		return
	}
	if _, err := a.tel.PublishInventory(a.inventory()); err != nil {
		a.log.Warn("inventory with new control states not queued", "err", err)
	}
}

// inventory is the configuration's inventory with each exception's
// controls in their live state.
func (a *Agent) inventory() wire.Inventory {
	inv := inventory(a.cfg())
	inv.SBOM = a.sbom
	if a.mon == nil {
		return inv
	}
	live := map[[2]string][]wire.Control{}
	for _, ec := range a.mon.Controls() {
		var cs []wire.Control
		for _, c := range ec.Controls {
			if c.Checked.IsZero() {
				continue
			}
			cs = append(cs, wire.Control{Name: c.Name, InForce: c.InForce, Detail: c.Detail, Checked: c.Checked})
		}
		live[[2]string{ec.Device, ec.Exception}] = cs
	}
	for i := range inv.Devices {
		d := &inv.Devices[i]
		for j := range d.Exceptions {
			d.Exceptions[j].Controls = live[[2]string{d.ID, d.Exceptions[j].ID}]
		}
	}
	return inv
}

// monitorStatus is the monitor's part of `wardgate status`.
func (a *Agent) monitorStatus() *monitor.Status {
	if a.mon == nil {
		return nil
	}
	st := a.mon.Status()
	return &st
}
