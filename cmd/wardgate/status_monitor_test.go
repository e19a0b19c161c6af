package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/gateway/monitor"
)

func TestPrintMonitor(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	st := &monitor.Status{
		Enabled: true,
		Findings: []monitor.Finding{{Time: now.Add(-time.Minute), Kind: monitor.KindTrafficAnomaly, Key: "pump-07:bytes_from_device:above",
			Device: "pump-07", Owner: "clinical-engineering/icu", Count: 1}},
		Counts: map[string]int{monitor.KindTrafficAnomaly: 1, monitor.KindControlNotInForce: 2},
		Baselines: []monitor.BaselineStatus{{Device: "pump-07", Slots: 168, LastHourToDevice: 2000, LastHourFromDevice: 6000,
			LastHourSessions: 40, LastActivity: now.Add(-2 * time.Minute)}},
		Controls: []monitor.ExceptionControls{{Device: "pump-07", Exception: "EX-1", ApprovedBy: "ciso/jdoe", Controls: []monitor.ControlState{
			{Name: "segmentation", InForce: false, Detail: "the gateway forwards packets on eth1", Checked: now},
			{Name: "continuous-monitoring", InForce: true, Detail: "monitor on", Checked: now},
			{Name: "vendor-hours", Detail: "not checked yet"}}}},
		Neighbours: monitor.NeighbourStatus{Interface: "eth1", Seen: 3, Unknown: 1},
	}
	var out bytes.Buffer
	printMonitor(&env{stdout: &out}, now, st)
	for _, want := range []string{"EX-1", "ciso/jdoe", "NOT IN FORCE", "forwards packets", "in force", "not checked yet",
		"learned", "168/168", "2000/6000", "segment    eth1: 3 neighbour(s), 1 not in the inventory",
		"findings   control_not_in_force 2, traffic_anomaly 1", "WARNING traffic_anomaly pump-07:bytes_from_device:above x1 pump-07 (clinical-engineering/icu)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	printMonitor(&env{stdout: &out}, now, &monitor.Status{})
	if !strings.Contains(out.String(), "monitor    DISABLED") || !strings.Contains(out.String(), "findings   none since start") {
		t.Errorf("disabled monitor:\n%s", out.String())
	}
}
