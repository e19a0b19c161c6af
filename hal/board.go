package hal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
)

// inputDeadline is how long an input loop may go without a turn before the
// Kicker stops feeding the watchdog (a turn happens at least every maxWait).
const inputDeadline = 10 * time.Second

// Drivers for Options.Driver.
const (
	DriverPeriph = "periph" // real GPIO through periph.io
	DriverSim    = "sim"    // simulated pins (demo, tests)
)

// LEDPins names the LED output pins (hal.leds).
type LEDPins struct {
	OK     string `json:"ok"`
	Vendor string `json:"vendor"`
	Alarm  string `json:"alarm"`
}

// Options mirrors the hal config section plus timing and wiring. Zero
// values take the defaults noted.
type Options struct {
	// Driver is DriverPeriph (default) or DriverSim.
	Driver string
	// Pin names as periph's gpioreg knows them, e.g. GPIO17. With the sim
	// driver empty names get defaults (GPIO17, GPIO22, GPIO23, GPIO24,
	// GPIO27); with periph each is required.
	ApproveButton string
	LEDs          LEDPins
	Tamper        string
	// Watchdog is the watchdog device path; "" for none. The sim driver
	// always uses a simulated device and never opens a file.
	Watchdog string
	// WatchdogTimeout asked of the hardware watchdog. Default 15s.
	WatchdogTimeout time.Duration
	// Debounce is how long an input must hold a level. Default 30ms.
	Debounce time.Duration
	// LongPress is the hold that makes a press long. Default 2s.
	LongPress time.Duration
	// TamperPoll: the tamper loop is also read this often (edges can be
	// lost). Default 500ms, which is also the maximum.
	TamperPoll time.Duration
	// ThermalRoot is the sysfs root for Temperatures. Default /sys.
	ThermalRoot string
	// Clock defaults to the real clock; Logger to discarding.
	Clock  clockwork.Clock
	Logger *slog.Logger
	// Getenv reads NOTIFY_SOCKET and WATCHDOG_USEC; default os.Getenv.
	Getenv func(string) string

	// periph hooks for tests; nil means host.Init and gpioreg.
	periph *periphHooks
}

func (o *Options) defaults() {
	if o.Driver == "" {
		o.Driver = DriverPeriph
	}
	if o.Debounce <= 0 {
		o.Debounce = 30 * time.Millisecond
	}
	if o.LongPress <= 0 {
		o.LongPress = 2 * time.Second
	}
	if o.TamperPoll <= 0 || o.TamperPoll > maxWait {
		o.TamperPoll = maxWait
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
}

// boardPins are the resolved pins a driver hands to newBoard.
type boardPins struct {
	approve, tamper        gpio.PinIO
	ledOK, ledVend, ledAlm gpio.PinIO
}

func (p boardPins) all() []gpio.PinIO {
	return []gpio.PinIO{p.approve, p.tamper, p.ledOK, p.ledVend, p.ledAlm}
}

// Board bundles the gateway's hardware. Its fields are set by Open and never
// change; the components are safe for concurrent use.
type Board struct {
	Driver   string
	Approve  Button
	Tamper   TamperSensor
	OK       LED // green
	Vendor   LED // amber
	Alarm    LED // red
	LEDs     *Indicator
	Kicker   *Kicker
	Notifier *Notifier
	// Sim is non-nil with the sim driver: drive the simulated inputs.
	Sim *Sim

	opts    Options
	log     *slog.Logger
	pins    boardPins
	button  *pinButton
	tamper  *pinTamper
	leds    []*pinLED
	ledWake chan struct{}

	closeOnce sync.Once
	closed    chan struct{}
	closeErr  error
}

// Open starts the configured driver and sets up every pin. The hardware
// watchdog, when configured, is armed from here on: call Run promptly, and
// Close on shutdown. Errors wrap ErrDriver, ErrPinNotFound, ErrPinConfig or
// ErrWatchdog.
func Open(ctx context.Context, o Options) (*Board, error) {
	o.defaults()
	log := o.Logger.With("component", "hal", "driver", o.Driver)
	var (
		pins boardPins
		dev  WatchdogDevice
		sim  *Sim
		err  error
	)
	switch o.Driver {
	case DriverPeriph:
		pins, err = openPeriph(o)
		if err != nil {
			return nil, err
		}
		if o.Watchdog != "" {
			if dev, err = OpenWatchdog(o.Watchdog); err != nil {
				return nil, err
			}
		}
	case DriverSim:
		sim = newSim(&o)
		pins = sim.boardPins()
		dev = sim.watchdog
	default:
		return nil, fmt.Errorf("hal: driver %q: %w; set hal.driver to periph (real GPIO) or sim (simulated hardware)", o.Driver, ErrDriver)
	}
	b, err := newBoard(o, log, pins, dev)
	if err != nil {
		if dev != nil {
			_ = dev.MagicClose()
		}
		return nil, err
	}
	if sim != nil {
		sim.board = b
		b.Sim = sim
	}
	return b, ctx.Err()
}

func newBoard(o Options, log *slog.Logger, pins boardPins, dev WatchdogDevice) (*Board, error) {
	b := &Board{Driver: o.Driver, opts: o, log: log, pins: pins, ledWake: make(chan struct{}, 1), closed: make(chan struct{})}
	wake := func() {
		select {
		case b.ledWake <- struct{}{}:
		default:
		}
	}
	var err error
	if b.button, err = newPinButton("approve", pins.approve, o.Clock, o.Debounce, o.LongPress, log); err != nil {
		return nil, err
	}
	if b.tamper, err = newPinTamper(pins.tamper, o.Clock, o.Debounce, o.TamperPoll, log); err != nil {
		return nil, err
	}
	for _, l := range []struct {
		name string
		pin  gpio.PinIO
	}{{"ok", pins.ledOK}, {"vendor", pins.ledVend}, {"alarm", pins.ledAlm}} {
		led, err := newPinLED(l.name, l.pin, o.Clock, wake)
		if err != nil {
			return nil, fmt.Errorf("%w (%w)", err, ErrPinConfig)
		}
		b.leds = append(b.leds, led)
	}
	b.Approve, b.Tamper = b.button, b.tamper
	b.OK, b.Vendor, b.Alarm = b.leds[0], b.leds[1], b.leds[2]
	b.LEDs = NewIndicator(b.OK, b.Vendor, b.Alarm)
	b.Notifier = NotifierFromEnv(o.Getenv, os.Getpid())
	b.Kicker = NewKicker(KickerOptions{Device: dev, Notifier: b.Notifier, Timeout: o.WatchdogTimeout, Clock: o.Clock, Logger: o.Logger})
	return b, nil
}

// Indicate shows ind on the LEDs.
func (b *Board) Indicate(ind Indication) error { return b.LEDs.Set(ind) }

// Temperatures reads the SoC thermal zones (see ReadThermal).
func (b *Board) Temperatures() ([]ThermalZone, error) { return ReadThermal(b.opts.ThermalRoot) }

// Run watches the inputs, blinks the LEDs and feeds the watchdog until ctx
// is done or Close is called, then disarms the watchdog (a clean shutdown)
// and returns after every goroutine exited.
func (b *Board) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-ctx.Done():
		case <-b.closed:
			cancel()
		}
		// Interrupt pending edge waits (periph's gpioioctl honours Halt).
		for _, p := range []gpio.PinIO{b.pins.approve, b.pins.tamper} {
			_ = p.Halt()
		}
	})
	// The input loops are monitored like the agent's own: a GPIO driver
	// that hangs in an edge wait stops the watchdog feeding.
	hbButton := b.Kicker.Monitor("hal.button", inputDeadline)
	hbTamper := b.Kicker.Monitor("hal.tamper", inputDeadline)
	defer hbButton.Stop()
	defer hbTamper.Stop()
	wg.Go(func() { b.button.run(ctx, hbButton.Beat) })
	wg.Go(func() { b.tamper.run(ctx, hbTamper.Beat) })
	wg.Go(func() { b.runLEDs(ctx) })
	var kerr error
	wg.Go(func() { kerr = b.Kicker.Run(ctx) })
	wg.Wait()
	return kerr
}

func (b *Board) runLEDs(ctx context.Context) {
	clock := b.opts.Clock
	for {
		var next time.Duration
		now := clock.Now()
		for _, l := range b.leds {
			d, err := l.refresh(now)
			if err != nil {
				b.log.Error("LED refresh failed", "led", l.name, "err", err)
			}
			if d > 0 && (next == 0 || d < next) {
				next = d
			}
		}
		var tick <-chan time.Time
		var t clockwork.Timer
		if next > 0 {
			t = clock.NewTimer(next)
			tick = t.Chan()
		}
		select {
		case <-ctx.Done():
			if t != nil {
				t.Stop()
			}
			return
		case <-tick:
		case <-b.ledWake:
			if t != nil {
				t.Stop()
			}
		}
	}
}

// Close turns the LEDs off, disarms the watchdog and halts every pin. It
// makes a running Run return. Idempotent; safe to call concurrently.
func (b *Board) Close() error {
	b.closeOnce.Do(func() {
		close(b.closed)
		var errs []error
		for _, l := range b.leds {
			if err := l.Set(Off); err != nil {
				errs = append(errs, err)
			}
		}
		if err := b.Kicker.Disarm(); err != nil {
			errs = append(errs, err)
		}
		for _, p := range b.pins.all() {
			if err := p.Halt(); err != nil {
				errs = append(errs, fmt.Errorf("hal: halt %s: %w", p, err))
			}
		}
		b.closeErr = errors.Join(errs...)
	})
	return b.closeErr
}

// LEDState is one LED in State.
type LEDState struct {
	Pattern Pattern `json:"pattern"`
	Lit     bool    `json:"lit"`
}

// TamperState is the tamper loop in State.
type TamperState struct {
	Open  bool      `json:"open"`
	Since time.Time `json:"since"`
}

// State is a JSON-friendly snapshot of the board (wardgate hal show,
// wardgate status).
type State struct {
	Driver     string              `json:"driver"`
	LEDs       map[string]LEDState `json:"leds"`
	Indication Indication          `json:"indication"`
	Button     map[string]bool     `json:"buttons"` // name -> held down
	Tamper     TamperState         `json:"tamper"`
	Watchdog   WatchdogState       `json:"watchdog"`
}

// State returns a snapshot of the board.
func (b *Board) State() State {
	s := State{Driver: b.Driver, LEDs: map[string]LEDState{}, Indication: b.LEDs.Current(),
		Button:   map[string]bool{b.Approve.Name(): b.Approve.Pressed()},
		Tamper:   TamperState{Open: b.tamper.Open(), Since: b.tamper.since()},
		Watchdog: b.Kicker.State()}
	for _, l := range []LED{b.OK, b.Vendor, b.Alarm} {
		s.LEDs[l.Name()] = LEDState{Pattern: l.Pattern(), Lit: l.Lit()}
	}
	return s
}
