package hal

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

// BenchmarkDebouncerObserve measures one sample through the debouncer and
// press tracker (the per-edge cost of the button loop).
func BenchmarkDebouncerObserve(b *testing.B) {
	d := NewDebouncer(gpio.High, t0, 30*time.Millisecond)
	tr := pressTracker{active: gpio.Low, long: 2 * time.Second}
	now := t0
	l := gpio.High
	for i := 0; b.Loop(); i++ {
		if i%8 == 0 {
			l = !l
		}
		now = now.Add(5 * time.Millisecond)
		if t, ok := d.Observe(l, now); ok {
			tr.apply(t)
		}
	}
}

// BenchmarkLEDRefresh measures one blink-loop refresh of a blinking LED.
func BenchmarkLEDRefresh(b *testing.B) {
	clk := clockwork.NewFakeClockAt(t0)
	led, err := newPinLED("ok", &gpiotest.Pin{N: "LED", Clock: clk}, clk, nil)
	if err != nil {
		b.Fatal(err)
	}
	_ = led.Set(BlinkFast)
	now := t0
	for b.Loop() {
		now = now.Add(time.Millisecond)
		_, _ = led.refresh(now)
	}
}

// BenchmarkKickerTick measures a health check and kick with 8 monitored loops.
func BenchmarkKickerTick(b *testing.B) {
	clk := clockwork.NewFakeClockAt(t0)
	k := NewKicker(KickerOptions{Device: &simWatchdog{}, Clock: clk, Logger: discard})
	for range 8 {
		k.Monitor("loop", time.Minute)
	}
	for b.Loop() {
		k.Tick(t0)
	}
}
