package authority

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/config"
)

func TestScopesPermit(t *testing.T) {
	ap := "spiffe://" + td + "/approver/"
	s, err := CompileScopes([]config.Approver{
		{Identities: []string{ap + "biomed/*"}, Actions: []string{"approve", "deny"}, Devices: []string{"pump-07", "kind:patient-monitor"}},
		{Identities: []string{ap + "security/**"}, Actions: []string{"lock", "unlock", "revoke", "rebirth"}, Devices: []string{"*"}},
		{Identities: []string{ap + "biomed/ann"}, Actions: []string{"lock", "inventory"}, Devices: []string{"pump-07"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	pump, mon, vent := DeviceRef{ID: "pump-07", Kind: "infusion-pump"}, DeviceRef{ID: "mon-1", Kind: "patient-monitor"}, DeviceRef{ID: "vent-2", Kind: "ventilator"}
	for _, tc := range []struct {
		name, id, action string
		dev              DeviceRef
		want             string // "" permitted; else a substring of the refusal
	}{
		{"device in scope", ap + "biomed/jo", "approve", pump, ""},
		{"kind in scope", ap + "biomed/jo", "deny", mon, ""},
		{"other device", ap + "biomed/jo", "approve", vent, "missing scope: approve on vent-2"},
		{"action not granted", ap + "biomed/jo", "revoke", pump, "missing scope: action revoke"},
		{"unknown identity", ap + "finance/x", "approve", pump, "missing scope: identities"},
		{"gateway-wide with star", ap + "security/a/b", "lock", DeviceRef{}, ""},
		{"gateway-wide needs star", ap + "biomed/ann", "lock", pump, `missing scope: lock on "*"`},
		{"star covers devices", ap + "security/a", "revoke", vent, ""},
		{"unknown grant needs star", ap + "biomed/jo", "approve", DeviceRef{}, `missing scope: approve on "*"`},
		{"inventory needs the action only", ap + "biomed/ann", "inventory", DeviceRef{}, ""},
		{"rebirth not granted", ap + "biomed/ann", "rebirth", DeviceRef{}, "missing scope: action rebirth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Permit(tc.id, tc.action, tc.dev)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrNotPermitted) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Permit = %v, want ErrNotPermitted with %q", err, tc.want)
			}
		})
	}
	var none *Scopes
	if err := none.Permit(ap+"x/y", "unlock", DeviceRef{}); err != nil {
		t.Errorf("no approvers section refused: %v", err)
	}
	empty, _ := CompileScopes(nil)
	if err := empty.Permit(ap+"x/y", "approve", pump); !errors.Is(err, ErrNotPermitted) {
		t.Errorf("empty approvers permitted: %v", err)
	}
}

func TestAuthorityPermitEmitsRefusal(t *testing.T) {
	e := newEnv(t)
	s, _ := CompileScopes([]config.Approver{{Identities: []string{"spiffe://" + td + "/approver/biomed/*"}, Actions: []string{"approve"}, Devices: []string{"pump-07"}}})
	e.a.SetScopes(s)
	jo := "spiffe://" + td + "/approver/biomed/jo"
	if err := e.a.Permit(jo, "approve", DeviceRef{ID: "pump-07"}); err != nil {
		t.Fatal(err)
	}
	if err := e.a.Permit(jo, "approve", DeviceRef{ID: "mon-1"}); !errors.Is(err, ErrNotPermitted) {
		t.Fatal(err)
	}
	ev := e.next()
	at := ev.Attrs()
	if ev.Kind != EvRefused || at["actor"] != "central:"+jo || at["action"] != "approve" || at["device"] != "mon-1" ||
		!strings.Contains(at["reason"], "missing scope: approve on mon-1") || ev.Severity() != "warning" {
		t.Fatalf("event %+v attrs %v", ev, at)
	}
}

// reopen closes the authority and opens it again on clock.
func (e *env) reopen(clock *clockwork.FakeClock) {
	e.a.Close()
	e.clock = clock
	e.open()
}

func (e *env) drain() {
	for len(e.evCh) > 0 {
		<-e.evCh
	}
}

func TestClockGuardRestartWithClockSetBack(t *testing.T) {
	e := newEnv(t)
	jane := "spiffe://" + td + "/vendor/acme-medical/jane"
	if _, err := e.a.AddLock(jane, e.clock.Now().Add(30*time.Minute), "", local); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(10 * time.Minute) // the mark follows the clock
	mark := e.clock.Now()
	if err := e.a.CheckClock(); err != nil {
		t.Fatal(err)
	}
	e.drain()
	// Restart a day earlier (a board without RTC, a rolled back clock).
	e.reopen(clockwork.NewFakeClockAt(mark.Add(-24 * time.Hour)))
	ev := e.next()
	if ev.Kind != EvClockBehind || !ev.Mark.Equal(mark) || ev.Severity() != "alarm" || ev.Attrs()["trusted_time"] == "" || ev.Attrs()["clock"] == "" {
		t.Fatalf("event %+v", ev)
	}
	if err := e.a.CheckClock(); !errors.Is(err, ErrClockBehind) || !strings.Contains(err.Error(), "fix the clock") {
		t.Fatalf("CheckClock = %v", err)
	}
	if !e.a.ClockBehind() || !e.a.TrustedTime().Equal(mark) {
		t.Fatal("guard state")
	}
	// The lock is still in force, whatever the clock says.
	if ok, _ := e.a.Locked(jane); !ok {
		t.Fatal("lock lost")
	}
	// NTP sets the clock right: passing the mark clears the guard.
	e.clock.Advance(24*time.Hour + time.Minute)
	if ev := e.next(); ev.Kind != EvClockOK {
		t.Fatalf("event %+v", ev)
	}
	if err := e.a.CheckClock(); err != nil {
		t.Fatal(err)
	}
}

func TestClockGuardDefersLockExpiry(t *testing.T) {
	e := newEnv(t)
	jane := "spiffe://" + td + "/vendor/acme-medical/jane"
	e.clock.Advance(2 * time.Minute)
	e.reopen(clockwork.NewFakeClockAt(e.clock.Now().Add(-time.Hour)))
	if ev := e.next(); ev.Kind != EvClockBehind {
		t.Fatalf("event %+v", ev)
	}
	// A lock added while the clock is behind reaches its end: it stays.
	if _, err := e.a.AddLock(jane, e.clock.Now().Add(5*time.Minute), "", local); err != nil {
		t.Fatal(err)
	}
	e.drain()
	e.clock.Advance(5 * time.Minute)
	if ev := e.next(); ev.Kind != EvLockDeferred || !strings.Contains(ev.Reason, "clock is behind") {
		t.Fatalf("event %+v", ev)
	}
	if ok, _ := e.a.Locked(jane); !ok {
		t.Fatal("lock ended on a clock behind trusted time")
	}
	// Once the clock passed the mark, the deferred expiry acts.
	e.clock.Advance(time.Hour)
	for ev := e.next(); ev.Kind != EvLockRemove; ev = e.next() {
	}
	if ok, _ := e.a.Locked(jane); ok {
		t.Fatal("lock in force after its end with a sane clock")
	}
}

func TestForwardJumpAtBootKeepsLocks(t *testing.T) {
	e := newEnv(t)
	jane := "spiffe://" + td + "/vendor/acme-medical/jane"
	start := e.clock.Now()
	if _, err := e.a.AddLock(jane, start.Add(time.Hour), "incident", local); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(20 * time.Minute)
	e.drain()
	// Boot a year ahead: the lock had 40 minutes left.
	ahead := start.Add(365 * 24 * time.Hour)
	e.reopen(clockwork.NewFakeClockAt(ahead))
	ev := e.next()
	if ev.Kind != EvLockDeferred || ev.Target != jane || !ev.Clock.Equal(ahead) || !ev.Mark.Equal(start.Add(20*time.Minute)) ||
		!ev.Until.Equal(ahead.Add(40*time.Minute)) || !strings.Contains(ev.Reason, "passed while the gateway was off") {
		t.Fatalf("event %+v", ev)
	}
	if ok, _ := e.a.Locked(jane); !ok {
		t.Fatal("lock deleted by a forward jump")
	}
	// It ends after the 40 minutes it had left, with an event.
	e.clock.Advance(40 * time.Minute)
	for ev := e.next(); ev.Kind != EvLockRemove; ev = e.next() {
	}
	if ok, _ := e.a.Locked(jane); ok {
		t.Fatal("lock outlived its remaining time")
	}
}

func TestBuildTimeIsTheFloor(t *testing.T) {
	dir := t.TempDir()
	built := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(built.Add(-48 * time.Hour))
	var evs []Event
	a, err := Open(Options{Path: dir + "/a.db", TrustDomain: td, Clock: clock, BuildTime: built, Events: func(e Event) { evs = append(evs, e) }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.CheckClock(); !errors.Is(err, ErrClockBehind) || len(evs) == 0 || evs[0].Kind != EvClockBehind {
		t.Fatalf("CheckClock before build time = %v, events %v", err, evs)
	}
}

func TestSamePerson(t *testing.T) {
	ap := func(u string) Actor { return Actor{Kind: KindCentral, Via: "command", Approver: u} }
	jdoe := Actor{Kind: KindLocal, Via: "admin", UID: 1000, Name: "jdoe"}
	button := Actor{Kind: KindLocal, Via: "button", UID: -1}
	for _, tc := range []struct {
		a, b Actor
		same bool
	}{
		{jdoe, ap("spiffe://" + td + "/approver/biomed/jdoe"), true},
		{jdoe, ap("spiffe://" + td + "/approver/biomed/JDoe"), true},
		{ap("spiffe://" + td + "/approver/biomed/ann"), ap("spiffe://" + td + "/approver/security/ann"), true},
		{jdoe, ap("spiffe://" + td + "/approver/biomed/ann"), false},
		{jdoe, Actor{Kind: KindLocal, Via: "admin", UID: 0, Name: "root"}, false},
		{button, ap("spiffe://" + td + "/approver/biomed/ann"), false},
		{button, button, false},
		{Actor{Kind: KindLocal, Via: "admin", UID: 7}, Actor{Kind: KindLocal, Via: "admin", UID: 7}, true},
	} {
		if got := SamePerson(tc.a, tc.b); got != tc.same {
			t.Errorf("SamePerson(%s, %s) = %v", tc.a, tc.b, got)
		}
	}
}

func TestActorJSONCarriesTheName(t *testing.T) {
	b, err := json.Marshal(Lock{Identity: "spiffe://" + td + "/svc/x", Actor: local})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"id":"local:jdoe(uid=1000)"`) || !strings.Contains(string(b), `"name":"jdoe"`) {
		t.Fatalf("json %s", b)
	}
	var back Lock
	if err := json.Unmarshal(b, &back); err != nil || back.Actor != local {
		t.Fatalf("round trip %+v %v", back.Actor, err)
	}
	root := Actor{Kind: KindLocal, Via: "admin", UID: 0, Name: "root"}
	if root.String() != "local:root(uid=0)" {
		t.Fatal(root.String())
	}
}

func TestResetTrustedTime(t *testing.T) {
	e := newEnv(t)
	e.clock.Advance(365 * 24 * time.Hour) // a clock that ran a year ahead
	if err := e.a.CheckClock(); err != nil {
		t.Fatal(err)
	}
	e.reopen(clockwork.NewFakeClockAt(e.clock.Now().Add(-365 * 24 * time.Hour))) // NTP set it right
	if err := e.a.CheckClock(); !errors.Is(err, ErrClockBehind) {
		t.Fatal(err)
	}
	if err := e.a.ResetTrustedTime(Actor{Kind: KindCentral, Approver: "spiffe://" + td + "/approver/a/b"}); !errors.Is(err, ErrBadActor) {
		t.Fatalf("central reset: %v", err)
	}
	e.drain()
	if err := e.a.ResetTrustedTime(local); err != nil {
		t.Fatal(err)
	}
	if ev := e.next(); ev.Kind != EvClockReset || ev.Attrs()["actor"] != "local:jdoe(uid=1000)" || ev.Attrs()["trusted_time"] == "" {
		t.Fatalf("event %+v", ev)
	}
	if ev := e.next(); ev.Kind != EvClockOK {
		t.Fatalf("event %+v", ev)
	}
	if err := e.a.CheckClock(); err != nil {
		t.Fatal(err)
	}
}
