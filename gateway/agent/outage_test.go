package agent

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/certs/stepcatest"
	"github.com/wardgate/wardgate/config"
)

// TestCAOutageAlarmInStatus runs the agent on a 12-second certificate from
// the real step-ca: the CA is stopped, the certificate_renewal alarm shows
// in status past half the lifetime (critical past 90%), the certificate
// expires, and after the CA comes back the agent renews within a minute
// and the alarms clear.
func TestCAOutageAlarmInStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real step-ca")
	}
	ca := stepcatest.New(t, stepcatest.Config{DefaultDur: 12 * time.Second, MinDur: 5 * time.Second, Provisioners: map[string]bool{"gateways": true}})
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	uri := certs.GatewayURI("hospital.example", "gw-o")
	if _, err := certs.Enroll(context.Background(), certs.EnrollOptions{CAURL: ca.URL, RootFingerprint: ca.Fingerprint(),
		Token: ca.Token("gateways", "gw-o", "gw-o", uri), Dir: certs.IdentityDir(state)}); err != nil {
		t.Fatalf("enroll: %v\n%s", err, ca.Log())
	}
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	text := fmt.Sprintf(`version: 1
gateway: {id: gw-o, site: lab, trust_domain: hospital.example, state_dir: %s, vendor_listen: %q, admin_socket: %s/admin.sock, drain_timeout: 1s}
identity: {ca: step, ca_url: %q, root_fingerprint: %s, lifetime: 5m}
mqtt: {broker: "mqtts://%s"}
hal: {driver: sim}
devices: []
`, state, free(), dir, ca.URL, ca.Fingerprint(), free())
	cfg, err := config.Parse("o.yaml", []byte(text), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, pre: map[string]net.Listener{}}
	e.startWith(Options{Config: cfg})
	ca.Stop()

	// await polls the in-process agent's status (the CA is a real process
	// on a real clock) until cond holds.
	await := func(what string, within time.Duration, cond func(Status) bool) Status {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			st := e.a.Status()
			if cond(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s within %s; alarms %q identity %+v", what, within, st.Alarms, st.Identity)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	st := await("renewal alarm", 30*time.Second, func(st Status) bool { return hasAlarm(st, alarmRenewal) })
	if st.Identity.Expired || st.Identity.Overdue < 50 {
		t.Errorf("alarm raised but identity %+v", st.Identity)
	}
	await("critical renewal alarm", 30*time.Second, func(st Status) bool {
		return strings.Contains(strings.Join(st.Alarms, "\n"), "CRITICAL")
	})
	await("expiry", 30*time.Second, func(st Status) bool { return st.Identity.Expired })
	ca.Start()
	back := time.Now()
	st = await("renewal after the CA's return", time.Minute, func(st Status) bool { return !st.Identity.Expired && st.Identity.Renewals > 0 })
	t.Logf("renewed %s after the CA came back", time.Since(back).Round(10*time.Millisecond))
	if hasAlarm(st, alarmRenewal) || hasAlarm(st, "certificate_expired") {
		t.Errorf("alarms after recovery: %q", st.Alarms)
	}
}
