package hal

import (
	"errors"
	"fmt"
	"io"
	"time"

	"go.bug.st/serial"
	"golang.org/x/sys/unix"
)

// SerialConfig describes an RS-232 link; it mirrors the device's
// link.serial config. Zero values take the defaults noted.
type SerialConfig struct {
	Port     string // device path, e.g. /dev/ttyUSB0 (required)
	Baud     int    // default 9600
	DataBits int    // 5..8, default 8
	Parity   string // none (default), odd, even, mark, space
	StopBits string // 1 (default) or 2; 1.5 is refused (Linux has no such setting)
	Flow     string // none (default), rtscts
}

// SerialPort is an open serial line. Read blocks until data arrives, the
// read timeout passes (then it returns 0, nil), or the port is closed.
type SerialPort interface {
	io.ReadWriteCloser
	// SetReadTimeout bounds each Read; a negative value waits forever.
	SetReadTimeout(d time.Duration) error
	// Drain waits until everything written has been sent.
	Drain() error
}

// serialMode checks c and converts it; every problem is reported at once.
func serialMode(c SerialConfig) (*serial.Mode, bool, error) {
	m := &serial.Mode{BaudRate: c.Baud, DataBits: c.DataBits}
	var errs []error
	if c.Port == "" {
		errs = append(errs, errors.New("port: name the serial device, e.g. /dev/ttyUSB0"))
	}
	if m.BaudRate == 0 {
		m.BaudRate = 9600
	} else if m.BaudRate < 0 {
		errs = append(errs, fmt.Errorf("baud %d: use a positive rate such as 9600 or 115200", c.Baud))
	}
	if m.DataBits == 0 {
		m.DataBits = 8
	} else if m.DataBits < 5 || m.DataBits > 8 {
		errs = append(errs, fmt.Errorf("data_bits %d: use 5, 6, 7 or 8", c.DataBits))
	}
	switch c.Parity {
	case "", "none":
		m.Parity = serial.NoParity
	case "odd":
		m.Parity = serial.OddParity
	case "even":
		m.Parity = serial.EvenParity
	case "mark":
		m.Parity = serial.MarkParity
	case "space":
		m.Parity = serial.SpaceParity
	default:
		errs = append(errs, fmt.Errorf("parity %q: use none, odd, even, mark or space", c.Parity))
	}
	switch c.StopBits {
	case "", "1":
		m.StopBits = serial.OneStopBit
	case "1.5":
		errs = append(errs, errors.New("stop_bits 1.5: Linux serial drivers do not support 1.5 stop bits; use 1 or 2"))
	case "2":
		m.StopBits = serial.TwoStopBits
	default:
		errs = append(errs, fmt.Errorf("stop_bits %q: use 1, 1.5 or 2", c.StopBits))
	}
	rtscts := false
	switch c.Flow {
	case "", "none":
	case "rtscts":
		rtscts = true
	default:
		errs = append(errs, fmt.Errorf("flow %q: use none or rtscts", c.Flow))
	}
	if len(errs) > 0 {
		return nil, false, fmt.Errorf("hal: serial %s: %w: %w", c.Port, ErrSerialConfig, errors.Join(errs...))
	}
	return m, rtscts, nil
}

// OpenSerial opens and configures a serial port in raw mode.
func OpenSerial(c SerialConfig) (SerialPort, error) {
	mode, rtscts, err := serialMode(c)
	if err != nil {
		return nil, err
	}
	// go.bug.st/serial always switches RTS/CTS off and then takes the port
	// exclusively (TIOCEXCL), so a descriptor opened beforehand is the way
	// to switch hardware flow control on afterwards.
	side := -1
	if rtscts {
		side, err = unix.Open(c.Port, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("hal: open serial %s: %w; check link.serial.port and that the agent may use it (group dialout)", c.Port, err)
		}
		defer unix.Close(side)
	}
	p, err := serial.Open(c.Port, mode)
	if err != nil {
		return nil, fmt.Errorf("hal: open serial %s: %w; check link.serial.port and that the agent may use it (group dialout)", c.Port, err)
	}
	if rtscts {
		if err := setCRTSCTS(side); err != nil {
			p.Close()
			return nil, fmt.Errorf("hal: serial %s: enable rts/cts flow control: %w (%w)", c.Port, err, ErrSerialConfig)
		}
	}
	return p, nil
}

func setCRTSCTS(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Cflag |= unix.CRTSCTS
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}
