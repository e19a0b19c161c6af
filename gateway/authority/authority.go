package authority

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Sentinel errors (match with errors.Is).
var (
	// ErrNotFound: no lock on that target.
	ErrNotFound = errors.New("not found")
	// ErrBadActor: the actor lacks a kind or, for central, an approver.
	ErrBadActor = errors.New("invalid actor")
	// ErrTamperActive: the tamper switch is still open; close the enclosure first.
	ErrTamperActive = errors.New("tamper switch still open")
	// ErrNotSaved: the change is in force in memory but could not be
	// written to the state directory (disk full or failing); it is lost at
	// restart unless saved later. The caller raises an alarm.
	ErrNotSaved = errors.New("in force but not saved")
	// ErrClosed: the Authority was closed.
	ErrClosed = errors.New("authority closed")
)

// Event kinds. They keep the names central already consumes.
const (
	EvLockAdd     = "access.lock_add"
	EvLockRemove  = "access.lock_remove"
	EvTamper      = "access.tamper"
	EvTamperClear = "access.tamper_clear"
)

// Event is a change of the lock list or the tamper latch.
type Event struct {
	Time   time.Time
	Kind   string
	Target string    // lock target (lock events)
	Until  time.Time // lock end (zero: until removed)
	Reason string
	Actor  Actor
	Action string // EvRefused: the command refused
	Device string // EvRefused: the device it acted on ("" the gateway)
	// Mark and Clock are the trusted-time high-water mark and the clock
	// (EvClockBehind, EvLockDeferred).
	Mark, Clock time.Time
	// Scope, Version, Added and Removed describe a lock set
	// (EvLockSetApplied, EvLockSetRefused).
	Scope          string
	Version        uint64
	Added, Removed []string
}

// Severity is the telemetry severity of the event: tamper and a clock
// behind trusted time are alarms, removals and clearings information, the
// rest warnings.
func (e Event) Severity() string {
	switch e.Kind {
	case EvTamper, EvClockBehind:
		return "alarm"
	case EvLockRemove, EvTamperClear, EvClockOK:
		return "info"
	}
	return "warning"
}

// Attrs returns the event's telemetry attributes (typed values flattened
// once, here).
func (e Event) Attrs() map[string]string {
	m := map[string]string{"actor": e.Actor.String()}
	if e.Target != "" {
		m["identity"] = e.Target
	}
	if !e.Until.IsZero() {
		m["until"] = e.Until.UTC().Format(time.RFC3339)
	}
	if e.Reason != "" {
		m["reason"] = e.Reason
	}
	if e.Action != "" {
		m["action"] = e.Action
	}
	if e.Device != "" {
		m["device"] = e.Device
	}
	if !e.Mark.IsZero() {
		m["trusted_time"] = e.Mark.UTC().Format(time.RFC3339)
	}
	if !e.Clock.IsZero() {
		m["clock"] = e.Clock.UTC().Format(time.RFC3339)
	}
	if e.Scope != "" {
		m["scope"] = e.Scope
	}
	if e.Version != 0 {
		m["version"] = strconv.FormatUint(e.Version, 10)
	}
	if e.Kind == EvLockSetApplied {
		m["added"] = strings.Join(e.Added, " ")
		m["removed"] = strings.Join(e.Removed, " ")
	}
	return m
}

// Lock blocks an identity or every identity under a prefix, on the vendor
// and clinical paths.
type Lock struct {
	Identity string    `json:"identity"`       // the target as given
	Until    time.Time `json:"until,omitzero"` // zero: until removed
	Reason   string    `json:"reason,omitempty"`
	Actor    Actor     `json:"actor"`
	Created  time.Time `json:"created"`

	target Target
}

// Matches reports whether the lock covers identity.
func (l Lock) Matches(identity string) bool { return l.target.Match(identity) }

// Change tells subscribers what changed.
type Change struct {
	Lock   *Lock // a lock was added (nil otherwise)
	Tamper bool  // the tamper latch was set
}

// Options configure an Authority.
type Options struct {
	// Path of the bbolt file (required; created 0600, parent 0700).
	Path string
	// TrustDomain of lock targets (required).
	TrustDomain string
	Clock       clockwork.Clock // default: real clock
	Logger      *slog.Logger    // default: discard
	// Events receives every change, synchronously, outside the locks.
	Events func(Event)
	// BuildTime is the floor of trusted time (the binary's build time);
	// zero: none.
	BuildTime time.Time
}

// Authority owns locks and the tamper latch. Create it with Open.
type Authority struct {
	o     Options
	log   *slog.Logger
	clock clockwork.Clock
	db    *bolt.DB

	mu         sync.Mutex
	locks      map[string]*Lock // by target string
	timers     map[string]clockwork.Timer
	tamper     bool // latched
	tamperOpen bool // the switch is open now
	closed     bool
	subs       map[int]func(Change)
	nextSub    int
	scopes     *Scopes
	scopesSet  bool

	clk clockState // the trusted-time guard (clock.go)

	lockSetMu sync.Mutex // serializes ApplyLockSet (lockset.go)
}

var (
	bucketLocks = []byte("locks")
	bucketMeta  = []byte("meta")
	keyTamper   = []byte("tamper")
	keyImported = []byte("imported")
)

type tamperRec struct {
	Latched bool      `json:"latched"`
	Since   time.Time `json:"since,omitzero"`
}

// Open opens (creating) the state file and loads locks and the latch. Locks
// whose end passed while the gateway was down are removed with an event.
func Open(o Options) (*Authority, error) {
	if o.Path == "" || o.TrustDomain == "" {
		return nil, errors.New("authority: Options.Path and Options.TrustDomain are required")
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(o.Path), 0o700); err != nil {
		return nil, fmt.Errorf("authority state: %w", err)
	}
	db, err := bolt.Open(o.Path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open %s: locked by another wardgate process: %w", o.Path, err)
		}
		return nil, fmt.Errorf("open %s: %w", o.Path, err)
	}
	a := &Authority{o: o, log: o.Logger.With("component", "authority"), clock: o.Clock, db: db,
		locks: map[string]*Lock{}, timers: map[string]clockwork.Timer{}, subs: map[int]func(Change){}}
	if err := a.load(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return a, nil
}

func (a *Authority) load() error {
	err := a.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketLocks, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketLocks).ForEach(func(k, v []byte) error {
			var l Lock
			if err := json.Unmarshal(v, &l); err != nil {
				return fmt.Errorf("lock %s: %w", k, err)
			}
			t, err := ParseTarget(l.Identity, a.o.TrustDomain)
			if err != nil {
				// A lock stored before targets were validated: keep it
				// in force exactly as it was written.
				t = legacyTarget(l.Identity)
			}
			l.target = t
			a.locks[l.Identity] = &l
			return nil
		}); err != nil {
			return err
		}
		if err := a.loadMarkLocked(tx); err != nil {
			return err
		}
		if v := tx.Bucket(bucketMeta).Get(keyTamper); v != nil {
			var t tamperRec
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("tamper: %w", err)
			}
			a.tamper = t.Latched
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("authority: load %s: %w", a.o.Path, err)
	}
	now := a.clock.Now()
	a.mu.Lock()
	evs := a.bootLocksLocked(now, a.clk.mark)
	for _, l := range a.locks {
		a.scheduleLocked(l, now)
	}
	evs = append(evs, a.observeLocked(now)...)
	a.clk.timer = a.clock.AfterFunc(MarkEvery, a.tick)
	a.mu.Unlock()
	for _, e := range evs {
		a.emit(e)
	}
	return nil
}

// legacyTarget keeps the matching of locks written before validation: a
// trailing "*" is a prefix, anything else exact.
func legacyTarget(s string) Target {
	if p, ok := strings.CutSuffix(s, "*"); ok {
		return Target{src: s, prefix: p}
	}
	return Target{src: s}
}

// Import adds locks and the tamper latch kept by an older version in
// another file, once: later calls do nothing. It returns whether it
// imported.
func (a *Authority) Import(locks []Lock, tamper bool) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	done := false
	err := a.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta.Get(keyImported) != nil {
			done = true
			return nil
		}
		for _, l := range locks {
			data, err := json.Marshal(l)
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketLocks).Put([]byte(l.Identity), data); err != nil {
				return err
			}
		}
		if tamper {
			data, _ := json.Marshal(tamperRec{Latched: true, Since: a.clock.Now()})
			if err := meta.Put(keyTamper, data); err != nil {
				return err
			}
		}
		return meta.Put(keyImported, []byte("1"))
	})
	if err != nil || done {
		return false, err
	}
	now := a.clock.Now()
	for _, l := range locks {
		l := l
		t, err := ParseTarget(l.Identity, a.o.TrustDomain)
		if err != nil {
			t = legacyTarget(l.Identity)
		}
		l.target = t
		a.locks[l.Identity] = &l
		a.scheduleLocked(&l, now)
	}
	a.tamper = a.tamper || tamper
	return true, nil
}

// Close stops expiry timers and closes the file. Idempotent.
func (a *Authority) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	if now := a.clock.Now(); !now.Before(a.clk.mark) {
		if err := a.put(bucketMeta, keyMark, now); err != nil {
			a.log.Warn("trusted time mark not saved", "err", err)
		}
	}
	a.closed = true
	for k, t := range a.timers {
		t.Stop()
		delete(a.timers, k)
	}
	if a.clk.timer != nil {
		a.clk.timer.Stop()
	}
	a.mu.Unlock()
	return a.db.Close()
}

// Subscribe registers fn for every lock added and every tamper latch. fn
// runs synchronously after the change is in force, outside the Authority's
// locks. The returned func unsubscribes.
func (a *Authority) Subscribe(fn func(Change)) (cancel func()) {
	a.mu.Lock()
	id := a.nextSub
	a.nextSub++
	a.subs[id] = fn
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		delete(a.subs, id)
		a.mu.Unlock()
	}
}

func (a *Authority) notify(c Change) {
	a.mu.Lock()
	ids := make([]int, 0, len(a.subs))
	for id := range a.subs {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	fns := make([]func(Change), 0, len(ids))
	for _, id := range ids {
		fns = append(fns, a.subs[id])
	}
	a.mu.Unlock()
	for _, fn := range fns {
		fn(c)
	}
}

func (a *Authority) emit(e Event) {
	if a.o.Events != nil {
		a.o.Events(e)
	}
}

func (a *Authority) put(bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return a.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(key, data) })
}

// AddLock locks target (validated by ParseTarget) until until (zero: until
// removed). Live sessions are cut by the subscribers, new handshakes refused
// by Locked. Locking the same target again replaces the lock. When the lock
// cannot be saved it is in force anyway and the error wraps ErrNotSaved.
func (a *Authority) AddLock(target string, until time.Time, reason string, actor Actor) (Lock, error) {
	if !actor.Valid() {
		return Lock{}, ErrBadActor
	}
	t, err := ParseTarget(target, a.o.TrustDomain)
	if err != nil {
		return Lock{}, err
	}
	now := a.clock.Now()
	if !until.IsZero() && !until.After(now) {
		return Lock{}, errors.New("lock: the end time is in the past: give a duration (--for 2h) or none")
	}
	l := &Lock{Identity: t.String(), Until: until, Reason: clip(reason), Actor: actor, Created: now, target: t}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return Lock{}, ErrClosed
	}
	a.locks[l.Identity] = l
	a.scheduleLocked(l, now)
	saveErr := a.put(bucketLocks, []byte(l.Identity), l)
	a.mu.Unlock()
	a.log.Warn("identity locked", "identity", l.Identity, "actor", actor.String())
	a.emit(Event{Time: now, Kind: EvLockAdd, Target: l.Identity, Until: until, Reason: l.Reason, Actor: actor})
	a.notify(Change{Lock: l})
	if saveErr != nil {
		a.log.Error("lock in force but not saved", "identity", l.Identity, "err", saveErr)
		return *l, fmt.Errorf("lock %s: %w: %w", l.Identity, ErrNotSaved, saveErr)
	}
	return *l, nil
}

// RemoveLock removes the lock on target, exactly as it was locked.
func (a *Authority) RemoveLock(target string, actor Actor) error {
	if !actor.Valid() {
		return ErrBadActor
	}
	target = strings.TrimSpace(target)
	a.mu.Lock()
	if _, ok := a.locks[target]; !ok {
		a.mu.Unlock()
		return fmt.Errorf("lock %s: %w (wardgate lock list shows the locks)", clip(target), ErrNotFound)
	}
	if err := a.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketLocks).Delete([]byte(target)) }); err != nil {
		a.mu.Unlock()
		return fmt.Errorf("remove lock %s: %w", target, err)
	}
	delete(a.locks, target)
	if t, ok := a.timers[target]; ok {
		t.Stop()
		delete(a.timers, target)
	}
	now := a.clock.Now()
	a.mu.Unlock()
	a.emit(Event{Time: now, Kind: EvLockRemove, Target: target, Actor: actor})
	return nil
}

// scheduleLocked arms the expiry of l.
func (a *Authority) scheduleLocked(l *Lock, now time.Time) {
	key := l.Identity
	if t, ok := a.timers[key]; ok {
		t.Stop()
		delete(a.timers, key)
	}
	if l.Until.IsZero() || a.closed {
		return
	}
	until := l.Until
	a.timers[key] = a.clock.AfterFunc(max(until.Sub(now), 0), func() { a.expire(key, until, false) })
}

// expire ends the lock on key when its end until came; again tells that an
// earlier attempt was deferred (its event already sent).
func (a *Authority) expire(key string, until time.Time, again bool) {
	a.mu.Lock()
	l, ok := a.locks[key]
	if a.closed || !ok || !l.Until.Equal(until) {
		a.mu.Unlock()
		return
	}
	now := a.clock.Now()
	if evs := a.observeLocked(now); a.clk.behind {
		// Ending a lock widens access: not on a clock behind trusted time.
		a.timers[key] = a.clock.AfterFunc(MarkEvery, func() { a.expire(key, until, true) })
		if !again {
			evs = append(evs, Event{Time: now, Kind: EvLockDeferred, Target: key, Until: until, Mark: a.clk.mark, Clock: now,
				Reason: "the clock is behind trusted time: the lock stays until the clock passes it", Actor: Actor{Kind: KindSystem, Via: "clock"}})
		}
		a.mu.Unlock()
		for _, e := range evs {
			a.emit(e)
		}
		return
	}
	delete(a.locks, key)
	delete(a.timers, key)
	err := a.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketLocks).Delete([]byte(key)) })
	a.mu.Unlock()
	if err != nil {
		a.log.Error("expired lock not removed from disk", "identity", key, "err", err)
	}
	a.emit(Event{Time: now, Kind: EvLockRemove, Target: key, Reason: "lock expired", Actor: Actor{Kind: KindSystem, Via: "expiry"}})
}

// Locks lists the locks in force, sorted by target. A lock is in force
// until its expiry timer (counted in the gateway's running time, and never
// while the clock is behind trusted time) or a person removes it: a clock
// that jumps ahead does not end it.
func (a *Authority) Locks() []Lock {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Lock, 0, len(a.locks))
	for _, l := range a.locks {
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Identity < out[j].Identity })
	return out
}

// Locked reports whether identity is covered by a lock in force and, if so,
// a one-line reason naming the lock.
func (a *Authority) Locked(identity string) (bool, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range a.locks {
		if l.Matches(identity) {
			msg := "identity " + identity + " is locked"
			if l.Identity != identity {
				msg += " (by " + l.Identity + ")"
			}
			if !l.Until.IsZero() {
				msg += " until " + l.Until.UTC().Format(time.RFC3339)
			}
			if l.Reason != "" {
				msg += ": " + l.Reason
			}
			return true, msg
		}
	}
	return false, ""
}

// Tampered reports whether the tamper latch is set (vendor access off).
func (a *Authority) Tampered() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tamper
}

// SetTamper reports the tamper switch. Opening sets the latch (saved, so it
// survives a restart): subscribers cut every vendor session and vendor
// access stays off until ClearTamper. It returns an error wrapping
// ErrNotSaved when the latch could not be saved (it is in force anyway).
func (a *Authority) SetTamper(open bool) error {
	a.mu.Lock()
	a.tamperOpen = open
	if !open || a.tamper {
		a.mu.Unlock()
		return nil
	}
	now := a.clock.Now()
	a.tamper = true
	err := a.put(bucketMeta, keyTamper, tamperRec{Latched: true, Since: now})
	a.mu.Unlock()
	a.log.Warn("tamper switch opened: vendor access disabled")
	a.emit(Event{Time: now, Kind: EvTamper, Reason: "tamper switch opened: vendor access disabled until cleared", Actor: Actor{Kind: KindSystem, Via: "tamper"}})
	a.notify(Change{Tamper: true})
	if err != nil {
		return fmt.Errorf("tamper latch: %w: %w", ErrNotSaved, err)
	}
	return nil
}

// ClearTamper re-enables vendor access after a tamper. ErrTamperActive while
// the switch is still open.
func (a *Authority) ClearTamper(actor Actor) error {
	if !actor.Valid() {
		return ErrBadActor
	}
	a.mu.Lock()
	if a.tamperOpen {
		a.mu.Unlock()
		return fmt.Errorf("close the gateway enclosure first: %w", ErrTamperActive)
	}
	was := a.tamper
	if err := a.put(bucketMeta, keyTamper, tamperRec{}); err != nil {
		a.mu.Unlock()
		return fmt.Errorf("clear tamper: %w", err)
	}
	a.tamper = false
	now := a.clock.Now()
	a.mu.Unlock()
	if was {
		a.emit(Event{Time: now, Kind: EvTamperClear, Actor: actor})
	}
	return nil
}
