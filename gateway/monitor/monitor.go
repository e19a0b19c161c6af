package monitor

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/config"
)

// Options configure a Monitor. Zero fields take the defaults given.
type Options struct {
	// Path is the monitor's bbolt file (STATE_DIR/monitor.db). Required.
	Path string
	// Config is the validated configuration (SetConfig swaps it).
	Config *config.Config
	// Emit receives every finding, outside the monitor's lock. Nil drops
	// them (Status still shows them).
	Emit func(Finding)
	// Traffic returns each device's cumulative clinical counters (nil: no
	// baselines and no silence detection).
	Traffic func() []Traffic
	// Probe checks every TCP device link once (a TCP connect, no payload);
	// its owner reports the link state. Nil: no link probe.
	Probe func(ctx context.Context)
	// Neighbours reads the segment's neighbour table (default
	// ProcNeighbours).
	Neighbours NeighbourSource
	// System answers the segmentation questions (default ProcSystem{}).
	System System
	// Env answers the run-time questions of the other controls.
	Env Env
	// ControlsChanged is called (outside the lock) when a control was
	// checked for the first time, went in or out of force, or was removed,
	// e.g. to republish the inventory.
	ControlsChanged func()
	// LookupHost resolves device host names (default net.DefaultResolver).
	LookupHost func(ctx context.Context, host string) ([]string, error)

	Clock  clockwork.Clock // default: real clock
	Logger *slog.Logger    // default: slog.Default()
}

// Traffic is one device's cumulative clinical counters.
type Traffic struct {
	Device               string
	ToDevice, FromDevice int64
	Sessions             int64
	Live                 int64 // sessions open now
}

// Env answers the run-time questions of the compensating-control checks.
// Nil funcs make the controls that need them "not in force".
type Env struct {
	// TelemetryOldest returns the production time of the oldest message not
	// yet delivered (zero when none waits) and whether telemetry runs.
	TelemetryOldest func() (oldest time.Time, running bool)
	// VendorPolicy returns the vendor policy the broker enforces for a
	// device (ok false: no vendor access to it).
	VendorPolicy func(device string) (p VendorPolicy, ok bool)
	// LocksEnforced reports whether the vendor broker consults the lock
	// authority (no lock bypass).
	LocksEnforced func() bool
}

// VendorPolicy is what the broker enforces for one device.
type VendorPolicy struct {
	Approval []string
	Ports    []int
	Hours    bool // off-hours requests are refused or need central approval
}

// Monitor judges what the gateway sees. Create it with New, feed it with
// Observe, run its periodic checks with Run, read it with Status. It is
// safe for concurrent use.
type Monitor struct {
	o     Options
	clock clockwork.Clock
	log   *slog.Logger
	st    *store

	mu        sync.Mutex
	set       *settings
	lim       limiter
	recent    []Finding
	counts    map[string]int
	auth      authState
	traffic   map[string]*deviceTraffic
	neigh     neighState
	controls  map[controlKey]*ControlState
	closed    bool
	closeOnce sync.Once
}

// settings are the parts of the configuration the monitor consults,
// compiled once per SetConfig.
type settings struct {
	cfg     *config.Config
	mon     config.Monitor
	devices map[string]*devInfo
	byIP    map[netip.Addr]string // device address -> device id
	byMAC   map[string]string     // declared MAC -> device id
}

type devInfo struct {
	id, owner string
	hours     config.Hours
	expect    time.Duration
	mac       string
	host      string       // link.tcp host or vendor.host
	ips       []netip.Addr // host, resolved
	tcp       bool
}

// New opens the monitor's state. Close it when done.
func New(o Options) (*Monitor, error) {
	if o.Path == "" {
		return nil, errors.New("monitor: no state path")
	}
	if o.Config == nil {
		return nil, errors.New("monitor: no configuration")
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Neighbours == nil {
		o.Neighbours = ProcNeighbours{}
	}
	if o.System == nil {
		o.System = ProcSystem{}
	}
	if o.LookupHost == nil {
		o.LookupHost = net.DefaultResolver.LookupHost
	}
	st, err := openStore(o.Path)
	if err != nil {
		return nil, err
	}
	m := &Monitor{o: o, clock: o.Clock, log: o.Logger, st: st, counts: map[string]int{},
		traffic: map[string]*deviceTraffic{}, controls: map[controlKey]*ControlState{}}
	m.auth.init()
	m.lim.keys = map[limitKey]*limitState{}
	m.SetConfig(o.Config)
	return m, nil
}

// SetConfig swaps the configuration (a reload). Learned state is kept.
func (m *Monitor) SetConfig(cfg *config.Config) {
	s := compileSettings(cfg, m.resolve)
	m.mu.Lock()
	m.set = s
	m.lim.window = s.mon.FindingWindow.D()
	if m.lim.window <= 0 {
		m.lim.window = config.DefaultFindingWindow
	}
	m.mu.Unlock()
}

func (m *Monitor) resolve(host string) []netip.Addr {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}
	}
	if host == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	names, err := m.o.LookupHost(ctx, host)
	if err != nil {
		m.log.Warn("device host name does not resolve; its address is not matched on the segment", "host", host, "err", err)
		return nil
	}
	var out []netip.Addr
	for _, n := range names {
		if a, err := netip.ParseAddr(n); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}

func compileSettings(cfg *config.Config, resolve func(string) []netip.Addr) *settings {
	s := &settings{cfg: cfg, mon: cfg.Monitor, devices: map[string]*devInfo{}, byIP: map[netip.Addr]string{}, byMAC: map[string]string{}}
	for _, d := range cfg.Devices {
		di := &devInfo{id: d.ID, owner: d.Owner, expect: d.ExpectTrafficEvery.D(), tcp: d.Link.TCP != ""}
		if d.MAC != "" {
			di.mac = config.NormalMAC(d.MAC)
			s.byMAC[di.mac] = d.ID
		}
		if d.Link.TCP != "" {
			if h, _, err := net.SplitHostPort(d.Link.TCP); err == nil {
				di.host = h
			}
		}
		if d.Vendor != nil {
			di.hours = d.Vendor.Hours
			if di.host == "" {
				di.host = d.Vendor.Host
			}
		}
		di.ips = resolve(di.host)
		for _, a := range di.ips {
			s.byIP[a] = d.ID
		}
		s.devices[d.ID] = di
	}
	return s
}

// Close releases the state file. Idempotent.
func (m *Monitor) Close() error {
	var err error
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		m.saveTrafficLocked()
		m.mu.Unlock()
		err = m.st.close()
	})
	return err
}

// enabled reports whether the monitor judges anything.
func (m *Monitor) enabledLocked() bool { return m.set.mon.On() && !m.closed }

// maxRecent bounds the findings kept for Status.
const maxRecent = 50

// raiseLocked passes f through the rate limit; admitted findings are
// appended to out for emission after the lock is released.
func (m *Monitor) raiseLocked(f Finding, out *[]Finding) {
	if f.Count == 0 {
		f.Count = 1
	}
	if f.Time.IsZero() {
		f.Time = m.clock.Now()
	}
	if f.First.IsZero() {
		f.First = f.Time
	}
	if f.Last.IsZero() {
		f.Last = f.Time
	}
	if !m.lim.admit(&f) {
		return
	}
	m.noteLocked(&f)
	*out = append(*out, f)
}

func (m *Monitor) noteLocked(f *Finding) {
	f.Sev = f.Severity() // fixed, so that status shows it
	m.counts[f.Kind]++
	m.recent = append(m.recent, *f)
	if len(m.recent) > maxRecent {
		m.recent = m.recent[len(m.recent)-maxRecent:]
	}
}

func (m *Monitor) emit(fs []Finding) {
	for _, f := range fs {
		m.log.Log(context.Background(), levelOf(f.Severity()), "monitor finding", "finding", f.Kind, "key", f.Key, "count", f.Count)
		if m.o.Emit != nil {
			m.o.Emit(f)
		}
	}
}

func levelOf(sev string) slog.Level {
	switch sev {
	case SevAlarm:
		return slog.LevelError
	case SevWarning:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// Observe judges one event the gateway emitted (kind and attributes as in
// telemetry). Events of the monitor's own kinds are ignored. It is cheap
// and never blocks on I/O except when it learns something new (one bbolt
// write).
func (m *Monitor) Observe(t time.Time, kind string, attrs map[string]string) {
	if strings.HasPrefix(kind, "monitor.") {
		return
	}
	var out []Finding
	m.mu.Lock()
	if !m.enabledLocked() {
		m.mu.Unlock()
		return
	}
	if t.IsZero() {
		t = m.clock.Now()
	}
	m.observeLocked(t, kind, attrs, &out)
	m.mu.Unlock()
	m.emit(out)
}

// Run runs the periodic work until ctx ends: the rate limit's summaries,
// traffic sampling and baselines, the link probe, the neighbour table and
// the compensating controls. Intervals follow SetConfig. It returns after
// its goroutines exited.
func (m *Monitor) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	every := func(interval func(config.Monitor) time.Duration, f func(now time.Time)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := interval(m.settings())
			t := m.clock.NewTicker(d)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.Chan():
					f(m.clock.Now())
				}
				if nd := interval(m.settings()); nd != d && nd > 0 {
					d = nd
					t.Reset(d)
				}
			}
		}()
	}
	// The first controls check and link probe run at once, so that the
	// state is known before any client connects.
	m.CheckControls()
	probe := func(time.Time) {
		if m.o.Probe != nil && m.settings().On() {
			m.o.Probe(ctx)
		}
	}
	probe(m.clock.Now())
	every(func(c config.Monitor) time.Duration { return c.LinkProbe.D() }, probe)
	every(func(config.Monitor) time.Duration { return time.Minute }, m.Tick)
	every(func(c config.Monitor) time.Duration { return c.NeighbourInterval.D() }, func(time.Time) { m.ScanNeighbours() })
	every(func(c config.Monitor) time.Duration { return c.ControlsInterval.D() }, func(time.Time) { m.CheckControls() })
	<-ctx.Done()
	wg.Wait()
	return nil
}

// settings returns the monitor's current settings.
func (m *Monitor) settings() config.Monitor {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.set.mon
}

// Tick runs the minute's work: summaries of folded findings, a traffic
// sample (baselines at each hour's end) and silence checks.
func (m *Monitor) Tick(now time.Time) {
	var out []Finding
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	for _, f := range m.lim.flush(now) {
		m.noteLocked(&f)
		out = append(out, f)
	}
	m.auth.expire(now, m.set.mon)
	var samples []Traffic
	if m.enabledLocked() && m.o.Traffic != nil {
		m.mu.Unlock()
		samples = m.o.Traffic()
		m.mu.Lock()
		if !m.closed {
			m.sampleLocked(now, samples, &out)
		}
	}
	m.mu.Unlock()
	m.emit(out)
}
