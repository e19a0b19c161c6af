package hal

import (
	"errors"
	"fmt"
	"io"
	"time"

	"go.bug.st/serial"
	"golang.org/x/sys/unix"
)

// SerialConfig describes an RS-232 link. It is the one serial settings
// type: the config file's link.serial decodes into it (YAML keys below),
// clinical relays open it, and its defaults and rules live here only.
// Zero values take the defaults noted.
type SerialConfig struct {
	Port     string `yaml:"port"`      // device path, e.g. /dev/ttyUSB0 (required)
	Baud     int    `yaml:"baud"`      // default 9600
	DataBits int    `yaml:"data_bits"` // 5..8, default 8
	Parity   string `yaml:"parity"`    // none (default), odd, even, mark, space
	StopBits string `yaml:"stop_bits"` // 1 (default) or 2; 1.5 is refused (Linux has no such setting)
	Flow     string `yaml:"flow"`      // none (default), rtscts
}

// WithDefaults returns c with every zero field set to its default.
func (c SerialConfig) WithDefaults() SerialConfig {
	if c.Baud == 0 {
		c.Baud = 9600
	}
	if c.DataBits == 0 {
		c.DataBits = 8
	}
	if c.Parity == "" {
		c.Parity = "none"
	}
	if c.StopBits == "" {
		c.StopBits = "1"
	}
	if c.Flow == "" {
		c.Flow = "none"
	}
	return c
}

// SerialProblem is one invalid field of a SerialConfig: Field is its YAML
// key, Message says what is wrong and what to write instead.
type SerialProblem struct{ Field, Message string }

// Problems reports every invalid field of c after defaults, in field
// order; none for a usable configuration.
func (c SerialConfig) Problems() []SerialProblem {
	c = c.WithDefaults()
	var ps []SerialProblem
	add := func(field, format string, args ...any) {
		ps = append(ps, SerialProblem{field, fmt.Sprintf(format, args...)})
	}
	if c.Port == "" {
		add("port", "missing; name the serial device, e.g. /dev/ttyUSB0")
	}
	if c.Baud < 50 || c.Baud > 4000000 {
		add("baud", "%d is not a usable baud rate; use the device's rate, e.g. 9600 or 115200", c.Baud)
	}
	if c.DataBits < 5 || c.DataBits > 8 {
		add("data_bits", "%d is not allowed; use 5, 6, 7 or 8", c.DataBits)
	}
	if _, ok := parities[c.Parity]; !ok {
		add("parity", "%q is not a parity; use none, odd, even, mark or space", c.Parity)
	}
	switch c.StopBits {
	case "1", "2":
	case "1.5":
		add("stop_bits", "1.5 stop bits are not supported by Linux serial drivers; use 1 or 2")
	default:
		add("stop_bits", "%q is not allowed; use 1 or 2", c.StopBits)
	}
	if c.Flow != "none" && c.Flow != "rtscts" {
		add("flow", "%q is not a flow control; use none or rtscts", c.Flow)
	}
	return ps
}

// Validate returns nil or an error wrapping ErrSerialConfig that lists
// every problem of c.
func (c SerialConfig) Validate() error {
	ps := c.Problems()
	if len(ps) == 0 {
		return nil
	}
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = fmt.Errorf("%s: %s", p.Field, p.Message)
	}
	return fmt.Errorf("hal: serial %s: %w: %w", c.Port, ErrSerialConfig, errors.Join(errs...))
}

var parities = map[string]serial.Parity{
	"none": serial.NoParity, "odd": serial.OddParity, "even": serial.EvenParity,
	"mark": serial.MarkParity, "space": serial.SpaceParity,
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

// serialMode checks c and converts it.
func serialMode(c SerialConfig) (*serial.Mode, bool, error) {
	if err := c.Validate(); err != nil {
		return nil, false, err
	}
	c = c.WithDefaults()
	m := &serial.Mode{BaudRate: c.Baud, DataBits: c.DataBits, Parity: parities[c.Parity], StopBits: serial.OneStopBit}
	if c.StopBits == "2" {
		m.StopBits = serial.TwoStopBits
	}
	return m, c.Flow == "rtscts", nil
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
