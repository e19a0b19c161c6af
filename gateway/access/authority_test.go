package access

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/gateway/authority"
)

// pump13 is a dual-control device with two service ports.
func withPump13(o *Options) {
	o.Devices = append(o.Devices, Device{ID: "pump-13", Org: "acme-medical", Ports: []int{23, 8080},
		Approval: []string{KindLocal, KindCentral}, MaxSession: time.Hour, Host: pumpHost})
}

func TestDualControlNeedsTwoPersons(t *testing.T) {
	e := newEnv(t)
	id := e.request(e.jo, "pump-11:23")
	jdoe := Actor{Kind: KindLocal, Via: "admin", UID: 1000, Name: "jdoe"}
	if _, err := e.b.Approve(id, jdoe); err != nil {
		t.Fatal(err)
	}
	// The same person signing centrally (another role, same PERSON) does
	// not complete dual control.
	same := Actor{Kind: KindCentral, Via: "command", Approver: "spiffe://" + td + "/approver/biomed/jdoe"}
	g, err := e.b.Approve(id, same)
	if !errors.Is(err, ErrSamePerson) || !strings.Contains(err.Error(), "local:jdoe(uid=1000)") {
		t.Fatalf("same person twice: %+v %v", g, err)
	}
	s := e.b.Snapshot()
	if len(s.Requests) != 1 || s.Requests[0].State != StatePending || len(s.Requests[0].Approvals) != 1 {
		t.Fatalf("request after the same person twice: %+v", s.Requests)
	}
	// A second person completes it.
	if g, err = e.b.Approve(id, central); err != nil || g.State != StateActive {
		t.Fatalf("%+v %v", g, err)
	}
	ev := e.ev.wait(t, EvApprove, func(ev Event) bool { return ev.Complete })
	if ev.Actor.Approver != central.Approver || ev.Grant != id || ev.Vendor != joURI || ev.Device != "pump-11" || fmt.Sprint(ev.Ports) != "[23]" {
		t.Fatalf("approve event %+v", ev)
	}
}

func TestSignedApprovalBindsTheRequest(t *testing.T) {
	e := newEnv(t, withPump13)
	id := e.request(e.jo, "pump-13:23")
	// Central signs an approval of what it saw: port 23.
	signed := &Binding{Vendor: joURI, Device: "pump-13", Ports: []int{23}}
	// Before any approval, the vendor widens the request to 8080.
	if re := e.refused(e.jo, "pump-13:8080"); re.Code != CodePending || re.Request != id {
		t.Fatalf("%+v", re)
	}
	if _, err := e.b.Approve(id, local); err != nil {
		t.Fatal(err)
	}
	// The earlier signature does not approve the widened request, nor
	// does an approval that names no binding.
	if _, err := e.b.ApproveBound(id, central, signed); !errors.Is(err, ErrBinding) || !strings.Contains(err.Error(), "ports 23, the request's are 23, 8080") {
		t.Fatalf("stale binding: %v", err)
	}
	if _, err := e.b.Approve(id, central); !errors.Is(err, ErrBinding) {
		t.Fatalf("unbound central approval of a grown request: %v", err)
	}
	for _, b := range []*Binding{
		{Vendor: "spiffe://" + td + "/vendor/acme-medical/other", Device: "pump-13", Ports: []int{23, 8080}},
		{Vendor: joURI, Device: "pump-11", Ports: []int{23, 8080}},
	} {
		if _, err := e.b.ApproveBound(id, central, b); !errors.Is(err, ErrBinding) {
			t.Fatalf("binding %+v: %v", b, err)
		}
	}
	if s := e.b.Snapshot(); len(s.Requests) != 1 || len(s.Requests[0].Approvals) != 1 {
		t.Fatalf("%+v", s.Requests)
	}
	g, err := e.b.ApproveBound(id, central, &Binding{Vendor: joURI, Device: "pump-13", Ports: []int{8080, 23}})
	if err != nil || g.State != StateActive {
		t.Fatalf("%+v %v", g, err)
	}
}

func TestNoWideningAfterAnApproval(t *testing.T) {
	e := newEnv(t, withPump13)
	id := e.request(e.jo, "pump-13:23")
	if _, err := e.b.Approve(id, local); err != nil {
		t.Fatal(err)
	}
	re := e.refused(e.jo, "pump-13:8080")
	if re.Code != CodePending || re.Request != id || !strings.Contains(re.Reason, "not part of it") {
		t.Fatalf("%+v", re)
	}
	if s := e.b.Snapshot(); fmt.Sprint(s.Requests[0].Ports) != "[23]" || s.Requests[0].Rev != 0 {
		t.Fatalf("request widened after an approval: %+v", s.Requests[0])
	}
	// The unbound central approval still matches what was announced.
	if g, err := e.b.Approve(id, central); err != nil || g.State != StateActive || fmt.Sprint(g.Ports) != "[23]" {
		t.Fatalf("%+v %v", g, err)
	}
	// Port 8080 now needs a request of its own.
	if other := e.request(e.jo, "pump-13:8080"); other == id {
		t.Fatal("8080 joined the approved grant")
	}
}

func TestButtonWithSeveralPendingApprovesNothing(t *testing.T) {
	e := newEnv(t)
	a := e.request(e.jo, "pump-07:23")
	e.led.wait(t, LEDState{Pending: true})
	b := e.request(e.jo, "pump-11:23")
	e.led.wait(t, LEDState{Pending: true, Several: true})
	if _, err := e.b.ApproveByButton(); !errors.Is(err, ErrNoneOrMany) {
		t.Fatalf("button with two pending: %v", err)
	}
	s := e.b.Snapshot()
	if len(s.Requests) != 2 || len(s.Grants) != 0 || !s.LED.Several {
		t.Fatalf("%+v", s)
	}
	if n := e.ev.count(EvApprove); n != 0 {
		t.Fatalf("%d approvals", n)
	}
	// Deny one: the button works again and names the request it approved.
	if err := e.b.Deny(b, local); err != nil {
		t.Fatal(err)
	}
	e.led.wait(t, LEDState{Pending: true})
	g, err := e.b.ApproveByButton()
	if err != nil || g.ID != a {
		t.Fatalf("%+v %v", g, err)
	}
	ev := e.ev.wait(t, EvApprove, nil)
	at := ev.Attrs()
	if at["grant"] != a || at["vendor"] != joURI || at["device"] != "pump-07" || at["ports"] != "23" || at["actor"] != "local:button" {
		t.Fatalf("approval event %v", at)
	}
}

func TestRestartWithClockSetBack(t *testing.T) {
	e := newEnv(t)
	id := e.request(e.jo, "pump-07:23")
	if _, err := e.b.Approve(id, local); err != nil {
		t.Fatal(err)
	}
	lockee := "spiffe://" + td + "/vendor/other-medical/x"
	if _, err := e.auth.AddLock(lockee, e.clock.Now().Add(30*time.Minute), "", local); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(20 * time.Minute)
	if err := e.auth.CheckClock(); err != nil {
		t.Fatal(err)
	}
	mark := e.clock.Now()
	// Restart with the clock set back (no RTC, NTP not yet synced); the
	// test PKI's certificates stay valid then.
	back := mark.Add(-10 * time.Minute)
	e.restartAt(back)
	e.authWait(authority.EvClockBehind)
	s := e.b.Snapshot()
	if len(s.Grants) != 1 || s.Grants[0].Deadline.Sub(back) != 40*time.Minute {
		t.Fatalf("grant after restart: %+v", s.Grants)
	}
	if len(s.Locks) != 1 || s.Locks[0].Identity != lockee {
		t.Fatalf("locks after restart: %+v", s.Locks)
	}
	// Vendor access waits for the clock.
	if re := e.refused(e.jo, "pump-07:23"); re.Code != CodeClockBehind {
		t.Fatalf("CONNECT on a clock behind: %+v", re)
	}
	if ok, _ := e.auth.Locked(lockee); !ok {
		t.Fatal("lock lost at a restart with the clock set back")
	}
	// The clock passes the mark: access works again.
	e.clock.Advance(11 * time.Minute)
	e.authWait(authority.EvClockOK)
	e.tunnel(e.jo, "pump-07:23").Close()
	// The grant still ends after the 40 minutes it had left.
	e.clock.Advance(29 * time.Minute)
	e.ev.wait(t, EvGrantExpired, func(ev Event) bool { return ev.Grant == id })
}
