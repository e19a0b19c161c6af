package agent

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/authority"
	"github.com/wardgate/wardgate/hal"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/brokertest"
	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/envelope"
)

// central is a "central" MQTT client: it publishes signed commands and
// collects the gateway's replies.
type central struct {
	c       paho.Client
	mu      sync.Mutex
	replies []wire.Reply
	ch      chan struct{}
}

func newCentral(t *testing.T, pki *certstest.MiniPKI, url, gw string) *central {
	t.Helper()
	id := pki.Issue(t, "central", "")
	cl := &central{ch: make(chan struct{}, 16)}
	co := paho.NewClientOptions().AddBroker(url).SetClientID("central-test").SetTLSConfig(pki.ClientTLS(id)).
		SetProtocolVersion(4).SetCleanSession(true)
	cl.c = paho.NewClient(co)
	if tok := cl.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("central connect: %v", tok.Error())
	}
	t.Cleanup(func() { cl.c.Disconnect(100) })
	verify := envelope.RootsVerifier(pki.Roots())
	tok := cl.c.Subscribe(wire.Topic(gw, envelope.KindReply), 1, func(_ paho.Client, m paho.Message) {
		msg, err := envelope.Verify(m.Payload(), verify, time.Now())
		if err != nil {
			return
		}
		var r wire.Reply
		if envelope.Unmarshal(msg.Body, &r) != nil {
			return
		}
		cl.mu.Lock()
		cl.replies = append(cl.replies, r)
		cl.mu.Unlock()
		select {
		case cl.ch <- struct{}{}:
		default:
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return cl
}

// send publishes a command signed by appr and awaits its reply.
func (cl *central) send(t *testing.T, appr *certstest.Identity, gw, name string, args ...string) wire.Reply {
	t.Helper()
	msg, err := command.Sign(appr.Key, appr.Chain, gw, name, args, time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	cl.mu.Lock()
	n := len(cl.replies)
	cl.mu.Unlock()
	if tok := cl.c.Publish(wire.CommandTopic(gw), 1, false, msg); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	deadline := time.After(20 * time.Second)
	for {
		cl.mu.Lock()
		if len(cl.replies) > n {
			r := cl.replies[n]
			cl.mu.Unlock()
			return r
		}
		cl.mu.Unlock()
		select {
		case <-cl.ch:
		case <-deadline:
			t.Fatalf("no reply to %s", name)
		}
	}
}

// approver issues spiffe://hospital.example/approver/biomed/PERSON for an
// hour (approver certificates may live 24 h at most).
func (e *env) approver(person string) *certstest.Identity {
	c := e.cert("spiffe://hospital.example/approver/biomed/"+person, time.Hour)
	id := &certstest.Identity{Key: c.PrivateKey.(crypto.Signer)}
	for _, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			e.t.Fatal(err)
		}
		id.Chain = append(id.Chain, x)
	}
	return id
}

// recentEvent returns the latest event of kind the agent kept.
func (e *env) recentEvent(kind string) (recentEvent, bool) { return lastEvent(e.a, kind) }

func lastEvent(a *Agent, kind string) (recentEvent, bool) {
	a.events.mu.Lock()
	defer a.events.mu.Unlock()
	for i := len(a.events.recent) - 1; i >= 0; i-- {
		if a.events.recent[i].Kind == kind {
			return a.events.recent[i], true
		}
	}
	return recentEvent{}, false
}

const scopedApprovers = `approvers:
  - identities: ["spiffe://hospital.example/approver/biomed/alice", "spiffe://hospital.example/approver/biomed/jdoe"]
    actions: [approve, deny]
    devices: [pump-07]
  - identities: ["spiffe://hospital.example/approver/biomed/bob"]
    actions: [approve, deny, revoke]
    devices: [pump-08]
`

func TestApproverScopesAndDualControlOverMosquitto(t *testing.T) {
	pki := certstest.NewMini(t)
	broker := brokertest.StartMosquitto(t, pki)
	e := newEnv(t)
	e.ca = certs.DevCAFrom(pki.CA.Root, pki.CA.Intermediate, pki.CA.Signer, certs.DevCAOptions{})
	e.addrs["broker"] = "127.0.0.1:" + strconv.Itoa(broker.Port)
	e.extra = scopedApprovers
	e.start(e.config(pumpServer))
	for deadline := time.Now().Add(20 * time.Second); !e.a.tel.Stats().Connected; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("agent not connected to mosquitto")
		}
	}
	cl := newCentral(t, pki, broker.URL, "gw-t")

	// A vendor asks for pump-07 (dual control: local + central).
	vendor := e.cert("spiffe://hospital.example/vendor/acme-medical/jane", time.Hour)
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Root())
	port, _ := strconv.Atoi(strings.Split(e.svc.Addr().String(), ":")[1])
	vc := &access.Client{Gateway: e.addrs["vendor"], Target: fmt.Sprintf("pump-07:%d", port),
		TLS: &tls.Config{Certificates: []tls.Certificate{vendor}, RootCAs: roots, ServerName: "gw-t"}}
	_, err := vc.DialTunnel(context.Background())
	var re *access.RefusedError
	if !errors.As(err, &re) || re.Request == "" {
		t.Fatalf("want a recorded request, got %v", err)
	}
	bound := command.ApproveArgs(re.Request, "spiffe://hospital.example/vendor/acme-medical/jane", "pump-07", []int{port})

	// bob is scoped to pump-08: refused on pump-07, with an event naming the missing scope.
	bob := e.approver("bob")
	r := cl.send(t, bob, "gw-t", command.Approve, bound...)
	if r.Accepted || !strings.Contains(r.Reason, "missing scope: approve on pump-07") {
		t.Fatalf("out-of-scope approval: %+v", r)
	}
	ev, ok := e.recentEvent(authority.EvRefused)
	if !ok || ev.Attrs["actor"] != "central:spiffe://hospital.example/approver/biomed/bob" || ev.Attrs["device"] != "pump-07" ||
		ev.Attrs["action"] != "approve" || !strings.Contains(ev.Attrs["reason"], "missing scope") {
		t.Fatalf("refusal event %+v %v", ev, ok)
	}
	// Approver certificates live 24 h at most (this one: 25 h).
	if r := cl.send(t, pki.Approver(t, "biomed", "alice"), "gw-t", command.Approve, bound...); r.Accepted || !strings.Contains(r.Reason, "lifetime_too_long") {
		t.Fatalf("25 h approver certificate: %+v", r)
	}
	// An action outside every scope: lock.
	alice := e.approver("alice")
	if r := cl.send(t, alice, "gw-t", command.Lock, "spiffe://hospital.example/vendor/acme-medical/*"); r.Accepted || !strings.Contains(r.Reason, "missing scope: action lock") {
		t.Fatalf("lock without scope: %+v", r)
	}
	if g := e.a.grant(re.Request); g.State != access.StatePending || len(g.Approvals) != 0 {
		t.Fatalf("grant after refusals: %+v", g)
	}

	// jdoe approves locally, then signs as approver: one person, pending.
	jdoeLocal := authority.Actor{Kind: authority.KindLocal, Via: "admin", UID: 1000, Name: "jdoe"}
	if _, err := e.a.access.Approve(re.Request, jdoeLocal); err != nil {
		t.Fatal(err)
	}
	jdoe := e.approver("jdoe")
	if r := cl.send(t, jdoe, "gw-t", command.Approve, bound...); r.Accepted || !strings.Contains(r.Reason, "same person") {
		t.Fatalf("same person twice: %+v", r)
	}
	if g := e.a.grant(re.Request); g.State != access.StatePending {
		t.Fatalf("dual control completed by one person: %+v", g)
	}
	// A stale binding (other ports) is refused; the exact one approves.
	stale := command.ApproveArgs(re.Request, "spiffe://hospital.example/vendor/acme-medical/jane", "pump-07", []int{port, 9})
	if r := cl.send(t, alice, "gw-t", command.Approve, stale...); r.Accepted || !strings.Contains(r.Reason, "does not match") {
		t.Fatalf("stale binding: %+v", r)
	}
	if r := cl.send(t, alice, "gw-t", command.Approve, bound...); !r.Accepted || !strings.Contains(r.Result, "active until") {
		t.Fatalf("scoped approval: %+v", r)
	}
	ev, _ = e.recentEvent(access.EvApprove)
	if ev.Attrs["actor"] != "central:spiffe://hospital.example/approver/biomed/alice" || ev.Attrs["complete"] != "true" {
		t.Fatalf("approve event %v", ev.Attrs)
	}
	tun, err := vc.DialTunnel(context.Background())
	if err != nil {
		t.Fatalf("after dual approval: %v", err)
	}
	tun.Close()
	// Local actions are recorded as local:NAME(uid=N).
	g := e.a.grant(re.Request)
	if g.Approvals[0].Actor.String() != "local:jdoe(uid=1000)" {
		t.Fatalf("approvals %+v", g.Approvals)
	}
}

func TestLongPressWithSeveralPendingApprovesNothing(t *testing.T) {
	e := newEnv(t)
	e.extra = "approvers: []\n"
	e.start(e.config(pumpServer))
	vendor := e.cert("spiffe://hospital.example/vendor/acme-medical/jane", time.Hour)
	other := e.cert("spiffe://hospital.example/vendor/acme-medical/joe", time.Hour)
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Root())
	port := strings.Split(e.svc.Addr().String(), ":")[1]
	var ids []string
	for _, c := range []tls.Certificate{vendor, other} {
		vc := &access.Client{Gateway: e.addrs["vendor"], Target: "pump-07:" + port,
			TLS: &tls.Config{Certificates: []tls.Certificate{c}, RootCAs: roots, ServerName: "gw-t"}}
		_, err := vc.DialTunnel(context.Background())
		var re *access.RefusedError
		if !errors.As(err, &re) || re.Request == "" {
			t.Fatalf("want a recorded request, got %v", err)
		}
		ids = append(ids, re.Request)
	}
	sim := e.a.hw.board.Sim
	if sim == nil {
		t.Fatal("no simulated board")
	}
	// The amber LED double-blinks: several requests wait.
	waitPattern := func(want hal.Pattern) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for e.a.hw.board.Vendor.Pattern() != want {
			if time.Now().After(deadline) {
				t.Fatalf("vendor LED %v, want %v", e.a.hw.board.Vendor.Pattern(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitPattern(hal.BlinkDouble)
	if err := sim.Press(context.Background(), "approve", 2500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ev, ok := e.recentEvent("hardware.button_ignored"); ok {
			if !strings.Contains(ev.Attrs["reason"], "2 requests pending") || !strings.Contains(ev.Attrs["pending"], ids[0]) ||
				!strings.Contains(ev.Attrs["pending"], ids[1]) {
				t.Fatalf("ignored press event %v", ev.Attrs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("long press not reported as ignored")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s := e.a.access.Snapshot()
	if len(s.Requests) != 2 || len(s.Grants) != 0 {
		t.Fatalf("a long press approved with two pending: %+v", s)
	}
}

// TestRestartWithClockSetBackRefusesCommands: an agent restarted on a clock
// earlier than the last trusted time keeps its locks, raises clock_behind
// and refuses central commands until the clock passes the mark.
func TestRestartWithClockSetBackRefusesCommands(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(pumpServer)
	open := func(at time.Time) (*Agent, *clockwork.FakeClock) {
		clk := clockwork.NewFakeClockAt(at)
		a, err := New(Options{Config: cfg, DevCA: e.ca, Clock: clk, Listen: func(network, addr string) (net.Listener, error) {
			if l, ok := e.pre[addr]; ok {
				delete(e.pre, addr)
				return l, nil
			}
			return net.Listen(network, addr)
		}})
		if err != nil {
			t.Fatal(err)
		}
		return a, clk
	}
	t0 := time.Now().Add(20 * time.Minute)
	a, _ := open(t0)
	jane := "spiffe://hospital.example/vendor/acme-medical/jane"
	if _, err := a.lock(jane, t0.Add(time.Hour), "incident", authority.Actor{Kind: authority.KindLocal, Via: "admin", UID: 1000, Name: "jdoe"}); err != nil {
		t.Fatal(err)
	}
	a.Close()

	b, clk := open(t0.Add(-10 * time.Minute))
	defer b.Close()
	if ok, _ := b.auth.Locked(jane); !ok {
		t.Fatal("lock lost at a restart with the clock set back")
	}
	if !strings.Contains(strings.Join(b.alarmList(), ","), "clock_behind") {
		t.Fatalf("alarms %v", b.alarmList())
	}
	c := command.Command{Payload: command.Payload{Name: command.Unlock, Args: []string{jane}},
		Approver: "spiffe://hospital.example/approver/security/alice"}
	if err := b.permitCommand(c); !errors.Is(err, authority.ErrClockBehind) {
		t.Fatalf("command on a clock behind: %v", err)
	}
	ev, ok := lastEvent(b, "alarm.raised")
	if !ok || ev.Attrs["alarm"] != "clock_behind" {
		t.Fatalf("alarm event %+v", ev)
	}
	// The clock passes the mark: commands are accepted again.
	clk.Advance(11 * time.Minute)
	if err := b.permitCommand(c); err != nil {
		t.Fatalf("command after the clock passed the mark: %v", err)
	}
	// Advance also fires the authority's own tick on another goroutine,
	// which may be the one that clears the alarm: await it.
	for deadline := time.Now().Add(5 * time.Second); strings.Contains(strings.Join(b.alarmList(), ","), "clock_behind"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("clock_behind not cleared")
		}
	}
}

// TestApproversReload: without approvers every approver may do everything;
// a reload installs the scopes (rebirth and inventory included).
func TestApproversReload(t *testing.T) {
	e := newEnv(t)
	e.start(e.config(pumpServer))
	ann := "spiffe://hospital.example/approver/security/ann"
	cmd := func(name string, args ...string) command.Command {
		return command.Command{Payload: command.Payload{Name: name, Args: args}, Approver: ann}
	}
	if err := e.a.permitCommand(cmd(command.Rebirth)); err != nil {
		t.Fatalf("no approvers section: %v", err)
	}
	e.extra = `approvers:
  - {identities: ["spiffe://hospital.example/approver/security/*"], actions: [inventory, lock], devices: ["*"]}
`
	if err := e.a.Reload(e.config(pumpServer)); err != nil {
		t.Fatal(err)
	}
	if err := e.a.permitCommand(cmd(command.Rebirth)); !errors.Is(err, authority.ErrNotPermitted) {
		t.Fatalf("rebirth outside the scopes: %v", err)
	}
	for _, c := range []command.Command{cmd(command.InventoryNow), cmd(command.Lock, "spiffe://hospital.example/vendor/acme-medical/*")} {
		if err := e.a.permitCommand(c); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
	}
	if err := e.a.permitCommand(cmd(command.Unlock, "spiffe://hospital.example/vendor/acme-medical/*")); !errors.Is(err, authority.ErrNotPermitted) {
		t.Fatalf("unlock outside the scopes: %v", err)
	}
}
