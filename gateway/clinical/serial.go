package clinical

import (
	"fmt"
	"io"

	"go.bug.st/serial"
	"golang.org/x/sys/unix"
)

// OpenSerialPort opens c.Port with go.bug.st/serial in raw mode with c's
// settings (after defaults). RTS/CTS flow control, which the library does not
// expose, is set on the tty's termios through a second descriptor (termios
// belongs to the tty, not to the descriptor).
func OpenSerialPort(c SerialConfig) (io.ReadWriteCloser, error) {
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	m := &serial.Mode{BaudRate: c.Baud, DataBits: c.DataBits, StopBits: serial.OneStopBit}
	if c.StopBits == "2" {
		m.StopBits = serial.TwoStopBits
	}
	switch c.Parity {
	case "odd":
		m.Parity = serial.OddParity
	case "even":
		m.Parity = serial.EvenParity
	case "mark":
		m.Parity = serial.MarkParity
	case "space":
		m.Parity = serial.SpaceParity
	default:
		m.Parity = serial.NoParity
	}
	p, err := serial.Open(c.Port, m)
	if err != nil {
		return nil, fmt.Errorf("open serial port %s: %w", c.Port, err)
	}
	if c.Flow == "rtscts" {
		if err := setRTSCTS(c.Port); err != nil {
			_ = p.Close()
			return nil, fmt.Errorf("serial port %s: enable rts/cts flow control: %w", c.Port, err)
		}
	}
	return p, nil
}

func setRTSCTS(path string) error {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Cflag |= unix.CRTSCTS
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}
