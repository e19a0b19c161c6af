package agent

import (
	"bufio"
	"crypto/tls"
	"io"
	"slices"
	"testing"
	"time"
)

// BenchmarkMonitorOverhead measures the clinical relay with the monitor on
// and off, side by side in one run: two agents, one with monitor.enabled
// false, measured in alternation operation by operation so that the
// machine's load falls on both alike. It reports p99 of a small round
// trip, bulk throughput and new sessions per second (each session's events
// pass through the monitor), and the on/off ratios that matter (target:
// throughput and sessions >= 0.97, p99 <= 1.03).
func BenchmarkMonitorOverhead(b *testing.B) {
	type side struct {
		e    *env
		cert tls.Certificate
		c    *tls.Conn
		r    *bufio.Reader
		lat  []time.Duration
		bulk time.Duration // total time of the bulk transfers
		sess time.Duration // total time of the new sessions
	}
	mk := func(on bool) *side {
		e := newEnv(b)
		cfg := e.config(pumpServer)
		cfg.Monitor.Enabled = &on
		e.start(cfg)
		s := &side{e: e, cert: e.cert(pumpServer, time.Hour)}
		var err error
		if s.c, s.r, err = e.dial(e.addrs["pump"], s.cert); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.c.Close() })
		return s
	}
	on, off := mk(true), mk(false)
	both := []*side{on, off}
	const (
		samples  = 2000
		chunks   = 32
		chunk    = 1 << 20
		sessions = 100
	)
	buf := make([]byte, chunk)
	b.ResetTimer()
	for i := range b.N {
		order := both
		if i%2 == 1 {
			order = []*side{off, on}
		}
		for range samples {
			for _, s := range order {
				t0 := time.Now()
				if err := roundTrip(s.c, s.r, "vitals"); err != nil {
					b.Fatal(err)
				}
				s.lat = append(s.lat, time.Since(t0))
			}
		}
		for range chunks {
			for _, s := range order {
				t0 := time.Now()
				done := make(chan error, 1)
				go func() {
					_, err := io.CopyN(io.Discard, s.r, chunk)
					done <- err
				}()
				if _, err := s.c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				s.bulk += time.Since(t0)
			}
		}
		for range sessions {
			for _, s := range order {
				t0 := time.Now()
				c, r, err := s.e.dial(s.e.addrs["pump"], s.cert)
				if err != nil {
					b.Fatal(err)
				}
				if err := roundTrip(c, r, "hello"); err != nil {
					b.Fatal(err)
				}
				c.Close()
				s.sess += time.Since(t0)
			}
		}
	}
	b.StopTimer()
	p99 := func(s *side) float64 {
		slices.Sort(s.lat)
		return float64(s.lat[len(s.lat)*99/100].Microseconds())
	}
	mbps := func(s *side) float64 { return float64(b.N*chunks*chunk) / (1 << 20) / s.bulk.Seconds() }
	sps := func(s *side) float64 { return float64(b.N*sessions) / s.sess.Seconds() }
	b.ReportMetric(p99(on)/p99(off), "p99-on/off")
	b.ReportMetric(mbps(on)/mbps(off), "MBps-on/off")
	b.ReportMetric(sps(on)/sps(off), "sessions-on/off")
	b.ReportMetric(mbps(on), "MBps-on")
	b.ReportMetric(p99(on), "p99-on-µs")
}
