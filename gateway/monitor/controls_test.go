package monitor

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardgate/wardgate/config"
)

// TestEveryControlHasACheck: every name config accepts maps to a check.
func TestEveryControlHasACheck(t *testing.T) {
	for _, n := range config.CompensatingControls {
		if controlChecks[n] == nil {
			t.Errorf("control %q has no check", n)
		}
	}
	if len(controlChecks) != len(config.CompensatingControls) {
		t.Errorf("%d checks for %d names", len(controlChecks), len(config.CompensatingControls))
	}
	for _, k := range Kinds() {
		if WhatToDo(k) == "" {
			t.Errorf("%s: no advice", k)
		}
	}
}

func controlOf(t *testing.T, tm *tmon, name string) ControlState {
	t.Helper()
	for _, ec := range tm.Controls() {
		for _, c := range ec.Controls {
			if c.Name == name {
				return c
			}
		}
	}
	t.Fatalf("control %s not found", name)
	return ControlState{}
}

// TestControlsFlip turns each check's condition off and on again: the
// control goes out of force with an alarm to the exception's approver, and
// back with control_restored.
func TestControlsFlip(t *testing.T) {
	sys := &fakeSystem{routes: map[string]string{"10.20.0.7": "seg0"}}
	var telemetryDown, noPorts, locksOff, hoursOff atomic.Bool
	var oldest atomic.Int64
	var changed atomic.Int32
	tm := newTestMonitor(t, nil, func(o *Options) {
		o.System = sys
		o.ControlsChanged = func() { changed.Add(1) }
		o.Env = Env{
			TelemetryOldest: func() (time.Time, bool) {
				if oldest.Load() == 0 {
					return time.Time{}, !telemetryDown.Load()
				}
				return time.Unix(0, oldest.Load()), !telemetryDown.Load()
			},
			VendorPolicy: func(d string) (VendorPolicy, bool) {
				p := VendorPolicy{Approval: []string{"local"}, Ports: []int{23}, Hours: !hoursOff.Load()}
				if noPorts.Load() {
					p.Ports = nil
				}
				return p, d == "pump-07"
			},
			LocksEnforced: func() bool { return !locksOff.Load() },
		}
	})
	tm.CheckControls()
	if fs := tm.take(); len(fs) != 0 {
		t.Fatalf("controls in force raised %+v", fs)
	}
	for _, n := range []string{"segmentation", "restricted-admin-path", "continuous-monitoring", "vendor-hours"} {
		if c := controlOf(t, tm, n); !c.InForce || c.Checked.IsZero() {
			t.Fatalf("%s: %+v", n, c)
		}
	}
	if changed.Load() == 0 {
		t.Error("ControlsChanged not called on the first check")
	}
	cases := []struct {
		control, detail string
		off, on         func()
	}{
		{"segmentation", "forwards packets", func() { sys.mu.Lock(); sys.forward = true; sys.mu.Unlock() }, func() { sys.mu.Lock(); sys.forward = false; sys.mu.Unlock() }},
		{"segmentation", "goes out eth0", func() { sys.mu.Lock(); sys.routes["10.20.0.7"] = "eth0"; sys.mu.Unlock() }, func() { sys.mu.Lock(); sys.routes["10.20.0.7"] = "seg0"; sys.mu.Unlock() }},
		{"segmentation", "no route", func() { sys.mu.Lock(); delete(sys.routes, "10.20.0.7"); sys.mu.Unlock() }, func() { sys.mu.Lock(); sys.routes["10.20.0.7"] = "seg0"; sys.mu.Unlock() }},
		{"restricted-admin-path", "no vendor ports", func() { noPorts.Store(true) }, func() { noPorts.Store(false) }},
		{"restricted-admin-path", "does not consult locks", func() { locksOff.Store(true) }, func() { locksOff.Store(false) }},
		{"continuous-monitoring", "not running", func() { telemetryDown.Store(true) }, func() { telemetryDown.Store(false) }},
		{"continuous-monitoring", "waited", func() { oldest.Store(tm.clock.Now().Add(-20 * time.Minute).UnixNano()) }, func() { oldest.Store(0) }},
		{"vendor-hours", "does not enforce", func() { hoursOff.Store(true) }, func() { hoursOff.Store(false) }},
	}
	for _, tc := range cases {
		t.Run(tc.control+" "+tc.detail, func(t *testing.T) {
			tc.off()
			tm.clock.Advance(5 * time.Minute)
			tm.CheckControls()
			fs := tm.take()
			if kinds(fs) != KindControlNotInForce {
				t.Fatalf("off: %+v", fs)
			}
			f := fs[0]
			if f.Owner != "ciso/jdoe" || f.Evidence["control"] != tc.control || f.Evidence["exception"] != "EX-1" || !strings.Contains(f.Evidence["detail"], tc.detail) || f.Severity() != SevAlarm {
				t.Fatalf("finding %+v", f)
			}
			if c := controlOf(t, tm, tc.control); c.InForce {
				t.Fatalf("state %+v", c)
			}
			tm.clock.Advance(5 * time.Minute)
			tm.CheckControls()
			if fs := tm.take(); len(fs) != 0 {
				t.Fatalf("still off reported again: %v", kinds(fs))
			}
			tc.on()
			tm.clock.Advance(5 * time.Minute)
			tm.CheckControls()
			fs = tm.take()
			if kinds(fs) != KindControlRestored || fs[0].Severity() != SevInfo {
				t.Fatalf("on: %+v", fs)
			}
			if c := controlOf(t, tm, tc.control); !c.InForce {
				t.Fatalf("state %+v", c)
			}
		})
	}
	// A control still not in force is reminded daily.
	noPorts.Store(true)
	tm.CheckControls()
	if kinds(tm.take()) != KindControlNotInForce {
		t.Fatal("no alarm")
	}
	for range 23 {
		tm.clock.Advance(time.Hour)
		tm.CheckControls()
	}
	if fs := tm.take(); len(fs) != 0 {
		t.Fatalf("reminded early: %v", kinds(fs))
	}
	tm.clock.Advance(time.Hour)
	tm.CheckControls()
	if kinds(tm.take()) != KindControlNotInForce {
		t.Fatal("no daily reminder")
	}
}

// TestControlsMonitorOffAndMissing: with the monitor disabled
// continuous-monitoring is not in force; segmentation without a segment
// interface is not in force; no-vendor-access holds for a device without
// vendor access.
func TestControlsMonitorOffAndMissing(t *testing.T) {
	tm := newTestMonitor(t, func(s string) string {
		s = replace1(s, "  segment_interface: seg0\n", "")
		s = replace1(s, "compensating: [segmentation, restricted-admin-path, continuous-monitoring, vendor-hours]", "compensating: [segmentation]")
		return s + `    exceptions:
      - {id: EX-2, control: PR.PS-02, reason: old, approved_by: ciso/kim, expires: 2027-03-31, compensating: [no-vendor-access, continuous-monitoring]}
`
	})
	tm.CheckControls()
	fs := tm.take()
	if kinds(fs) != KindControlNotInForce || fs[0].Evidence["control"] != "segmentation" || !strings.Contains(fs[0].Evidence["detail"], "segment_interface") {
		t.Fatalf("findings %+v", fs)
	}
	ecs := tm.Controls()
	if len(ecs) != 2 || ecs[1].Exception != "EX-2" || !ecs[1].Controls[0].InForce || !ecs[1].Controls[1].InForce {
		t.Fatalf("controls %+v", ecs)
	}
	off := false
	cfg := parseConfig(t, strings.Replace(replace1(baseConfig, "  baseline_window: 7d\n", "  baseline_window: 7d\n  enabled: false\n"),
		"continuous-monitoring, ", "", 1))
	cfg.Monitor.Enabled = &off
	// continuous-monitoring with the monitor off cannot be configured; the
	// check itself still refuses it.
	tm.SetConfig(cfg)
	if ok, detail := checkContinuousMonitoring(tm.Monitor, tm.set, &cfg.Devices[0]); ok || !strings.Contains(detail, "disabled") {
		t.Fatalf("monitor off: %v %s", ok, detail)
	}
}

func TestProcSystem(t *testing.T) {
	root := t.TempDir()
	write := func(p, s string) {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("proc/net/route", `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	00000000	0102A8C0	0003	0	0	100	00000000	0	0	0
eth0	0001A8C0	00000000	0001	0	0	100	00FFFFFF	0	0	0
seg0	0000140A	00000000	0001	0	0	0	00FFFFFF	0	0	0
eth9	0700140A	00000000	0001	0	0	0	FFFFFFFF	0	0	0
down0	0900140A	00000000	0000	0	0	0	FFFFFFFF	0	0	0
`)
	write("proc/net/ipv6_route", `fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     seg0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0
`)
	write("proc/sys/net/ipv4/ip_forward", "1\n")
	write("proc/sys/net/ipv4/conf/seg0/forwarding", "0\n")
	write("proc/sys/net/ipv6/conf/all/forwarding", "1\n")
	write("proc/sys/net/ipv6/conf/seg0/forwarding", "1\n")
	s := ProcSystem{Root: root}
	for ip, want := range map[string]string{"10.20.0.9": "seg0", "10.20.0.7": "eth9", "10.20.0.8": "seg0", "192.168.1.5": "eth0", "8.8.8.8": "eth0", "fd00::7": "seg0", "2001:db8::1": "eth0"} {
		got, err := s.RouteInterface(netip.MustParseAddr(ip))
		if err != nil || got != want {
			t.Errorf("route %s: %q %v, want %s", ip, got, err, want)
		}
	}
	if fwd, err := s.Forwarding("seg0", netip.MustParseAddr("10.20.0.9")); err != nil || fwd {
		t.Errorf("ipv4 forwarding on seg0: %v %v", fwd, err)
	}
	if fwd, err := s.Forwarding("seg0", netip.MustParseAddr("fd00::7")); err != nil || !fwd {
		t.Errorf("ipv6 forwarding on seg0: %v %v", fwd, err)
	}
	if _, err := s.Forwarding("../x", netip.MustParseAddr("10.0.0.1")); err == nil {
		t.Error("path in interface name accepted")
	}
	if _, err := (ProcSystem{Root: t.TempDir()}).RouteInterface(netip.MustParseAddr("10.0.0.1")); err == nil {
		t.Error("missing route table accepted")
	}
}

func FuzzParseRoutes(f *testing.F) {
	f.Add([]byte("seg0\t0014000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"), []byte("fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 seg0\n"))
	f.Fuzz(func(t *testing.T, v4, v6 []byte) {
		r4, _ := parseIPv4Routes(strings.NewReader(string(v4)))
		r6, _ := parseIPv6Routes(strings.NewReader(string(v6)))
		for _, r := range slices.Concat(r4, r6) {
			if !r.prefix.IsValid() {
				t.Fatalf("invalid prefix %+v", r)
			}
		}
	})
}
