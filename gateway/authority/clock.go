package authority

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jonboulle/clockwork"
	bolt "go.etcd.io/bbolt"
)

// ErrClockBehind: the clock is earlier than the trusted-time high-water
// mark. Vendor access and central commands wait until it is right again.
var ErrClockBehind = errors.New("clock behind trusted time")

// Clock guard event kinds.
const (
	// EvClockBehind: the clock went earlier than the trusted-time mark
	// (Mark and Clock set). The agent raises alarm clock_behind.
	EvClockBehind = "authority.clock_behind"
	// EvClockOK: the clock passed the mark again; the alarm clears.
	EvClockOK = "authority.clock_ok"
	// EvLockDeferred: at start, a lock's end had passed while the gateway
	// was off (or the clock jumped ahead); it stays in force for the time
	// it had left when the gateway last ran. Until is the new end, Mark
	// the last trusted time, Clock the clock at start.
	EvLockDeferred = "authority.lock_expiry_deferred"
)

// MarkEvery is how often the trusted-time mark advances and is saved.
const MarkEvery = time.Minute

var keyMark = []byte("time_mark")

// clockState is the trusted-time guard, guarded by Authority.mu.
type clockState struct {
	mark   time.Time // high-water mark of trusted time
	saved  time.Time // the mark last written to disk
	behind bool
	timer  clockwork.Timer
}

// loadMarkLocked reads the persisted mark; the build time is its floor.
func (a *Authority) loadMarkLocked(tx *bolt.Tx) error {
	a.clk.mark = a.o.BuildTime
	if v := tx.Bucket(bucketMeta).Get(keyMark); v != nil {
		var t time.Time
		if err := json.Unmarshal(v, &t); err != nil {
			return fmt.Errorf("time mark: %w", err)
		}
		a.clk.saved = t
		if t.After(a.clk.mark) {
			a.clk.mark = t
		}
	}
	return nil
}

// observeLocked moves the guard with now: behind while now is before the
// mark, otherwise the mark follows now (saved at most every MarkEvery). It
// returns the events of a change of state.
func (a *Authority) observeLocked(now time.Time) []Event {
	c := &a.clk
	if now.Before(c.mark) {
		if c.behind {
			return nil
		}
		c.behind = true
		a.log.Error("the clock is earlier than the last trusted time: vendor access, central commands and lock expiry wait", "clock", now, "trusted_time", c.mark)
		return []Event{{Time: now, Kind: EvClockBehind, Mark: c.mark, Clock: now, Actor: Actor{Kind: KindSystem, Via: "clock"},
			Reason: "the clock is earlier than the last trusted time; fix NTP: vendor access, central commands and lock expiry wait until it passes " + c.mark.UTC().Format(time.RFC3339)}}
	}
	var evs []Event
	if c.behind {
		c.behind = false
		a.log.Info("the clock passed the last trusted time again", "clock", now)
		evs = append(evs, Event{Time: now, Kind: EvClockOK, Mark: c.mark, Clock: now, Actor: Actor{Kind: KindSystem, Via: "clock"}})
	}
	c.mark = now
	if now.Sub(c.saved) >= MarkEvery && !a.closed {
		if err := a.put(bucketMeta, keyMark, now); err != nil {
			a.log.Warn("trusted time mark not saved", "err", err)
		} else {
			c.saved = now
		}
	}
	return evs
}

// tick advances the mark every MarkEvery.
func (a *Authority) tick() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	evs := a.observeLocked(a.clock.Now())
	a.clk.timer = a.clock.AfterFunc(MarkEvery, a.tick)
	a.mu.Unlock()
	for _, e := range evs {
		a.emit(e)
	}
}

// CheckClock returns nil when the clock is not earlier than the trusted
// time mark, otherwise an error wrapping ErrClockBehind that says what to
// fix. Vendor access and central commands call it before acting.
func (a *Authority) CheckClock() error {
	a.mu.Lock()
	now := a.clock.Now()
	evs := a.observeLocked(now)
	behind, mark := a.clk.behind, a.clk.mark
	a.mu.Unlock()
	for _, e := range evs {
		a.emit(e)
	}
	if behind {
		return fmt.Errorf("%w: the gateway clock (%s) is earlier than the last trusted time (%s); fix the clock (NTP) and retry",
			ErrClockBehind, now.UTC().Format(time.RFC3339), mark.UTC().Format(time.RFC3339))
	}
	return nil
}

// TrustedTime returns the high-water mark of trusted time: the latest of
// the build time and every time the clock showed while the gateway ran.
func (a *Authority) TrustedTime() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.clk.mark
}

// ClockBehind reports whether the clock is earlier than the mark.
func (a *Authority) ClockBehind() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.clk.behind
}

// bootLocksLocked applies the start-up rule to locks with an end: a lock
// whose end is still ahead is scheduled; a lock whose end passed while the
// gateway was off (end after the mark, not after now) is never removed
// silently: it stays in force for the time it had left at the mark, and an
// EvLockDeferred event records both times. A lock that had ended before
// the mark (its removal was not saved) is removed with an event.
func (a *Authority) bootLocksLocked(now, mark time.Time) []Event {
	var evs []Event
	for key, l := range a.locks {
		if l.Until.IsZero() || now.Before(l.Until) {
			continue
		}
		left := l.Until.Sub(mark)
		if left <= 0 {
			delete(a.locks, key)
			_ = a.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketLocks).Delete([]byte(key)) })
			evs = append(evs, Event{Time: now, Kind: EvLockRemove, Target: key, Until: l.Until, Mark: mark, Clock: now,
				Reason: "lock had ended before the gateway stopped", Actor: Actor{Kind: KindSystem, Via: "expiry"}})
			continue
		}
		old := l.Until
		l.Until = now.Add(left)
		if err := a.put(bucketLocks, []byte(key), l); err != nil {
			a.log.Error("deferred lock end not saved", "identity", key, "err", err)
		}
		a.log.Warn("lock end passed while the gateway was off or the clock jumped: kept for the time it had left",
			"identity", key, "end", old, "trusted_time", mark, "clock", now, "new_end", l.Until)
		evs = append(evs, Event{Time: now, Kind: EvLockDeferred, Target: key, Until: l.Until, Mark: mark, Clock: now,
			Reason: fmt.Sprintf("lock end %s passed while the gateway was off or the clock jumped ahead; kept for the %s it had left",
				old.UTC().Format(time.RFC3339), left.Round(time.Second)), Actor: Actor{Kind: KindSystem, Via: "clock"}})
	}
	return evs
}

// EvClockReset: a person reset the trusted-time mark to the current clock
// (Mark the old mark, Clock the new one).
const EvClockReset = "authority.clock_mark_reset"

// ResetTrustedTime sets the mark to the current clock, for a gateway whose
// clock once ran ahead (the mark then lies in the future and the guard
// would refuse vendor access and commands until that time). It is a local
// action of a person at the gateway; the build time stays the floor.
func (a *Authority) ResetTrustedTime(actor Actor) error {
	if !actor.Valid() || actor.Kind != KindLocal {
		return fmt.Errorf("%w: only a person at the gateway resets trusted time", ErrBadActor)
	}
	a.mu.Lock()
	now := a.clock.Now()
	if now.Before(a.o.BuildTime) {
		a.mu.Unlock()
		return fmt.Errorf("%w: the clock (%s) is earlier than this binary's build time; set the clock first", ErrClockBehind, now.UTC().Format(time.RFC3339))
	}
	old := a.clk.mark
	if err := a.put(bucketMeta, keyMark, now); err != nil {
		a.mu.Unlock()
		return fmt.Errorf("reset trusted time: %w", err)
	}
	a.clk.mark, a.clk.saved = now, now
	evs := []Event{{Time: now, Kind: EvClockReset, Mark: old, Clock: now, Actor: actor,
		Reason: "trusted time reset to the clock by a person at the gateway"}}
	evs = append(evs, a.observeLocked(now)...)
	a.mu.Unlock()
	a.log.Warn("trusted time reset", "old", old, "new", now, "actor", actor.String())
	for _, e := range evs {
		a.emit(e)
	}
	return nil
}
