// Package haltest holds fakes of the hal interfaces for tests of code that
// uses the hardware (the agent, the admin API). Fields are exported so tests
// can drive and inspect them; every fake is safe for concurrent use when its
// fields are accessed with its mutex held (methods do so).
package haltest

import (
	"errors"
	"sync"
	"time"

	"github.com/wardgate/wardgate/hal"
)

// Watchdog is a fake hal.WatchdogDevice that records what it was asked.
type Watchdog struct {
	sync.Mutex
	// Timeout is the last timeout set; Applied, when non-zero, is what
	// SetTimeout reports instead (a driver rounding the request).
	Timeout, Applied time.Duration
	Kicks            int
	KickTimes        []time.Time
	Disarmed         bool
	// Err, when set, is returned by every method.
	Err error
	// Now stamps KickTimes; nil leaves them zero.
	Now func() time.Time
	// Kicked, when non-nil, receives a value (without blocking) per kick.
	Kicked chan struct{}
}

var _ hal.WatchdogDevice = (*Watchdog)(nil)

// SetTimeout implements hal.WatchdogDevice.
func (w *Watchdog) SetTimeout(d time.Duration) (time.Duration, error) {
	w.Lock()
	defer w.Unlock()
	if w.Err != nil {
		return 0, w.Err
	}
	w.Timeout = d
	if w.Applied != 0 {
		return w.Applied, nil
	}
	return d, nil
}

// KeepAlive implements hal.WatchdogDevice.
func (w *Watchdog) KeepAlive() error {
	w.Lock()
	defer w.Unlock()
	if w.Err != nil {
		return w.Err
	}
	if w.Disarmed {
		return errors.New("haltest: keep-alive after magic close")
	}
	w.Kicks++
	var t time.Time
	if w.Now != nil {
		t = w.Now()
	}
	w.KickTimes = append(w.KickTimes, t)
	if w.Kicked != nil {
		select {
		case w.Kicked <- struct{}{}:
		default:
		}
	}
	return nil
}

// MagicClose implements hal.WatchdogDevice.
func (w *Watchdog) MagicClose() error {
	w.Lock()
	defer w.Unlock()
	w.Disarmed = true
	return w.Err
}

// KickCount returns Kicks under the lock.
func (w *Watchdog) KickCount() int {
	w.Lock()
	defer w.Unlock()
	return w.Kicks
}

// Button is a fake hal.Button: send on Ch to deliver a press.
type Button struct {
	N    string
	Ch   chan hal.Press
	Down bool
	mu   sync.Mutex
}

var _ hal.Button = (*Button)(nil)

// NewButton returns a button named name with a buffered channel.
func NewButton(name string) *Button { return &Button{N: name, Ch: make(chan hal.Press, 8)} }

// Name implements hal.Button.
func (b *Button) Name() string { return b.N }

// Presses implements hal.Button.
func (b *Button) Presses() <-chan hal.Press { return b.Ch }

// Pressed implements hal.Button.
func (b *Button) Pressed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Down
}

// LED is a fake hal.LED that records every pattern set.
type LED struct {
	N       string
	mu      sync.Mutex
	Current hal.Pattern
	History []hal.Pattern
}

var _ hal.LED = (*LED)(nil)

// Name implements hal.LED.
func (l *LED) Name() string { return l.N }

// Set implements hal.LED.
func (l *LED) Set(p hal.Pattern) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p != l.Current || len(l.History) == 0 {
		l.History = append(l.History, p)
	}
	l.Current = p
	return nil
}

// Pattern implements hal.LED.
func (l *LED) Pattern() hal.Pattern {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.Current
}

// Lit implements hal.LED: steady and blinking patterns report lit.
func (l *LED) Lit() bool { return l.Pattern() != hal.Off }

// Tamper is a fake hal.TamperSensor: call Set to change it.
type Tamper struct {
	mu     sync.Mutex
	open   bool
	Events chan hal.TamperEvent
}

var _ hal.TamperSensor = (*Tamper)(nil)

// NewTamper returns a closed loop with a buffered event channel.
func NewTamper() *Tamper { return &Tamper{Events: make(chan hal.TamperEvent, 8)} }

// Set changes the state and sends an event stamped at.
func (t *Tamper) Set(open bool, at time.Time) {
	t.mu.Lock()
	t.open = open
	t.mu.Unlock()
	t.Events <- hal.TamperEvent{Open: open, At: at}
}

// Open implements hal.TamperSensor.
func (t *Tamper) Open() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.open
}

// Changes implements hal.TamperSensor.
func (t *Tamper) Changes() <-chan hal.TamperEvent { return t.Events }
