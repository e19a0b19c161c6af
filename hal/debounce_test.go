package hal

import (
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

type sample struct {
	at time.Duration
	l  gpio.Level
}

const (
	L = gpio.Low
	H = gpio.High
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// bounce returns n alternating samples starting at start, gap apart,
// beginning with first and ending on the opposite of first when n is even.
func bounce(start time.Duration, gap time.Duration, first gpio.Level, n int) []sample {
	s := make([]sample, n)
	l := first
	for i := range s {
		s[i] = sample{start + time.Duration(i)*gap, l}
		l = !l
	}
	return s
}

func cat(parts ...[]sample) []sample {
	var out []sample
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// feed runs samples through a debouncer (initial level at t0) and a press
// tracker, settles with a last sample at end, and returns the presses.
func feed(initial gpio.Level, samples []sample, end time.Duration, debounce, long time.Duration) []Press {
	d := NewDebouncer(initial, t0, debounce)
	tr := pressTracker{name: "approve", active: gpio.Low, long: long}
	if initial == gpio.Low {
		tr.down = false // held at start: its release is ignored
	}
	var out []Press
	emit := func(t Transition, ok bool) {
		if !ok {
			return
		}
		if p, ok := tr.apply(t); ok {
			out = append(out, p)
		}
	}
	raw := initial
	for _, s := range samples {
		emit(d.Observe(s.l, t0.Add(s.at)))
		raw = s.l
	}
	emit(d.Observe(raw, t0.Add(end)))
	return out
}

func TestDebouncePresses(t *testing.T) {
	type want struct {
		dur  time.Duration
		long bool
	}
	cases := []struct {
		name    string
		initial gpio.Level
		samples []sample
		end     time.Duration
		want    []want
	}{
		{"clean press", H, []sample{{0, L}, {ms(100), H}}, ms(500), []want{{ms(100), false}}},
		{"bounce on press and release", H,
			cat(bounce(0, ms(1), L, 9), []sample{{ms(500), H}}, bounce(ms(501), ms(2), L, 6)),
			ms(900), []want{{ms(511) - ms(8), false}}},
		{"fifty bounces then hold", H, cat(bounce(0, ms(1), L, 51), []sample{{ms(400), H}}), ms(800), []want{{ms(400) - ms(50), false}}},
		{"glitch shorter than debounce", H, []sample{{0, L}, {ms(10), H}}, ms(500), nil},
		{"many glitches", H, bounce(0, ms(5), L, 40), ms(900), nil},
		{"polled samples only", H, []sample{{0, L}, {ms(10), L}, {ms(20), L}, {ms(40), L}, {ms(100), H}, {ms(150), H}}, ms(200), []want{{ms(100), false}}},
		{"exactly debounce is accepted", H, []sample{{0, L}, {ms(30), L}, {ms(60), H}, {ms(90), H}}, ms(95), []want{{ms(60), false}}},
		{"one below debounce is a glitch", H, []sample{{0, L}, {ms(29), H}}, ms(200), nil},
		{"long press", H, []sample{{0, L}, {ms(2500), H}}, ms(3000), []want{{ms(2500), true}}},
		{"exactly long threshold", H, []sample{{0, L}, {ms(2000), H}}, ms(3000), []want{{ms(2000), true}}},
		{"just below long threshold", H, []sample{{0, L}, {ms(1999), H}}, ms(3000), []want{{ms(1999), false}}},
		{"bounce does not make a short press long", H, cat(bounce(0, ms(1), L, 5), []sample{{ms(1990), H}}, bounce(ms(1991), ms(1), L, 4)), ms(3000), []want{{ms(1994) - ms(4), false}}},
		{"two presses", H, []sample{{0, L}, {ms(100), H}, {ms(300), L}, {ms(2600), H}}, ms(3000), []want{{ms(100), false}, {ms(2300), true}}},
		{"held at start is ignored", L, []sample{{ms(1000), H}}, ms(2000), nil},
		{"held at start then a real press", L, []sample{{ms(1000), H}, {ms(1200), L}, {ms(1300), H}}, ms(2000), []want{{ms(100), false}}},
		{"release never settles", H, []sample{{0, L}, {ms(500), H}}, ms(510), nil},
		{"out of order sample", H, []sample{{ms(100), L}, {ms(50), L}, {ms(300), H}}, ms(400), []want{{ms(200), false}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := feed(c.initial, c.samples, c.end, ms(30), 2*time.Second)
			if len(got) != len(c.want) {
				t.Fatalf("got %d presses %+v, want %d", len(got), got, len(c.want))
			}
			for i, w := range c.want {
				if got[i].Duration != w.dur || got[i].Long != w.long || got[i].Button != "approve" {
					t.Errorf("press %d = %+v, want duration %v long %v", i, got[i], w.dur, w.long)
				}
			}
		})
	}
}

func TestDebouncerPendingAndZeroPeriod(t *testing.T) {
	d := NewDebouncer(H, t0, ms(30))
	if _, ok := d.Pending(); ok {
		t.Fatal("pending at start")
	}
	d.Observe(L, t0.Add(ms(5)))
	dl, ok := d.Pending()
	if !ok || !dl.Equal(t0.Add(ms(35))) {
		t.Fatalf("Pending = %v %v, want %v", dl, ok, t0.Add(ms(35)))
	}
	if tr, ok := d.Observe(L, t0.Add(ms(35))); !ok || tr.Level != L || !tr.At.Equal(t0.Add(ms(5))) || d.Stable() != L {
		t.Fatalf("Observe at deadline = %+v %v", tr, ok)
	}

	z := NewDebouncer(H, t0, 0)
	if tr, ok := z.Observe(L, t0.Add(ms(1))); !ok || tr.Level != L {
		t.Fatalf("zero period: %+v %v, want an immediate transition", tr, ok)
	}
}
