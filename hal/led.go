package hal

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
)

// Pattern is what an LED shows. The zero value is Off.
type Pattern uint8

// LED patterns. Blinks start lit at the moment the pattern is set.
const (
	Off       Pattern = iota // dark
	On                       // steady
	BlinkSlow                // 1 Hz: 500 ms lit, 500 ms dark
	BlinkFast                // 4 Hz: 125 ms lit, 125 ms dark
	// BlinkDouble: two 125 ms flashes 125 ms apart, then 625 ms dark (a
	// 1 s cycle): several vendor requests wait and the button approves none.
	BlinkDouble
)

// Half periods of the blink patterns.
const (
	SlowHalfPeriod = 500 * time.Millisecond
	FastHalfPeriod = 125 * time.Millisecond
)

var patternNames = [...]string{Off: "off", On: "on", BlinkSlow: "blink-slow", BlinkFast: "blink-fast", BlinkDouble: "blink-double"}

// String returns off, on, blink-slow, blink-fast or blink-double.
func (p Pattern) String() string {
	if int(p) < len(patternNames) {
		return patternNames[p]
	}
	return fmt.Sprintf("pattern(%d)", uint8(p))
}

// MarshalText encodes the pattern by name for JSON.
func (p Pattern) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText accepts the names String returns.
func (p *Pattern) UnmarshalText(b []byte) error {
	for i, n := range patternNames {
		if n == string(b) {
			*p = Pattern(i)
			return nil
		}
	}
	return fmt.Errorf("hal: unknown LED pattern %q; use off, on, blink-slow, blink-fast or blink-double", b)
}

func (p Pattern) half() time.Duration {
	switch p {
	case BlinkSlow:
		return SlowHalfPeriod
	case BlinkFast:
		return FastHalfPeriod
	}
	return 0
}

// LitAt reports whether the LED is lit elapsed after the pattern was set,
// and how long until that changes (0: never).
func (p Pattern) LitAt(elapsed time.Duration) (lit bool, next time.Duration) {
	if elapsed < 0 {
		elapsed = 0
	}
	if p == BlinkDouble {
		// lit [0,125) dark [125,250) lit [250,375) dark [375,1000)
		h := FastHalfPeriod
		in := elapsed % (8 * h)
		slot := in / h
		if slot >= 3 {
			return false, 8*h - in
		}
		return slot%2 == 0, h - in%h
	}
	h := p.half()
	if h == 0 {
		return p == On, 0
	}
	if elapsed < 0 {
		elapsed = 0
	}
	return (elapsed/h)%2 == 0, h - elapsed%h
}

// LED is one status light. Its state is kept in software (the pin is never
// read back). Implementations are safe for concurrent use.
type LED interface {
	// Name is the LED's role: ok, vendor or alarm.
	Name() string
	// Set changes the pattern. Setting the current pattern again is a no-op,
	// so a blink keeps its phase.
	Set(Pattern) error
	// Pattern returns the pattern last set.
	Pattern() Pattern
	// Lit reports whether the LED is lit right now, as last driven.
	Lit() bool
}

// pinLED drives an LED through an output pin, active high.
type pinLED struct {
	name  string
	pin   gpio.PinOut
	clock clockwork.Clock
	wake  func() // tells the blink loop to look again; may be nil

	mu      sync.Mutex
	pattern Pattern
	since   time.Time
	lit     bool
	driven  bool // lit has been written at least once
}

func newPinLED(name string, pin gpio.PinOut, clock clockwork.Clock, wake func()) (*pinLED, error) {
	l := &pinLED{name: name, pin: pin, clock: clock, wake: wake, since: clock.Now()}
	if err := l.write(false); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *pinLED) Name() string { return l.name }

func (l *pinLED) Set(p Pattern) error {
	l.mu.Lock()
	if p == l.pattern && l.driven {
		l.mu.Unlock()
		return nil
	}
	l.pattern, l.since = p, l.clock.Now()
	_, err := l.refreshLocked(l.since)
	l.mu.Unlock()
	if l.wake != nil {
		l.wake()
	}
	return err
}

func (l *pinLED) Pattern() Pattern {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pattern
}

func (l *pinLED) Lit() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lit
}

// refresh drives the pin for now and returns how long until the next change
// (0: none).
func (l *pinLED) refresh(now time.Time) (time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refreshLocked(now)
}

func (l *pinLED) refreshLocked(now time.Time) (time.Duration, error) {
	lit, next := l.pattern.LitAt(now.Sub(l.since))
	if lit != l.lit || !l.driven {
		if err := l.write(lit); err != nil {
			return next, err
		}
	}
	return next, nil
}

func (l *pinLED) write(lit bool) error {
	if err := l.pin.Out(gpio.Level(lit)); err != nil {
		return fmt.Errorf("hal: drive %s LED: %w", l.name, err)
	}
	l.lit, l.driven = lit, true
	return nil
}

// Indication is what the agent wants the LEDs to say.
type Indication struct {
	// Degraded: broker unreachable or little certificate lifetime left.
	Degraded bool `json:"degraded"`
	// VendorPending: a vendor access request waits for approval.
	VendorPending bool `json:"vendor_pending"`
	// VendorSeveral: more than one request waits; the long press approves
	// none of them (the amber LED double-blinks).
	VendorSeveral bool `json:"vendor_several,omitempty"`
	// VendorLive: a vendor session is running.
	VendorLive bool `json:"vendor_live"`
	// Alarm: tamper, certificate expired, disk full.
	Alarm bool `json:"alarm"`
}

// Patterns maps an indication to the three LEDs: green steady when healthy,
// slow blink when degraded; amber fast blink while a request is pending,
// double blink while several are pending (the button approves none: use
// `wardgate grant approve ID`); pending wins over a live session (it asks
// the owner to act); amber steady while a
// session is live, dark otherwise; red steady on alarm.
func (i Indication) Patterns() (ok, vendor, alarm Pattern) {
	ok = On
	if i.Degraded {
		ok = BlinkSlow
	}
	switch {
	case i.VendorSeveral:
		vendor = BlinkDouble
	case i.VendorPending:
		vendor = BlinkFast
	case i.VendorLive:
		vendor = On
	}
	if i.Alarm {
		alarm = On
	}
	return ok, vendor, alarm
}

// Indicator drives the three LEDs from an Indication. It is safe for
// concurrent use.
type Indicator struct {
	ok, vendor, alarm LED

	mu  sync.Mutex
	cur Indication
}

// NewIndicator drives the given LEDs; it does not change them until Set.
func NewIndicator(ok, vendor, alarm LED) *Indicator {
	return &Indicator{ok: ok, vendor: vendor, alarm: alarm}
}

// Set shows ind. LEDs whose pattern does not change keep their blink phase.
func (x *Indicator) Set(ind Indication) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.cur = ind
	o, v, a := ind.Patterns()
	var errs []error
	for _, s := range []struct {
		l LED
		p Pattern
	}{{x.ok, o}, {x.vendor, v}, {x.alarm, a}} {
		if err := s.l.Set(s.p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Current returns the indication last set.
func (x *Indicator) Current() Indication {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.cur
}
