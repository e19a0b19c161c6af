package clinical

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/wardgate/wardgate/hal"
)

// fakeDevice is the device end of a pty: it answers each line with "ACK
// <line>".
type fakeDevice struct {
	master, slave *os.File
	done          chan struct{}
}

func newFakeDevice(t *testing.T, link string) *fakeDevice {
	t.Helper()
	pm, s, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	// A nonblocking (pollable) master, so that Close interrupts the reader.
	fd, err := unix.Dup(int(pm.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	pm.Close()
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	m := os.NewFile(uintptr(fd), "ptmx")
	_ = os.Remove(link)
	if err := os.Symlink(s.Name(), link); err != nil {
		t.Fatal(err)
	}
	d := &fakeDevice{master: m, slave: s, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		r := bufio.NewReader(m)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := io.WriteString(m, "ACK "+line); err != nil {
				return
			}
		}
	}()
	return d
}

// unplug closes both ends, as when a USB adapter is pulled.
func (d *fakeDevice) unplug() {
	d.master.Close()
	d.slave.Close()
}

// TestSerialPTY: a round trip over a pty with the configured settings, one
// owner at a time, and reopening after the adapter comes back.
func TestSerialPTY(t *testing.T) {
	link := filepath.Join(t.TempDir(), "ttyUSB0")
	dev := newFakeDevice(t, link)
	defer func() { dev.unplug() }()
	cfg := hal.SerialConfig{Port: link, Baud: 19200, DataBits: 7, Parity: "even", StopBits: "2", Flow: "rtscts"}
	e := newEnv(t, nil, func(o *Options, d *DeviceOptions) {
		d.Serial = &cfg
		o.SerialBackoffMin, o.SerialBackoffMax = 10*time.Millisecond, 50*time.Millisecond
		o.OpenSerial = func(c hal.SerialConfig) (io.ReadWriteCloser, error) {
			if c != cfg {
				t.Errorf("opened with %+v, want %+v", c, cfg)
			}
			return OpenSerialPort(c)
		}
	})
	e.ev.wait(t, EvLinkUp, nil)

	c := dial(t, e.addr(), e.p.good(t))
	defer c.Close()
	r := bufio.NewReader(c)
	line := func(c io.Writer, r *bufio.Reader, msg string) string {
		t.Helper()
		if _, err := io.WriteString(c, msg+"\n"); err != nil {
			t.Fatal(err)
		}
		s, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return strings.TrimSpace(s)
	}
	if got := line(c, r, "VITALS?"); got != "ACK VITALS?" {
		t.Fatalf("got %q", got)
	}
	tio, err := unix.IoctlGetTermios(int(dev.slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	// Linux ptys force CS8 without parity whatever is asked; data bits and
	// parity are checked on the configuration OpenSerial received.
	if tio.Cflag&unix.CSTOPB == 0 || tio.Cflag&unix.CRTSCTS == 0 || tio.Cflag&unix.CBAUD != unix.B19200 {
		t.Fatalf("termios cflag %#o does not match 19200, 2 stop bits, rtscts", tio.Cflag)
	}

	// A second client is refused while the first owns the port.
	c2 := dial(t, e.addr(), e.p.good(t))
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("second client: %v, want a clean close", err)
	}
	c2.Close()
	e.ev.wait(t, EvBusy, nil)
	if got := line(c, r, "STILL?"); got != "ACK STILL?" {
		t.Fatalf("owner after refusal: %q", got)
	}

	// The adapter goes away: the session closes cleanly, the link is down.
	dev.unplug()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Fatalf("after unplug: %v, want io.EOF", err)
	}
	e.ev.wait(t, EvLinkDown, nil)
	e.ev.wait(t, EvSessionEnd, func(ev Event) bool { return ev.Reason == ReasonLinkDown })

	// It comes back (a new pty under the same name): the port is reopened.
	dev = newFakeDevice(t, link)
	deadline := time.Now().Add(10 * time.Second)
	for e.s.Snapshot()[0].LinkState != "up" {
		if time.Now().After(deadline) {
			t.Fatal("port not reopened")
		}
		time.Sleep(10 * time.Millisecond) // polling an external device's state
	}
	c3 := dial(t, e.addr(), e.p.good(t))
	defer c3.Close()
	if got := line(c3, bufio.NewReader(c3), "BACK?"); got != "ACK BACK?" {
		t.Fatalf("after replug: %q", got)
	}
}
