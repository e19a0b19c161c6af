package hal

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

func TestPatternLitAt(t *testing.T) {
	cases := []struct {
		p       Pattern
		elapsed time.Duration
		lit     bool
		next    time.Duration
	}{
		{Off, 0, false, 0},
		{Off, time.Hour, false, 0},
		{On, 0, true, 0},
		{On, time.Hour, true, 0},
		{BlinkSlow, 0, true, ms(500)},
		{BlinkSlow, ms(499), true, ms(1)},
		{BlinkSlow, ms(500), false, ms(500)},
		{BlinkSlow, ms(999), false, ms(1)},
		{BlinkSlow, ms(1000), true, ms(500)},
		{BlinkFast, ms(124), true, ms(1)},
		{BlinkFast, ms(125), false, ms(125)},
		{BlinkFast, ms(250), true, ms(125)},
		{BlinkFast, -ms(5), true, ms(125)},
		{BlinkDouble, 0, true, ms(125)},
		{BlinkDouble, ms(130), false, ms(120)},
		{BlinkDouble, ms(250), true, ms(125)},
		{BlinkDouble, ms(375), false, ms(625)},
		{BlinkDouble, ms(999), false, ms(1)},
		{BlinkDouble, ms(1000), true, ms(125)},
	}
	for _, c := range cases {
		lit, next := c.p.LitAt(c.elapsed)
		if lit != c.lit || next != c.next {
			t.Errorf("%v.LitAt(%v) = %v, %v; want %v, %v", c.p, c.elapsed, lit, next, c.lit, c.next)
		}
	}
}

func TestPatternText(t *testing.T) {
	for _, p := range []Pattern{Off, On, BlinkSlow, BlinkFast, BlinkDouble} {
		b, _ := p.MarshalText()
		var q Pattern
		if err := q.UnmarshalText(b); err != nil || q != p {
			t.Errorf("round trip %v: %v %v", p, q, err)
		}
	}
	var q Pattern
	if err := q.UnmarshalText([]byte("disco")); err == nil {
		t.Error("unknown pattern accepted")
	}
	if s := Pattern(9).String(); s != "pattern(9)" {
		t.Errorf("String = %q", s)
	}
}

// TestLEDTimeline drives an LED over a gpiotest pin under a fake clock and
// checks the pin level at each step of the timeline.
func TestLEDTimeline(t *testing.T) {
	type step struct {
		advance time.Duration
		set     *Pattern // set this pattern after advancing
		lit     bool     // pin level after the step
	}
	p := func(x Pattern) *Pattern { return &x }
	cases := []struct {
		name  string
		steps []step
	}{
		{"steady on then off", []step{{0, p(On), true}, {time.Hour, nil, true}, {0, p(Off), false}, {time.Second, nil, false}}},
		{"slow blink", []step{{0, p(BlinkSlow), true}, {ms(499), nil, true}, {ms(1), nil, false}, {ms(499), nil, false}, {ms(1), nil, true}, {ms(2500), nil, false}}},
		{"fast blink", []step{{0, p(BlinkFast), true}, {ms(125), nil, false}, {ms(125), nil, true}, {ms(100), nil, true}, {ms(25), nil, false}}},
		{"same pattern keeps phase", []step{{0, p(BlinkSlow), true}, {ms(600), p(BlinkSlow), false}, {ms(400), nil, true}}},
		{"new pattern restarts lit", []step{{0, p(BlinkSlow), true}, {ms(600), p(BlinkFast), true}, {ms(125), nil, false}}},
		{"blink to steady", []step{{0, p(BlinkFast), true}, {ms(130), p(On), true}, {ms(130), nil, true}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clk := clockwork.NewFakeClockAt(t0)
			pin := &gpiotest.Pin{N: "LED", Clock: clk}
			led, err := newPinLED("ok", pin, clk, nil)
			if err != nil {
				t.Fatal(err)
			}
			if pin.Read() != gpio.Low || led.Lit() {
				t.Fatal("LED not off after set-up")
			}
			for i, s := range c.steps {
				clk.Advance(s.advance)
				if s.set != nil {
					if err := led.Set(*s.set); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := led.refresh(clk.Now()); err != nil {
					t.Fatal(err)
				}
				if got := pin.Read() == gpio.High; got != s.lit || led.Lit() != s.lit {
					t.Errorf("step %d (+%v): pin lit %v, Lit() %v, want %v", i, clk.Since(t0), got, led.Lit(), s.lit)
				}
			}
		})
	}
}

func TestIndicationPatterns(t *testing.T) {
	cases := []struct {
		in                Indication
		ok, vendor, alarm Pattern
	}{
		{Indication{}, On, Off, Off},
		{Indication{Degraded: true}, BlinkSlow, Off, Off},
		{Indication{VendorPending: true}, On, BlinkFast, Off},
		{Indication{VendorLive: true}, On, On, Off},
		{Indication{VendorPending: true, VendorLive: true}, On, BlinkFast, Off},
		{Indication{VendorPending: true, VendorSeveral: true, VendorLive: true}, On, BlinkDouble, Off},
		{Indication{Alarm: true}, On, Off, On},
		{Indication{Degraded: true, VendorLive: true, Alarm: true}, BlinkSlow, On, On},
	}
	for _, c := range cases {
		o, v, a := c.in.Patterns()
		if o != c.ok || v != c.vendor || a != c.alarm {
			t.Errorf("%+v -> %v/%v/%v, want %v/%v/%v", c.in, o, v, a, c.ok, c.vendor, c.alarm)
		}
	}
}

func TestIndicatorTimeline(t *testing.T) {
	clk := clockwork.NewFakeClockAt(t0)
	var pins [3]*gpiotest.Pin
	var leds [3]*pinLED
	for i, n := range []string{"ok", "vendor", "alarm"} {
		pins[i] = &gpiotest.Pin{N: n, Clock: clk}
		var err error
		if leds[i], err = newPinLED(n, pins[i], clk, nil); err != nil {
			t.Fatal(err)
		}
	}
	x := NewIndicator(leds[0], leds[1], leds[2])
	levels := func() [3]bool {
		for _, l := range leds {
			if _, err := l.refresh(clk.Now()); err != nil {
				t.Fatal(err)
			}
		}
		return [3]bool{bool(pins[0].Read()), bool(pins[1].Read()), bool(pins[2].Read())}
	}
	steps := []struct {
		advance time.Duration
		ind     *Indication
		want    [3]bool
	}{
		{0, &Indication{}, [3]bool{true, false, false}},
		{0, &Indication{VendorPending: true}, [3]bool{true, true, false}},
		{ms(125), nil, [3]bool{true, false, false}},
		{ms(125), &Indication{VendorPending: true}, [3]bool{true, true, false}}, // same: phase kept
		{ms(125), nil, [3]bool{true, false, false}},
		{0, &Indication{VendorLive: true, Degraded: true}, [3]bool{true, true, false}},
		{ms(500), nil, [3]bool{false, true, false}},
		{0, &Indication{Alarm: true, Degraded: true, VendorLive: true}, [3]bool{false, true, true}},
		{ms(500), nil, [3]bool{true, true, true}},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		if s.ind != nil {
			if err := x.Set(*s.ind); err != nil {
				t.Fatal(err)
			}
			if x.Current() != *s.ind {
				t.Fatalf("Current = %+v", x.Current())
			}
		}
		if got := levels(); got != s.want {
			t.Errorf("step %d: lit ok/vendor/alarm = %v, want %v", i, got, s.want)
		}
	}
	b, err := json.Marshal(LEDState{Pattern: BlinkFast, Lit: true})
	if err != nil || string(b) != `{"pattern":"blink-fast","lit":true}` {
		t.Errorf("LEDState JSON = %s %v", b, err)
	}
}
