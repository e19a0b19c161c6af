package store_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/central/store/storetest"
)

// TestCommandsAndLockSets: commands, their targets through every state,
// expiry, the queries the command queue uses, and lock sets with the
// versions gateways applied, on both databases.
func TestCommandsAndLockSets(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		if _, err := s.Apply(ctx, func(tx *store.Tx) error {
			for _, g := range []store.Gateway{{ID: "gw-1", Site: "a"}, {ID: "gw-2", Site: "a"}, {ID: "gw-3", Site: "b"}} {
				if err := tx.PutGateway(g); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if ids, err := s.GatewaysAt(ctx, "a"); err != nil || len(ids) != 2 || ids[0] != "gw-1" {
			t.Fatalf("site a: %v %v", ids, err)
		}
		if ids, _ := s.GatewaysAt(ctx, ""); len(ids) != 3 {
			t.Fatalf("fleet: %v", ids)
		}
		lock := store.Command{ID: "c1", Name: "lock", Args: []string{"spiffe://h/vendor/acme/*"}, Scope: "site/a", Nonce: "aa",
			Signer: "spiffe://h/approver/sec/ann", SubmittedBy: "spiffe://h/approver/sec/ann", Note: "incident 7",
			Issued: t0, Expires: t0.Add(48 * time.Hour), Created: t0, Signed: []byte{1, 2, 3}}
		unlock := store.Command{ID: "c2", Name: "unlock", Args: []string{"x"}, Scope: "gateway/gw-3", Nonce: "bb", Signer: "s", SubmittedBy: "s",
			Issued: t0, Expires: t0.Add(5 * time.Minute), Created: t0.Add(time.Second), Signed: []byte{4}}
		if _, err := s.Apply(ctx, func(tx *store.Tx) error {
			if err := tx.AddCommand(lock, []store.CommandTarget{{Gateway: "gw-1", State: store.TargetQueued, Queued: t0},
				{Gateway: "gw-2", State: store.TargetQueued, Queued: t0}}); err != nil {
				return err
			}
			return tx.AddCommand(unlock, []store.CommandTarget{{Gateway: "gw-3", State: store.TargetQueued, Queued: t0}})
		}); err != nil {
			t.Fatal(err)
		}
		_, err := s.Apply(ctx, func(tx *store.Tx) error {
			return tx.AddCommand(store.Command{ID: "c3", Nonce: "aa", Scope: "fleet", Name: "deny"}, nil)
		})
		if !errors.Is(err, store.ErrDuplicate) {
			t.Fatalf("same nonce: %v", err)
		}
		if c, err := s.CommandByNonce(ctx, "aa"); err != nil || c.ID != "c1" || string(c.Signed) != "\x01\x02\x03" || c.Args[0] != "spiffe://h/vendor/acme/*" {
			t.Fatalf("by nonce: %+v %v", c, err)
		}
		// gw-1 delivered then applied; gw-2 delivered then rejected.
		if err := s.PutTarget(ctx, store.CommandTarget{Command: "c1", Gateway: "gw-1", State: store.TargetApplied, Queued: t0,
			Delivered: t0.Add(time.Second), Deliveries: 1, Applied: t0.Add(2 * time.Second), Result: "locked"}); err != nil {
			t.Fatal(err)
		}
		if err := s.PutTarget(ctx, store.CommandTarget{Command: "c1", Gateway: "gw-2", State: store.TargetDelivered, Queued: t0,
			Delivered: t0.Add(time.Second), Deliveries: 2}); err != nil {
			t.Fatal(err)
		}
		if p, err := s.PendingFor(ctx, "gw-2"); err != nil || len(p) != 1 || p[0].Command.ID != "c1" || p[0].Target.Deliveries != 2 {
			t.Fatalf("pending gw-2: %+v %v", p, err)
		}
		if p, _ := s.PendingFor(ctx, "gw-1"); len(p) != 0 {
			t.Fatalf("pending gw-1: %+v", p)
		}
		if q, err := s.PendingQueued(ctx, t0); err != nil || len(q) != 1 || q[0].Command.ID != "c2" {
			t.Fatalf("queued: %+v %v", q, err)
		}
		// A gateway that appears later at site a gets c1; one at b does not.
		if cs, err := s.ScopedActive(ctx, "gw-9", "a", t0); err != nil || len(cs) != 1 || cs[0].ID != "c1" {
			t.Fatalf("scoped for a new gateway: %+v %v", cs, err)
		}
		if cs, _ := s.ScopedActive(ctx, "gw-1", "a", t0); len(cs) != 0 {
			t.Fatalf("scoped for a gateway that has it: %+v", cs)
		}
		if cs, _ := s.ScopedActive(ctx, "gw-9", "b", t0); len(cs) != 0 {
			t.Fatalf("scoped for site b: %+v", cs)
		}
		// The unlock expires after 5 minutes; the lock does not.
		n, err := s.ExpireTargets(ctx, t0.Add(6*time.Minute))
		if err != nil || n != 1 {
			t.Fatalf("expired %d %v", n, err)
		}
		c, err := s.Command(ctx, "c2")
		if err != nil || len(c.Targets) != 1 || c.Targets[0].State != store.TargetExpired || !c.Targets[0].Expired.Equal(t0.Add(6*time.Minute)) {
			t.Fatalf("c2: %+v %v", c, err)
		}
		c, _ = s.Command(ctx, "c1")
		if c.States[store.TargetApplied] != 1 || c.States[store.TargetDelivered] != 1 || c.Targets[0].Result != "locked" || c.Note != "incident 7" {
			t.Fatalf("c1: %+v", c)
		}
		list, err := s.Commands(ctx, 10)
		if err != nil || len(list) != 2 || list[0].ID != "c2" || list[1].States[store.TargetApplied] != 1 || list[0].States[store.TargetExpired] != 1 {
			t.Fatalf("list: %+v %v", list, err)
		}
		if _, err := s.Command(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing: %v", err)
		}

		// Lock sets: newest per scope, duplicates refused, gateway status.
		add := func(scope string, v uint64) error {
			_, err := s.Apply(ctx, func(tx *store.Tx) error {
				return tx.AddLockSet(store.LockSet{Scope: scope, Version: v, Issued: t0, Expires: t0.Add(time.Hour), Approvers: []string{"a", "b"},
					Locks: []store.LockSetLock{{Target: "spiffe://h/vendor/acme/*", Reason: "r"}}, SubmittedBy: "a", Created: t0, Signed: []byte{byte(v)}})
			})
			return err
		}
		for _, x := range []struct {
			scope string
			v     uint64
		}{{"fleet", 1}, {"fleet", 2}, {"site/a", 1}} {
			if err := add(x.scope, x.v); err != nil {
				t.Fatal(err)
			}
		}
		if err := add("fleet", 2); !errors.Is(err, store.ErrDuplicate) {
			t.Fatalf("duplicate version: %v", err)
		}
		sets, err := s.LockSets(ctx)
		if err != nil || len(sets) != 2 || sets[0].Scope != "fleet" || sets[0].Version != 2 || sets[0].Signed[0] != 2 || sets[0].Locks[0].Reason != "r" {
			t.Fatalf("sets %+v %v", sets, err)
		}
		if _, err := s.Apply(ctx, func(tx *store.Tx) error {
			v, err := tx.NewestLockSetVersion("fleet")
			if v != 2 {
				t.Errorf("newest %d", v)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if ls, err := s.LockSet(ctx, "site/a"); err != nil || ls.Version != 1 {
			t.Fatalf("site set %+v %v", ls, err)
		}
		if _, err := s.LockSet(ctx, "site/zz"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing set: %v", err)
		}
		if err := s.LockSetApplied(ctx, "gw-1", "fleet", 2, t0); err != nil {
			t.Fatal(err)
		}
		if err := s.LockSetApplied(ctx, "gw-1", "fleet", 1, t0.Add(time.Minute)); err != nil { // older: ignored
			t.Fatal(err)
		}
		if err := s.LockSetRefused(ctx, "gw-1", "fleet", 1, "older", t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		st, err := s.LockSetStatuses(ctx, "fleet")
		if err != nil || len(st) != 1 || st[0].Version != 2 || !st[0].Applied.Equal(t0) || st[0].RefusedVersion != 1 || st[0].RefusedReason != "older" {
			t.Fatalf("status %+v %v", st, err)
		}
	})
}

// TestLockSetVersionsAcrossInstances: two central instances on one
// PostgreSQL compare and add lock-set versions at once; the second waits
// for the first's transaction, so it sees version 5 and an older version
// never lands after a newer one.
func TestLockSetVersionsAcrossInstances(t *testing.T) {
	dsn := storetest.Postgres(t)
	ctx := context.Background()
	a, b := open(t, dsn), open(t, dsn)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	set := func(v uint64) store.LockSet {
		return store.LockSet{Scope: "fleet", Version: v, Issued: t0, Expires: t0.Add(time.Hour), SubmittedBy: "s", Created: t0, Signed: []byte{byte(v)}}
	}
	holding, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, err := a.Apply(ctx, func(tx *store.Tx) error {
			if _, err := tx.NewestLockSetVersion("fleet"); err != nil {
				return err
			}
			close(holding)
			<-release
			return tx.AddLockSet(set(5))
		})
		first <- err
	}()
	<-holding
	second := make(chan uint64, 1)
	go func() {
		var seen uint64
		_, err := b.Apply(ctx, func(tx *store.Tx) error {
			v, err := tx.NewestLockSetVersion("fleet")
			seen = v
			if err != nil || v >= 4 {
				return err
			}
			return tx.AddLockSet(set(4))
		})
		if err != nil {
			t.Error(err)
		}
		second <- seen
	}()
	// The second instance waits on the first's table lock.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var waiting int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'locksets'::regclass`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			close(release)
			t.Fatal("the second instance did not wait for the first's lock-set transaction")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if v := <-second; v != 5 {
		t.Fatalf("the second instance saw version %d, want 5", v)
	}
	if ls, err := a.LockSets(ctx); err != nil || len(ls) != 1 || ls[0].Version != 5 {
		t.Fatalf("stored: %+v %v", ls, err)
	}
}
