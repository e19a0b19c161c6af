package access

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/wardgate/wardgate/gateway/access/recording"
	"github.com/wardgate/wardgate/hal"
)

const testSecret = "Zq7-s3cr3t-pa55"

// loginDevice plays a telnet-like service login on rw: a banner, login:,
// Password:, then a shell prompt that echoes lines. With echoSecret it
// echoes the password back (a badly behaved device).
func loginDevice(rw io.ReadWriter, secret string, echoSecret bool) {
	r := bufio.NewReader(rw)
	readLine := func() (string, bool) {
		l, err := r.ReadString('\n')
		return strings.TrimRight(l, "\r\n"), err == nil
	}
	fmt.Fprint(rw, "\r\nAcme AP-200 service port\r\nlogin: ")
	user, ok := readLine()
	if !ok {
		return
	}
	fmt.Fprint(rw, "Password: ")
	pass, ok := readLine()
	if !ok {
		return
	}
	if echoSecret {
		fmt.Fprintf(rw, "%s\r\n", pass)
	}
	if user != "service" || pass != secret {
		fmt.Fprint(rw, "\r\nLogin incorrect\r\n")
		return
	}
	fmt.Fprint(rw, "\r\nwelcome service\r\nsvc# ")
	for {
		l, ok := readLine()
		if !ok || l == "exit" {
			return
		}
		fmt.Fprintf(rw, "echo: %s\r\nsvc# ", l)
	}
}

// ptyDevice is a device behind a pty: the gateway opens the slave as a
// serial port, serve runs on the master.
type ptyDevice struct {
	path   string
	master *os.File
	slave  *os.File
	wg     sync.WaitGroup
}

func newPTYDevice(t *testing.T, serve func(io.ReadWriter)) *ptyDevice {
	t.Helper()
	pm, s, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(pm.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	pm.Close()
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	d := &ptyDevice{path: s.Name(), master: os.NewFile(uintptr(fd), "ptmx"), slave: s}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			serve(d.master)
			// A new session starts with a fresh dialogue, as a console does
			// after logout; stop when the master is closed.
			if _, err := d.master.Write(nil); err != nil {
				return
			}
			if errors.Is(d.closedErr(), os.ErrClosed) {
				return
			}
		}
	}()
	t.Cleanup(func() { d.master.Close(); d.slave.Close(); d.wg.Wait() })
	return d
}

func (d *ptyDevice) closedErr() error {
	_, err := d.master.Stat()
	return err
}

// tcpLoginServer serves loginDevice on loopback.
func tcpLoginServer(t *testing.T, secret string, echoSecret bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				loginDevice(c, secret, echoSecret)
			}()
		}
	}()
	return ln.Addr().String()
}

func writeSecret(t *testing.T, mode os.FileMode) string {
	p := filepath.Join(t.TempDir(), "acme-svc")
	if err := os.WriteFile(p, []byte(testSecret+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func loginSteps() []LoginStep {
	return []LoginStep{
		{Expect: regexp.MustCompile(`login: ?$`), Send: SendUser},
		{Expect: regexp.MustCompile(`Password: ?$`), Send: SendSecret},
		{Expect: regexp.MustCompile(`svc# ?$`)},
	}
}

// logBuf collects the broker's log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// injectEnv is an env whose device pump-13 logs in over TCP (port 23) and
// mon-03 over its console (a pty), both with an injected account.
type injectEnv struct {
	*env
	logs *logBuf
	pty  *ptyDevice
}

func newInjectEnv(t *testing.T, secretFile string, echoSecret bool) *injectEnv {
	logs := &logBuf{}
	login := tcpLoginServer(t, testSecret, echoSecret)
	pd := newPTYDevice(t, func(rw io.ReadWriter) { loginDevice(rw, testSecret, echoSecret) })
	inj := func(port int) Injection {
		return Injection{Account: "acme-svc", Owner: "clinical-engineering/icu", Port: port, User: "service", SecretFile: secretFile,
			Login: loginSteps(), Timeout: 5 * time.Second}
	}
	e := newEnv(t, func(o *Options) {
		o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.Devices = append(o.Devices,
			Device{ID: "pump-13", Org: "acme-medical", Ports: []int{23}, Approval: []string{KindLocal}, MaxSession: time.Hour, Host: "login.seg",
				Inject: []Injection{inj(23)}},
			Device{ID: "mon-03", Org: "acme-medical", Approval: []string{KindLocal}, MaxSession: time.Hour,
				Console: &hal.SerialConfig{Port: pd.path, Baud: 115200}, ClinicalSerial: "/dev/ttyUSB0", Inject: []Injection{inj(ConsolePort)}})
		dial := o.Dial
		o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, _, _ := net.SplitHostPort(addr); host == "login.seg" {
				var d net.Dialer
				return d.DialContext(ctx, network, login)
			}
			return dial(ctx, network, addr)
		}
	})
	return &injectEnv{env: e, logs: logs, pty: pd}
}

// grant asks for target and approves it.
func (e *injectEnv) grant(t *testing.T, target string) string {
	id := e.request(e.jo, target)
	if _, err := e.b.Approve(id, local2()); err != nil {
		t.Fatal(err)
	}
	return id
}

// shell talks to the injected shell through tunnel c.
func shell(t *testing.T, c net.Conn, line string) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(c, "%s\r\n", line); err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 256)
	for !bytes.Contains(got, []byte("echo: "+line)) {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read %q: %v", got, err)
		}
		got = append(got, buf[:n]...)
	}
	return string(got)
}

// assertNoSecret greps the recording, the events and the logs for the
// secret.
func (e *injectEnv) assertNoSecret(t *testing.T, session string) []byte {
	t.Helper()
	rec, err := os.ReadFile(e.rec.Path(session))
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := json.Marshal(e.ev.all())
	for what, b := range map[string][]byte{"recording": rec, "events": evs, "logs": []byte(e.logs.String())} {
		if bytes.Contains(b, []byte(testSecret)) {
			t.Errorf("the secret appears in the %s", what)
		}
	}
	return rec
}

func TestInjectTCPAndConsole(t *testing.T) {
	for _, target := range []string{"pump-13:23", "mon-03:console"} {
		for _, echo := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s echo=%v", target, echo), func(t *testing.T) {
				e := newInjectEnv(t, writeSecret(t, 0o600), echo)
				e.grant(t, target)
				c, err := e.dial(e.jo, target)
				if err != nil {
					t.Fatal(err)
				}
				info := InfoOf(c)
				if info.Injected != "acme-svc" {
					t.Fatalf("%+v", info)
				}
				got := shell(t, c, "show alarms")
				if strings.Contains(got, testSecret) || !strings.Contains(got, "\r\nwelcome service\r\nsvc# echo: show alarms") {
					t.Fatalf("the vendor saw %q", got)
				}
				c.Close()
				end := e.ev.wait(t, EvSessionEnd, nil)
				ev := e.ev.wait(t, EvInject, nil)
				if ev.Account != "acme-svc" || ev.Owner != "clinical-engineering/icu" || ev.Vendor != joURI || ev.Session != info.Session {
					t.Fatalf("%+v", ev)
				}
				rec := e.assertNoSecret(t, end.Session)
				var text bytes.Buffer
				if _, err := recording.ReplayText(bytes.NewReader(rec), &text); err != nil {
					t.Fatal(err)
				}
				for _, want := range []string{"## inject: gateway logs in to service account acme-svc (owner clinical-engineering/icu)",
					`## inject: sent the user name "service"`, "## inject: sent the secret of account acme-svc (withheld)",
					"show alarms", "<< echo: show alarms"} {
					if !strings.Contains(text.String(), want) {
						t.Errorf("transcript lacks %q:\n%s", want, text.String())
					}
				}
				if echo && !strings.Contains(text.String(), "[secret withheld]") {
					t.Errorf("the echoed secret is not marked:\n%s", text.String())
				}
			})
		}
	}
}

// TestInjectFailures: a wrong secret, a loose secret file and a silent
// device end the session with a clear reason, and never show the secret.
func TestInjectFailures(t *testing.T) {
	t.Run("wrong secret", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "s")
		if err := os.WriteFile(p, []byte("not-it"), 0o600); err != nil {
			t.Fatal(err)
		}
		e := newInjectEnv(t, p, false)
		e.grant(t, "pump-13:23")
		re := e.refused(e.jo, "pump-13:23")
		if re.Status != 502 || re.Code != CodeInjectFailed || !strings.Contains(re.Reason, "could not log in to service account acme-svc on pump-13: step 3") {
			t.Fatalf("%+v", re)
		}
		ev := e.ev.wait(t, EvInjectFailed, nil)
		end := e.ev.wait(t, EvSessionEnd, nil)
		if end.End != EndInjectFailed || ev.Account != "acme-svc" || ev.Severity() != "warning" {
			t.Fatalf("%+v %+v", end, ev)
		}
		s, _ := e.status(t, e.jo).Session(end.Session)
		if s.EndReason != EndInjectFailed {
			t.Fatalf("%+v", s)
		}
		e.assertNoSecret(t, end.Session)
	})
	t.Run("loose secret file", func(t *testing.T) {
		e := newInjectEnv(t, writeSecret(t, 0o644), false)
		e.grant(t, "pump-13:23")
		re := e.refused(e.jo, "pump-13:23")
		if re.Code != CodeInjectFailed || !strings.Contains(re.Reason, "its secret cannot be read on the gateway") {
			t.Fatalf("%+v", re)
		}
		if !strings.Contains(e.logs.String(), "has mode 0644, open to group or others: run chmod 600") {
			t.Fatalf("log lacks the mode: %s", e.logs.String())
		}
		e.assertNoSecret(t, e.ev.wait(t, EvSessionEnd, nil).Session)
	})
	t.Run("silent device", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { _, _ = io.Copy(io.Discard, c) }()
			}
		}()
		e := newEnv(t, func(o *Options) {
			o.Devices = append(o.Devices, Device{ID: "pump-13", Org: "acme-medical", Ports: []int{23}, Approval: []string{KindLocal}, MaxSession: time.Hour,
				Host: "login.seg", Inject: []Injection{{Account: "acme-svc", Owner: "ce", Port: 23, User: "service", SecretFile: writeSecret(t, 0o600),
					Login: loginSteps(), Timeout: 3 * time.Second}}})
			o.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, ln.Addr().String())
			}
		})
		id := e.request(e.jo, "pump-13:23")
		if _, err := e.b.Approve(id, local2()); err != nil {
			t.Fatal(err)
		}
		res := make(chan *RefusedError, 1)
		go func() { res <- e.refused(e.jo, "pump-13:23") }()
		var re *RefusedError
		for re == nil {
			select {
			case re = <-res:
			case <-time.After(20 * time.Millisecond):
				e.clock.Advance(time.Second) // the dialogue's timeout runs on the injected clock
			}
		}
		if re.Code != CodeInjectFailed || !strings.Contains(re.Reason, `step 1: the device did not show "login: ?$" within 3s`) {
			t.Fatalf("%+v", re)
		}
	})
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cred")
	if err := os.WriteFile(p, []byte("pw\r\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	got, err := ReadSecret(Injection{Account: "a", Credential: "cred"})
	if err != nil || string(got) != "pw" {
		t.Fatalf("%q %v", got, err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if _, err := ReadSecret(Injection{Account: "a", Credential: "cred"}); err == nil || !strings.Contains(err.Error(), "CREDENTIALS_DIRECTORY is not set") {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSecret(Injection{Account: "a", SecretFile: filepath.Join(dir, "empty")}); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Fatal(err)
	}
	if _, err := ReadSecret(Injection{Account: "a", SecretFile: dir}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSecret(Injection{Account: "a", SecretFile: p}); err == nil || !strings.Contains(err.Error(), "mode 0640") {
		t.Fatal(err)
	}
}

func TestValidateVendorExtras(t *testing.T) {
	re := regexp.MustCompile("x")
	ok := Injection{Account: "a", Port: 23, User: "u", SecretFile: "/s", Login: []LoginStep{{Expect: re, Send: SendUser}}}
	cases := map[string]Device{
		"console on clinical link": {Console: &hal.SerialConfig{Port: "/dev/ttyUSB0"}, ClinicalSerial: "/dev/ttyUSB0"},
		"console without port":     {Console: &hal.SerialConfig{}},
		"ports without host":       {Ports: []int{23}},
		"two injections per port":  {Host: "h", Ports: []int{23}, Inject: []Injection{ok, ok}},
		"secret last":              {Host: "h", Ports: []int{23}, Inject: []Injection{{Account: "a", SecretFile: "/s", Login: []LoginStep{{Expect: re, Send: SendSecret}}}}},
		"no secret source":         {Host: "h", Ports: []int{23}, Inject: []Injection{{Account: "a", Login: []LoginStep{{Expect: re}}}}},
		"user unset":               {Host: "h", Ports: []int{23}, Inject: []Injection{{Account: "a", SecretFile: "/s", Login: []LoginStep{{Expect: re, Send: SendUser}}}}},
		"no expect":                {Host: "h", Ports: []int{23}, Inject: []Injection{{Account: "a", SecretFile: "/s", Login: []LoginStep{{}}}}},
		"empty login":              {Host: "h", Ports: []int{23}, Inject: []Injection{{Account: "a", SecretFile: "/s"}}},
		"no account":               {Host: "h", Ports: []int{23}, Inject: []Injection{{SecretFile: "/s", Login: []LoginStep{{Expect: re}}}}},
	}
	for name, d := range cases {
		d.ID, d.Org, d.Approval, d.MaxSession = "d", "o", []string{KindLocal}, time.Hour
		if _, err := validateDevices([]Device{d}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestConsoleOverPTY: a serial console through the CONNECT channel, one
// session at a time, recorded.
func TestConsoleOverPTY(t *testing.T) {
	pd := newPTYDevice(t, func(rw io.ReadWriter) {
		r := bufio.NewReader(rw)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			fmt.Fprintf(rw, "echo: %s", l)
		}
	})
	e := newEnv(t, func(o *Options) {
		o.Devices = append(o.Devices, Device{ID: "mon-03", Org: "acme-medical", Approval: []string{KindLocal}, MaxSession: time.Hour,
			Console: &hal.SerialConfig{Port: pd.path, Baud: 115200}})
	})
	if re := e.refused(e.jo, "pump-07:console"); re.Code != CodePortNotAllowed || !strings.Contains(re.Reason, "has no service console") {
		t.Fatalf("%+v", re)
	}
	id := e.request(e.jo, "mon-03:console")
	if re := e.refused(e.jo, "mon-03:23"); !strings.Contains(re.Reason, "service ports: console") {
		t.Fatalf("%+v", re)
	}
	if _, err := e.b.Approve(id, local2()); err != nil {
		t.Fatal(err)
	}
	c := e.tunnel(e.jo, "mon-03:console")
	if re := e.refused(e.jo, "mon-03:console"); re.Status != 409 || re.Code != CodeConsoleBusy {
		t.Fatalf("second console session: %+v", re)
	}
	e.roundTrip(c, "version")
	c.Close()
	end := e.ev.wait(t, EvSessionEnd, nil)
	if end.Port != ConsolePort || end.Attrs()["port"] != "console" {
		t.Fatalf("%+v", end)
	}
	// Free again once ended.
	c = e.tunnel(e.jo, "mon-03:console")
	c.Close()
	f, err := os.Open(e.rec.Path(end.Session))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var text bytes.Buffer
	if _, err := recording.ReplayText(f, &text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# device mon-03 port console", ">> version\\n", "<< echo: version\\n"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("transcript lacks %q:\n%s", want, text.String())
		}
	}
}

// FuzzLoginMatcher: whatever a device sends, in whatever chunks, the
// matcher stays within its bound and loses no byte: dropped + consumed +
// rest is the input.
func FuzzLoginMatcher(f *testing.F) {
	f.Add([]byte("\r\nlogin: "), []byte("Password: \x00\xff"), uint8(3))
	f.Add(bytes.Repeat([]byte("a"), 5000), []byte("login:"), uint8(0))
	res := []*regexp.Regexp{regexp.MustCompile(`login: ?$`), regexp.MustCompile(`(?i)pass(word)?: ?$`), regexp.MustCompile(`[$#>] ?$`)}
	f.Fuzz(func(t *testing.T, a, b []byte, cut uint8) {
		m := &loginMatcher{max: 64}
		var seen []byte
		in := append(append([]byte(nil), a...), b...)
		k := int(cut) % (len(in) + 1)
		for _, chunk := range [][]byte{in[:k], in[k:]} {
			seen = append(seen, m.feed(chunk)...)
			if len(m.buf) > m.max {
				t.Fatalf("buffer %d > %d", len(m.buf), m.max)
			}
			for _, re := range res {
				if c, ok := m.match(re); ok {
					if !re.Match(c) {
						t.Fatalf("consumed %q does not match %s", c, re)
					}
					seen = append(seen, c...)
				}
			}
		}
		seen = append(seen, m.rest()...)
		if !bytes.Equal(seen, in) {
			t.Fatalf("bytes lost or reordered: %q vs %q", seen, in)
		}
		s := scrub(in, []byte("ab"))
		if bytes.Contains(s, []byte("ab")) {
			t.Fatalf("scrub left the secret in %q", s)
		}
	})
}
