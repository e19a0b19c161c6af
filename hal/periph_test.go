package hal

import (
	"errors"
	"strings"
	"testing"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

// fakeRegistry stands in for gpioreg with gpiotest pins.
func fakeRegistry(names ...string) *periphHooks {
	pins := map[string]gpio.PinIO{}
	var all []gpio.PinIO
	for i, n := range names {
		p := &gpiotest.Pin{N: n, Num: i, Clock: clockwork.NewRealClock(), EdgesChan: make(chan gpio.Level)}
		pins[n] = p
		all = append(all, p)
	}
	return &periphHooks{
		init:   func() error { return nil },
		byName: func(n string) gpio.PinIO { return pins[n] },
		all:    func() []gpio.PinIO { return all },
	}
}

var goodPins = Options{ApproveButton: "GPIO17", Tamper: "GPIO27", LEDs: LEDPins{OK: "GPIO22", Vendor: "GPIO23", Alarm: "GPIO24"}}

func TestOpenPeriphErrors(t *testing.T) {
	reg := fakeRegistry("GPIO17", "GPIO22", "GPIO23", "GPIO24", "GPIO27")
	cases := []struct {
		name   string
		hooks  *periphHooks
		mutate func(*Options)
		is     error
		say    []string
	}{
		{"pin not found lists pins", reg, func(o *Options) { o.Tamper = "GPIO99" }, ErrPinNotFound,
			[]string{`hal.tamper: gpio pin not found: no pin named "GPIO99"`, "pins on this board: GPIO17, GPIO22, GPIO23, GPIO24, GPIO27"}},
		{"no pins at all", fakeRegistry(), nil, ErrPinNotFound, []string{"hal.approve_button", "no GPIO driver found pins"}},
		{"empty name", reg, func(o *Options) { o.LEDs.Alarm = "" }, ErrPinConfig, []string{"hal.leds.alarm is empty"}},
		{"same pin twice", reg, func(o *Options) { o.LEDs.OK = "GPIO17" }, ErrPinConfig, []string{`hal.leds.ok "GPIO17" is the same pin as hal.approve_button`}},
		{"host init fails", &periphHooks{init: func() error { return errors.New("boom") }}, nil, ErrDriver, []string{"boom", "hal.driver: sim"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := goodPins
			o.periph = c.hooks
			if c.mutate != nil {
				c.mutate(&o)
			}
			_, err := Open(t.Context(), o)
			if !errors.Is(err, c.is) {
				t.Fatalf("err = %v, want %v", err, c.is)
			}
			for _, s := range c.say {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

func TestOpenPeriphWithRegistry(t *testing.T) {
	o := goodPins
	o.periph = fakeRegistry("GPIO17", "GPIO22", "GPIO23", "GPIO24", "GPIO27")
	o.Logger = discard
	b, err := Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if b.Sim != nil || b.Driver != DriverPeriph {
		t.Fatalf("driver %q sim %v", b.Driver, b.Sim)
	}
	// Pull-ups on both inputs; the fake's pull-up reads high: tamper open.
	if !b.Tamper.Open() {
		t.Error("a floating (pulled-up) tamper input must read as open")
	}
	if err := b.Indicate(Indication{VendorLive: true}); err != nil {
		t.Fatal(err)
	}
	if p := o.periph.byName("GPIO23").(*gpiotest.Pin); p.Read() != gpio.High {
		t.Error("vendor LED pin not driven high")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if p := o.periph.byName("GPIO23").(*gpiotest.Pin); p.Read() != gpio.Low {
		t.Error("vendor LED not switched off on Close")
	}
}

func TestOpenPeriphWatchdogMissing(t *testing.T) {
	o := goodPins
	o.periph = fakeRegistry("GPIO17", "GPIO22", "GPIO23", "GPIO24", "GPIO27")
	o.Watchdog = t.TempDir() + "/no-watchdog"
	if _, err := Open(t.Context(), o); !errors.Is(err, ErrWatchdog) || !strings.Contains(err.Error(), "hal.watchdog") {
		t.Fatalf("err = %v", err)
	}
}

func TestOpenUnknownDriver(t *testing.T) {
	_, err := Open(t.Context(), Options{Driver: "gpio"})
	if !errors.Is(err, ErrDriver) || !strings.Contains(err.Error(), "periph") {
		t.Fatalf("err = %v", err)
	}
}

// TestOpenPeriphRealHost runs periph's real host.Init and registry: on a
// machine without the configured pin (any CI runner) the error must name the
// key and list whatever pins the host drivers found.
func TestOpenPeriphRealHost(t *testing.T) {
	o := goodPins
	o.ApproveButton = "WARDGATE_NO_SUCH_PIN"
	o.Logger = discard
	_, err := Open(t.Context(), o)
	if errors.Is(err, ErrDriver) {
		t.Skipf("periph host drivers cannot start here: %v", err)
	}
	if !errors.Is(err, ErrPinNotFound) || !strings.Contains(err.Error(), `hal.approve_button: gpio pin not found: no pin named "WARDGATE_NO_SUCH_PIN"`) || !strings.Contains(err.Error(), "pins on this board: ") {
		t.Fatalf("err = %v", err)
	}
	t.Log(err)
}
