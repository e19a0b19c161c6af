package clinical

import (
	"io"

	"github.com/wardgate/wardgate/hal"
)

// OpenSerialPort opens c.Port in raw mode with c's settings (after
// defaults), through the hardware layer's serial port (go.bug.st/serial,
// with RTS/CTS set on the tty since the library does not expose it).
func OpenSerialPort(c hal.SerialConfig) (io.ReadWriteCloser, error) {
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return hal.OpenSerial(c)
}
