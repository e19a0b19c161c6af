package hal

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func newFakeInput(name string, idle gpio.Level) *simInput {
	return &simInput{Pin: &gpiotest.Pin{N: name, Clock: clockwork.NewRealClock(), EdgesChan: make(chan gpio.Level)}, level: idle}
}

// play sends each edge at its offset from now (fake time inside synctest).
func play(p *simInput, seq []sample) {
	start := time.Now()
	for _, s := range seq {
		time.Sleep(time.Until(start.Add(s.at)))
		p.mu.Lock()
		p.level = s.l
		p.mu.Unlock()
		p.EdgesChan <- s.l
	}
}

// TestButtonLoopBounces runs the real edge loop on gpiotest pins: each
// bounce pattern yields exactly the expected presses.
func TestButtonLoopBounces(t *testing.T) {
	cases := []struct {
		name  string
		seq   []sample
		want  []time.Duration
		longs []bool
	}{
		{"clean", []sample{{0, L}, {ms(200), H}}, []time.Duration{ms(200)}, []bool{false}},
		{"bouncy press and release", cat(bounce(0, ms(1), L, 7), []sample{{ms(300), H}}, bounce(ms(301), ms(1), L, 4)), []time.Duration{ms(304) - ms(6)}, []bool{false}},
		{"contact chatter only", bounce(0, ms(3), L, 20), nil, nil},
		{"long hold", cat(bounce(0, ms(2), L, 5), []sample{{ms(3000), H}}), []time.Duration{ms(3000) - ms(8)}, []bool{true}},
		{"short then long", []sample{{0, L}, {ms(150), H}, {ms(1000), L}, {ms(3500), H}}, []time.Duration{ms(150), ms(2500)}, []bool{false, true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				pin := newFakeInput("BTN", H)
				b, err := newPinButton("approve", pin, clockwork.NewRealClock(), ms(30), 2*time.Second, discard)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(t.Context())
				var wg sync.WaitGroup
				wg.Go(func() { b.run(ctx, nil) })
				play(pin, c.seq)
				time.Sleep(time.Second) // let the last level settle
				synctest.Wait()
				cancel()
				wg.Wait()
				var got []Press
				for len(b.Presses()) > 0 {
					got = append(got, <-b.Presses())
				}
				if len(got) != len(c.want) {
					t.Fatalf("got %d presses %+v, want %d", len(got), got, len(c.want))
				}
				for i := range got {
					if got[i].Duration != c.want[i] || got[i].Long != c.longs[i] {
						t.Errorf("press %d = %v long %v, want %v long %v", i, got[i].Duration, got[i].Long, c.want[i], c.longs[i])
					}
				}
			})
		})
	}
}

func TestButtonPressedState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pin := newFakeInput("BTN", H)
		b, err := newPinButton("approve", pin, clockwork.NewRealClock(), ms(30), time.Second, discard)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() { b.run(ctx, nil) })
		pin.EdgesChan <- L
		time.Sleep(ms(100))
		synctest.Wait()
		if !b.Pressed() {
			t.Error("Pressed() false while held")
		}
		pin.EdgesChan <- H
		time.Sleep(ms(100))
		synctest.Wait()
		if b.Pressed() {
			t.Error("Pressed() true after release")
		}
		cancel()
		wg.Wait()
	})
}

func TestButtonSetupError(t *testing.T) {
	// A gpiotest pin without an edge channel refuses edge detection.
	pin := &gpiotest.Pin{N: "BTN", Clock: clockwork.NewRealClock()}
	if _, err := newPinButton("approve", pin, clockwork.NewRealClock(), ms(30), time.Second, discard); err == nil {
		t.Fatal("want an error")
	}
	if _, err := newPinTamper(pin, clockwork.NewRealClock(), ms(30), ms(500), discard); err == nil {
		t.Fatal("want an error")
	}
}

func TestTamper(t *testing.T) {
	t.Run("open at start", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			pin := newFakeInput("TAMPER", H) // loop cut while the agent was down
			tm, err := newPinTamper(pin, clockwork.NewRealClock(), ms(30), ms(500), discard)
			if err != nil {
				t.Fatal(err)
			}
			if !tm.Open() {
				t.Fatal("open loop at start not detected")
			}
			select {
			case ev := <-tm.Changes():
				if !ev.Open {
					t.Fatalf("first event %+v", ev)
				}
			default:
				t.Fatal("no event for a loop open at start")
			}
		})
	})
	t.Run("closed at start, opened, glitch, closed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			pin := newFakeInput("TAMPER", L)
			tm, err := newPinTamper(pin, clockwork.NewRealClock(), ms(30), ms(500), discard)
			if err != nil {
				t.Fatal(err)
			}
			if tm.Open() || len(tm.Changes()) != 0 {
				t.Fatal("closed loop reported open")
			}
			ctx, cancel := context.WithCancel(t.Context())
			var wg sync.WaitGroup
			wg.Go(func() { tm.run(ctx, nil) })
			defer wg.Wait()
			defer cancel()
			play(pin, []sample{{0, H}, {ms(5), L}}) // glitch
			time.Sleep(ms(200))
			synctest.Wait()
			if tm.Open() || len(tm.Changes()) != 0 {
				t.Fatal("glitch reported as tamper")
			}
			openAt := time.Now()
			play(pin, []sample{{0, H}})
			time.Sleep(ms(100))
			synctest.Wait()
			if !tm.Open() {
				t.Fatal("opening not detected")
			}
			ev := <-tm.Changes()
			if !ev.Open || !ev.At.Equal(openAt) {
				t.Fatalf("event %+v, want open at %v", ev, openAt)
			}
			play(pin, []sample{{0, L}})
			time.Sleep(ms(100))
			synctest.Wait()
			if ev := <-tm.Changes(); ev.Open || tm.Open() {
				t.Fatalf("closing not reported: %+v", ev)
			}
			cancel()
			wg.Wait()
		})
	})
	t.Run("periodic read catches a lost edge", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			pin := newFakeInput("TAMPER", L)
			tm, err := newPinTamper(pin, clockwork.NewRealClock(), ms(30), ms(500), discard)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			var wg sync.WaitGroup
			wg.Go(func() { tm.run(ctx, nil) })
			time.Sleep(ms(10))
			_ = pin.Out(H) // the level changes, no edge is delivered
			time.Sleep(ms(499))
			synctest.Wait()
			if tm.Open() {
				t.Fatal("reported before the poll period")
			}
			time.Sleep(ms(600))
			synctest.Wait()
			if !tm.Open() {
				t.Fatal("open loop without an edge not found by polling")
			}
			cancel()
			wg.Wait()
		})
	})
}

func TestClampWait(t *testing.T) {
	for _, c := range []struct{ in, want time.Duration }{
		{-1, minWait}, {0, minWait}, {time.Nanosecond, minWait}, {ms(20), ms(20)}, {time.Hour, maxWait},
	} {
		if got := clampWait(c.in); got != c.want {
			t.Errorf("clampWait(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
