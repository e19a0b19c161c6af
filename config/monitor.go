package config

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Monitor configures the gateway's monitor: detectors of unusual
// authentication, device behaviour baselines, the isolated segment's
// neighbour table and the run-time checks of compensating controls.
// Zero fields take the defaults in defaults.go.
type Monitor struct {
	// Enabled turns the monitor on (default true). Off, no finding is
	// raised and the continuous-monitoring control is not in force.
	Enabled *bool `yaml:"enabled"`
	// SegmentInterface is the network interface of the isolated device
	// segment (e.g. eth1). Set, the monitor watches its neighbour table for
	// unknown devices and the segmentation control checks routes against it.
	SegmentInterface string `yaml:"segment_interface"`
	// FindingWindow is how often one finding (same kind and key) may be
	// raised: further occurrences inside the window are counted and
	// reported with the next one. Default 15m, 1m to 24h.
	FindingWindow Duration `yaml:"finding_window"`
	// FailedHandshakes are the thresholds of monitor.auth_burst.
	FailedHandshakes HandshakeBurst `yaml:"failed_handshakes"`
	// BaselineWindow is how long device traffic is learned before
	// deviations are reported (per device, direction and hour of week).
	// Default 14d, 1d to 90d.
	BaselineWindow Duration `yaml:"baseline_window"`
	// AnomalyFactor: an hour with more than this factor times, or less than
	// 1/factor of, the learned bytes or sessions is an anomaly. Default 4,
	// more than 1 and at most 1000.
	AnomalyFactor Factor `yaml:"anomaly_factor"`
	// AnomalyMinBytes is the noise floor: hours below it in both the
	// baseline and the observation are never anomalies. Default 64KiB.
	AnomalyMinBytes Size `yaml:"anomaly_min_bytes"`
	// LinkProbe is how often each TCP device link is probed with a TCP
	// connect (no payload). Default 60s, 5s to 1h.
	LinkProbe Duration `yaml:"link_probe"`
	// NeighbourInterval is how often the segment's neighbour table is read.
	// Default 30s, 1s to 1h.
	NeighbourInterval Duration `yaml:"neighbour_interval"`
	// ControlsInterval is how often compensating controls are checked.
	// Default 5m, 10s to 24h.
	ControlsInterval Duration `yaml:"controls_interval"`
	// TelemetryWithin: continuous-monitoring is in force only when
	// telemetry was delivered this recently. Default 15m, 1m to 24h.
	TelemetryWithin Duration `yaml:"telemetry_within"`
	// ApproverLearn is how many actions of one approver are learned before
	// an action outside the hours seen so far is reported. Default 20.
	ApproverLearn int `yaml:"approver_learn"`
}

// HandshakeBurst is the threshold of failed handshakes within Window, per
// source address and per claimed identity.
type HandshakeBurst struct {
	PerSource   int      `yaml:"per_source"`   // default 20
	PerIdentity int      `yaml:"per_identity"` // default 10
	Window      Duration `yaml:"window"`       // default 5m, 10s to 24h
}

// On reports whether the monitor is enabled.
func (m Monitor) On() bool { return m.Enabled == nil || *m.Enabled }

// Factor is a positive multiplier written as a number, e.g. 4 or 2.5.
type Factor float64

func (f *Factor) parseScalar(s string) error {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("%q is not a number; write a factor like 4 or 2.5", s)
	}
	*f = Factor(v)
	return nil
}

// String formats the factor as written.
func (f Factor) String() string { return strconv.FormatFloat(float64(f), 'f', -1, 64) }

// MarshalText prints the factor as written.
func (f Factor) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// Off-hours actions of a device's vendor.off_hours.
const (
	OffHoursRefuse  = "refuse"  // vendor requests outside vendor.hours are refused
	OffHoursCentral = "central" // they need a central (signed) approval besides the device's policy
)

// Compensating controls the gateway checks at run time: the only names an
// exception's compensating list may use.
const (
	ControlSegmentation         = "segmentation"
	ControlRestrictedAdminPath  = "restricted-admin-path"
	ControlContinuousMonitoring = "continuous-monitoring"
	ControlVendorHours          = "vendor-hours"
	ControlNoVendorAccess       = "no-vendor-access"
)

// CompensatingControls lists every name of Control* in a stable order.
var CompensatingControls = []string{ControlSegmentation, ControlRestrictedAdminPath, ControlContinuousMonitoring,
	ControlVendorHours, ControlNoVendorAccess}

// Hours is a weekly schedule such as "Mon-Fri 07:00-19:00" or
// "Mon-Fri 07:00-19:00, Sat 08:00-12:00". Days are Mon..Sun, a range of
// them (Fri-Mon wraps) or "daily"; times are HH:MM, the end after the start
// (24:00 ends at midnight). It is read in the gateway's local time. The
// zero value (no rules) means "not set".
type Hours struct {
	text  string
	rules []hourRule
}

type hourRule struct {
	days       [7]bool // indexed by time.Weekday
	start, end int     // minutes of the day, start < end <= 1440
}

// ParseHours parses a weekly schedule; the error says what is accepted.
func ParseHours(s string) (Hours, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Hours{}, fmt.Errorf("empty schedule; write it like %q", "Mon-Fri 07:00-19:00")
	}
	if len(s) > 512 {
		return Hours{}, fmt.Errorf("schedule is too long (%d characters); at most 512", len(s))
	}
	h := Hours{text: s}
	for part := range strings.SplitSeq(s, ",") {
		r, err := parseHourRule(strings.TrimSpace(part))
		if err != nil {
			return Hours{}, err
		}
		h.rules = append(h.rules, r)
	}
	return h, nil
}

var dayNames = map[string]time.Weekday{"mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday, "sun": time.Sunday}

func parseHourRule(s string) (hourRule, error) {
	var r hourRule
	days, times, ok := strings.Cut(s, " ")
	if !ok || strings.TrimSpace(times) == "" {
		return r, fmt.Errorf("%q is not days and times; write it like %q", s, "Mon-Fri 07:00-19:00")
	}
	times = strings.TrimSpace(times)
	if strings.EqualFold(days, "daily") {
		r.days = [7]bool{true, true, true, true, true, true, true}
	} else {
		from, to, isRange := strings.Cut(days, "-")
		d1, ok1 := dayNames[strings.ToLower(from)]
		d2, ok2 := d1, true
		if isRange {
			d2, ok2 = dayNames[strings.ToLower(to)]
		}
		if !ok1 || !ok2 {
			return r, fmt.Errorf("%q is not a day or range of days; use Mon, Tue, Wed, Thu, Fri, Sat, Sun, a range like Mon-Fri, or daily", days)
		}
		for d := d1; ; d = (d + 1) % 7 {
			r.days[d] = true
			if d == d2 {
				break
			}
		}
	}
	a, b, ok := strings.Cut(times, "-")
	if !ok {
		return r, fmt.Errorf("%q is not a time range; write it like 07:00-19:00", times)
	}
	var err error
	if r.start, err = parseClock(a); err != nil {
		return r, err
	}
	if r.end, err = parseClock(b); err != nil {
		return r, err
	}
	if r.start >= 24*60 {
		return r, fmt.Errorf("%q starts at midnight's end; start times are 00:00 to 23:59", times)
	}
	if r.end <= r.start {
		return r, fmt.Errorf("%q ends before it starts; for hours across midnight write two rules, e.g. %q", times, "Mon 22:00-24:00, Tue 00:00-06:00")
	}
	return r, nil
}

var clockRe = regexp.MustCompile(`^([01][0-9]|2[0-4]):([0-5][0-9])$`)

func parseClock(s string) (int, error) {
	s = strings.TrimSpace(s)
	m := clockRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a time of day; write it as HH:MM, e.g. 07:00 or 19:30", s)
	}
	h, _ := strconv.Atoi(m[1])
	mi, _ := strconv.Atoi(m[2])
	if h == 24 && mi != 0 {
		return 0, fmt.Errorf("%q is past midnight; the latest time is 24:00", s)
	}
	return h*60 + mi, nil
}

func (h *Hours) parseScalar(s string) error {
	v, err := ParseHours(s)
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// IsZero reports whether no schedule is set.
func (h Hours) IsZero() bool { return len(h.rules) == 0 }

// Contains reports whether t (in its own location) is inside the schedule.
// An unset schedule contains every time.
func (h Hours) Contains(t time.Time) bool {
	if h.IsZero() {
		return true
	}
	m := t.Hour()*60 + t.Minute()
	for _, r := range h.rules {
		if r.days[t.Weekday()] && m >= r.start && m < r.end {
			return true
		}
	}
	return false
}

// String returns the schedule as written.
func (h Hours) String() string { return h.text }

// MarshalText prints the schedule as written.
func (h Hours) MarshalText() ([]byte, error) { return []byte(h.text), nil }

// Bounds of the monitor's settings.
const (
	MinFindingWindow   = time.Minute
	MinBaselineWindow  = 24 * time.Hour
	MaxBaselineWindow  = 90 * 24 * time.Hour
	MinLinkProbe       = 5 * time.Second
	MinExpectTraffic   = time.Minute
	MaxAnomalyFactor   = 1000
	MinControlsEvery   = 10 * time.Second
	MinNeighbourPeriod = time.Second
)

// macRe is a MAC-48 written with colons or dashes, e.g. 00:1a:2b:3c:4d:5e.
var macRe = regexp.MustCompile(`^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$`)

// NormalMAC returns mac in lowercase with colons, as the kernel prints it.
func NormalMAC(mac string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(mac), "-", ":"))
}

// interfaceRe is a Linux interface name (at most 15 bytes, no slash or space).
var interfaceRe = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,15}$`)

func (v *validator) monitor(c *Config) {
	m := c.Monitor
	p := "monitor"
	between := func(key string, d Duration, lo, hi time.Duration, hint string) {
		if d.D() < lo || d.D() > hi {
			v.add(p+"."+key, "%s is outside the allowed range; use between %s and %s%s", d, Duration(lo), Duration(hi), hint)
		}
	}
	if s := m.SegmentInterface; s != "" && !interfaceRe.MatchString(s) {
		v.add(p+".segment_interface", "%q is not a network interface name; give the name `ip link` shows, e.g. eth1", s)
	}
	between("finding_window", m.FindingWindow, MinFindingWindow, 24*time.Hour, "")
	fh := m.FailedHandshakes
	if fh.PerSource < 2 {
		v.add(p+".failed_handshakes.per_source", "%d is too low; one failure is not a burst, use 2 or more (default %d)", fh.PerSource, DefaultBurstPerSource)
	}
	if fh.PerIdentity < 2 {
		v.add(p+".failed_handshakes.per_identity", "%d is too low; one failure is not a burst, use 2 or more (default %d)", fh.PerIdentity, DefaultBurstPerIdentity)
	}
	between("failed_handshakes.window", fh.Window, 10*time.Second, 24*time.Hour, "")
	between("baseline_window", m.BaselineWindow, MinBaselineWindow, MaxBaselineWindow, " (a week or two learns each hour of the week)")
	if f := float64(m.AnomalyFactor); f <= 1 || f > MaxAnomalyFactor {
		v.add(p+".anomaly_factor", "%s is outside the allowed range; use more than 1 and at most %d (4 is usual)", m.AnomalyFactor, MaxAnomalyFactor)
	}
	between("link_probe", m.LinkProbe, MinLinkProbe, time.Hour, "")
	between("neighbour_interval", m.NeighbourInterval, MinNeighbourPeriod, time.Hour, "")
	between("controls_interval", m.ControlsInterval, MinControlsEvery, 24*time.Hour, "")
	between("telemetry_within", m.TelemetryWithin, time.Minute, 24*time.Hour, "")
	if m.ApproverLearn < 1 {
		v.add(p+".approver_learn", "%d is too low; learn at least 1 action (default %d)", m.ApproverLearn, DefaultApproverLearn)
	}

	macs := map[string]string{}
	for i := range c.Devices {
		dev := &c.Devices[i]
		dp := fmt.Sprintf("devices[%d]", i)
		if dev.MAC != "" {
			switch n := NormalMAC(dev.MAC); {
			case !macRe.MatchString(dev.MAC):
				v.add(dp+".mac", "%q is not a MAC address; write six hex pairs like 00:1a:2b:3c:4d:5e", dev.MAC)
			case n == "00:00:00:00:00:00" || n == "ff:ff:ff:ff:ff:ff":
				v.add(dp+".mac", "%s is not a device's MAC address; copy it from the device's label or `ip neigh`", dev.MAC)
			case macs[n] != "":
				v.add(dp+".mac", "%s is already the MAC of %s; each device has its own", dev.MAC, macs[n])
			default:
				macs[n] = dp
			}
		}
		if e := dev.ExpectTrafficEvery; e != 0 && (e.D() < MinExpectTraffic || e.D() > 30*24*time.Hour) {
			v.add(dp+".expect_traffic_every", "%s is outside the allowed range; use between 1m and 30d", e)
		}
		if vd := dev.Vendor; vd != nil {
			switch vd.OffHours {
			case OffHoursRefuse, OffHoursCentral:
			default:
				v.add(dp+".vendor.off_hours", "%q is not an off-hours action; use refuse or central (central approval required)", vd.OffHours)
			}
			if vd.OffHours == OffHoursCentral && slices.Contains(vd.Approval, "central") && len(vd.Approval) == 1 {
				v.add(dp+".vendor.off_hours", "central changes nothing: the device's approval is already [central]; use refuse, or drop vendor.hours")
			}
		}
		for j, e := range dev.Exceptions {
			for k, name := range e.Compensating {
				cp := fmt.Sprintf("%s.exceptions[%d].compensating[%d]", dp, j, k)
				if !slices.Contains(CompensatingControls, name) {
					v.add(cp, "%q is not a control the gateway can check; use one of %s", name, strings.Join(CompensatingControls, ", "))
					continue
				}
				switch name {
				case ControlSegmentation:
					if dev.Link.TCP == "" && v.decoded(dp+".link") {
						v.add(cp, "segmentation is checked on the device's network address; a serial-only device has none, use no-vendor-access or restricted-admin-path")
					}
				case ControlVendorHours:
					if dev.Vendor == nil || dev.Vendor.Hours.IsZero() {
						v.add(cp, "vendor-hours needs vendor.hours on this device, e.g. \"Mon-Fri 07:00-19:00\"")
					}
				case ControlContinuousMonitoring:
					if !m.On() {
						v.add(cp, "continuous-monitoring needs the monitor: remove monitor.enabled: false")
					}
				case ControlRestrictedAdminPath:
					if dev.Vendor == nil {
						v.add(cp, "restricted-admin-path needs a vendor block on this device; with no vendor access at all use no-vendor-access")
					}
				case ControlNoVendorAccess:
					if dev.Vendor != nil {
						v.add(cp, "no-vendor-access contradicts this device's vendor block; remove one of them")
					}
				}
			}
		}
	}
}

// monitorWarnings reports compensating controls that validate but that the
// gateway will report as not in force.
func monitorWarnings(c *Config, add func(path, msg string)) {
	for i, dev := range c.Devices {
		for j, e := range dev.Exceptions {
			for k, name := range e.Compensating {
				if name == ControlSegmentation && c.Monitor.SegmentInterface == "" && dev.Link.TCP != "" {
					add(fmt.Sprintf("devices[%d].exceptions[%d].compensating[%d]", i, j, k),
						"segmentation cannot be checked without monitor.segment_interface and will be reported as not in force; name the interface of the isolated device segment, e.g. segment_interface: eth1")
				}
			}
		}
	}
}
