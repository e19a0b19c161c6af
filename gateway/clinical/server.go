package clinical

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/wardgate/wardgate/gateway/authority"
)

// Server is the clinical path of every configured device.
type Server struct {
	o   Options
	lim limiter

	mu      sync.Mutex
	devices map[string]*device
	stats   map[string]*stats // by device id, kept across restarts
	running bool
	closed  bool
	wg      sync.WaitGroup // sweeper
	done    chan struct{}
	once    sync.Once
	ended   chan struct{} // a session ended (for Shutdown)

	unsubscribe func()
}

// New validates the options and binds every device's listener (so that a
// port in use is reported at start); serving begins with Run.
func New(o Options, devices []DeviceOptions) (*Server, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	o = o.withDefaults()
	s := &Server{o: o, lim: limiter{window: o.EventWindow, keys: map[limitKey]*limitState{}},
		devices: map[string]*device{}, stats: map[string]*stats{}, done: make(chan struct{}),
		ended: make(chan struct{}, 1)}
	if err := s.Update(devices); err != nil {
		s.Close()
		return nil, err
	}
	if o.Locks != nil {
		s.unsubscribe = o.Locks.Subscribe(func(c authority.Change) {
			if c.Lock != nil {
				s.cutMatching(c.Lock.Matches)
			}
		})
	}
	return s, nil
}

func checkDevices(devs []DeviceOptions) ([]DeviceOptions, error) {
	var errs []error
	seen := map[string]bool{}
	out := make([]DeviceOptions, 0, len(devs))
	for _, d := range devs {
		d = d.withDefaults()
		if err := d.validate(); err != nil {
			errs = append(errs, err)
		}
		if seen[d.ID] {
			errs = append(errs, fmt.Errorf("device %s: duplicate id", d.ID))
		}
		seen[d.ID] = true
		out = append(out, d)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	return out, nil
}

// Update applies a new device list: devices whose options did not change
// keep their listener and sessions; changed devices are restarted (their
// sessions end with reason reconfigured); removed ones are stopped. Invalid
// options change nothing (ErrInvalidOptions). A listener that cannot be
// bound is reported in the returned error; the other devices are applied.
func (s *Server) Update(devs []DeviceOptions) error {
	devs, err := checkDevices(devs)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	want := map[string]DeviceOptions{}
	for _, d := range devs {
		want[d.ID] = d
	}
	var stop []*device
	for id, d := range s.devices {
		if n, ok := want[id]; !ok || !n.same(d.o) {
			stop = append(stop, d)
			delete(s.devices, id)
		}
	}
	s.mu.Unlock()
	for _, d := range stop {
		d.stop(ReasonReconfigured)
	}
	var errs []error
	for _, o := range devs {
		s.mu.Lock()
		if _, ok := s.devices[o.ID]; ok || s.closed {
			s.mu.Unlock()
			continue
		}
		st := s.stats[o.ID]
		if st == nil {
			st = newStats()
			s.stats[o.ID] = st
		}
		s.mu.Unlock()
		d, err := newDevice(s, o, st)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			d.stop(ReasonShutdown)
			continue
		}
		s.devices[o.ID] = d
		if s.running {
			d.start()
		}
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Addr returns the address device id listens on.
func (s *Server) Addr(id string) (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[id]
	if !ok {
		return nil, fmt.Errorf("device %s: %w", id, ErrUnknownDevice)
	}
	return d.ln.Addr(), nil
}

// Run serves every device until ctx is done or Close is called, then ends
// every session and returns after all goroutines exited.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.running {
		s.mu.Unlock()
		return errors.New("clinical server already running")
	}
	s.running = true
	for _, d := range s.devices {
		d.start()
	}
	s.wg.Add(1)
	go s.sweep()
	s.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-s.done:
	}
	s.Close()
	return nil
}

// Shutdown stops accepting, lets live sessions finish until ctx is done,
// then ends the rest (reason shutdown) like Close.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	devs := s.deviceList()
	s.mu.Unlock()
	for _, d := range devs {
		d.stopAccepting()
	}
	var err error
	for {
		live := 0
		for _, d := range devs {
			live += d.liveCount()
		}
		if live == 0 {
			break
		}
		select {
		case <-s.ended:
			continue
		case <-ctx.Done():
			err = fmt.Errorf("drain: %d sessions still live, cutting them: %w", live, ctx.Err())
		}
		break
	}
	s.Close()
	return err
}

// Close ends every session (reason shutdown), stops every device and waits
// for their goroutines. Idempotent; Run returns.
func (s *Server) Close() {
	s.once.Do(func() {
		if s.unsubscribe != nil {
			s.unsubscribe()
		}
		s.mu.Lock()
		s.closed = true
		close(s.done)
		devs := s.deviceList()
		s.devices = map[string]*device{}
		s.mu.Unlock()
		var wg sync.WaitGroup
		for _, d := range devs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.stop(ReasonShutdown)
			}()
		}
		wg.Wait()
		s.wg.Wait()
	})
}

func (s *Server) deviceList() []*device {
	out := make([]*device, 0, len(s.devices))
	for _, d := range s.devices {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].o.ID < out[j].o.ID })
	return out
}

// cutMatching ends every live session whose identity matches, at once and
// without close_notify (reason locked). It returns how many it cut.
func (s *Server) cutMatching(match func(identity string) bool) int {
	s.mu.Lock()
	devs := s.deviceList()
	s.mu.Unlock()
	n := 0
	for _, d := range devs {
		for _, c := range d.connsMatching(match) {
			c.cut(ReasonLocked, true)
			n++
		}
	}
	if n > 0 {
		s.o.Logger.Warn("locked identities cut", "sessions", n)
	}
	return n
}

// locked asks the lock authority about identity (never locked without one).
func (s *Server) locked(identity string) (bool, string) {
	if s.o.Locks == nil || identity == "" {
		return false, ""
	}
	return s.o.Locks.Locked(identity)
}

// DeviceStatus is one device in Snapshot.
type DeviceStatus struct {
	ID        string     `json:"id"`
	Listen    string     `json:"listen"`
	Link      string     `json:"link"`       // "tcp HOST:PORT" or "serial PORT BAUD 8N1 FLOW"
	LinkState string     `json:"link_state"` // unknown, up, down
	LinkSince time.Time  `json:"link_since,omitzero"`
	Allow     []string   `json:"allow"`
	Counters  Counters   `json:"counters"`
	Conns     []ConnInfo `json:"connections"`
}

// ConnInfo is one live session.
type ConnInfo struct {
	Identity   string    `json:"identity"`
	Remote     string    `json:"remote"`
	Since      time.Time `json:"since"`
	ToDevice   int64     `json:"to_device"`
	FromDevice int64     `json:"from_device"`
}

// Snapshot returns every device's counters, link state and live sessions,
// sorted by device id.
func (s *Server) Snapshot() []DeviceStatus {
	s.mu.Lock()
	devs := s.deviceList()
	s.mu.Unlock()
	out := make([]DeviceStatus, 0, len(devs))
	for _, d := range devs {
		out = append(out, d.status())
	}
	return out
}

// emit sends ev through the rate limit to the Events hook.
func (s *Server) emit(ev Event, st *stats) {
	if ev.Time.IsZero() {
		ev.Time = s.o.Clock.Now()
	}
	if !s.lim.admit(&ev, st) {
		return
	}
	s.o.Logger.Debug("clinical event", "event", ev.Kind, "device", ev.Device, "identity", ev.Identity,
		"remote", ev.Remote, "reason", ev.Reason, "suppressed", ev.Suppressed)
	if s.o.Events != nil {
		s.o.Events(ev)
	}
}

// sweep enforces idle and lifetime limits and flushes folded events.
func (s *Server) sweep() {
	defer s.wg.Done()
	t := s.o.Clock.NewTicker(s.o.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.Chan():
		}
		now := s.o.Clock.Now()
		s.mu.Lock()
		devs := s.deviceList()
		s.mu.Unlock()
		for _, d := range devs {
			d.sweep(now)
		}
		for _, ev := range s.lim.flush(now) {
			if s.o.Events != nil {
				s.o.Events(ev)
			}
		}
	}
}

func (s *Server) sessionEnded() {
	select {
	case s.ended <- struct{}{}:
	default:
	}
}
