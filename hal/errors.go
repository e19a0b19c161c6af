package hal

import "errors"

// Sentinel errors. Match them with errors.Is; the wrapped message says what
// is wrong and how to fix it.
var (
	// ErrPinNotFound: a configured GPIO pin name does not exist on this
	// board. The message lists the pins that do.
	ErrPinNotFound = errors.New("gpio pin not found")
	// ErrPinConfig: a pin could not be set up (in use, no permission, or
	// named twice in the configuration).
	ErrPinConfig = errors.New("gpio pin cannot be set up")
	// ErrDriver: hal.driver names no driver, or the driver failed to start.
	ErrDriver = errors.New("hardware driver unavailable")
	// ErrWatchdog: the watchdog device refused an operation.
	ErrWatchdog = errors.New("watchdog device error")
	// ErrNotify: a message to systemd's notify socket could not be sent.
	ErrNotify = errors.New("systemd notify failed")
	// ErrSerialConfig: serial settings are invalid or unsupported.
	ErrSerialConfig = errors.New("invalid serial settings")
	// ErrThermal: a thermal zone value could not be read or parsed.
	ErrThermal = errors.New("thermal zone unreadable")
	// ErrUnknownInput: Sim.Press named an input the simulator does not have.
	ErrUnknownInput = errors.New("no such simulated input")
	// ErrClosed: the board was closed.
	ErrClosed = errors.New("hardware closed")
)
