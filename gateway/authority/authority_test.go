package authority

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

const td = "hospital.example"

func TestParseTarget(t *testing.T) {
	base := "spiffe://" + td + "/"
	for _, tc := range []struct {
		name, in string
		want     string // error substring; "" = valid
		prefix   bool
	}{
		{"vendor identity", base + "vendor/acme-medical/jane", "", false},
		{"service identity", base + "svc/pump-server", "", false},
		{"vendor org prefix", base + "vendor/acme-medical/*", "", true},
		{"service prefix", base + "svc/*", "", true},
		{"one approver role", base + "approver/security/*", "", true},
		{"star", "*", "not a SPIFFE URI", false},
		{"bare name", "jane", "not a SPIFFE URI", false},
		{"empty", "  ", "empty", false},
		{"other trust domain", "spiffe://other.example/vendor/a/b", "not under this gateway's trust domain", false},
		{"whole domain", base + "*", "lock every identity", false},
		{"whole domain double", base + "**", "lock every identity", false},
		{"mid wildcard", base + "vendor/*/jane", "only as the final", false},
		{"double star suffix", base + "vendor/**", "only as the final", false},
		{"every approver", base + "approver/*", "lock out every approver", false},
		{"every gateway", base + "gateway/*", "every gateway", false},
		{"unknown kind", base + "vendr/acme/jane", "identities start with", false},
		{"incomplete identity", base + "vendor/acme-medical", "not a complete identity", false},
		{"bad segment", base + "vendor/acme medical/jane", "only letters", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTarget(tc.in, td)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ParseTarget(%q): %v", tc.in, err)
				}
				if got.Prefix() != tc.prefix {
					t.Fatalf("Prefix() = %v", got.Prefix())
				}
				return
			}
			if !errors.Is(err, ErrBadTarget) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseTarget(%q) = %v, want ErrBadTarget mentioning %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestTargetMatch(t *testing.T) {
	base := "spiffe://" + td + "/"
	org, _ := ParseTarget(base+"vendor/acme-medical/*", td)
	one, _ := ParseTarget(base+"vendor/acme-medical/jane", td)
	for _, tc := range []struct {
		t    Target
		id   string
		want bool
	}{
		{org, base + "vendor/acme-medical/jane", true},
		{org, base + "vendor/acme-medical/joe", true},
		{org, base + "vendor/acme-medical-2/joe", false},
		{org, base + "vendor/acme-medical", false},
		{one, base + "vendor/acme-medical/jane", true},
		{one, base + "vendor/acme-medical/jane2", false},
		{Target{}, base + "vendor/acme-medical/jane", false},
	} {
		if got := tc.t.Match(tc.id); got != tc.want {
			t.Errorf("%s.Match(%s) = %v", tc.t, tc.id, got)
		}
	}
}

type env struct {
	t     *testing.T
	path  string
	clock *clockwork.FakeClock
	a     *Authority
	evCh  chan Event
}

// next awaits the next event.
func (e *env) next() Event {
	e.t.Helper()
	select {
	case ev := <-e.evCh:
		return ev
	case <-time.After(10 * time.Second):
		e.t.Fatal("no event")
	}
	return Event{}
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, path: filepath.Join(t.TempDir(), "authority.db"), clock: clockwork.NewFakeClockAt(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)), evCh: make(chan Event, 100)}
	e.open()
	return e
}

func (e *env) open() {
	a, err := Open(Options{Path: e.path, TrustDomain: td, Clock: e.clock, Events: func(ev Event) { e.evCh <- ev }})
	if err != nil {
		e.t.Fatal(err)
	}
	e.a = a
	e.t.Cleanup(func() { a.Close() })
}

var local = Actor{Kind: KindLocal, Via: "admin", UID: 1000, Name: "jdoe"}

func TestLockLifecycle(t *testing.T) {
	e := newEnv(t)
	jane := "spiffe://" + td + "/vendor/acme-medical/jane"
	var changes []Change
	cancel := e.a.Subscribe(func(c Change) { changes = append(changes, c) })
	l, err := e.a.AddLock("spiffe://"+td+"/vendor/acme-medical/*", e.clock.Now().Add(time.Hour), "incident 77", local)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Matches(jane) || len(changes) != 1 || changes[0].Lock == nil || !changes[0].Lock.Matches(jane) {
		t.Fatalf("lock %+v, changes %+v", l, changes)
	}
	if ok, why := e.a.Locked(jane); !ok || !strings.Contains(why, "incident 77") || !strings.Contains(why, "by spiffe://") {
		t.Fatalf("Locked = %v %q", ok, why)
	}
	if got := e.next(); got.Kind != EvLockAdd || got.Attrs()["actor"] != "local:jdoe(uid=1000)" {
		t.Fatalf("event %+v attrs %v", got, got.Attrs())
	}
	// Survives a restart, then expires on the clock.
	e.a.Close()
	e.open()
	if ok, _ := e.a.Locked(jane); !ok {
		t.Fatal("lock lost across restart")
	}
	e.clock.Advance(time.Hour)
	if got := e.next(); got.Kind != EvLockRemove || got.Reason != "lock expired" {
		t.Fatalf("last event %+v", got)
	}
	if ok, _ := e.a.Locked(jane); ok {
		t.Fatal("lock still in force after its end")
	}
	e.a.Close()
	e.open()
	if n := len(e.a.Locks()); n != 0 {
		t.Fatalf("%d locks after expiry and restart", n)
	}
	cancel()
}

func TestLockRefusals(t *testing.T) {
	e := newEnv(t)
	if _, err := e.a.AddLock("*", time.Time{}, "", local); !errors.Is(err, ErrBadTarget) {
		t.Fatalf("lock * = %v", err)
	}
	if _, err := e.a.AddLock("jane", time.Time{}, "", local); !errors.Is(err, ErrBadTarget) {
		t.Fatalf("lock jane = %v", err)
	}
	if _, err := e.a.AddLock("spiffe://"+td+"/svc/x", time.Time{}, "", Actor{}); !errors.Is(err, ErrBadActor) {
		t.Fatalf("no actor = %v", err)
	}
	if _, err := e.a.AddLock("spiffe://"+td+"/svc/x", e.clock.Now().Add(-time.Second), "", local); err == nil {
		t.Fatal("lock ending in the past accepted")
	}
	if err := e.a.RemoveLock("spiffe://"+td+"/svc/x", local); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remove missing = %v", err)
	}
	if len(e.evCh) != 0 {
		t.Fatalf("refusals emitted %d events", len(e.evCh))
	}
}

func TestTamperLatch(t *testing.T) {
	e := newEnv(t)
	var tampers int
	e.a.Subscribe(func(c Change) {
		if c.Tamper {
			tampers++
		}
	})
	if err := e.a.SetTamper(true); err != nil {
		t.Fatal(err)
	}
	if err := e.a.SetTamper(true); err != nil { // already latched: nothing new
		t.Fatal(err)
	}
	if !e.a.Tampered() || tampers != 1 {
		t.Fatalf("tampered %v, notified %d", e.a.Tampered(), tampers)
	}
	if err := e.a.ClearTamper(local); !errors.Is(err, ErrTamperActive) {
		t.Fatalf("clear while open = %v", err)
	}
	e.a.SetTamper(false)
	e.a.Close()
	e.open()
	if !e.a.Tampered() {
		t.Fatal("latch lost across restart")
	}
	if err := e.a.ClearTamper(local); err != nil || e.a.Tampered() {
		t.Fatalf("clear = %v, tampered %v", err, e.a.Tampered())
	}
	if got := e.next(); got.Kind != EvTamper {
		t.Fatalf("first event %+v", got)
	}
	if got := e.next(); got.Kind != EvTamperClear {
		t.Fatalf("last event %+v", got)
	}
}

func TestImportOnce(t *testing.T) {
	e := newEnv(t)
	old := []Lock{{Identity: "spiffe://" + td + "/vendor/acme-medical/*", Created: e.clock.Now(), Actor: local}}
	if ok, err := e.a.Import(old, true); !ok || err != nil {
		t.Fatalf("import = %v %v", ok, err)
	}
	if ok, _ := e.a.Import(nil, false); ok {
		t.Fatal("second import ran")
	}
	e.a.Close()
	e.open()
	if ok, _ := e.a.Locked("spiffe://" + td + "/vendor/acme-medical/jo"); !ok || !e.a.Tampered() {
		t.Fatal("imported state lost")
	}
}

func TestActorString(t *testing.T) {
	for _, tc := range []struct {
		a    Actor
		want string
	}{
		{Actor{Kind: KindLocal, Via: "admin", UID: 0, Name: "root"}, "local:root(uid=0)"},
		{Actor{Kind: KindLocal, Via: "admin", UID: 1001}, "local:uid=1001"},
		{Actor{Kind: KindLocal, Via: "button"}, "local:button"},
		{Actor{Kind: KindCentral, Approver: "spiffe://td/approver/sec/ann"}, "central:spiffe://td/approver/sec/ann"},
		{Actor{Kind: KindSystem, Via: "expiry"}, "system:expiry"},
	} {
		if got := tc.a.String(); got != tc.want {
			t.Errorf("%+v = %q, want %q", tc.a, got, tc.want)
		}
	}
}
