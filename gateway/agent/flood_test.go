package agent

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"log/slog"

	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/authority"
	"github.com/wardgate/wardgate/gateway/front"
)

// eventCounter counts the agent's event log records by kind, and every
// log record.
type eventCounter struct {
	mu    sync.Mutex
	kinds map[string]int
	lines atomic.Int64
}

func (c *eventCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *eventCounter) Handle(_ context.Context, r slog.Record) error {
	c.lines.Add(1)
	if r.Message != "event" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "event" {
			c.mu.Lock()
			c.kinds[a.Value.String()]++
			c.mu.Unlock()
			return false
		}
		return true
	})
	return nil
}
func (c *eventCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *eventCounter) WithGroup(string) slog.Handler      { return c }

func (c *eventCounter) count(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kinds[kind]
}

// TestVendorFloodSparesClinical: 1,500 idle connections and 1,500
// certificate-less handshakes on the vendor port while a clinical client
// keeps echoing. The agent stays up, clinical echo keeps working, the
// vendor side holds no more connections than its caps, and refusal events
// stay bounded (folded per source and reason).
func TestVendorFloodSparesClinical(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the vendor port")
	}
	e := newEnv(t)
	ctr := &eventCounter{kinds: map[string]int{}}
	e.logger = slog.New(ctr)
	e.start(e.config(pumpServer))
	clin, r, err := e.dial(e.addrs["pump"], e.cert(pumpServer, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer clin.Close()

	stop := make(chan struct{})
	echoErr := make(chan error, 1)
	var echoes atomic.Int64
	go func() {
		defer close(echoErr)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := roundTrip(clin, r, "vitals"); err != nil {
				echoErr <- err
				return
			}
			echoes.Add(1)
		}
	}()

	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range 1500 {
		c, err := net.DialTimeout("tcp", e.addrs["vendor"], 5*time.Second)
		if err != nil {
			break // the backlog is full: that is the kernel refusing, fine
		}
		idle = append(idle, c)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for range 1500 {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d := &net.Dialer{Timeout: 5 * time.Second}
			c, err := tls.DialWithDialer(d, "tcp", e.addrs["vendor"], &tls.Config{InsecureSkipVerify: true, NextProtos: []string{strings.Repeat("x", 200)}})
			if err == nil {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.Read(make([]byte, 1))
				c.Close()
			}
		}()
	}
	wg.Wait()
	close(stop)
	if err := <-echoErr; err != nil {
		t.Fatalf("clinical echo failed during the flood: %v", err)
	}
	if echoes.Load() == 0 {
		t.Fatal("no clinical echo during the flood")
	}
	select {
	case err := <-e.done:
		t.Fatalf("agent stopped during the flood: %v", err)
	default:
	}
	if err := roundTrip(clin, r, "after"); err != nil {
		t.Fatalf("clinical echo after the flood: %v", err)
	}
	// 3,000 refusals from one source fold into a handful of events.
	if n := ctr.count("vendor.refused"); n == 0 || n > 50 {
		t.Errorf("%d vendor.refused events for 3,000 refused connections, want a handful", n)
	}
	if n := ctr.lines.Load(); n > 500 {
		t.Errorf("%d log lines during the flood, want hundreds at most", n)
	}
	t.Logf("clinical echoes during the flood: %d; vendor.refused events: %d; log lines: %d", echoes.Load(), ctr.count("vendor.refused"), ctr.lines.Load())
}

// TestDiskFullKeepsClinicalAndLocks: with the state directory on a tiny
// tmpfs that is then filled, the clinical path keeps serving, a new lock
// is in force (and cuts) even though it cannot be saved, and an alarm says
// so.
func TestDiskFullKeepsClinicalAndLocks(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs")
	}
	e := newEnv(t)
	state := filepath.Join(e.dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", state).CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mount tmpfs (CI runs as root): %v %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { syscall.Unmount(state, syscall.MNT_DETACH) })
	e.start(e.config(pumpServer))
	clin, r, err := e.dial(e.addrs["pump"], e.cert(pumpServer, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer clin.Close()
	if err := roundTrip(clin, r, "before"); err != nil {
		t.Fatal(err)
	}
	// Fill the disk.
	f, err := os.Create(filepath.Join(state, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	// bbolt may still have free pages: keep locking until a save fails.
	actor := authority.Actor{Kind: authority.KindLocal, Via: "admin"}
	var notSaved bool
	for i := 0; i < 2000 && !notSaved; i++ {
		_, err := e.a.lock("spiffe://hospital.example/vendor/acme-medical/p"+strings.Repeat("x", 200)+itoa(i), time.Time{}, strings.Repeat("r", 200), actor)
		notSaved = err != nil
	}
	if !notSaved {
		t.Fatal("the disk never filled up")
	}
	if err := roundTrip(clin, r, "disk full"); err != nil {
		t.Fatalf("clinical echo on a full disk: %v", err)
	}
	// A lock that cannot be saved is in force and cuts the live session.
	if _, err := e.a.lock("spiffe://hospital.example/svc/*", time.Time{}, "incident", actor); err == nil {
		t.Log("lock saved after all (bbolt found a free page)")
	}
	if err := roundTrip(clin, r, "after lock"); err == nil {
		t.Fatal("locked clinical session still echoing")
	}
	if !strings.Contains(strings.Join(e.a.alarmList(), "\n"), "state_not_saved") {
		t.Errorf("alarms %v lack state_not_saved", e.a.alarmList())
	}
	// New clinical sessions of other identities still work.
	other, r2, err := e.dial(e.addrs["pump2"], e.cert("spiffe://hospital.example/svc/pump-server", time.Hour))
	if err == nil {
		defer other.Close()
		if roundTrip(other, r2, "x") == nil {
			t.Fatal("a locked identity connected")
		}
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i == 0 {
		return "0"
	}
	var b []byte
	for i > 0 {
		b = append([]byte{digits[i%10]}, b...)
		i /= 10
	}
	return string(b)
}

// TestVendorLimitsFromConfig: every vendor_limits key reaches the vendor
// listener's front (the rate is never shrunk by the descriptor budget).
func TestVendorLimitsFromConfig(t *testing.T) {
	cfg := &config.Config{}
	cfg.Gateway.VendorLimits = config.VendorLimits{MaxConnections: 20, MaxPerSource: 3, MaxPending: 5,
		HandshakeTimeout: config.Duration(4 * time.Second), HandshakeRate: 7}
	a := &Agent{log: slog.New(slog.DiscardHandler)}
	got, err := a.vendorLimits(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := front.Limits{MaxConns: 20, MaxPerSource: 3, MaxPending: 5, HandshakeTimeout: 4 * time.Second, HandshakeRate: 7}
	if got != want {
		t.Errorf("vendor limits = %+v, want %+v", got, want)
	}
}
