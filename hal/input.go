package hal

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
)

// Button is a push button that reports completed presses.
type Button interface {
	// Name is the button's role, e.g. approve.
	Name() string
	// Presses delivers each completed press when the button is released.
	// The channel is never closed; presses that nobody reads are dropped
	// (and logged) once its small buffer is full.
	Presses() <-chan Press
	// Pressed reports whether the button is held down right now (debounced).
	Pressed() bool
}

// TamperEvent is a change of the enclosure loop.
type TamperEvent struct {
	// Open is true when the normally-closed loop is open or cut.
	Open bool      `json:"open"`
	At   time.Time `json:"at"`
}

// TamperSensor watches the enclosure's normally-closed tamper loop.
type TamperSensor interface {
	// Open reports the current (debounced) state: true = tampered.
	Open() bool
	// Changes delivers every change; a loop already open at start is
	// reported as a first event. Never closed; dropped when not read.
	Changes() <-chan TamperEvent
}

// Bounds on WaitForEdge timeouts. gpioioctl treats 0 as "forever" and -1 as
// "return at once", so the loop never passes anything below minWait.
const (
	minWait = time.Millisecond
	maxWait = 500 * time.Millisecond
)

func clampWait(d time.Duration) time.Duration {
	return min(max(d, minWait), maxWait)
}

// watchInput samples an input pin on edges and at least every poll, feeds
// the debouncer and hands accepted transitions to onChange. It returns when
// ctx is done. The pin must already be configured with In(pull, BothEdges).
// beat, when not nil, is called on every turn (at least every maxWait).
func watchInput(ctx context.Context, pin gpio.PinIn, clock clockwork.Clock, poll time.Duration,
	deb *Debouncer, onChange func(Transition), beat func()) {
	for ctx.Err() == nil {
		if beat != nil {
			beat()
		}
		wait := poll
		if dl, ok := deb.Pending(); ok {
			wait = min(wait, dl.Sub(clock.Now()))
		}
		pin.WaitForEdge(clampWait(wait))
		if ctx.Err() != nil {
			return
		}
		if tr, ok := deb.Observe(pin.Read(), clock.Now()); ok {
			onChange(tr)
		}
	}
}

// pinButton is an active-low push button to ground with the pull-up on.
type pinButton struct {
	name   string
	pin    gpio.PinIn
	clock  clockwork.Clock
	period time.Duration
	long   time.Duration
	log    *slog.Logger
	events chan Press

	mu      sync.Mutex
	pressed bool
}

func newPinButton(name string, pin gpio.PinIn, clock clockwork.Clock, debounce, long time.Duration, log *slog.Logger) (*pinButton, error) {
	if err := pin.In(gpio.PullUp, gpio.BothEdges); err != nil {
		return nil, fmt.Errorf("hal: set up %s button on %s as input with pull-up and edge detection: %w (%w)", name, pin, err, ErrPinConfig)
	}
	return &pinButton{name: name, pin: pin, clock: clock, period: debounce, long: long, log: log,
		events: make(chan Press, 8)}, nil
}

func (b *pinButton) Name() string          { return b.name }
func (b *pinButton) Presses() <-chan Press { return b.events }

func (b *pinButton) Pressed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pressed
}

// run watches the button until ctx is done; beat may be nil.
func (b *pinButton) run(ctx context.Context, beat func()) {
	initial := b.pin.Read()
	deb := NewDebouncer(initial, b.clock.Now(), b.period)
	tr := pressTracker{name: b.name, active: gpio.Low, long: b.long}
	b.setPressed(initial == gpio.Low)
	if initial == gpio.Low {
		b.log.Warn("button is held down at start; its release will be ignored", "button", b.name, "pin", b.pin.String())
	}
	watchInput(ctx, b.pin, b.clock, maxWait, deb, func(t Transition) {
		b.setPressed(t.Level == gpio.Low)
		p, ok := tr.apply(t)
		if !ok {
			return
		}
		select {
		case b.events <- p:
		default:
			b.log.Warn("button press dropped: nobody is reading presses", "button", b.name)
		}
	}, beat)
}

func (b *pinButton) setPressed(v bool) {
	b.mu.Lock()
	b.pressed = v
	b.mu.Unlock()
}

// pinTamper reads a normally-closed loop between the pin and ground with the
// pull-up on: closed = low = fine, open or cut = high = tamper.
type pinTamper struct {
	pin    gpio.PinIn
	clock  clockwork.Clock
	period time.Duration
	poll   time.Duration
	log    *slog.Logger
	events chan TamperEvent

	mu   sync.Mutex
	open bool
	at   time.Time
}

func newPinTamper(pin gpio.PinIn, clock clockwork.Clock, debounce, poll time.Duration, log *slog.Logger) (*pinTamper, error) {
	if err := pin.In(gpio.PullUp, gpio.BothEdges); err != nil {
		return nil, fmt.Errorf("hal: set up tamper input on %s with pull-up and edge detection: %w (%w)", pin, err, ErrPinConfig)
	}
	t := &pinTamper{pin: pin, clock: clock, period: debounce, poll: poll, log: log, events: make(chan TamperEvent, 8)}
	// Read at start: an enclosure opened while the agent was down is
	// reported at once, without waiting for an edge.
	t.set(TamperEvent{Open: pin.Read() == gpio.High, At: clock.Now()}, true)
	return t, nil
}

func (t *pinTamper) Open() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.open
}

func (t *pinTamper) since() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.at
}

func (t *pinTamper) Changes() <-chan TamperEvent { return t.events }

func (t *pinTamper) set(ev TamperEvent, initial bool) {
	t.mu.Lock()
	t.open, t.at = ev.Open, ev.At
	t.mu.Unlock()
	if initial && !ev.Open {
		return
	}
	t.log.Warn("tamper loop changed", "open", ev.Open)
	select {
	case t.events <- ev:
	default:
		t.log.Warn("tamper event dropped: nobody is reading tamper changes", "open", ev.Open)
	}
}

// run watches the loop on edges and every poll period until ctx is done;
// beat may be nil.
func (t *pinTamper) run(ctx context.Context, beat func()) {
	start := gpio.Low
	if t.Open() {
		start = gpio.High
	}
	deb := NewDebouncer(start, t.clock.Now(), t.period)
	watchInput(ctx, t.pin, t.clock, t.poll, deb, func(tr Transition) {
		t.set(TamperEvent{Open: tr.Level == gpio.High, At: tr.At}, false)
	}, beat)
}
