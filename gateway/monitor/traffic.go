package monitor

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

func sortStrings(s []string) []string {
	slices.Sort(s)
	return s
}

// Metrics of a baseline slot.
const (
	metToDevice = iota
	metFromDevice
	metSessions
	numMetrics
)

var metricNames = [numMetrics]string{"bytes_to_device", "bytes_from_device", "sessions"}

// slot is the learned mean of one hour of the week.
type slot struct {
	N    int                 `json:"n"`
	Mean [numMetrics]float64 `json:"mean"`
}

// baseline is one device's learned traffic, persisted.
type baseline struct {
	FirstSeen time.Time  `json:"first_seen"`
	Week      [168]slot  `json:"week"`
	Day       [24]slot   `json:"day"` // fallback while an hour of the week has no sample
	LastSeen  time.Time  `json:"last_activity"`
	LastHour  [3]float64 `json:"last_hour"`
}

// deviceTraffic is one device's sampling state.
type deviceTraffic struct {
	b          baseline
	loaded     bool
	last       Traffic // counters at the previous sample
	haveLast   bool
	hourStart  time.Time
	acc        [numMetrics]float64
	dirty      bool
	silentFrom time.Time // start of the current silence finding, zero when not silent
}

// minSessionsFloor: hours with fewer sessions than this on both sides are
// never session anomalies.
const minSessionsFloor = 5

func hourOfWeek(t time.Time) int {
	t = t.Local()
	return int(t.Weekday())*24 + t.Hour()
}

func (m *Monitor) deviceLocked(id string, now time.Time) *deviceTraffic {
	dt := m.traffic[id]
	if dt == nil {
		dt = &deviceTraffic{}
		if m.st.get(bucketBaselines, id, &dt.b) {
			dt.loaded = true
		}
		if dt.b.FirstSeen.IsZero() {
			dt.b.FirstSeen = now
			dt.dirty = true
		}
		if dt.b.LastSeen.IsZero() {
			dt.b.LastSeen = now
		}
		m.traffic[id] = dt
	}
	return dt
}

// learningLocked reports whether device is still inside its learning
// window (baseline_window from the monitor first seeing it).
func (m *Monitor) learningLocked(now time.Time, device string) bool {
	dt := m.deviceLocked(device, now)
	return now.Sub(dt.b.FirstSeen) < m.set.mon.BaselineWindow.D()
}

// sampleLocked adds a traffic sample; at an hour's end it compares the
// hour with the baseline and learns it.
func (m *Monitor) sampleLocked(now time.Time, samples []Traffic, out *[]Finding) {
	hour := now.Truncate(time.Hour)
	for _, s := range samples {
		d := m.set.devices[s.Device]
		if d == nil {
			continue
		}
		dt := m.deviceLocked(s.Device, now)
		delta := [numMetrics]float64{float64(s.ToDevice), float64(s.FromDevice), float64(s.Sessions)}
		if dt.haveLast {
			prev := [numMetrics]int64{dt.last.ToDevice, dt.last.FromDevice, dt.last.Sessions}
			for i := range delta {
				if int64(delta[i]) >= prev[i] { // else the counters restarted: the value is the delta
					delta[i] -= float64(prev[i])
				}
			}
		} else {
			delta = [numMetrics]float64{} // the first sample only sets the origin
		}
		dt.last, dt.haveLast = s, true
		if delta[metSessions] > 0 || delta[metToDevice] > 0 || delta[metFromDevice] > 0 || s.Live > 0 {
			dt.b.LastSeen = now
			dt.silentFrom = time.Time{}
			dt.dirty = true
		}
		if dt.hourStart.IsZero() {
			dt.hourStart = hour
		}
		// The delta happened since the previous sample: it belongs to the
		// hour that sample was in (ticks are a minute apart).
		for i := range delta {
			dt.acc[i] += delta[i]
		}
		if hour.After(dt.hourStart) {
			m.closeHourLocked(d, dt, out)
			dt.hourStart, dt.acc = hour, [numMetrics]float64{}
		}
		if d.expect > 0 && now.Sub(dt.b.LastSeen) >= d.expect && dt.silentFrom.IsZero() {
			dt.silentFrom = now
			m.raiseLocked(Finding{Time: now, Kind: KindDeviceSilent, Key: d.id, Device: d.id, Owner: d.owner, First: dt.b.LastSeen,
				Evidence: map[string]string{"expect_traffic_every": d.expect.String(), "last_activity": dt.b.LastSeen.UTC().Format(time.RFC3339),
					"silent_for": now.Sub(dt.b.LastSeen).Round(time.Second).String()}}, out)
		}
	}
	if now.Minute() == 0 {
		m.saveTrafficLocked()
	}
}

// closeHourLocked judges the hour that ended for one device and learns it.
func (m *Monitor) closeHourLocked(d *devInfo, dt *deviceTraffic, out *[]Finding) {
	how := hourOfWeek(dt.hourStart)
	hod := how % 24
	dt.b.LastHour = dt.acc
	dt.dirty = true
	learned := dt.hourStart.Sub(dt.b.FirstSeen) >= m.set.mon.BaselineWindow.D()
	ref := dt.b.Week[how]
	if ref.N == 0 {
		ref = dt.b.Day[hod]
	}
	if learned && ref.N > 0 {
		m.judgeLocked(d, dt, ref, how, out)
	}
	// Learn: a running mean whose weight is capped so that it follows
	// lasting changes within about the baseline window.
	capW := max(2, int(m.set.mon.BaselineWindow.D()/(7*24*time.Hour)))
	capD := max(2, int(m.set.mon.BaselineWindow.D()/(24*time.Hour)))
	learn := func(s *slot, cap int) {
		if s.N < cap {
			s.N++
		}
		for i := range s.Mean {
			s.Mean[i] += (dt.acc[i] - s.Mean[i]) / float64(s.N)
		}
	}
	learn(&dt.b.Week[how], capW)
	learn(&dt.b.Day[hod], capD)
}

// judgeLocked compares one hour with its reference and raises
// monitor.traffic_anomaly per metric that deviates beyond the factor.
func (m *Monitor) judgeLocked(d *devInfo, dt *deviceTraffic, ref slot, how int, out *[]Finding) {
	f := float64(m.set.mon.AnomalyFactor)
	floorB := float64(m.set.mon.AnomalyMinBytes)
	for i := range numMetrics {
		floor := floorB
		if i == metSessions {
			floor = minSessionsFloor
		}
		obs, exp := dt.acc[i], ref.Mean[i]
		var dir string
		switch {
		case obs > f*math.Max(exp, floor):
			dir = "above"
		case exp >= floor && obs < exp/f:
			dir = "below"
		default:
			continue
		}
		m.raiseLocked(Finding{Time: dt.hourStart.Add(time.Hour), Kind: KindTrafficAnomaly, Key: d.id + ":" + metricNames[i] + ":" + dir,
			Device: d.id, Owner: d.owner, First: dt.hourStart, Last: dt.hourStart.Add(time.Hour),
			Evidence: map[string]string{"metric": metricNames[i], "direction": dir, "observed": strconv.FormatFloat(obs, 'f', 0, 64),
				"expected": strconv.FormatFloat(exp, 'f', 0, 64), "factor": m.set.mon.AnomalyFactor.String(),
				"hour_of_week": fmt.Sprintf("%s %02d:00", dt.hourStart.Local().Weekday().String()[:3], how%24)}}, out)
	}
}

// saveTrafficLocked persists the baselines that changed.
func (m *Monitor) saveTrafficLocked() {
	kv := map[string]any{}
	for id, dt := range m.traffic {
		if dt.dirty {
			kv[id] = dt.b
			dt.dirty = false
		}
	}
	if len(kv) == 0 {
		return
	}
	if err := m.st.putMany(bucketBaselines, kv); err != nil {
		m.log.Warn("monitor baselines not saved", "err", err)
	}
}
