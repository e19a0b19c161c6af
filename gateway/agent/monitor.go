package agent

import (
	"time"

	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/access"
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
