package hal

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// KickerOptions configures a Kicker. Zero values take the defaults noted.
type KickerOptions struct {
	// Device is the hardware watchdog; nil for none.
	Device WatchdogDevice
	// Notifier receives WATCHDOG=1; nil or disabled for none.
	Notifier *Notifier
	// Timeout is asked of the hardware watchdog. Default 15s.
	Timeout time.Duration
	// Interval between kicks. Default: a third of the hardware timeout, and
	// at most half of systemd's WatchdogSec.
	Interval time.Duration
	Clock    clockwork.Clock // default real clock
	Logger   *slog.Logger    // default: discard
}

// Kicker feeds the hardware watchdog and systemd's watchdog, but only while
// every monitored loop has reported a heartbeat within its deadline: a stuck
// loop stops the kicking and the watchdog resets the machine. With no
// monitored loop it kicks unconditionally. Safe for concurrent use.
type Kicker struct {
	dev      WatchdogDevice
	notifier *Notifier
	timeout  time.Duration
	interval time.Duration
	clock    clockwork.Clock
	log      *slog.Logger

	mu        sync.Mutex
	monitors  map[*Heartbeat]struct{}
	applied   time.Duration
	kicks     uint64
	lastKick  time.Time
	stalled   []string
	disarmed  bool
	lastError string
}

// NewKicker returns a Kicker; Run starts it.
func NewKicker(o KickerOptions) *Kicker {
	k := &Kicker{dev: o.Device, notifier: o.Notifier, timeout: o.Timeout, interval: o.Interval,
		clock: o.Clock, log: o.Logger, monitors: map[*Heartbeat]struct{}{}}
	if k.clock == nil {
		k.clock = clockwork.NewRealClock()
	}
	if k.log == nil {
		k.log = slog.New(slog.DiscardHandler)
	}
	k.log = k.log.With("component", "hal.watchdog")
	if k.timeout <= 0 {
		k.timeout = 15 * time.Second
	}
	if k.interval <= 0 {
		k.interval = k.timeout / 3
		if sd := k.notifier.WatchdogTimeout(); sd > 0 {
			k.interval = min(k.interval, sd/2)
		}
	}
	return k
}

// Heartbeat is one monitored loop's liveness. The loop calls Beat at least
// once per deadline. Safe for concurrent use.
type Heartbeat struct {
	k        *Kicker
	name     string
	deadline time.Duration
	last     time.Time // guarded by k.mu
}

// Monitor registers a loop that must beat at least every deadline. The first
// deadline counts from now.
func (k *Kicker) Monitor(name string, deadline time.Duration) *Heartbeat {
	h := &Heartbeat{k: k, name: name, deadline: deadline}
	k.mu.Lock()
	h.last = k.clock.Now()
	k.monitors[h] = struct{}{}
	k.mu.Unlock()
	return h
}

// Beat reports the loop alive.
func (h *Heartbeat) Beat() {
	h.k.mu.Lock()
	h.last = h.k.clock.Now()
	h.k.mu.Unlock()
}

// Stop unregisters the loop (it ended on purpose).
func (h *Heartbeat) Stop() {
	h.k.mu.Lock()
	delete(h.k.monitors, h)
	h.k.mu.Unlock()
}

// Stalled lists, sorted, the monitored loops whose deadline passed at now.
func (k *Kicker) Stalled(now time.Time) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.stalledLocked(now)
}

func (k *Kicker) stalledLocked(now time.Time) []string {
	var s []string
	for h := range k.monitors {
		if now.Sub(h.last) > h.deadline {
			s = append(s, h.name)
		}
	}
	slices.Sort(s)
	return s
}

// Tick kicks once if every monitored loop is healthy at now, and reports
// whether it kicked. Run calls it every interval; tests call it directly.
func (k *Kicker) Tick(now time.Time) bool {
	k.mu.Lock()
	stalled := k.stalledLocked(now)
	was := k.stalled
	k.stalled = stalled
	disarmed := k.disarmed
	k.mu.Unlock()
	if disarmed {
		return false
	}
	if len(stalled) > 0 {
		if !slices.Equal(stalled, was) {
			k.log.Error("monitored loop stalled: no longer feeding the watchdog; the gateway will reset unless it recovers", "stalled", stalled)
		}
		return false
	}
	if len(was) > 0 {
		k.log.Info("monitored loops recovered; feeding the watchdog again")
	}
	var errMsg string
	if k.dev != nil {
		if err := k.dev.KeepAlive(); err != nil {
			errMsg = err.Error()
			k.log.Error("watchdog keep-alive failed", "err", err)
		}
	}
	if err := k.notifier.Watchdog(); err != nil {
		errMsg = err.Error()
		k.log.Error("systemd watchdog notify failed", "err", err)
	}
	k.mu.Lock()
	k.kicks++
	k.lastKick = now
	k.lastError = errMsg
	k.mu.Unlock()
	return true
}

// Run sets the hardware timeout, kicks every interval while healthy, and on
// ctx cancellation (a clean shutdown) disarms the hardware watchdog with the
// magic close. It returns nil after ctx is done, or the error of setting the
// timeout.
func (k *Kicker) Run(ctx context.Context) error {
	if k.dev != nil {
		got, err := k.dev.SetTimeout(k.timeout)
		if err != nil {
			// Keep the device armed with its default timeout and kick it.
			k.log.Error("cannot set watchdog timeout; keeping the driver's default", "err", err)
		} else {
			k.mu.Lock()
			k.applied = got
			k.mu.Unlock()
			if got > 0 && k.interval >= got {
				k.log.Warn("watchdog timeout shorter than the kick interval", "timeout", got, "interval", k.interval)
			}
		}
	}
	k.Tick(k.clock.Now())
	t := k.clock.NewTicker(k.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return k.Disarm()
		case now := <-t.Chan():
			k.Tick(now)
		}
	}
}

// Disarm stops kicking and magic-closes the hardware watchdog. Idempotent.
func (k *Kicker) Disarm() error {
	k.mu.Lock()
	k.disarmed = true
	k.mu.Unlock()
	if k.dev == nil {
		return nil
	}
	return k.dev.MagicClose()
}

// WatchdogState is the Kicker's state for status output.
type WatchdogState struct {
	Hardware bool      `json:"hardware"` // a hardware device is in use
	Systemd  bool      `json:"systemd"`  // systemd's notify socket is in use
	Timeout  string    `json:"timeout"`  // e.g. "15s": what the device applied, else what was asked
	Interval string    `json:"interval"` // between kicks, e.g. "5s"
	Kicks    uint64    `json:"kicks"`
	LastKick time.Time `json:"last_kick,omitzero"`
	Stalled  []string  `json:"stalled,omitempty"`
	Disarmed bool      `json:"disarmed"`
	Error    string    `json:"error,omitempty"`
}

// State returns a snapshot.
func (k *Kicker) State() WatchdogState {
	k.mu.Lock()
	defer k.mu.Unlock()
	to := k.applied
	if to == 0 {
		to = k.timeout
	}
	return WatchdogState{Hardware: k.dev != nil, Systemd: k.notifier.Enabled(), Timeout: to.String(), Interval: k.interval.String(),
		Kicks: k.kicks, LastKick: k.lastKick, Stalled: slices.Clone(k.stalled), Disarmed: k.disarmed, Error: k.lastError}
}
