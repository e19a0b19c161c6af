package monitor

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// simulateDays plays days of the demo's normal life on the fake clock, one
// minute at a time: clinical sessions from the known systems with their
// traffic, a reconnecting client's occasional failed handshake, a vendor's
// service session in hours from one address approved by the usual
// approver, neighbour scans of the inventory's devices and control checks.
func simulateDays(tm *tmon, c *counters, rng *rand.Rand, days int) {
	mon := "spiffe://hospital.example/svc/central-station"
	ann := "central:spiffe://hospital.example/approver/biomed/ann"
	grant := 0
	for range days * 24 * 60 {
		now := tm.clock.Now().Local()
		h, m := now.Hour(), now.Minute()
		to, from, sess := normalHour(rng, h)
		c.to += to / 60
		c.from += from / 60
		if int64(m) < sess%60 {
			c.sess++
			tm.ev("clinical.session_start", "device", "pump-07", "identity", pump, "remote", "10.1.0.5:40000")
			tm.ev("clinical.session_start", "device", "mon-03", "identity", mon, "remote", "10.1.0.6:40000")
		}
		if m == 17 && h%3 == 0 { // a flaky client: one failed handshake every 3 hours
			tm.ev("clinical.handshake_failed", "device", "pump-07", "remote", "10.1.0.5:40001", "reason", "client_gone")
		}
		if wd := now.Weekday(); wd >= time.Monday && wd <= time.Friday && h == 10 && m == 0 {
			grant++
			g := fmt.Sprintf("G%d", grant)
			tm.ev("vendor.refused", "vendor", jo, "device", "pump-07", "code", "no_grant", "remote", "203.0.113.1:5000", "count", "1")
			tm.ev("vendor.request", "vendor", jo, "device", "pump-07", "grant", g)
			tm.ev("vendor.approve", "actor", ann, "grant", g, "device", "pump-07")
			tm.ev("vendor.session_start", "vendor", jo, "device", "pump-07", "session", g+"s", "remote", "203.0.113.1:5001", "grant", g)
		}
		if wd := now.Weekday(); wd >= time.Monday && wd <= time.Friday && h == 10 && m == 40 {
			tm.ev("vendor.session_end", "vendor", jo, "device", "pump-07", "session", fmt.Sprintf("G%ds", grant))
		}
		tm.clock.Advance(time.Minute)
		tm.Tick(tm.clock.Now())
		if m%5 == 0 {
			tm.ScanNeighbours()
			tm.CheckControls()
		}
	}
}

// TestNormalDay: after learning, a 24-hour simulated normal day raises no
// finding at all.
func TestNormalDay(t *testing.T) {
	c := &counters{}
	src := &fakeNeighbours{ns: []Neighbour{
		{netip.MustParseAddr("10.20.0.7"), "02:00:00:00:00:07"},
		{netip.MustParseAddr("10.20.0.9"), "02:00:00:00:00:09"},
	}}
	tm := newTestMonitor(t, func(s string) string {
		return replace1(s, "  baseline_window: 7d\n", "  baseline_window: 7d\n  approver_learn: 5\n")
	}, func(o *Options) {
		o.Neighbours = src
		o.Traffic = func() []Traffic {
			return []Traffic{{Device: "pump-07", ToDevice: c.to, FromDevice: c.from, Sessions: c.sess},
				{Device: "mon-03", ToDevice: c.to / 2, FromDevice: c.from / 2, Sessions: c.sess}}
		}
	})
	rng := rand.New(rand.NewPCG(7, 8))
	simulateDays(tm, c, rng, 8) // learning: a week of baselines, five approvals
	if fs := tm.take(); len(fs) != 0 {
		t.Fatalf("findings while learning normal weeks: %+v", fs)
	}
	simulateDays(tm, c, rng, 1)
	if fs := tm.take(); len(fs) != 0 {
		t.Fatalf("false positives over a normal day: %+v", fs)
	}
	st := tm.Status()
	if len(st.Findings) != 0 || len(st.Baselines) != 2 || st.Baselines[0].Learning || st.LearnedIdentities != 2 || st.LearnedApprovers != 1 {
		t.Fatalf("status after a normal day: %+v", st)
	}
}
