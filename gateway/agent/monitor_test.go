package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/monitor"
)

// waitFor polls cond (the agent offers no hook for these) within 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMonitorWired: the link probe knows the link before any client, the
// monitor judges the events of the real relay, learns its traffic from the
// relay's counters, checks the exception's controls and shows all of it in
// the status and the inventory.
func TestMonitorWired(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(pumpServer)
	exp, _ := time.Parse(time.DateOnly, time.Now().AddDate(0, 3, 0).Format(time.DateOnly))
	cfg.Devices[0].Exceptions = []config.Exception{{ID: "EX-1", Control: "PR.PS-02", Reason: "no patches", ApprovedBy: "ciso/jdoe",
		Expires: config.Date{Time: exp}, Compensating: []string{"restricted-admin-path", "continuous-monitoring", "segmentation"}}}
	e.start(cfg)

	// The probe: the link is up before any clinical client connected.
	waitFor(t, "the link probe", func() bool {
		st := e.a.Status()
		return st.Devices[0].LinkState == "up" && st.Devices[0].Counters.Accepted == 0
	})

	// Controls: checked at start, live in status and inventory.
	var ctl []monitor.ControlState
	waitFor(t, "the first controls check", func() bool {
		m := e.a.Status().Monitor
		if m == nil || len(m.Controls) != 1 || m.Controls[0].Controls[0].Checked.IsZero() {
			return false
		}
		ctl = m.Controls[0].Controls
		return true
	})
	if !ctl[0].InForce || !ctl[1].InForce || ctl[2].InForce {
		t.Fatalf("controls %+v", ctl)
	}
	inv := e.a.inventory()
	if cs := inv.Devices[0].Exceptions[0].Controls; len(cs) != 3 || cs[2].Name != "segmentation" || cs[2].InForce {
		t.Fatalf("inventory controls %+v", cs)
	}
	// segmentation without a segment interface raised the alarm to the approver.
	found := false
	for _, ev := range e.a.events.snapshot() {
		if ev.Kind == monitor.KindControlNotInForce && ev.Attrs["owner"] == "ciso/jdoe" && ev.Attrs["control"] == "segmentation" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no control alarm in %+v", e.a.events.snapshot())
	}

	// A certificate with a refused lifetime, through the real relay.
	if c, _, err := e.dial(e.addrs["pump"], e.cert(pumpServer, 48*time.Hour)); err == nil {
		c.Read(make([]byte, 1))
		c.Close()
	}
	waitFor(t, "monitor.refused_lifetime", func() bool {
		for _, ev := range e.a.events.snapshot() {
			if ev.Kind == monitor.KindRefusedLifetime && ev.Attrs["device"] == "pump-07" && ev.Attrs["what_to_do"] != "" {
				return true
			}
		}
		return false
	})

	// Traffic through the real relay becomes the baseline's hour.
	t0 := time.Now().Truncate(time.Hour).Add(time.Minute)
	e.a.mon.Tick(t0)
	c, r, err := e.dial(e.addrs["pump"], e.cert(pumpServer, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := roundTrip(c, r, "hello monitor"); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	// The monitor samples the relay's counters at each tick; the relay
	// counts a chunk after writing it, which may be after the echo came
	// back (slow under qemu), so wait for the session to be counted whole.
	want := 10 * int64(len("hello monitor\n"))
	waitFor(t, "the session counted", func() bool {
		for _, d := range e.a.Status().Devices {
			if d.ID == "pump-07" {
				return d.Counters.Live == 0 && d.Counters.BytesToDevice == want && d.Counters.BytesFromDevice == want
			}
		}
		return false
	})
	e.a.mon.Tick(t0.Add(30 * time.Minute))
	e.a.mon.Tick(t0.Add(time.Hour))
	var b monitor.BaselineStatus
	for _, x := range e.a.Status().Monitor.Baselines {
		if x.Device == "pump-07" {
			b = x
		}
	}
	if b.LastHourToDevice != 10*int64(len("hello monitor\n")) || b.LastHourFromDevice != b.LastHourToDevice || b.LastHourSessions != 1 || !b.Learning || b.Slots != 1 {
		t.Fatalf("baseline %+v", b)
	}
}

// TestVendorHoursEnforced: vendor.hours from the configuration is enforced
// by the real broker (refused outside, recorded inside after a reload) and
// the refusal becomes a monitor finding; so does a locked vendor's retry.
func TestVendorHoursEnforced(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(pumpServer)
	other := time.Now().Local().AddDate(0, 0, 2).Weekday().String()[:3]
	hours, err := config.ParseHours(other + " 07:00-08:00")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Devices[0].Vendor.Hours, cfg.Devices[0].Vendor.OffHours = hours, config.OffHoursRefuse
	e.start(cfg)
	vendor := e.cert("spiffe://hospital.example/vendor/acme-medical/jane", time.Hour)
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Root())
	port := strings.Split(e.svc.Addr().String(), ":")[1]
	cl := &access.Client{Gateway: e.addrs["vendor"], Target: "pump-07:" + port,
		TLS: &tls.Config{Certificates: []tls.Certificate{vendor}, RootCAs: roots, ServerName: "gw-t"}}
	_, err = cl.DialTunnel(context.Background())
	var re *access.RefusedError
	if !errors.As(err, &re) || re.Code != access.CodeOffHours || re.Request != "" {
		t.Fatalf("outside the hours: %v", err)
	}
	waitFor(t, "monitor.vendor_off_hours", func() bool {
		for _, ev := range e.a.events.snapshot() {
			if ev.Kind == monitor.KindVendorOffHours && ev.Attrs["what"] == "refused" && ev.Attrs["owner"] == "ce/icu" {
				return true
			}
		}
		return false
	})
	// Inside the hours (after a reload) a request is recorded.
	cfg2 := e.config(pumpServer)
	cfg2.Devices[0].Vendor.Hours, _ = config.ParseHours("daily 00:00-24:00")
	if err := e.a.Reload(cfg2); err != nil {
		t.Fatal(err)
	}
	_, err = cl.DialTunnel(context.Background())
	if !errors.As(err, &re) || re.Code != access.CodeNoGrant || re.Request == "" {
		t.Fatalf("inside the hours: %v", err)
	}
	// A locked vendor trying again is a finding.
	if _, err := e.a.auth.AddLock("spiffe://hospital.example/vendor/acme-medical/jane", time.Time{}, "left", access.Actor{Kind: access.KindLocal, Via: "admin", UID: 1000}); err != nil {
		t.Fatal(err)
	}
	if _, err = cl.DialTunnel(context.Background()); !errors.As(err, &re) {
		t.Fatalf("locked: %v", err)
	}
	waitFor(t, "monitor.locked_retry", func() bool {
		for _, ev := range e.a.events.snapshot() {
			if ev.Kind == monitor.KindLockedRetry {
				return true
			}
		}
		return false
	})
}

// TestBaselineThroughRelay: synthetic clinical traffic through the real
// relay, one session an hour for a day on fabricated hour boundaries,
// teaches the device's baseline; then an hour with ten times the bytes
// raises monitor.traffic_anomaly naming the device's owner.
func TestBaselineThroughRelay(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(pumpServer)
	cfg.Monitor.BaselineWindow = config.Duration(24 * time.Hour)
	cfg.Monitor.AnomalyMinBytes = 1 << 10
	e.start(cfg)
	cert := e.cert(pumpServer, 2*time.Hour)
	msg := strings.Repeat("v", 99) // 100 bytes with the newline
	hour := func(trips int) {
		c, r, err := e.dial(e.addrs["pump"], cert)
		if err != nil {
			t.Fatal(err)
		}
		for range trips {
			if err := roundTrip(c, r, msg); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
	}
	t0 := time.Now().Truncate(time.Hour).Add(time.Minute)
	e.a.mon.Tick(t0)
	for h := range 26 {
		hour(20)
		waitFor(t, "the session's counters", func() bool { return e.a.Status().Devices[0].Counters.Live == 0 })
		e.a.mon.Tick(t0.Add(time.Duration(h+1) * time.Hour))
	}
	for _, ev := range e.a.events.snapshot() {
		if ev.Kind == monitor.KindTrafficAnomaly {
			t.Fatalf("anomaly while learning normal hours: %+v", ev)
		}
	}
	hour(200)
	waitFor(t, "the session's counters", func() bool { return e.a.Status().Devices[0].Counters.Live == 0 })
	e.a.mon.Tick(t0.Add(27 * time.Hour))
	var got []recentEvent
	for _, ev := range e.a.events.snapshot() {
		if ev.Kind == monitor.KindTrafficAnomaly {
			got = append(got, ev)
		}
	}
	if len(got) != 2 || got[0].Attrs["owner"] != "ce/icu" || got[0].Attrs["device"] != "pump-07" || got[0].Attrs["direction"] != "above" ||
		got[0].Attrs["observed"] != "20000" || got[0].Attrs["expected"] != "2000" {
		t.Fatalf("anomaly events %+v", got)
	}
}
