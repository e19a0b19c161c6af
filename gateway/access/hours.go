package access

import (
	"slices"
	"time"
)

// CodeOffHours refuses a request outside the device's service hours
// (Device.OffHours answered OffHoursRefuse): 403, no request is recorded.
const CodeOffHours = "off_hours"

// What Device.OffHours answers.
const (
	InHours         = ""        // inside the service hours (or none set)
	OffHoursRefuse  = "refuse"  // outside: refuse with CodeOffHours
	OffHoursCentral = "central" // outside: a new request needs a central approval too
)

// offHours asks dev's schedule about now.
func offHours(dev Device, now time.Time) string {
	if dev.OffHours == nil {
		return InHours
	}
	return dev.OffHours(now)
}

// offHoursPolicy is the approval policy of a request made at now: the
// device's, plus central approval when off-hours requests need it.
func offHoursPolicy(dev Device, off string) []string {
	p := slices.Clone(dev.Approval)
	if off == OffHoursCentral && !slices.Contains(p, KindCentral) {
		p = append(p, KindCentral)
	}
	return p
}
