package agent

import (
	"io"
	"slices"
	"testing"
	"time"

	"github.com/wardgate/wardgate/config"
)

// BenchmarkMonitorOverhead measures the clinical relay with the monitor on
// and off, side by side in one run: one agent whose monitor is switched on
// and off (SetConfig, outside the timed parts) operation by operation, so
// that the relay, the connection and the machine's load are the same for
// both. It reports p99 of a small round trip, bulk throughput and new
// sessions per second (each session's events pass through the monitor),
// and the on/off ratios that matter (target: throughput and sessions
// >= 0.97, p99 <= 1.03).
func BenchmarkMonitorOverhead(b *testing.B) {
	e := newEnv(b)
	cfg := e.config(pumpServer)
	e.start(cfg)
	onCfg, offCfg := *cfg, *cfg
	on, off := true, false
	onCfg.Monitor.Enabled, offCfg.Monitor.Enabled = &on, &off
	cert := e.cert(pumpServer, time.Hour)
	c, r, err := e.dial(e.addrs["pump"], cert)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	type side struct {
		cfg  *config.Config
		lat  []time.Duration
		bulk time.Duration // total time of the bulk transfers
		sess time.Duration // total time of the new sessions
	}
	sOn, sOff := &side{cfg: &onCfg}, &side{cfg: &offCfg}
	const (
		samples  = 2000
		chunks   = 32
		chunk    = 1 << 20
		sessions = 100
	)
	buf := make([]byte, chunk)
	timed := func(order []*side, f func() time.Duration, add func(*side, time.Duration)) {
		for _, s := range order {
			e.a.mon.SetConfig(s.cfg)
			add(s, f())
		}
	}
	b.ResetTimer()
	for i := range b.N {
		order := []*side{sOn, sOff}
		if i%2 == 1 {
			order = []*side{sOff, sOn}
		}
		for range samples {
			timed(order, func() time.Duration {
				t0 := time.Now()
				if err := roundTrip(c, r, "vitals"); err != nil {
					b.Fatal(err)
				}
				return time.Since(t0)
			}, func(s *side, d time.Duration) { s.lat = append(s.lat, d) })
		}
		for range chunks {
			timed(order, func() time.Duration {
				t0 := time.Now()
				done := make(chan error, 1)
				go func() {
					_, err := io.CopyN(io.Discard, r, chunk)
					done <- err
				}()
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				return time.Since(t0)
			}, func(s *side, d time.Duration) { s.bulk += d })
		}
		for range sessions {
			timed(order, func() time.Duration {
				t0 := time.Now()
				sc, sr, err := e.dial(e.addrs["pump"], cert)
				if err != nil {
					b.Fatal(err)
				}
				if err := roundTrip(sc, sr, "hello"); err != nil {
					b.Fatal(err)
				}
				sc.Close()
				return time.Since(t0)
			}, func(s *side, d time.Duration) { s.sess += d })
		}
	}
	b.StopTimer()
	e.a.mon.SetConfig(cfg)
	p99 := func(s *side) float64 {
		slices.Sort(s.lat)
		return float64(s.lat[len(s.lat)*99/100].Microseconds())
	}
	mbps := func(s *side) float64 { return float64(b.N*chunks*chunk) / (1 << 20) / s.bulk.Seconds() }
	sps := func(s *side) float64 { return float64(b.N*sessions) / s.sess.Seconds() }
	b.ReportMetric(p99(sOn)/p99(sOff), "p99-on/off")
	b.ReportMetric(mbps(sOn)/mbps(sOff), "MBps-on/off")
	b.ReportMetric(sps(sOn)/sps(sOff), "sessions-on/off")
	b.ReportMetric(mbps(sOn), "MBps-on")
	b.ReportMetric(p99(sOn), "p99-on-µs")
}
