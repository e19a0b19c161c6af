package hal

import (
	"fmt"
	"strings"

	"periph.io/x/conn/v3/driver/driverreg"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	// The GPIO character device (/dev/gpiochip*) is the kernel's supported
	// GPIO interface on every board; it is the only periph host driver the
	// gateway registers (the memory-mapped SoC drivers and sysfs GPIO add
	// size and nothing the button, LEDs and tamper switch need).
	_ "periph.io/x/host/v3/gpioioctl"
)

// periphHooks lets tests replace driverreg.Init and the pin registry.
type periphHooks struct {
	init   func() error
	byName func(string) gpio.PinIO
	all    func() []gpio.PinIO
}

func defaultPeriphHooks() *periphHooks {
	return &periphHooks{
		init: func() error {
			_, err := driverreg.Init()
			return err
		},
		byName: gpioreg.ByName,
		all:    gpioreg.All,
	}
}

// openPeriph initialises periph's host drivers and resolves every pin by
// name. A missing pin's error lists the pins that exist.
func openPeriph(o Options) (boardPins, error) {
	h := o.periph
	if h == nil {
		h = defaultPeriphHooks()
	}
	if err := h.init(); err != nil {
		return boardPins{}, fmt.Errorf("hal: start periph GPIO drivers: %w (%w); run as root or grant access to /dev/gpiochip*, or set hal.driver: sim", err, ErrDriver)
	}
	var pins boardPins
	used := map[string]string{}
	for _, p := range []struct {
		key, name string
		dst       *gpio.PinIO
	}{
		{"hal.approve_button", o.ApproveButton, &pins.approve},
		{"hal.tamper", o.Tamper, &pins.tamper},
		{"hal.leds.ok", o.LEDs.OK, &pins.ledOK},
		{"hal.leds.vendor", o.LEDs.Vendor, &pins.ledVend},
		{"hal.leds.alarm", o.LEDs.Alarm, &pins.ledAlm},
	} {
		if p.name == "" {
			return boardPins{}, fmt.Errorf("hal: %s is empty: name the GPIO pin, e.g. GPIO17 (%w)", p.key, ErrPinConfig)
		}
		pin := h.byName(p.name)
		if pin == nil {
			return boardPins{}, pinNotFound(p.key, p.name, h.all())
		}
		real := realName(pin)
		if prev, ok := used[real]; ok {
			return boardPins{}, fmt.Errorf("hal: %s %q is the same pin as %s (%s); give each input and LED its own pin (%w)", p.key, p.name, prev, real, ErrPinConfig)
		}
		used[real] = p.key
		*p.dst = pin
	}
	return pins, nil
}

func realName(p gpio.PinIO) string {
	for {
		r, ok := p.(gpio.RealPin)
		if !ok {
			return p.Name()
		}
		p = r.Real()
	}
}

// pinNotFound builds the operator's error: which key, which name, and the
// pins the board does have.
func pinNotFound(key, name string, all []gpio.PinIO) error {
	names := make([]string, 0, len(all))
	for _, p := range all {
		names = append(names, p.Name())
	}
	have := "none: no GPIO driver found pins on this board (is this the gateway hardware, and may the agent open /dev/gpiochip*?)"
	if len(names) > 0 {
		have = strings.Join(names, ", ")
	}
	return fmt.Errorf("hal: %s: %w: no pin named %q; pins on this board: %s", key, ErrPinNotFound, name, have)
}
