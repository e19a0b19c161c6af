package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/lockset"
)

// SubmitLockSet verifies a signed lock set submitted by submitter (who
// must be one of its signers), refuses it unless its version is newer than
// the stored one of its scope, stores it and queues its retained publish.
func (s *Service) SubmitLockSet(ctx context.Context, signed []byte, submitter string) (store.LockSet, error) {
	now := s.clock.Now()
	if len(signed) == 0 || len(signed) > 1<<20 {
		return store.LockSet{}, fmt.Errorf("%w: give the signed lock set (at most 1 MiB), %d bytes received", ErrInvalid, len(signed))
	}
	set, err := lockset.Verify(signed, s.o.TrustDomain, now, s.o.Approver)
	if err != nil {
		hint := ""
		if errors.Is(err, lockset.ErrSigners) || errors.Is(err, lockset.ErrTwoPersons) {
			hint = " (a fleet-wide set needs two distinct approvers: the second one runs `wardgate-central lockset cosign`)"
		}
		return store.LockSet{}, fmt.Errorf("%w: %w%s", ErrInvalid, err, hint)
	}
	if !slices.Contains(set.Approvers, submitter) {
		return store.LockSet{}, fmt.Errorf("%w: the lock set is signed by %v but submitted by %s: one of its signers submits it", ErrNotSigner, set.Approvers, submitter)
	}
	for _, l := range set.Locks {
		if l.Until != 0 && l.Until <= now.UnixMilli() {
			return store.LockSet{}, fmt.Errorf("%w: the lock of %s ended at %s: leave it out or give a later end", ErrInvalid, l.Target,
				time.UnixMilli(l.Until).UTC().Format(time.RFC3339))
		}
	}
	rec := store.LockSet{Scope: set.Scope, Version: set.Version, Issued: time.UnixMilli(set.IssuedAt).UTC(), Expires: time.UnixMilli(set.Expires).UTC(),
		Approvers: set.Approvers, SubmittedBy: submitter, Created: now.UTC(), Signed: signed}
	for _, l := range set.Locks {
		ll := store.LockSetLock{Target: l.Target, Reason: l.Reason}
		if l.Until != 0 {
			ll.Until = time.UnixMilli(l.Until).UTC()
		}
		rec.Locks = append(rec.Locks, ll)
	}
	s.lsMu.Lock()
	defer s.lsMu.Unlock()
	_, err = s.o.Store.Apply(ctx, func(tx *store.Tx) error {
		have, err := tx.NewestLockSetVersion(set.Scope)
		if err != nil {
			return err
		}
		if set.Version <= have {
			return fmt.Errorf("%w: version %d of %s is not newer than the stored version %d: sign version %d", ErrConflict, set.Version, set.Scope, have, have+1)
		}
		return tx.AddLockSet(rec)
	})
	switch {
	case errors.Is(err, store.ErrDuplicate):
		return store.LockSet{}, fmt.Errorf("%w: version %d of %s is stored already: sign a newer version", ErrConflict, set.Version, set.Scope)
	case errors.Is(err, ErrConflict):
		return store.LockSet{}, errors.Unwrap(err) // without the store's prefix
	case err != nil:
		return store.LockSet{}, err
	}
	s.log.Info("lock set stored", "scope", rec.Scope, "version", rec.Version, "locks", len(rec.Locks), "approvers", rec.Approvers)
	s.push(job{kind: jobPublishLockSet, id: set.Scope})
	return rec, nil
}

func (s *Service) publishLockSet(ctx context.Context, scope string) error {
	ls, err := s.o.Store.LockSet(ctx, scope)
	if err != nil {
		return err
	}
	if err := s.publishSet(ls); err != nil {
		s.log.Warn("lock set not published; retried at central's next reconnection", "scope", scope, "version", ls.Version, "err", err)
	}
	return nil
}

// republish endorses and publishes the newest unexpired set of every
// scope again.
func (s *Service) republish(ctx context.Context) error {
	sets, err := s.o.Store.LockSets(ctx)
	if err != nil {
		return err
	}
	for _, ls := range sets {
		if err := s.publishSet(ls); err != nil {
			s.log.Warn("lock set not published; retried at central's next reconnection", "scope", ls.Scope, "version", ls.Version, "err", err)
		}
	}
	return nil
}

// publishSet publishes ls, with central's endorsement made now, retained
// on its scope's topic. An expired set is not published again (gateways
// would only refuse it); a newer version replaces it.
func (s *Service) publishSet(ls store.LockSet) error {
	return s.publishSetTo(ls, lockset.Topic(ls.Scope), true)
}

func (s *Service) publishSetTo(ls store.LockSet, topic string, retain bool) error {
	now := s.clock.Now()
	if s.o.Publish == nil || !now.Before(ls.Expires) {
		return nil
	}
	data := ls.Signed
	if s.o.Endorser != nil {
		var err error
		if data, err = lockset.Endorse(ls.Signed, *s.o.Endorser, now); err != nil {
			return err
		}
	}
	return s.o.Publish(topic, data, retain)
}

// clearExpiredLockSets clears the retained topic of each scope whose
// newest set expired: gateways would only refuse it at every connection.
// A newer version published later takes the topic again.
func (s *Service) clearExpiredLockSets(ctx context.Context) error {
	if s.o.Publish == nil || s.o.NoRetain {
		return nil
	}
	sets, err := s.o.Store.LockSets(ctx)
	if err != nil {
		return err
	}
	now := s.clock.Now()
	for _, ls := range sets {
		key := fmt.Sprintf("%s@%d", ls.Scope, ls.Version)
		if now.Before(ls.Expires) || s.cleared[key] {
			continue
		}
		if err := s.o.Publish(lockset.Topic(ls.Scope), nil, true); err != nil {
			return err
		}
		if s.cleared == nil {
			s.cleared = map[string]bool{}
		}
		s.cleared[key] = true
		s.log.Info("lock set expired; its retained topic is cleared", "scope", ls.Scope, "version", ls.Version)
	}
	return nil
}

// lockSetsAtBirth publishes, without retain, the newest sets of the
// fleet, of gw's site and of gw on gw's own lock-set topic (NoRetain).
// The gateway checks each set's scope, not the topic it came on, and
// quietly ignores a version it already applied.
func (s *Service) lockSetsAtBirth(ctx context.Context, gw, site string) error {
	sets, err := s.o.Store.LockSets(ctx)
	if err != nil {
		return err
	}
	for _, ls := range sets {
		if ls.Scope != lockset.ScopeFleet && ls.Scope != lockset.Gateway(gw) && (site == "" || ls.Scope != lockset.Site(site)) {
			continue
		}
		if err := s.publishSetTo(ls, lockset.Topic(lockset.Gateway(gw)), false); err != nil {
			s.log.Warn("lock set not sent at birth", "gateway", gw, "scope", ls.Scope, "version", ls.Version, "err", err)
		}
	}
	return nil
}

// lockSetEvent records what a gateway reported about a lock set.
func (s *Service) lockSetEvent(ctx context.Context, gw string, e wire.Event, at time.Time) error {
	scope := e.Attrs["scope"]
	v, _ := strconv.ParseUint(e.Attrs["version"], 10, 64)
	if scope == "" {
		return nil // refused before its scope was known (it did not verify)
	}
	if e.Kind == EvLockSetApplied {
		return s.o.Store.LockSetApplied(ctx, gw, scope, v, at)
	}
	return s.o.Store.LockSetRefused(ctx, gw, scope, v, clip(e.Attrs["reason"]), at)
}

// LockSetView is a scope's newest lock set with, for each gateway the
// scope covers, the version it reported.
type LockSetView struct {
	store.LockSet
	// Current counts the gateways that applied this version (or a newer
	// one); Behind those that did not (yet).
	Current, Behind int
}

// LockSets returns the newest set of every scope with per-gateway status.
func LockSets(ctx context.Context, st *store.Store) ([]LockSetView, error) {
	sets, err := st.LockSets(ctx)
	if err != nil {
		return nil, err
	}
	gws, err := st.Gateways(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]LockSetView, 0, len(sets))
	for _, ls := range sets {
		v, err := lockSetView(ctx, st, ls, gws)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// LockSet returns the newest set of scope with per-gateway status.
func LockSet(ctx context.Context, st *store.Store, scope string) (LockSetView, error) {
	ls, err := st.LockSet(ctx, scope)
	if err != nil {
		return LockSetView{}, err
	}
	gws, err := st.Gateways(ctx)
	if err != nil {
		return LockSetView{}, err
	}
	return lockSetView(ctx, st, ls, gws)
}

func lockSetView(ctx context.Context, st *store.Store, ls store.LockSet, gws []store.Gateway) (LockSetView, error) {
	reported, err := st.LockSetStatuses(ctx, ls.Scope)
	if err != nil {
		return LockSetView{}, err
	}
	by := map[string]store.LockSetStatus{}
	for _, r := range reported {
		by[r.Gateway] = r
	}
	v := LockSetView{LockSet: ls}
	set := lockset.Set{Scope: ls.Scope}
	for _, g := range gws {
		if !set.Applies(g.ID, g.Site) {
			continue
		}
		r, ok := by[g.ID]
		if !ok {
			r = store.LockSetStatus{Gateway: g.ID, Scope: ls.Scope}
		}
		if r.Version >= ls.Version {
			v.Current++
		} else {
			v.Behind++
		}
		v.Gateways = append(v.Gateways, r)
	}
	return v, nil
}
