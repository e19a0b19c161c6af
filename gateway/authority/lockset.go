package authority

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/wire/lockset"
)

// Lock-set event kinds.
const (
	// EvLockSetApplied: a newer lock set was accepted and the gateway's
	// lock-set managed locks converged to it (Scope, Version, Added,
	// Removed).
	EvLockSetApplied = "authority.lockset_applied"
	// EvLockSetRefused: a verified lock set was refused (an old version, an
	// approver outside its scopes, a clock behind trusted time).
	EvLockSetRefused = "authority.lockset_refused"
)

// ErrStaleLockSet: the lock set's version is not newer than the one
// applied for its scope (a replay or an out-of-order delivery).
var ErrStaleLockSet = errors.New("lock set not newer than the one applied")

// ViaLockSet marks the Actor.Via of locks a lock set manages: only those
// are removed when a newer set drops them; locks added on the gateway or by
// a single command stay.
const ViaLockSet = "lockset"

var bucketLockSets = []byte("locksets")

// lockSetRec is what the gateway keeps per scope.
type lockSetRec struct {
	Version   uint64    `json:"version"`
	Expires   time.Time `json:"expires"`
	Applied   time.Time `json:"applied"`
	Targets   []string  `json:"targets"`
	Approvers []string  `json:"approvers"`
}

// LockSetState is the newest lock set applied for one scope.
type LockSetState struct {
	Scope     string    `json:"scope"`
	Version   uint64    `json:"version"`
	Expires   time.Time `json:"expires"`
	Applied   time.Time `json:"applied"`
	Targets   []string  `json:"targets"`
	Approvers []string  `json:"approvers"`
}

// LockSets lists the newest lock set applied per scope, sorted by scope.
func (a *Authority) LockSets() ([]LockSetState, error) {
	var out []LockSetState
	err := a.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLockSets)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var r lockSetRec
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("lock set %s: %w", k, err)
			}
			out = append(out, LockSetState{Scope: string(k), Version: r.Version, Expires: r.Expires, Applied: r.Applied,
				Targets: r.Targets, Approvers: r.Approvers})
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Scope < out[j].Scope })
	return out, err
}

// ApplyLockSet converges the locks managed by s's scope to exactly s.Locks.
// s must come from lockset.Verify (signatures, approvers, validity) and
// apply to this gateway (lockset.Set.Applies); ApplyLockSet checks the
// rest: the clock guard, that every approver may lock on devices "*", and
// that s.Version is newer than the version applied for the scope (else
// ErrStaleLockSet; an older version is also reported as EvLockSetRefused,
// the same version, redelivered at every connection from the retained
// topic, is not). Locks added on the gateway, by a command or by another
// scope's set stay; a target in two scopes' sets stays until both drop it.
// The version is saved last, so a crash half-way applies the set again.
// It returns the targets added and removed.
func (a *Authority) ApplyLockSet(s *lockset.Set) (added, removed []string, err error) {
	a.lockSetMu.Lock()
	defer a.lockSetMu.Unlock()
	now := a.clock.Now()
	refuse := func(err error) ([]string, []string, error) {
		a.log.Warn("lock set refused", "scope", s.Scope, "version", s.Version, "err", err)
		a.emit(Event{Time: now, Kind: EvLockSetRefused, Scope: s.Scope, Version: s.Version, Reason: err.Error(),
			Actor: a.lockSetActor(s)})
		return nil, nil, err
	}
	if err := a.CheckClock(); err != nil {
		return refuse(err)
	}
	if now.UnixMilli() >= s.Expires {
		return refuse(fmt.Errorf("lock set %s version %d expired at %s", s.Scope, s.Version, time.UnixMilli(s.Expires).UTC().Format(time.RFC3339)))
	}
	a.mu.Lock()
	sc := a.scopes
	a.mu.Unlock()
	for _, ap := range s.Approvers {
		if err := sc.Permit(ap, config.ActionLock, DeviceRef{}); err != nil {
			return refuse(err)
		}
	}
	recs, err := a.lockSetRecs()
	if err != nil {
		return nil, nil, err
	}
	old := recs[s.Scope]
	if s.Version == old.Version {
		// The retained set comes again at every connection: not news.
		a.log.Debug("lock set already applied", "scope", s.Scope, "version", s.Version)
		return nil, nil, fmt.Errorf("%w: %s version %d is the one applied", ErrStaleLockSet, s.Scope, s.Version)
	}
	if s.Version < old.Version {
		return refuse(fmt.Errorf("%w: %s version %d, applied %d", ErrStaleLockSet, s.Scope, s.Version, old.Version))
	}
	actor := a.lockSetActor(s)
	want := map[string]bool{}
	var errs []error
	for _, l := range s.Locks {
		until := time.Time{}
		if l.Until != 0 {
			until = time.UnixMilli(l.Until)
			if !until.After(now) {
				continue // already over
			}
		}
		t, perr := ParseTarget(l.Target, a.o.TrustDomain)
		if perr != nil {
			errs = append(errs, fmt.Errorf("lock set target %q: %w", l.Target, perr))
			continue
		}
		want[t.String()] = true
		if a.unchanged(t.String(), until, l.Reason) {
			continue
		}
		if _, err := a.AddLock(t.String(), until, l.Reason, actor); err != nil && !errors.Is(err, ErrNotSaved) {
			errs = append(errs, err)
			continue
		}
		added = append(added, t.String())
	}
	for _, target := range old.Targets {
		if want[target] || a.heldElsewhere(recs, s.Scope, target) {
			continue
		}
		if !a.managed(target) {
			continue
		}
		if err := a.RemoveLock(target, actor); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, target)
	}
	targets := make([]string, 0, len(want))
	for t := range want {
		targets = append(targets, t)
	}
	sort.Strings(targets)
	rec := lockSetRec{Version: s.Version, Expires: time.UnixMilli(s.Expires), Applied: now, Targets: targets,
		Approvers: slices.Clone(s.Approvers)}
	if err := a.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketLockSets)
		if err != nil {
			return err
		}
		data, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return b.Put([]byte(s.Scope), data)
	}); err != nil {
		errs = append(errs, fmt.Errorf("save lock set version: %w: %w", ErrNotSaved, err))
	}
	a.log.Warn("lock set applied", "scope", s.Scope, "version", s.Version, "added", len(added), "removed", len(removed))
	a.emit(Event{Time: now, Kind: EvLockSetApplied, Scope: s.Scope, Version: s.Version, Added: added, Removed: removed,
		Actor: actor, Reason: fmt.Sprintf("%d locks in the set", len(targets))})
	return added, removed, errors.Join(errs...)
}

// RefuseLockSet reports a lock set that failed verification (bad
// signature, not an approver, expired, another scope) as an
// EvLockSetRefused event; from names where it came from (the topic).
func (a *Authority) RefuseLockSet(from string, err error) {
	a.log.Warn("lock set refused", "from", from, "err", err)
	a.emit(Event{Time: a.clock.Now(), Kind: EvLockSetRefused, Reason: "from " + from + ": " + err.Error(),
		Actor: Actor{Kind: KindSystem, Via: ViaLockSet}})
}

func (a *Authority) lockSetActor(s *lockset.Set) Actor {
	ap := ""
	if len(s.Approvers) > 0 {
		ap = s.Approvers[0]
	}
	return Actor{Kind: KindCentral, Via: ViaLockSet, Approver: ap}
}

func (a *Authority) lockSetRecs() (map[string]lockSetRec, error) {
	recs := map[string]lockSetRec{}
	err := a.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLockSets)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var r lockSetRec
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("lock set %s: %w", k, err)
			}
			recs[string(k)] = r
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("authority: lock sets: %w", err)
	}
	return recs, nil
}

// unchanged reports whether the lock on target already is what the set
// asks: a lock-set managed lock with the same end and reason, or any
// other lock in force at least as long (a local lock is never shortened
// by a set).
func (a *Authority) unchanged(target string, until time.Time, reason string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.locks[target]
	switch {
	case !ok:
		return false
	case l.Actor.Kind == KindCentral && l.Actor.Via == ViaLockSet:
		return l.Until.Equal(until) && l.Reason == clip(reason)
	case l.Until.IsZero():
		return true
	}
	return !until.IsZero() && !l.Until.Before(until)
}

func (a *Authority) managed(target string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.locks[target]
	return ok && l.Actor.Kind == KindCentral && l.Actor.Via == ViaLockSet
}

func (a *Authority) heldElsewhere(recs map[string]lockSetRec, scope, target string) bool {
	for sc, r := range recs {
		if sc != scope && slices.Contains(r.Targets, target) {
			return true
		}
	}
	return false
}
