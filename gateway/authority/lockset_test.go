package authority

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/wire/lockset"
)

func drain(e *env) []Event {
	var out []Event
	for {
		select {
		case ev := <-e.evCh:
			out = append(out, ev)
		default:
			return out
		}
	}
}

func targets(a *Authority) []string {
	var out []string
	for _, l := range a.Locks() {
		out = append(out, l.Identity)
	}
	return out
}

func TestApplyLockSet(t *testing.T) {
	e := newEnv(t)
	v := "spiffe://" + td + "/vendor/"
	sec, ciso := "spiffe://"+td+"/approver/security/jdoe", "spiffe://"+td+"/approver/ciso/asmith"
	now := e.clock.Now()
	set := func(scope string, version uint64, locks ...string) *lockset.Set {
		s := &lockset.Set{TrustDomain: td, Version: version, IssuedAt: now.UnixMilli(), Expires: now.Add(7 * 24 * time.Hour).UnixMilli(),
			Scope: scope, Approvers: []string{sec, ciso}}
		for _, l := range locks {
			s.Locks = append(s.Locks, lockset.Lock{Target: l, Reason: "fleet incident"})
		}
		return s
	}
	if _, err := e.a.AddLock(v+"local/bob", time.Time{}, "locked on the gateway", local); err != nil {
		t.Fatal(err)
	}
	drain(e)

	// v1: two locks.
	added, removed, err := e.a.ApplyLockSet(set(lockset.ScopeFleet, 1, v+"acme/*", v+"beta/eve"))
	if err != nil || len(added) != 2 || len(removed) != 0 {
		t.Fatalf("v1: added %v removed %v err %v", added, removed, err)
	}
	evs := drain(e)
	last := evs[len(evs)-1]
	if last.Kind != EvLockSetApplied || last.Version != 1 || last.Attrs()["version"] != "1" || last.Attrs()["added"] != v+"acme/* "+v+"beta/eve" {
		t.Fatalf("v1 event %+v attrs %v", last, last.Attrs())
	}
	if ok, _ := e.a.Locked(v + "acme/jane"); !ok {
		t.Fatal("v1 lock not in force")
	}

	// v2 drops beta/eve and the local lock's target: the local lock stays.
	added, removed, err = e.a.ApplyLockSet(set(lockset.ScopeFleet, 2, v+"acme/*"))
	if err != nil || len(added) != 0 || !slices.Equal(removed, []string{v + "beta/eve"}) {
		t.Fatalf("v2: added %v removed %v err %v", added, removed, err)
	}
	if got := targets(e.a); !slices.Equal(got, []string{v + "acme/*", v + "local/bob"}) {
		t.Fatalf("after v2: %v", got)
	}
	drain(e)

	// Old versions are refused with an event; the version applied, which
	// the retained topic delivers at every connection, quietly.
	for _, ver := range []uint64{1, 2} {
		if _, _, err := e.a.ApplyLockSet(set(lockset.ScopeFleet, ver, v+"beta/eve")); !errors.Is(err, ErrStaleLockSet) {
			t.Fatalf("version %d again: %v", ver, err)
		}
	}
	if evs := drain(e); len(evs) != 1 || evs[0].Kind != EvLockSetRefused || evs[0].Version != 1 {
		t.Fatalf("refusal events %+v", evs)
	}

	// A site set shares a target: the fleet dropping it keeps it.
	if _, _, err := e.a.ApplyLockSet(set(lockset.Site("st-a"), 1, v+"acme/*")); err != nil {
		t.Fatal(err)
	}
	if _, removed, err := e.a.ApplyLockSet(set(lockset.ScopeFleet, 3)); err != nil || len(removed) != 0 {
		t.Fatalf("fleet v3: removed %v err %v", removed, err)
	}
	if ok, _ := e.a.Locked(v + "acme/jane"); !ok {
		t.Fatal("a lock the site set still holds was removed")
	}

	// The versions survive a restart.
	e.a.Close()
	e.open()
	if _, _, err := e.a.ApplyLockSet(set(lockset.ScopeFleet, 3)); !errors.Is(err, ErrStaleLockSet) {
		t.Fatalf("after restart, v3 again: %v", err)
	}
	st, err := e.a.LockSets()
	if err != nil || len(st) != 2 || st[0].Scope != "fleet" || st[0].Version != 3 || st[1].Version != 1 {
		t.Fatalf("LockSets = %+v, %v", st, err)
	}
	if _, removed, err := e.a.ApplyLockSet(set(lockset.Site("st-a"), 2)); err != nil || len(removed) != 1 {
		t.Fatalf("site v2: removed %v err %v", removed, err)
	}
	if got := targets(e.a); !slices.Equal(got, []string{v + "local/bob"}) {
		t.Fatalf("at the end: %v", got)
	}
}

func TestApplyLockSetRefusals(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	sec := "spiffe://" + td + "/approver/security/jdoe"
	bio := "spiffe://" + td + "/approver/biomed/ann"
	s, err := CompileScopes([]config.Approver{
		{Identities: []string{"spiffe://" + td + "/approver/security/*"}, Actions: []string{"lock"}, Devices: []string{"*"}},
		{Identities: []string{bio}, Actions: []string{"lock"}, Devices: []string{"pump-07"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.a.SetScopes(s)
	set := &lockset.Set{TrustDomain: td, Version: 1, IssuedAt: now.UnixMilli(), Expires: now.Add(time.Hour).UnixMilli(),
		Scope: "site/st-a", Locks: []lockset.Lock{{Target: "spiffe://" + td + "/vendor/acme/*"}}}

	set.Approvers = []string{bio}
	if _, _, err := e.a.ApplyLockSet(set); !errors.Is(err, ErrNotPermitted) {
		t.Fatalf("approver without lock on *: %v", err)
	}
	set.Approvers = []string{sec}
	e.clock.Advance(time.Hour)
	if _, _, err := e.a.ApplyLockSet(set); err == nil {
		t.Fatal("expired set applied")
	}
	if n := len(e.a.Locks()); n != 0 {
		t.Fatalf("%d locks after refusals", n)
	}
	evs := drain(e)
	if len(evs) != 2 || evs[0].Kind != EvLockSetRefused || evs[1].Kind != EvLockSetRefused {
		t.Fatalf("events %+v", evs)
	}
}
