package monitor

import (
	"math/rand/v2"
	"testing"
	"time"
)

// counters simulates the clinical relay's cumulative counters.
type counters struct {
	to, from, sess int64
}

// normalHour is the demo's usual traffic for an hour of the day: busy by
// day, quiet at night, with +-25% noise.
func normalHour(rng *rand.Rand, hour int) (to, from, sess int64) {
	base := int64(200 << 10) // night
	s := int64(6)
	if hour >= 7 && hour < 19 {
		base, s = 2<<20, 40
	}
	noise := func(v int64) int64 { return v + int64(float64(v)*(rng.Float64()-0.5)*0.5) }
	return noise(base), noise(base * 3), noise(s)
}

// runHours drives tm through n hours of generated traffic for pump-07 in
// one-minute ticks; spike multiplies the hour at index spikeAt.
func runHours(tm *tmon, c *counters, rng *rand.Rand, n int, spikeAt int, spike float64) {
	for h := range n {
		hour := tm.clock.Now().Local().Hour()
		to, from, sess := normalHour(rng, hour)
		if h == spikeAt {
			to, from = int64(float64(to)*spike), int64(float64(from)*spike)
		}
		for minute := range 60 {
			c.to += to / 60
			c.from += from / 60
			if int64(minute) < sess%60 {
				c.sess++
			}
			tm.clock.Advance(time.Minute)
			tm.Tick(tm.clock.Now())
		}
	}
}

func trafficMonitor(t *testing.T, c *counters, edit func(string) string) *tmon {
	return newTestMonitor(t, edit, func(o *Options) {
		o.Traffic = func() []Traffic {
			return []Traffic{{Device: "pump-07", ToDevice: c.to, FromDevice: c.from, Sessions: c.sess}}
		}
	})
}

// TestBaselineNormalDayAndAnomaly learns a week, then a normal simulated
// day raises nothing and an hour with ten times the traffic raises
// monitor.traffic_anomaly naming the device's owner.
func TestBaselineNormalDayAndAnomaly(t *testing.T) {
	c := &counters{}
	tm := trafficMonitor(t, c, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	runHours(tm, c, rng, 8*24, -1, 1) // learn (baseline_window 7d) and one more day
	if fs := tm.take(); len(fs) != 0 {
		t.Fatalf("findings while learning a normal week: %v", kinds(fs))
	}
	runHours(tm, c, rng, 24, -1, 1)
	if fs := tm.take(); len(fs) != 0 {
		t.Fatalf("false positives over a normal day: %+v", fs)
	}
	runHours(tm, c, rng, 3, 1, 10)
	fs := tm.take()
	if len(fs) != 2 { // to and from the device
		t.Fatalf("anomaly findings %+v", fs)
	}
	for _, f := range fs {
		if f.Kind != KindTrafficAnomaly || f.Owner != "clinical-engineering/icu" || f.Evidence["direction"] != "above" || f.Device != "pump-07" {
			t.Errorf("finding %+v", f)
		}
	}
	st := tm.Status()
	if len(st.Baselines) != 1 || st.Baselines[0].Learning || st.Baselines[0].Slots != 168 {
		t.Errorf("baseline status %+v", st.Baselines)
	}
}

// TestBaselineDrop: a busy hour with almost no traffic is an anomaly too.
func TestBaselineDrop(t *testing.T) {
	c := &counters{}
	tm := trafficMonitor(t, c, nil)
	rng := rand.New(rand.NewPCG(3, 4))
	runHours(tm, c, rng, 7*24+1, -1, 1) // ends Monday 11:00
	tm.take()
	runHours(tm, c, rng, 2, 0, 0.01)
	fs := tm.take()
	if len(fs) == 0 || fs[0].Kind != KindTrafficAnomaly || fs[0].Evidence["direction"] != "below" {
		t.Fatalf("drop findings %+v", fs)
	}
}

// TestBaselinePersists: the learned baseline survives a restart.
func TestBaselinePersists(t *testing.T) {
	c := &counters{}
	tm := trafficMonitor(t, c, nil)
	rng := rand.New(rand.NewPCG(5, 6))
	runHours(tm, c, rng, 7*24+2, -1, 1)
	tm.Close()
	tm2 := newTestMonitor(t, nil, func(o *Options) {
		o.Path, o.Clock = tm.path, tm.clock
		o.Traffic = func() []Traffic {
			return []Traffic{{Device: "pump-07", ToDevice: c.to, FromDevice: c.from, Sessions: c.sess}}
		}
	})
	runHours(tm2, c, rng, 3, 1, 10)
	if fs := tm2.take(); len(fs) != 2 {
		t.Fatalf("after restart: %+v", fs)
	}
}

func TestDeviceSilent(t *testing.T) {
	c := &counters{}
	tm := trafficMonitor(t, c, func(s string) string {
		return replace1(s, "    mac: \"02:00:00:00:00:07\"\n", "    mac: \"02:00:00:00:00:07\"\n    expect_traffic_every: 30m\n")
	})
	tick := func(n int) {
		for range n {
			tm.clock.Advance(time.Minute)
			tm.Tick(tm.clock.Now())
		}
	}
	tick(30) // the first sample sets the origin
	if fs := tm.take(); len(fs) != 0 {
		t.Fatalf("silent too early: %v", kinds(fs))
	}
	tick(1)
	fs := tm.take()
	if kinds(fs) != KindDeviceSilent || fs[0].Owner != "clinical-engineering/icu" {
		t.Fatalf("findings %+v", fs)
	}
	tick(60)
	if fs := tm.take(); len(fs) != 0 {
		t.Fatalf("silence reported again: %v", kinds(fs))
	}
	c.sess++
	tick(31)
	if fs := tm.take(); kinds(fs) != KindDeviceSilent {
		t.Fatalf("second silence: %v", kinds(fs))
	}
}
