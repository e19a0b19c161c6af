package hal

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

// Sim drives the simulated hardware of a board opened with the sim driver.
// Its inputs are periph gpiotest pins: Press and SetTamper feed them edges,
// which the board reads through the same debouncer and press tracker as on
// real hardware, so Run must be running for them to take effect. Safe for
// concurrent use; presses are serialised.
type Sim struct {
	board *Board
	clock clockwork.Clock

	approve, tamper        *simInput
	ledOK, ledVend, ledAlm *gpiotest.Pin
	watchdog               *simWatchdog

	pressMu sync.Mutex
}

func newSim(o *Options) *Sim {
	name := func(n, def string) string {
		if n == "" {
			return def
		}
		return n
	}
	out := func(n string, num int) *gpiotest.Pin {
		return &gpiotest.Pin{N: n, Num: num, Fn: "Out", Clock: o.Clock}
	}
	in := func(n string, num int, idle gpio.Level) *simInput {
		return &simInput{Pin: &gpiotest.Pin{N: n, Num: num, Fn: "In", Clock: o.Clock, EdgesChan: make(chan gpio.Level)}, level: idle}
	}
	return &Sim{
		clock:    o.Clock,
		approve:  in(name(o.ApproveButton, "GPIO17"), 17, gpio.High), // released: pulled up
		tamper:   in(name(o.Tamper, "GPIO27"), 27, gpio.Low),         // loop closed
		ledOK:    out(name(o.LEDs.OK, "GPIO22"), 22),
		ledVend:  out(name(o.LEDs.Vendor, "GPIO23"), 23),
		ledAlm:   out(name(o.LEDs.Alarm, "GPIO24"), 24),
		watchdog: &simWatchdog{},
	}
}

func (s *Sim) boardPins() boardPins {
	return boardPins{approve: s.approve, tamper: s.tamper, ledOK: s.ledOK, ledVend: s.ledVend, ledAlm: s.ledAlm}
}

// Press holds the named button (approve, or its pin name) down for hold and
// releases it; it returns after the release was delivered to the board.
// Presses shorter than the debounce period are filtered out as bounces.
func (s *Sim) Press(ctx context.Context, name string, hold time.Duration) error {
	if name != "approve" && name != s.approve.Name() {
		return fmt.Errorf("hal: simulated button %q: %w; the simulator has: approve", name, ErrUnknownInput)
	}
	s.pressMu.Lock()
	defer s.pressMu.Unlock()
	if err := s.drive(ctx, s.approve, gpio.Low); err != nil {
		return err
	}
	t := s.clock.NewTimer(hold)
	defer t.Stop()
	select {
	case <-t.Chan():
	case <-ctx.Done():
		// Never leave the button held down.
		_ = s.drive(context.WithoutCancel(ctx), s.approve, gpio.High)
		return ctx.Err()
	case <-s.board.closed:
		return fmt.Errorf("hal: press %s: %w", name, ErrClosed)
	}
	return s.drive(ctx, s.approve, gpio.High)
}

// SetTamper opens (true) or closes the simulated enclosure loop.
func (s *Sim) SetTamper(ctx context.Context, open bool) error {
	s.pressMu.Lock()
	defer s.pressMu.Unlock()
	l := gpio.Low
	if open {
		l = gpio.High
	}
	return s.drive(ctx, s.tamper, l)
}

// Show returns the board's state: LEDs, button, tamper loop, watchdog.
func (s *Sim) Show() State { return s.board.State() }

// drive sets the input's physical level and delivers the edge to the
// board's edge wait.
func (s *Sim) drive(ctx context.Context, p *simInput, l gpio.Level) error {
	p.mu.Lock()
	p.level = l
	p.mu.Unlock()
	select {
	case p.EdgesChan <- l:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.board.closed:
		return fmt.Errorf("hal: drive %s: %w", p.Name(), ErrClosed)
	}
}

// simInput is a gpiotest pin that keeps its physical level across In: a
// real input reads what is wired to it, whatever pull is asked for.
type simInput struct {
	*gpiotest.Pin
	mu    sync.Mutex
	level gpio.Level
}

// In implements gpio.PinIn.
func (p *simInput) In(pull gpio.Pull, edge gpio.Edge) error {
	if err := p.Pin.In(pull, edge); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Pin.Out(p.level)
}

// simWatchdog is the sim driver's watchdog device: it only counts.
type simWatchdog struct {
	mu       sync.Mutex
	timeout  time.Duration
	kicks    uint64
	disarmed bool
}

func (w *simWatchdog) SetTimeout(d time.Duration) (time.Duration, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timeout = d.Round(time.Second)
	return w.timeout, nil
}

func (w *simWatchdog) KeepAlive() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.kicks++
	return nil
}

func (w *simWatchdog) MagicClose() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.disarmed = true
	return nil
}
