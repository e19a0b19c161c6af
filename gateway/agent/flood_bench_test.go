package agent

import (
	"crypto/tls"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkClinicalDuringVendorFlood measures clinical echo latency (p99)
// on a quiet gateway and while the vendor port is flooded with idle
// connections and certificate-less handshakes, side by side in one run.
// The figure that matters is flood-p99/quiet-p99 (target <= 2).
func BenchmarkClinicalDuringVendorFlood(b *testing.B) {
	e := newEnv(b)
	e.start(e.config(pumpServer))
	clin, r, err := e.dial(e.addrs["pump"], e.cert(pumpServer, time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	defer clin.Close()
	const samples = 2000
	measure := func() time.Duration {
		lat := make([]time.Duration, 0, samples)
		for range samples {
			t0 := time.Now()
			if err := roundTrip(clin, r, "vitals"); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		slices.Sort(lat)
		return lat[len(lat)*99/100]
	}
	b.ResetTimer()
	var quiet, flooded []time.Duration
	for range b.N {
		quiet = append(quiet, measure())
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 { // flooders: handshakes without a certificate, bounded by stop
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; n < 5000; n++ {
					select {
					case <-stop:
						return
					default:
					}
					c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", e.addrs["vendor"], &tls.Config{InsecureSkipVerify: true})
					if err == nil {
						c.Close()
					}
				}
			}()
		}
		var idle []net.Conn
		for range 500 {
			if c, err := net.DialTimeout("tcp", e.addrs["vendor"], time.Second); err == nil {
				idle = append(idle, c)
			}
		}
		flooded = append(flooded, measure())
		close(stop)
		wg.Wait()
		for _, c := range idle {
			c.Close()
		}
	}
	b.StopTimer()
	med := func(ds []time.Duration) time.Duration { slices.Sort(ds); return ds[len(ds)/2] }
	q, f := med(quiet), med(flooded)
	b.ReportMetric(float64(q.Microseconds()), "quiet-p99-µs")
	b.ReportMetric(float64(f.Microseconds()), "flood-p99-µs")
	b.ReportMetric(float64(f)/float64(q), "flood/quiet")
}
