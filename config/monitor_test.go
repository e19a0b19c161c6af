package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestMonitorRules(t *testing.T) {
	vend := "      approval: [local]\n"
	cases := []struct {
		name, old, new string
		want           problemWant
	}{
		{"bad interface", "segment_interface: eth1", "segment_interface: eth 1", problemWant{"monitor.segment_interface", "segment_interface:", "not a network interface"}},
		{"finding window too short", "segment_interface: eth1", "segment_interface: eth1\n  finding_window: 10s", problemWant{"monitor.finding_window", "finding_window:", "outside the allowed range"}},
		{"burst per source 1", "segment_interface: eth1", "segment_interface: eth1\n  failed_handshakes: {per_source: 1}", problemWant{"monitor.failed_handshakes.per_source", "failed_handshakes:", "not a burst"}},
		{"burst per identity 1", "segment_interface: eth1", "segment_interface: eth1\n  failed_handshakes: {per_identity: 1}", problemWant{"monitor.failed_handshakes.per_identity", "failed_handshakes:", "not a burst"}},
		{"burst window", "segment_interface: eth1", "segment_interface: eth1\n  failed_handshakes: {window: 2s}", problemWant{"monitor.failed_handshakes.window", "failed_handshakes:", "outside the allowed range"}},
		{"baseline window short", "segment_interface: eth1", "segment_interface: eth1\n  baseline_window: 2h", problemWant{"monitor.baseline_window", "baseline_window:", "outside the allowed range"}},
		{"baseline window long", "segment_interface: eth1", "segment_interface: eth1\n  baseline_window: 120d", problemWant{"monitor.baseline_window", "baseline_window:", "outside the allowed range"}},
		{"anomaly factor 1", "segment_interface: eth1", "segment_interface: eth1\n  anomaly_factor: 1", problemWant{"monitor.anomaly_factor", "anomaly_factor:", "more than 1"}},
		{"anomaly factor text", "segment_interface: eth1", "segment_interface: eth1\n  anomaly_factor: lots", problemWant{"monitor.anomaly_factor", "anomaly_factor:", "not a number"}},
		{"link probe short", "segment_interface: eth1", "segment_interface: eth1\n  link_probe: 1s", problemWant{"monitor.link_probe", "link_probe:", "outside the allowed range"}},
		{"neighbour interval", "segment_interface: eth1", "segment_interface: eth1\n  neighbour_interval: 2h", problemWant{"monitor.neighbour_interval", "neighbour_interval:", "outside the allowed range"}},
		{"controls interval", "segment_interface: eth1", "segment_interface: eth1\n  controls_interval: 1s", problemWant{"monitor.controls_interval", "controls_interval:", "outside the allowed range"}},
		{"telemetry within", "segment_interface: eth1", "segment_interface: eth1\n  telemetry_within: 2d", problemWant{"monitor.telemetry_within", "telemetry_within:", "outside the allowed range"}},
		{"approver learn", "segment_interface: eth1", "segment_interface: eth1\n  approver_learn: -1", problemWant{"monitor.approver_learn", "approver_learn:", "too low"}},
		{"mac syntax", "    owner: clinical-engineering/icu\n", "    owner: clinical-engineering/icu\n    mac: 00:1a:2b:3c:4d\n", problemWant{"devices[0].mac", "mac:", "not a MAC address"}},
		{"mac broadcast", "    owner: clinical-engineering/icu\n", "    owner: clinical-engineering/icu\n    mac: ff:ff:ff:ff:ff:ff\n", problemWant{"devices[0].mac", "mac:", "not a device's MAC"}},
		{"mac duplicate", "", "  - id: pump-08\n    owner: x\n    mac: 00-1A-2B-3C-4D-5E\n    link: {tcp: 10.0.0.1:1}\n    clinical: {listen: \":7009\", allow: [\"spiffe://hospital.example/svc/a\"]}\n  - id: pump-09\n    owner: x\n    mac: 00:1a:2b:3c:4d:5e\n    link: {tcp: 10.0.0.2:1}\n    clinical: {listen: \":7010\", allow: [\"spiffe://hospital.example/svc/a\"]}\n",
			problemWant{"devices[2].mac", "mac: 00:1a:2b:3c:4d:5e", "already the MAC of devices[1]"}},
		{"expect traffic short", "    owner: clinical-engineering/icu\n", "    owner: clinical-engineering/icu\n    expect_traffic_every: 10s\n", problemWant{"devices[0].expect_traffic_every", "expect_traffic_every:", "outside the allowed range"}},
		{"hours bad day", vend, vend + "      hours: Mon-Fry 07:00-19:00\n", problemWant{"devices[0].vendor.hours", "hours:", "not a day"}},
		{"hours bad time", vend, vend + "      hours: Mon-Fri 7-19\n", problemWant{"devices[0].vendor.hours", "hours:", "not a time of day"}},
		{"hours reversed", vend, vend + "      hours: Mon-Fri 19:00-07:00\n", problemWant{"devices[0].vendor.hours", "hours:", "across midnight"}},
		{"off hours unknown", vend, vend + "      hours: Mon-Fri 07:00-19:00\n      off_hours: allow\n", problemWant{"devices[0].vendor.off_hours", "off_hours:", "not an off-hours action"}},
		{"off hours central with central", "      approval: [local]\n", "      approval: [central]\n      off_hours: central\n", problemWant{"devices[0].vendor.off_hours", "off_hours: central", "changes nothing"}},
		{"unknown control", "compensating: [segmentation]", "compensating: [segmentation, firewall]", problemWant{"devices[0].exceptions[0].compensating[1]", "compensating:", "segmentation, restricted-admin-path, continuous-monitoring, vendor-hours, no-vendor-access"}},
		{"vendor-hours without hours", "compensating: [segmentation]", "compensating: [vendor-hours]", problemWant{"devices[0].exceptions[0].compensating[0]", "compensating:", "needs vendor.hours"}},
		{"no-vendor-access with vendor", "compensating: [segmentation]", "compensating: [no-vendor-access]", problemWant{"devices[0].exceptions[0].compensating[0]", "compensating:", "contradicts"}},
		{"continuous-monitoring with monitor off", "segment_interface: eth1", "segment_interface: eth1\n  enabled: false\n", problemWant{"devices[0].exceptions[0].compensating[0]", "compensating:", "needs the monitor"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := base + tc.new
			if tc.old != "" {
				if !strings.Contains(base, tc.old) {
					t.Fatalf("case does not apply: %q not in base", tc.old)
				}
				text = strings.Replace(base, tc.old, tc.new, 1)
			}
			if tc.name == "continuous-monitoring with monitor off" {
				text = strings.Replace(text, "compensating: [segmentation]", "compensating: [continuous-monitoring]", 1)
			}
			_, err := Parse("w.yaml", []byte(text), now)
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("want Problems, got %v", err)
			}
			wantLine := lineOf(t, text, tc.want.lineAt)
			for _, p := range ps {
				if p.Path == tc.want.path && p.Line == wantLine && strings.Contains(p.Msg, tc.want.msg) {
					return
				}
			}
			t.Errorf("want w.yaml:%d: %s: ...%s..., got:\n%v", wantLine, tc.want.path, tc.want.msg, err)
		})
	}
}

func TestMonitorDefaultsAndKeys(t *testing.T) {
	text := strings.Replace(base, "      approval: [local]\n", "      approval: [local]\n      hours: \"Mon-Fri 07:00-19:00, Sat 08:00-12:00\"\n      off_hours: central\n", 1)
	text = strings.Replace(text, "    owner: clinical-engineering/icu\n", "    owner: clinical-engineering/icu\n    mac: 00-1A-2B-3C-4D-5E\n    expect_traffic_every: 1h\n", 1)
	text = strings.Replace(text, "compensating: [segmentation]", "compensating: [segmentation, restricted-admin-path, continuous-monitoring, vendor-hours]", 1)
	cfg, err := Parse("w.yaml", []byte(text), now)
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Monitor
	if !m.On() || m.FindingWindow.D() != DefaultFindingWindow || m.FailedHandshakes.PerSource != DefaultBurstPerSource ||
		m.BaselineWindow.D() != DefaultBaselineWindow || m.AnomalyFactor != DefaultAnomalyFactor || m.LinkProbe.D() != DefaultLinkProbe ||
		m.ApproverLearn != DefaultApproverLearn || m.AnomalyMinBytes != DefaultAnomalyMinBytes {
		t.Errorf("monitor defaults not applied: %+v", m)
	}
	d := cfg.Devices[0]
	if NormalMAC(d.MAC) != "00:1a:2b:3c:4d:5e" || d.ExpectTrafficEvery.D() != time.Hour || d.Vendor.OffHours != OffHoursCentral {
		t.Errorf("device keys: %+v %+v", d, d.Vendor)
	}
	if d.Vendor.Hours.String() != "Mon-Fri 07:00-19:00, Sat 08:00-12:00" {
		t.Errorf("hours text %q", d.Vendor.Hours)
	}
	cfg, _ = Parse("w.yaml", []byte(base), now)
	if cfg.Devices[0].Vendor.OffHours != OffHoursRefuse || !cfg.Devices[0].Vendor.Hours.IsZero() {
		t.Errorf("off_hours default: %+v", cfg.Devices[0].Vendor)
	}
}

func TestSegmentationWarnsWithoutInterface(t *testing.T) {
	cfg, err := Parse("w.yaml", []byte(strings.Replace(base, "monitor:\n  segment_interface: eth1\n", "", 1)), now)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, w := range cfg.Warnings {
		found = found || (w.Path == "devices[0].exceptions[0].compensating[0]" && strings.Contains(w.Msg, "segment_interface"))
	}
	if !found {
		t.Errorf("no segmentation warning among %v", cfg.Warnings)
	}
}

func TestHours(t *testing.T) {
	at := func(day time.Weekday, hh, mm int) time.Time {
		// 2026-11-30 is a Monday.
		return time.Date(2026, 11, 30+int((day+6)%7), hh, mm, 0, 0, time.UTC)
	}
	cases := []struct {
		spec string
		t    time.Time
		in   bool
	}{
		{"Mon-Fri 07:00-19:00", at(time.Monday, 7, 0), true},
		{"Mon-Fri 07:00-19:00", at(time.Monday, 6, 59), false},
		{"Mon-Fri 07:00-19:00", at(time.Friday, 18, 59), true},
		{"Mon-Fri 07:00-19:00", at(time.Friday, 19, 0), false},
		{"Mon-Fri 07:00-19:00", at(time.Saturday, 12, 0), false},
		{"Mon-Fri 07:00-19:00, Sat 08:00-12:00", at(time.Saturday, 11, 0), true},
		{"Fri-Mon 00:00-24:00", at(time.Sunday, 23, 59), true},
		{"Fri-Mon 00:00-24:00", at(time.Tuesday, 12, 0), false},
		{"daily 22:00-24:00", at(time.Wednesday, 23, 0), true},
		{"sun 10:00-11:00", at(time.Sunday, 10, 30), true},
	}
	for _, tc := range cases {
		h, err := ParseHours(tc.spec)
		if err != nil {
			t.Fatalf("%q: %v", tc.spec, err)
		}
		if got := h.Contains(tc.t); got != tc.in {
			t.Errorf("%q contains %s = %v, want %v", tc.spec, tc.t.Format("Mon 15:04"), got, tc.in)
		}
	}
	if !(Hours{}).Contains(at(time.Sunday, 3, 0)) {
		t.Error("unset hours must contain every time")
	}
	for _, bad := range []string{"", "Mon-Fri", "Mon-Fri 07:00", "Mon-Fri 07:00-25:00", "Mon-Fri 24:00-24:00", "Mon-Fri 07:00-24:30",
		"Monday 07:00-19:00", "Mon-Fri 07:60-19:00", "Mon-Fri 07:00-19:00,", strings.Repeat("Mon 07:00-08:00, ", 40)} {
		if _, err := ParseHours(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseHours(f *testing.F) {
	for _, s := range []string{"Mon-Fri 07:00-19:00", "daily 00:00-24:00", "Fri-Mon 08:00-12:00, Sat 10:00-11:00", "x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHours(s)
		if err != nil {
			if !h.IsZero() {
				t.Fatal("error with a schedule")
			}
			return
		}
		if h.IsZero() || h.String() == "" {
			t.Fatal("no rules without an error")
		}
		for _, r := range h.rules {
			if r.start < 0 || r.end > 24*60 || r.start >= r.end {
				t.Fatalf("bad rule %+v from %q", r, s)
			}
		}
		again, err := ParseHours(h.String())
		if err != nil || len(again.rules) != len(h.rules) {
			t.Fatalf("round trip of %q: %v", s, err)
		}
		_ = h.Contains(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	})
}
