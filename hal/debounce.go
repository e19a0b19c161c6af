package hal

import (
	"time"

	"periph.io/x/conn/v3/gpio"
)

// Debouncer turns raw, bouncing samples of an input into stable level
// changes. It is a pure state machine: feed it every sample with Observe, in
// time order, and it reports a Transition when a new level has been held for
// at least the debounce period. Samples can come from edges or from periodic
// reads; a repeated level is fine and lets a pending change settle.
//
// The zero value is not usable; use NewDebouncer. A Debouncer is not safe for
// concurrent use.
type Debouncer struct {
	period   time.Duration
	stable   gpio.Level
	raw      gpio.Level
	rawSince time.Time
	last     time.Time
}

// Transition is a debounced level change. At is when the raw input last
// changed to Level, i.e. the start of the run that proved stable, so press
// durations do not include the debounce delay.
type Transition struct {
	Level gpio.Level
	At    time.Time
}

// NewDebouncer starts with initial as the stable level at now. A period of
// zero or less accepts every change on the next sample.
func NewDebouncer(initial gpio.Level, now time.Time, period time.Duration) *Debouncer {
	return &Debouncer{period: period, stable: initial, raw: initial, rawSince: now, last: now}
}

// Stable reports the current debounced level.
func (d *Debouncer) Stable() gpio.Level { return d.stable }

// Pending reports when a pending change will be accepted if no other sample
// contradicts it; ok is false when the raw level equals the stable one.
func (d *Debouncer) Pending() (deadline time.Time, ok bool) {
	if d.raw == d.stable {
		return time.Time{}, false
	}
	return d.rawSince.Add(d.period), true
}

// Observe feeds one sample taken at now and reports at most one accepted
// transition. A sample older than the previous one is treated as taken at the
// previous sample's time.
func (d *Debouncer) Observe(l gpio.Level, now time.Time) (Transition, bool) {
	if now.Before(d.last) {
		now = d.last
	}
	d.last = now
	tr, ok := d.settle(now)
	if l != d.raw {
		d.raw, d.rawSince = l, now
	}
	if !ok {
		tr, ok = d.settle(now)
	}
	return tr, ok
}

func (d *Debouncer) settle(now time.Time) (Transition, bool) {
	if d.raw == d.stable || now.Sub(d.rawSince) < d.period {
		return Transition{}, false
	}
	d.stable = d.raw
	return Transition{Level: d.raw, At: d.rawSince}, true
}

// Press is one completed press of a button, reported when it is released.
type Press struct {
	// Button is the button's name, e.g. "approve".
	Button string `json:"button"`
	// Start is when the button went down; Duration how long it was held.
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration"`
	// Long is true when Duration reached the long-press threshold.
	Long bool `json:"long"`
}

// pressTracker turns debounced transitions of an active-low or active-high
// input into presses. A button that is already down when tracking starts
// yields no press on its release: a stuck or held button at boot never
// approves anything.
type pressTracker struct {
	name   string
	active gpio.Level
	long   time.Duration
	down   bool
	downAt time.Time
}

func (p *pressTracker) apply(tr Transition) (Press, bool) {
	if tr.Level == p.active {
		p.down, p.downAt = true, tr.At
		return Press{}, false
	}
	if !p.down {
		return Press{}, false
	}
	p.down = false
	d := tr.At.Sub(p.downAt)
	return Press{Button: p.name, Start: p.downAt, Duration: d, Long: d >= p.long}, true
}
