package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/release"
)

// hasAlarm reports whether status lists the alarm kind.
func hasAlarm(st Status, kind string) bool {
	for _, a := range st.Alarms {
		if strings.HasPrefix(a, kind+":") {
			return true
		}
	}
	return false
}

// lastEvent is the most recent event of kind in status, or nil.
func lastStatusEvent(st Status, kind string) *recentEvent {
	for i := len(st.Events) - 1; i >= 0; i-- {
		if st.Events[i].Kind == kind {
			return &st.Events[i]
		}
	}
	return nil
}

func TestReloadRefusedRaisesAlarmAndEvent(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(e.dir, "wardgate.yaml")
	good := e.configText(pumpServer)
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.start(cfg)
	// The configuration that ran is kept as the last known good one.
	if lkg, err := config.LoadLastGood(cfg.Gateway.StateDir, time.Now()); err != nil || lkg.Hash != cfg.Hash {
		t.Fatalf("last known good after start: %v", err)
	}

	// Two problems in one file: both are in the event.
	broken := strings.Replace(good, "owner: ce/icu", "owner: ''", 2)
	if err := os.WriteFile(path, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.a.ReloadFile(path); err == nil {
		t.Fatal("broken reload accepted")
	}
	st := e.a.Status()
	if !hasAlarm(st, alarmConfigRefused) || st.Gateway.State != "alarm" {
		t.Errorf("after a refused reload: state %s alarms %q", st.Gateway.State, st.Alarms)
	}
	ev := lastStatusEvent(st, EvConfigReloadRefused)
	if ev == nil {
		t.Fatal("no config.reload_refused event")
	}
	if ev.Severity != "alarm" || ev.Attrs["problems"] != "2" ||
		!strings.Contains(ev.Attrs["problem_1"], "devices[0].owner") || !strings.Contains(ev.Attrs["problem_2"], "devices[1].owner") {
		t.Errorf("event %+v", ev)
	}
	if st.Gateway.ConfigHash != cfg.Hash {
		t.Errorf("running config changed to %s", st.Gateway.ConfigHash)
	}
	// The kept configuration did not change.
	if lkg, _ := config.LoadLastGood(cfg.Gateway.StateDir, time.Now()); lkg == nil || lkg.Hash != cfg.Hash {
		t.Error("last known good overwritten by a refused file")
	}

	// A change that needs a restart is refused the same way.
	if err := os.WriteFile(path, []byte(strings.Replace(good, "id: gw-t", "id: gw-other", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.a.ReloadFile(path); err == nil || !strings.Contains(err.Error(), "needs a restart") {
		t.Fatalf("restart-needed reload: %v", err)
	}
	if ev := lastStatusEvent(e.a.Status(), EvConfigReloadRefused); ev == nil || !strings.Contains(ev.Attrs["problem_1"], "gateway.id changed") {
		t.Errorf("restart-needed event %+v", ev)
	}

	// A good file clears the alarm and becomes the last known good one.
	next := strings.Replace(good, "site: lab", "site: lab2", 1)
	if err := os.WriteFile(path, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.a.ReloadFile(path); err != nil {
		t.Fatal(err)
	}
	st = e.a.Status()
	if hasAlarm(st, alarmConfigRefused) {
		t.Errorf("alarm not cleared: %q", st.Alarms)
	}
	if lkg, err := config.LoadLastGood(cfg.Gateway.StateDir, time.Now()); err != nil || lkg.Gateway.Site != "lab2" {
		t.Errorf("last known good after a good reload: %v", err)
	}
}

func TestStartOnLastGoodRaisesAlarm(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(pumpServer)
	problems := config.Problems{{File: "/etc/wardgate/wardgate.yaml", Line: 3, Path: "devices[0].owner", Msg: "missing"}}
	e.startWith(Options{Config: cfg, StartProblems: problems, ConfigFile: "/etc/wardgate/wardgate.yaml"})
	st := e.a.Status()
	if !hasAlarm(st, alarmConfigInvalid) {
		t.Errorf("alarms %q, want %s", st.Alarms, alarmConfigInvalid)
	}
	ev := lastStatusEvent(st, EvConfigLastGood)
	if ev == nil || ev.Attrs["problems"] != "1" || !strings.Contains(ev.Attrs["problem_1"], "devices[0].owner") || ev.Attrs["config_hash"] != cfg.Hash {
		t.Errorf("event %+v", ev)
	}
}

// TestRenewalOverdueAlarm: the certificate manager's renewal_overdue
// raises the certificate_renewal alarm (status, alarm LED), critical at
// 90%, cleared by the next renewal.
func TestRenewalOverdueAlarm(t *testing.T) {
	e := newEnv(t)
	e.start(e.config(pumpServer))
	leaf := e.a.ident.Chain()[0]
	e.a.identityEvent(certs.Event{Kind: certs.EventRenewalOverdue, Time: time.Now(), UsedPercent: 50, NotAfter: leaf.NotAfter, Serial: "1"})
	st := e.a.Status()
	if !hasAlarm(st, alarmRenewal) {
		t.Fatalf("alarms %q", st.Alarms)
	}
	e.a.indicate()
	if !e.a.hw.board.State().Indication.Alarm {
		t.Error("alarm LED off while renewal is overdue")
	}
	if ev := lastStatusEvent(st, "identity.renewal_overdue"); ev == nil || ev.Severity != "warning" || ev.Attrs["used_percent"] != "50" {
		t.Errorf("event %+v", ev)
	}
	e.a.identityEvent(certs.Event{Kind: certs.EventRenewalOverdue, Time: time.Now(), UsedPercent: 90, NotAfter: leaf.NotAfter, Serial: "1"})
	st = e.a.Status()
	if ev := lastStatusEvent(st, "identity.renewal_overdue"); ev == nil || ev.Severity != "alarm" {
		t.Errorf("critical event %+v", ev)
	}
	if !strings.Contains(strings.Join(st.Alarms, "\n"), "CRITICAL") {
		t.Errorf("alarms %q lack CRITICAL", st.Alarms)
	}
	// An operator's renewal goes through the manager and clears it.
	if _, err := e.a.renewNow(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if st := e.a.Status(); hasAlarm(st, alarmRenewal) {
		t.Errorf("alarm not cleared by a renewal: %q", st.Alarms)
	}
}

// TestRetireDevice: retiring a device by reload closes its clinical
// listener, revokes its grants, refuses vendors with code retired, keeps it
// in the inventory and status as retired, and emits device.retired.
func TestRetireDevice(t *testing.T) {
	e := newEnv(t)
	e.start(e.config(pumpServer))
	cert := e.cert(pumpServer, time.Hour)
	c, r, err := e.dial(e.addrs["pump"], cert)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c, r, "before"); err != nil {
		t.Fatal(err)
	}
	// A vendor's request is pending on the device.
	vendor := e.cert("spiffe://hospital.example/vendor/acme-medical/jane", time.Hour)
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Root())
	port := strings.Split(e.svc.Addr().String(), ":")[1]
	cl := &access.Client{Gateway: e.addrs["vendor"], Target: "pump-07:" + port,
		TLS: &tls.Config{Certificates: []tls.Certificate{vendor}, RootCAs: roots, ServerName: "gw-t"}}
	_, err = cl.DialTunnel(context.Background())
	var re *access.RefusedError
	if !errors.As(err, &re) || re.Request == "" {
		t.Fatalf("want a recorded request, got %v", err)
	}

	text := strings.Replace(e.configText(pumpServer), "    owner: ce/icu\n", "    owner: ce/icu\n    retired: 2026-11-01\n    replaced_by: pump-08\n", 1)
	cfg, err := config.Parse("retire.yaml", []byte(text), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.a.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	// The listener is closed and its live session cut.
	if err := roundTrip(c, r, "after"); err == nil {
		t.Error("a clinical session to the retired device survived")
	}
	if c2, _, err := e.dial(e.addrs["pump"], cert); err == nil {
		c2.Close()
		t.Error("the retired device's clinical listener still accepts")
	}
	// Vendors are refused with code retired; the request was revoked.
	_, err = cl.DialTunnel(context.Background())
	if !errors.As(err, &re) || re.Code != access.CodeRetired || !strings.Contains(re.Reason, "replaced by pump-08") {
		t.Fatalf("vendor after retirement: %v", err)
	}
	st := e.a.Status()
	ev := lastStatusEvent(st, EvDeviceRetired)
	if ev == nil || ev.Attrs["device"] != "pump-07" || ev.Attrs["replaced_by"] != "pump-08" || ev.Attrs["grants_revoked"] == "" {
		t.Fatalf("device.retired event %+v", ev)
	}
	if rv := lastStatusEvent(st, access.EvRevoke); rv == nil {
		t.Error("no revoke event for the retired device's request")
	}
	if len(st.Retired) != 1 || st.Retired[0].ID != "pump-07" || st.Retired[0].Retired != "2026-11-01" {
		t.Errorf("status retired devices %+v", st.Retired)
	}
	for _, d := range st.Devices {
		if d.ID == "pump-07" {
			t.Error("the retired device is still served on the clinical path")
		}
	}
	inv := inventory(cfg)
	if len(inv.Devices) != 2 || inv.Devices[0].Retired.IsZero() || inv.Devices[0].ReplacedBy != "pump-08" {
		t.Errorf("inventory %+v", inv.Devices)
	}
	// The other device is untouched.
	c3, r3, err := e.dial(e.addrs["pump2"], cert)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := roundTrip(c3, r3, "pump-08"); err != nil {
		t.Errorf("pump-08 after pump-07's retirement: %v", err)
	}
}

// TestSBOMHashInInventory: the binary's SBOM hash goes into inventory
// (and birth, through the publisher's options).
func TestSBOMHashInInventory(t *testing.T) {
	e := newEnv(t)
	e.start(e.config(pumpServer))
	if len(e.a.sbom) != 64 {
		t.Fatalf("agent SBOM hash %q", e.a.sbom)
	}
	if inv := e.a.tel.Stats(); inv.Outbox.Depth == 0 {
		t.Log("nothing queued yet")
	}
}

// TestUpdateJournalEvents: the steps `wardgate update apply` journaled are
// emitted as update.STEP events when the agent starts.
func TestUpdateJournalEvents(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(pumpServer)
	os.MkdirAll(cfg.Gateway.StateDir, 0o700)
	j := filepath.Join(cfg.Gateway.StateDir, release.JournalFile)
	for _, s := range []string{"verified", "installed", "restarted", "unhealthy", "rolled_back"} {
		if err := release.AppendJournal(j, release.JournalEntry{Time: time.Now(), Step: s, Attrs: map[string]string{"version": "v9.9.9"}}); err != nil {
			t.Fatal(err)
		}
	}
	e.start(cfg)
	st := e.a.Status()
	if ev := lastStatusEvent(st, "update.rolled_back"); ev == nil || ev.Severity != "alarm" || ev.Attrs["version"] != "v9.9.9" {
		t.Errorf("rolled_back event %+v", ev)
	}
	if lastStatusEvent(st, "update.verified") == nil {
		t.Error("no update.verified event")
	}
	if _, err := os.Stat(j); !os.IsNotExist(err) {
		t.Error("journal not emptied")
	}
	// Steps journaled after the agent started go out when update apply
	// asks (POST /v1/update/journal).
	release.AppendJournal(j, release.JournalEntry{Time: time.Now(), Step: "healthy", Attrs: map[string]string{"version": "v9.9.9"}})
	rec := httptest.NewRecorder()
	e.a.adminRoutes().ServeHTTP(rec, httptest.NewRequest("POST", "/v1/update/journal", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"emitted": 1`) {
		t.Errorf("POST /v1/update/journal: %d %s", rec.Code, rec.Body)
	}
	if lastStatusEvent(e.a.Status(), "update.healthy") == nil {
		t.Error("no update.healthy event after the journal route")
	}
}
