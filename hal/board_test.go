package hal

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// startSim opens a sim board inside a synctest bubble and runs it; the
// returned stop cancels Run, waits for it and closes the board.
func startSim(t *testing.T, o Options) (*Board, func() error) {
	t.Helper()
	o.Driver = DriverSim
	o.Logger = discard
	o.Getenv = func(string) string { return "" }
	b, err := Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = b.Run(ctx) })
	stopped := false
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			wg.Wait()
		}
		return errors.Join(runErr, b.Close())
	}
	t.Cleanup(func() { _ = stop() })
	return b, stop
}

func TestSimPress(t *testing.T) {
	cases := []struct {
		name string
		hold time.Duration
		long bool
		none bool
	}{
		{"short", 200 * time.Millisecond, false, false},
		{"long", 3 * time.Second, true, false},
		{"at threshold", 2 * time.Second, true, false},
		{"shorter than debounce", 10 * time.Millisecond, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b, stop := startSim(t, Options{})
				if err := b.Sim.Press(t.Context(), "approve", c.hold); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Second)
				synctest.Wait()
				if c.none {
					if n := len(b.Approve.Presses()); n != 0 {
						t.Fatalf("%d presses from a bounce-length press", n)
					}
				} else {
					select {
					case p := <-b.Approve.Presses():
						if p.Duration != c.hold || p.Long != c.long || p.Button != "approve" {
							t.Fatalf("press %+v, want %v long=%v", p, c.hold, c.long)
						}
					default:
						t.Fatal("no press delivered")
					}
				}
				if err := stop(); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

func TestSimBounceThroughBoard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, stop := startSim(t, Options{ApproveButton: "GPIO5"})
		// Drive the fake pin directly with a chattering contact.
		play(b.Sim.approve, cat(bounce(0, ms(2), L, 9), []sample{{ms(700), H}}, bounce(ms(701), ms(2), L, 6)))
		time.Sleep(time.Second)
		synctest.Wait()
		if n := len(b.Approve.Presses()); n != 1 {
			t.Fatalf("%d presses, want exactly 1", n)
		}
		if p := <-b.Approve.Presses(); p.Duration != ms(711)-ms(16) {
			t.Fatalf("press %+v", p)
		}
		// The pin name works as the button name too.
		if err := b.Sim.Press(t.Context(), "GPIO5", ms(100)); err != nil {
			t.Fatal(err)
		}
		if err := b.Sim.Press(t.Context(), "door", ms(100)); !errors.Is(err, ErrUnknownInput) {
			t.Fatalf("unknown button: %v", err)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestSimTamperAndShow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, stop := startSim(t, Options{})
		if b.Tamper.Open() {
			t.Fatal("sim starts with the loop open")
		}
		if err := b.Indicate(Indication{VendorPending: true, Alarm: true}); err != nil {
			t.Fatal(err)
		}
		if err := b.Sim.SetTamper(t.Context(), true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(ms(100))
		synctest.Wait()
		select {
		case ev := <-b.Tamper.Changes():
			if !ev.Open {
				t.Fatalf("event %+v", ev)
			}
		default:
			t.Fatal("no tamper event")
		}
		// Hold the button so Show reports it.
		go func() { _ = b.Sim.Press(t.Context(), "approve", time.Second) }()
		time.Sleep(ms(160)) // +260ms: vendor LED lit 250-375 since Indicate
		synctest.Wait()
		s := b.Sim.Show()
		if !s.Tamper.Open || !s.Button["approve"] || s.Driver != "sim" ||
			s.LEDs["ok"] != (LEDState{On, true}) || s.LEDs["vendor"] != (LEDState{BlinkFast, true}) || s.LEDs["alarm"] != (LEDState{On, true}) ||
			!s.Indication.VendorPending || !s.Watchdog.Hardware || s.Watchdog.Kicks == 0 {
			t.Fatalf("state %+v", s)
		}
		time.Sleep(ms(125))
		synctest.Wait()
		if s := b.State(); s.LEDs["vendor"].Lit {
			t.Error("vendor LED not blinking under Run")
		}
		if b.Sim.ledVend.Read() != gpio.Low || b.Sim.ledOK.Read() != gpio.High {
			t.Error("LED pins do not follow the LED state")
		}
		js, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`"driver":"sim"`, `"vendor":{"pattern":"blink-fast","lit":true}`, `"tamper":{"open":true`, `"buttons":{"approve":true}`, `"watchdog":{"hardware":true`} {
			if !strings.Contains(string(js), want) {
				t.Errorf("JSON %s lacks %s", js, want)
			}
		}
		time.Sleep(2 * time.Second)
		if err := b.Sim.SetTamper(t.Context(), false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(ms(100))
		synctest.Wait()
		if b.Tamper.Open() {
			t.Error("loop closed again but still open")
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if s := b.State(); !s.Watchdog.Disarmed || s.LEDs["ok"].Lit {
			t.Errorf("after stop: %+v", s)
		}
		b.Sim.watchdog.mu.Lock()
		defer b.Sim.watchdog.mu.Unlock()
		if !b.Sim.watchdog.disarmed || b.Sim.watchdog.kicks == 0 || b.Sim.watchdog.timeout != 15*time.Second {
			t.Errorf("sim watchdog %+v", b.Sim.watchdog)
		}
	})
}

func TestBoardCloseStopsRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := Open(t.Context(), Options{Driver: DriverSim, Logger: discard, Getenv: func(string) string { return "" }})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error)
		go func() { done <- b.Run(context.Background()) }()
		time.Sleep(time.Second)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatal("second Close:", err)
		}
		if err := b.Sim.Press(t.Context(), "approve", time.Second); !errors.Is(err, ErrClosed) {
			t.Fatalf("press after close: %v", err)
		}
		if err := b.Sim.SetTamper(t.Context(), true); !errors.Is(err, ErrClosed) {
			t.Fatalf("tamper after close: %v", err)
		}
	})
}

func TestSimPressCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, stop := startSim(t, Options{})
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			time.Sleep(time.Second)
			cancel()
		}()
		if err := b.Sim.Press(ctx, "approve", time.Minute); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		time.Sleep(ms(100))
		synctest.Wait()
		if b.Approve.Pressed() {
			t.Fatal("button left held after a cancelled press")
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestTemperaturesOption(t *testing.T) {
	b, err := Open(t.Context(), Options{Driver: DriverSim, Logger: discard, ThermalRoot: t.TempDir(), Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if z, err := b.Temperatures(); err != nil || len(z) != 0 {
		t.Fatalf("%v %v", z, err)
	}
}

// hangingPin is an input whose edge wait hangs, as a wedged GPIO driver
// would, until release is closed.
type hangingPin struct {
	*simInput
	release chan struct{}
}

func (p *hangingPin) WaitForEdge(time.Duration) bool { <-p.release; return false }

func TestBoardHungInputStopsWatchdog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := Options{Driver: DriverSim, Logger: discard, Getenv: func(string) string { return "" }}
		o.defaults()
		sim := newSim(&o)
		pins := sim.boardPins()
		hung := &hangingPin{simInput: newFakeInput("GPIO27", L), release: make(chan struct{})}
		pins.tamper = hung
		b, err := newBoard(o, discard, pins, sim.watchdog)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- b.Run(ctx) }()
		time.Sleep(inputDeadline + 6*time.Second)
		synctest.Wait()
		st := b.State().Watchdog
		if len(st.Stalled) != 1 || st.Stalled[0] != "hal.tamper" {
			t.Fatalf("stalled %v, want [hal.tamper]", st.Stalled)
		}
		kicks := st.Kicks
		time.Sleep(time.Minute)
		if got := b.State().Watchdog.Kicks; got != kicks {
			t.Fatalf("kicked %d times while an input loop hung", got-kicks)
		}
		cancel()
		close(hung.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		_ = b.Close()
	})
}
