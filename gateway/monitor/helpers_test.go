package monitor

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/config"
)

// monday10 is Monday 2026-11-30 10:00 in the gateway's local zone.
var monday10 = time.Date(2026, 11, 30, 10, 0, 0, 0, time.Local)

const baseConfig = `version: 1
gateway: {id: gw-1, site: site-a, trust_domain: hospital.example, state_dir: /var/lib/wardgate}
identity: {ca: dev}
mqtt: {broker: mqtts://broker.hospital.example:8883}
hal: {driver: sim}
vendors:
  - {org: acme, identities: ["spiffe://hospital.example/vendor/acme/*"]}
monitor:
  segment_interface: seg0
  baseline_window: 7d
devices:
  - id: pump-07
    owner: clinical-engineering/icu
    mac: "02:00:00:00:00:07"
    link: {tcp: 10.20.0.7:4001}
    clinical: {listen: ":7001", allow: ["spiffe://hospital.example/svc/*"]}
    vendor: {org: acme, ports: [23], approval: [local], hours: "Mon-Fri 07:00-19:00"}
    exceptions:
      - {id: EX-1, control: PR.PS-02, reason: no patches, approved_by: ciso/jdoe, expires: 2027-03-31,
         compensating: [segmentation, restricted-admin-path, continuous-monitoring, vendor-hours]}
  - id: mon-03
    owner: clinical-engineering/cardio
    link: {tcp: 10.20.0.9:4001}
    clinical: {listen: ":7002", allow: ["spiffe://hospital.example/svc/*"]}
`

func parseConfig(t testing.TB, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(text), monday10)
	if err != nil {
		t.Fatalf("test config: %v", err)
	}
	return cfg
}

// tmon is a monitor on a fake clock that records its findings.
type tmon struct {
	*Monitor
	clock *clockwork.FakeClock
	path  string

	mu       sync.Mutex
	findings []Finding
}

func newTestMonitor(t testing.TB, edit func(string) string, mod ...func(*Options)) *tmon {
	t.Helper()
	text := baseConfig
	if edit != nil {
		text = edit(text)
	}
	tm := &tmon{clock: clockwork.NewFakeClockAt(monday10), path: filepath.Join(t.TempDir(), "monitor.db")}
	o := Options{Path: tm.path, Config: parseConfig(t, text), Clock: tm.clock, Logger: slog.New(slog.DiscardHandler),
		Emit:       tm.add,
		Neighbours: &fakeNeighbours{},
		System:     &fakeSystem{routes: map[string]string{"10.20.0.7": "seg0", "10.20.0.9": "seg0"}},
		Env:        goodEnv(),
		LookupHost: func(_ context.Context, host string) ([]string, error) { return nil, errNoHost },
	}
	for _, f := range mod {
		f(&o)
	}
	if fc, ok := o.Clock.(*clockwork.FakeClock); ok {
		tm.clock = fc
	}
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	tm.Monitor = m
	return tm
}

func (tm *tmon) add(f Finding) {
	tm.mu.Lock()
	tm.findings = append(tm.findings, f)
	tm.mu.Unlock()
}

// take returns and forgets the findings so far.
func (tm *tmon) take() []Finding {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	out := tm.findings
	tm.findings = nil
	return out
}

func kinds(fs []Finding) string {
	var s []string
	for _, f := range fs {
		s = append(s, f.Kind)
	}
	return strings.Join(s, " ")
}

// ev feeds one event at the fake clock's time.
func (tm *tmon) ev(kind string, kv ...string) {
	a := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		a[kv[i]] = kv[i+1]
	}
	tm.Observe(tm.clock.Now(), kind, a)
}

type fakeNeighbours struct {
	mu  sync.Mutex
	ns  []Neighbour
	err error
}

func (f *fakeNeighbours) Neighbours(string) ([]Neighbour, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Neighbour(nil), f.ns...), f.err
}

type fakeSystem struct {
	mu      sync.Mutex
	routes  map[string]string // ip -> interface
	forward bool
}

func (f *fakeSystem) Forwarding(string, netip.Addr) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.forward, nil
}

func (f *fakeSystem) RouteInterface(ip netip.Addr) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i, ok := f.routes[ip.String()]; ok {
		return i, nil
	}
	return "", errNoHost
}

func goodEnv() Env {
	return Env{
		TelemetryOldest: func() (time.Time, bool) { return time.Time{}, true },
		VendorPolicy: func(d string) (VendorPolicy, bool) {
			if d == "pump-07" {
				return VendorPolicy{Approval: []string{"local"}, Ports: []int{23}, Hours: true}, true
			}
			return VendorPolicy{}, false
		},
		LocksEnforced: func() bool { return true },
	}
}

var errNoHost = errors.New("no such host")

func replace1(s, old, new string) string {
	if !strings.Contains(s, old) {
		panic("test edit does not apply: " + old)
	}
	return strings.Replace(s, old, new, 1)
}
