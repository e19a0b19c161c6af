package hal_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/wardgate/wardgate/hal"
	"golang.org/x/sys/unix"
)

func TestSerialConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  hal.SerialConfig
		say  []string
	}{
		{"no port", hal.SerialConfig{}, []string{"port: missing; name the serial device"}},
		{"everything wrong", hal.SerialConfig{Port: "/dev/ttyX", Baud: -1, DataBits: 9, Parity: "maybe", StopBits: "3", Flow: "xon"},
			[]string{"baud: -1 is not", "data_bits: 9 is not", `parity: "maybe" is not`, `stop_bits: "3" is not`, `flow: "xon" is not`}},
		{"one and a half stop bits", hal.SerialConfig{Port: "/dev/ttyX", StopBits: "1.5"}, []string{"use 1 or 2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := hal.OpenSerial(c.cfg)
			if !errors.Is(err, hal.ErrSerialConfig) {
				t.Fatalf("err = %v", err)
			}
			for _, s := range c.say {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not say %q", err, s)
				}
			}
		})
	}
	if _, err := hal.OpenSerial(hal.SerialConfig{Port: "/nonexistent/ttyS9"}); err == nil || !strings.Contains(err.Error(), "dialout") {
		t.Errorf("missing port: %v", err)
	}
}

// openPTY returns the pty's controller side and the path of its tty side,
// which stands in for the RS-232 device.
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err) // containers without /dev/pts
	}
	name := tty.Name()
	// Keep our tty descriptor open until the end so the pty is not hung up
	// between our close and the port's open.
	t.Cleanup(func() { tty.Close(); ptmx.Close() })
	return ptmx, name
}

func termios(t *testing.T, path string) *unix.Termios {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		// go.bug.st/serial takes the tty exclusively; only root may reopen.
		t.Skipf("cannot reopen %s to check settings: %v", path, err)
	}
	defer unix.Close(fd)
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return tio
}

// TestSerialSettingsOnPTY checks what a pty keeps of the line settings:
// speed, stop bits, hardware flow control and raw mode. Linux's pty driver
// forces CS8 and clears PARENB whatever is asked, so data bits and parity
// are checked at the conversion (TestSerialMode) instead.
func TestSerialSettingsOnPTY(t *testing.T) {
	cases := []struct {
		name string
		cfg  hal.SerialConfig
		baud uint32
		set  uint32 // Cflag bits that must be set
		clr  uint32 // Cflag bits that must be clear
	}{
		{"defaults 9600 8N1", hal.SerialConfig{}, unix.B9600, 0, unix.CSTOPB | unix.CRTSCTS},
		{"115200 7E2", hal.SerialConfig{Baud: 115200, DataBits: 7, Parity: "even", StopBits: "2"}, unix.B115200, unix.CSTOPB, unix.PARODD | unix.CRTSCTS},
		{"19200 8O1 rtscts", hal.SerialConfig{Baud: 19200, Parity: "odd", Flow: "rtscts"}, unix.B19200, unix.PARODD | unix.CRTSCTS, unix.CSTOPB},
		{"4800 5N1", hal.SerialConfig{Baud: 4800, DataBits: 5, Parity: "none", StopBits: "1", Flow: "none"}, unix.B4800, 0, unix.CSTOPB | unix.CRTSCTS},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, path := openPTY(t)
			c.cfg.Port = path
			p, err := hal.OpenSerial(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			tio := termios(t, path)
			if got := tio.Cflag & unix.CBAUD; got != c.baud {
				t.Errorf("baud bits %#o, want %#o", got, c.baud)
			}
			if tio.Cflag&c.set != c.set || tio.Cflag&c.clr != 0 {
				t.Errorf("cflag %#o: want %#o set and %#o clear", tio.Cflag, c.set, c.clr)
			}
			if tio.Lflag&(unix.ICANON|unix.ECHO|unix.ISIG) != 0 {
				t.Errorf("not raw: lflag %#o", tio.Lflag)
			}
		})
	}
}

func TestSerialRoundTripOverPTY(t *testing.T) {
	ptmx, path := openPTY(t)
	p, err := hal.OpenSerial(hal.SerialConfig{Port: path, Baud: 9600})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// gateway -> device: every byte value, raw (no translation of \n, ^C...).
	out := make([]byte, 256)
	for i := range out {
		out[i] = byte(i)
	}
	if _, err := p.Write(out); err != nil {
		t.Fatal(err)
	}
	if err := p.Drain(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(out))
	if err := ptmx.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(ptmx, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, out) {
		t.Fatalf("device got %x", got)
	}
	// device -> gateway.
	msg := []byte("PUMP-07 STATUS OK\r\n\x00\x03\xff")
	if _, err := ptmx.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := p.SetReadTimeout(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, 0, len(msg))
	buf := make([]byte, 64)
	for len(back) < len(msg) {
		n, err := p.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatal("read timed out")
		}
		back = append(back, buf[:n]...)
	}
	if !bytes.Equal(back, msg) {
		t.Fatalf("gateway got %q", back)
	}
	// A short read timeout returns 0, nil when the device is silent.
	if err := p.SetReadTimeout(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if n, err := p.Read(buf); n != 0 || err != nil {
		t.Fatalf("silent read = %d, %v", n, err)
	}
}
