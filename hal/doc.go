// Package hal holds the gateway's hardware: the approve button, the three
// status LEDs, the enclosure tamper loop, the watchdog (the /dev/watchdog
// device and systemd's notify socket) and RS-232 serial ports, plus an
// optional reading of the SoC temperature from sysfs.
//
// The package defines small interfaces (Button, LED, TamperSensor,
// WatchdogDevice, SerialPort) and one implementation of the GPIO parts over
// periph.io's gpio.PinIO. Two drivers supply those pins:
//
//   - "periph" resolves real pins by their kernel line names through the
//     GPIO character device (/dev/gpiochipN, periph.io/x/host/v3/gpioioctl,
//     the only host driver registered);
//   - "sim" uses periph's gpiotest fake pins, driven by Sim.Press and
//     Sim.SetTamper, so the demo and tests run without hardware. Both go
//     through the same debouncer, press tracker, tamper logic and LED code.
//
// Debouncing is a pure state machine (Debouncer) fed with (level, time)
// samples; LED patterns are pure functions of the time since they were set;
// the Kicker only feeds the watchdog while every monitored loop has reported
// a heartbeat within its deadline, so a stuck loop leads to a reset.
//
// Time comes from an injected clockwork.Clock. Board, Kicker, Indicator and
// the LED, button and tamper implementations are safe for concurrent use;
// Debouncer and Pattern are plain values for one goroutine. Board.Run owns
// every goroutine the package starts and returns only after they exited.
// Sentinel errors are listed in errors.go.
package hal
