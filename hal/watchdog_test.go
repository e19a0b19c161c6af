package hal_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/wardgate/wardgate/hal"
	"github.com/wardgate/wardgate/hal/haltest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestKickerTick(t *testing.T) {
	start := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	clk := clockwork.NewFakeClockAt(start)
	wd := &haltest.Watchdog{}
	k := hal.NewKicker(hal.KickerOptions{Device: wd, Clock: clk, Logger: quiet})
	mqtt := k.Monitor("mqtt", 10*time.Second)
	relay := k.Monitor("relay", 30*time.Second)

	steps := []struct {
		advance time.Duration
		beat    []*hal.Heartbeat
		kick    bool
		stalled []string
	}{
		{0, nil, true, nil},
		{10 * time.Second, nil, true, nil}, // exactly at the deadline is still fine
		{time.Second, nil, false, []string{"mqtt"}},
		{0, []*hal.Heartbeat{mqtt}, true, nil}, // recovered
		{25 * time.Second, []*hal.Heartbeat{mqtt}, false, []string{"relay"}},
		{time.Second, []*hal.Heartbeat{mqtt, relay}, true, nil},
		{time.Minute, nil, false, []string{"mqtt", "relay"}},
	}
	kicks := 0
	for i, s := range steps {
		clk.Advance(s.advance)
		for _, h := range s.beat {
			h.Beat()
		}
		if got := k.Tick(clk.Now()); got != s.kick {
			t.Fatalf("step %d: kicked %v, want %v", i, got, s.kick)
		}
		if s.kick {
			kicks++
		}
		if got := k.Stalled(clk.Now()); !slices.Equal(got, s.stalled) {
			t.Errorf("step %d: stalled %v, want %v", i, got, s.stalled)
		}
		if wd.KickCount() != kicks {
			t.Errorf("step %d: device kicks %d, want %d", i, wd.KickCount(), kicks)
		}
	}
	mqtt.Stop()
	relay.Stop()
	if !k.Tick(clk.Now()) {
		t.Error("no monitored loop left: must kick")
	}
	st := k.State()
	if !st.Hardware || st.Systemd || st.Kicks != uint64(kicks+1) || !st.LastKick.Equal(clk.Now()) {
		t.Errorf("state %+v", st)
	}
}

// TestKickerRunStopsWhenLoopStalls runs the Kicker's own loop: it kicks while
// the monitored loop beats, stops once the loop is stuck, and magic-closes on
// a clean shutdown.
func TestKickerRunStopsWhenLoopStalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		wd := &haltest.Watchdog{Now: time.Now}
		k := hal.NewKicker(hal.KickerOptions{Device: wd, Timeout: 9 * time.Second, Logger: quiet})
		hb := k.Monitor("main", 5*time.Second)
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		var runErr error
		wg.Go(func() { runErr = k.Run(ctx) })

		// A healthy loop beating every second for 20 s.
		loopCtx, stopLoop := context.WithCancel(ctx)
		wg.Go(func() {
			tk := time.NewTicker(time.Second)
			defer tk.Stop()
			for {
				select {
				case <-loopCtx.Done():
					return
				case <-tk.C:
					hb.Beat()
				}
			}
		})
		time.Sleep(20 * time.Second)
		synctest.Wait()
		healthy := wd.KickCount()
		if healthy < 6 { // every 3 s (timeout/3) plus one at start
			t.Fatalf("only %d kicks while healthy", healthy)
		}
		stopLoop() // the loop is now stuck
		stuckAt := time.Now()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		wd.Lock()
		last := wd.KickTimes[len(wd.KickTimes)-1]
		timeout := wd.Timeout
		wd.Unlock()
		if last.After(stuckAt.Add(5 * time.Second)) {
			t.Errorf("kicked at +%v after the loop stalled (deadline 5s)", last.Sub(stuckAt))
		}
		if timeout != 9*time.Second {
			t.Errorf("timeout set %v", timeout)
		}
		if st := k.State(); !slices.Equal(st.Stalled, []string{"main"}) || st.Timeout != "9s" || st.Interval != "3s" {
			t.Errorf("state %+v", st)
		}
		cancel()
		wg.Wait()
		if runErr != nil {
			t.Fatal(runErr)
		}
		wd.Lock()
		defer wd.Unlock()
		if !wd.Disarmed {
			t.Error("no magic close on clean shutdown")
		}
	})
}

func TestKickerIntervalFromSystemd(t *testing.T) {
	env := map[string]string{"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "4000000"}
	n := hal.NotifierFromEnv(func(k string) string { return env[k] }, 1)
	k := hal.NewKicker(hal.KickerOptions{Notifier: n, Timeout: 30 * time.Second, Logger: quiet})
	if st := k.State(); st.Interval != "2s" || !st.Systemd || st.Hardware {
		t.Fatalf("state %+v, want 2s interval from WATCHDOG_USEC", st)
	}
	// A notify failure is reported in the state but does not stop kicking.
	if !k.Tick(time.Now()) || !strings.Contains(k.State().Error, "nonexistent") {
		t.Fatalf("state %+v", k.State())
	}
}

func TestKickerSetTimeoutFailureKeepsKicking(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		wd := &haltest.Watchdog{Err: errors.New("ENOTTY")}
		k := hal.NewKicker(hal.KickerOptions{Device: wd, Logger: quiet})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- k.Run(ctx) }()
		time.Sleep(time.Minute)
		cancel()
		if err := <-done; err == nil {
			t.Error("magic close error not returned")
		}
	})
}

func TestDevWatchdogOnRegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "watchdog")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := hal.OpenWatchdog(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.SetTimeout(10 * time.Second); !errors.Is(err, hal.ErrWatchdog) || !strings.Contains(err.Error(), "is it a watchdog device") {
		t.Errorf("SetTimeout on a file: %v", err)
	}
	if err := w.KeepAlive(); !errors.Is(err, hal.ErrWatchdog) {
		t.Errorf("KeepAlive on a file: %v", err)
	}
	if err := w.MagicClose(); err != nil {
		t.Fatal(err)
	}
	if err := w.MagicClose(); err != nil {
		t.Fatal("second MagicClose:", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "V" {
		t.Errorf("magic close wrote %q, want V", b)
	}
	if err := w.KeepAlive(); !errors.Is(err, hal.ErrClosed) {
		t.Errorf("KeepAlive after close: %v", err)
	}
	if _, err := w.SetTimeout(time.Second); !errors.Is(err, hal.ErrClosed) {
		t.Errorf("SetTimeout after close: %v", err)
	}
	if _, err := hal.OpenWatchdog(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, hal.ErrWatchdog) {
		t.Errorf("open missing: %v", err)
	}
}

// listenNotify opens a real unixgram socket in a temp dir as systemd would.
func listenNotify(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, path
}

func readDatagram(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 256)
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotifierSocket(t *testing.T) {
	c, path := listenNotify(t)
	n := hal.NotifierFromEnv(func(k string) string {
		return map[string]string{"NOTIFY_SOCKET": path}[k]
	}, os.Getpid())
	if !n.Enabled() || n.WatchdogTimeout() != 0 {
		t.Fatalf("enabled %v watchdog %v", n.Enabled(), n.WatchdogTimeout())
	}
	for _, c2 := range []struct {
		send func() error
		want string
	}{{n.Ready, "READY=1"}, {n.Watchdog, "WATCHDOG=1"}, {n.Stopping, "STOPPING=1"}, {func() error { return n.Notify("STATUS=ok") }, "STATUS=ok"}} {
		if err := c2.send(); err != nil {
			t.Fatal(err)
		}
		if got := readDatagram(t, c); got != c2.want {
			t.Errorf("got %q, want %q", got, c2.want)
		}
	}
}

func TestNotifierKickerSendsWatchdog(t *testing.T) {
	c, path := listenNotify(t)
	n := hal.NotifierFromEnv(func(k string) string {
		return map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}[k]
	}, os.Getpid())
	k := hal.NewKicker(hal.KickerOptions{Notifier: n, Logger: quiet})
	h := k.Monitor("loop", time.Second)
	now := time.Now()
	if !k.Tick(now) {
		t.Fatal("no kick")
	}
	if got := readDatagram(t, c); got != "WATCHDOG=1" {
		t.Fatalf("got %q", got)
	}
	if k.Tick(now.Add(2 * time.Second)) {
		t.Fatal("kicked with a stalled loop")
	}
	h.Stop()
}

func TestNotifierEnv(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		on   bool
		wd   time.Duration
	}{
		{"not under systemd", nil, false, 0},
		{"socket only", map[string]string{"NOTIFY_SOCKET": "/run/x"}, true, 0},
		{"watchdog for us", map[string]string{"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, true, 30 * time.Second},
		{"watchdog without pid", map[string]string{"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1500"}, true, 1500 * time.Microsecond},
		{"watchdog for another pid", map[string]string{"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, true, 0},
		{"garbage usec", map[string]string{"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "soon"}, true, 0},
		{"zero usec", map[string]string{"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "0"}, true, 0},
	}
	for _, c := range cases {
		n := hal.NotifierFromEnv(func(k string) string { return c.env[k] }, 42)
		if n.Enabled() != c.on || n.WatchdogTimeout() != c.wd {
			t.Errorf("%s: enabled %v watchdog %v", c.name, n.Enabled(), n.WatchdogTimeout())
		}
	}
	var nilN *hal.Notifier
	if nilN.Enabled() || nilN.Ready() != nil || nilN.WatchdogTimeout() != 0 {
		t.Error("nil notifier must be a no-op")
	}
	off := hal.NotifierFromEnv(func(string) string { return "" }, 1)
	if err := off.Ready(); err != nil {
		t.Error(err)
	}
	missing := hal.NotifierFromEnv(func(k string) string {
		return map[string]string{"NOTIFY_SOCKET": filepath.Join(t.TempDir(), "gone")}[k]
	}, 1)
	if err := missing.Ready(); !errors.Is(err, hal.ErrNotify) {
		t.Errorf("missing socket: %v", err)
	}
}

func TestNotifierAbstractSocket(t *testing.T) {
	name := "wardgate-test-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + time.Now().Format("150405.000000000")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "@" + name, Net: "unixgram"})
	if err != nil {
		t.Skipf("abstract unix sockets unavailable here: %v", err)
	}
	defer c.Close()
	n := hal.NotifierFromEnv(func(k string) string {
		return map[string]string{"NOTIFY_SOCKET": "@" + name}[k]
	}, 1)
	if err := n.Ready(); err != nil {
		t.Fatal(err)
	}
	if got := readDatagram(t, c); got != "READY=1" {
		t.Fatalf("got %q", got)
	}
}
