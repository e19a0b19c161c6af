package clinical

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/hal"
)

// TestLimiter: one refusal event per device, kind and reason per window;
// the next carries the folded count; flush reports a trailing flood.
func TestLimiter(t *testing.T) {
	l := limiter{window: 10 * time.Second, keys: map[limitKey]*limitState{}}
	t0 := time.Unix(1000, 0)
	st := newStats()
	ev := func(at time.Duration, reason string) *Event {
		return &Event{Time: t0.Add(at), Kind: EvRefused, Device: "d", Reason: reason}
	}
	if !l.admit(ev(0, "expired"), st) || !l.admit(ev(0, "untrusted"), st) {
		t.Fatal("first events of each reason must pass")
	}
	for i := range 99 {
		if l.admit(ev(time.Duration(i)*time.Millisecond, "expired"), st) {
			t.Fatal("flood passed")
		}
	}
	if got := l.flush(t0.Add(5 * time.Second)); len(got) != 0 {
		t.Fatalf("flushed early: %+v", got)
	}
	got := l.flush(t0.Add(10 * time.Second))
	if len(got) != 1 || got[0].Suppressed != 98 || got[0].Reason != "expired" {
		t.Fatalf("flush %+v", got)
	}
	e := ev(25*time.Second, "expired")
	if !l.admit(e, st) || e.Suppressed != 0 {
		t.Fatalf("after the window: %+v", e)
	}
	if st.suppressed.Load() != 99 {
		t.Fatalf("suppressed counter %d", st.suppressed.Load())
	}
	for i := range 10 {
		if !l.admit(&Event{Time: t0, Kind: EvSessionStart, Device: "d", Identity: "a"}, st) {
			t.Fatalf("session event %d folded", i)
		}
	}
}

// TestIdleAndLifetime: with a fake clock, a silent session is cut at
// IdleTimeout and a busy one at MaxLifetime, both with close_notify.
func TestIdleAndLifetime(t *testing.T) {
	fc := clockwork.NewFakeClockAt(time.Now())
	e := newEnv(t, echo, func(o *Options, d *DeviceOptions) {
		o.Clock = fc
		d.IdleTimeout, d.MaxLifetime = time.Minute, 3*time.Minute
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	step := func(d time.Duration) {
		if err := fc.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		fc.Advance(d)
	}
	// closedWithin advances the clock in steps until c is closed cleanly,
	// calling each() before every step; it returns the fake time taken.
	closedWithin := func(c *tls.Conn, d time.Duration, each func()) time.Duration {
		start := fc.Now()
		for fc.Since(start) <= 2*d {
			if each != nil {
				each()
			}
			step(15 * time.Second)
			_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			_, err := c.Read(make([]byte, 1))
			if errors.Is(err, io.EOF) {
				return fc.Since(start)
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("read: %v", err)
			}
		}
		t.Fatalf("not closed within %s", 2*d)
		return 0
	}
	c := dial(t, e.addr(), e.p.good(t))
	defer c.Close()
	roundTrip(t, c, "x")
	if took := closedWithin(c, time.Minute, nil); took < time.Minute {
		t.Fatalf("idle cut after %s", took)
	}
	e.ev.wait(t, EvSessionEnd, func(ev Event) bool { return ev.Reason == ReasonIdle })

	c2 := dial(t, e.addr(), e.p.good(t))
	defer c2.Close()
	if took := closedWithin(c2, 3*time.Minute, func() { roundTrip(t, c2, "busy") }); took < 3*time.Minute-15*time.Second {
		t.Fatalf("lifetime cut after %s", took)
	}
	e.ev.wait(t, EvSessionEnd, func(ev Event) bool { return ev.Reason == ReasonMaxLifetime })
}

// flakyListener fails Accept with EMFILE a few times first.
type flakyListener struct {
	net.Listener
	fails chan struct{}
}

func (l *flakyListener) Accept() (net.Conn, error) {
	select {
	case <-l.fails:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	default:
	}
	return l.Listener.Accept()
}

// TestAcceptBackoff: EMFILE from Accept is retried after a pause (an event
// says so) and serving goes on.
func TestAcceptBackoff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: ln, fails: make(chan struct{}, 3)}
	for range 3 {
		fl.fails <- struct{}{}
	}
	e := newEnv(t, echo, func(_ *Options, d *DeviceOptions) { d.Listener = fl })
	c := dial(t, ln.Addr().String(), e.p.good(t))
	defer c.Close()
	roundTrip(t, c, "after EMFILE")
	ev := e.ev.wait(t, EvListenerError, nil)
	if !strings.Contains(ev.Detail, "too many open files") {
		t.Fatalf("event %+v", ev)
	}
}

// TestLimits: MaxPerSource refuses at accept; MaxConns after the handshake.
func TestLimits(t *testing.T) {
	e := newEnv(t, echo, func(_ *Options, d *DeviceOptions) { d.MaxConns, d.MaxPerSource = 1, 2 })
	good := e.p.good(t)
	c1 := dial(t, e.addr(), good)
	defer c1.Close()
	roundTrip(t, c1, "one")
	c2 := dial(t, e.addr(), good)
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("second session: %v, want clean close", err)
	}
	c2.Close()
	e.ev.wait(t, EvLimit, func(ev Event) bool { return ev.Reason == ReasonDeviceLimit && ev.Identity == pumpSrv })
	// Two raw connections from the same address: the second is refused.
	r1, _ := net.Dial("tcp", e.addr())
	defer r1.Close()
	r2, _ := net.Dial("tcp", e.addr())
	defer r2.Close()
	e.ev.wait(t, EvLimit, func(ev Event) bool { return ev.Reason == ReasonSourceLimit })
	// Another loopback address is another source.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	c3, err := tls.DialWithDialer(&d, "tcp", e.addr(), good.tls)
	if err != nil {
		t.Fatalf("other source: %v", err)
	}
	c3.Close()
}

// TestOptionsValidation: every problem is reported, with its field.
func TestOptionsValidation(t *testing.T) {
	if _, err := New(Options{}, nil); !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "Authorize") && !strings.Contains(err.Error(), "authorize") {
		t.Fatalf("empty options: %v", err)
	}
	o := Options{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil },
		ClientCAs:      func() *x509.CertPool { return nil },
		Authorize:      func(string, []*x509.Certificate) (string, string, error) { return "", "", nil },
	}
	cases := []struct {
		name string
		d    []DeviceOptions
		want []string
	}{
		{"no link", []DeviceOptions{{ID: "a", Listen: ":0"}}, []string{"link is missing"}},
		{"both links", []DeviceOptions{{ID: "a", Listen: ":0", TCP: "h:1", Serial: &hal.SerialConfig{Port: "/dev/x"}}}, []string{"both"}},
		{"bad tcp", []DeviceOptions{{ID: "a", Listen: ":0", TCP: "nohost"}}, []string{"HOST:PORT"}},
		{"bad serial", []DeviceOptions{{ID: "a", Listen: ":0", Serial: &hal.SerialConfig{Port: "/dev/x", DataBits: 9, Parity: "x", StopBits: "1.5", Flow: "xon"}}},
			[]string{"data_bits", "parity", "stop_bits", "flow"}},
		{"duplicate", []DeviceOptions{{ID: "a", Listen: ":0", TCP: "h:1"}, {ID: "a", Listen: ":0", TCP: "h:1"}}, []string{"duplicate"}},
		{"no listen", []DeviceOptions{{ID: "a", TCP: "h:1"}}, []string{"clinical.listen"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(o, tc.d)
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("err %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q not in %v", w, err)
				}
			}
		})
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	if _, err := New(o, []DeviceOptions{{ID: "a", Listen: ln.Addr().String(), TCP: "h:1"}}); err == nil || !strings.Contains(err.Error(), "in use") && !strings.Contains(err.Error(), "another program") {
		t.Fatalf("bind conflict: %v", err)
	}
}

// FuzzSerialConfig: validation and opening never panic on any setting; a
// valid configuration opens (or fails to open) without panicking.
func FuzzSerialConfig(f *testing.F) {
	f.Add("/dev/null-not-a-tty", 9600, 8, "none", "1", "none")
	f.Add("", 0, 0, "", "", "")
	f.Add("/dev/ttyUSB9", 115200, 7, "even", "2", "rtscts")
	f.Add("x", -1, 99, "odd\x00", "1.5", "xon")
	f.Fuzz(func(t *testing.T, port string, baud, bits int, parity, stop, flow string) {
		c := hal.SerialConfig{Port: port, Baud: baud, DataBits: bits, Parity: parity, StopBits: stop, Flow: flow}
		err := c.Validate()
		d := c.WithDefaults()
		if err == nil {
			if d.DataBits < 5 || d.DataBits > 8 || (d.StopBits != "1" && d.StopBits != "2") {
				t.Fatalf("accepted %+v", d)
			}
			return
		}
		if _, oerr := OpenSerialPort(c); oerr == nil {
			t.Fatalf("opened an invalid configuration %+v", c)
		}
		_ = fmt.Sprint(err)
	})
}
