package agent

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// floodAddrEnv, when set, turns this test binary into the flooder process
// of BenchmarkClinicalDuringVendorFlood (see TestFlooderProcess).
const floodAddrEnv = "WARDGATE_BENCH_FLOOD_ADDR"

// BenchmarkClinicalDuringVendorFlood measures clinical echo latency (p99)
// on a quiet gateway and while another process floods the vendor port with
// 500 idle connections and certificate-less handshakes, side by side in one
// run. An attacker's flood comes from another machine: on a machine with
// two or more cores the flooder is pinned to the last core and this
// process (agent and clinical client) to the others, so the figure is the
// gateway's own cost of refusing, not a contest for CPU with the attacker.
// The figure that matters is flood-p99/quiet-p99 (target <= 2).
func BenchmarkClinicalDuringVendorFlood(b *testing.B) {
	e := newEnv(b)
	e.start(e.config(pumpServer))
	clin, r, err := e.dial(e.addrs["pump"], e.cert(pumpServer, time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	defer clin.Close()
	pinned := pinSelf(b)
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
		stop := startFlooder(b, e.addrs["vendor"], pinned)
		flooded = append(flooded, measure())
		stop()
	}
	b.StopTimer()
	med := func(ds []time.Duration) time.Duration { slices.Sort(ds); return ds[len(ds)/2] }
	q, f := med(quiet), med(flooded)
	b.ReportMetric(float64(q.Microseconds()), "quiet-p99-µs")
	b.ReportMetric(float64(f.Microseconds()), "flood-p99-µs")
	b.ReportMetric(float64(f)/float64(q), "flood/quiet")
}

// pinSelf pins every thread of this process to all cores but the last one
// (taskset from util-linux) and reports whether it did.
func pinSelf(b *testing.B) bool {
	n := runtime.NumCPU()
	ts, err := exec.LookPath("taskset")
	if n < 2 || err != nil {
		b.Logf("flooder not pinned (cores %d, taskset: %v): attacker and gateway share the CPU", n, err)
		return false
	}
	if out, err := exec.Command(ts, "-a", "-cp", fmt.Sprintf("0-%d", n-2), strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
		b.Logf("taskset: %v: %s", err, out)
		return false
	}
	b.Cleanup(func() {
		exec.Command(ts, "-a", "-cp", fmt.Sprintf("0-%d", n-1), strconv.Itoa(os.Getpid())).Run()
	})
	return true
}

// startFlooder runs this test binary as the flooder process and returns a
// function that stops it. It waits until the idle connections are open.
func startFlooder(b *testing.B, addr string, pinned bool) func() {
	args := []string{"-test.run=^TestFlooderProcess$", "-test.count=1"}
	name := os.Args[0]
	if pinned {
		args = append([]string{"-c", strconv.Itoa(runtime.NumCPU() - 1), name}, args...)
		name = "taskset"
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), floodAddrEnv+"="+addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	ready := make([]byte, 6)
	if _, err := out.Read(ready); err != nil || string(ready) != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		b.Fatalf("flooder did not start: %q %v", ready, err)
	}
	return func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
}

// TestFlooderProcess is the flooder of BenchmarkClinicalDuringVendorFlood
// when run with WARDGATE_BENCH_FLOOD_ADDR set; otherwise it does nothing.
// It holds 500 idle connections, says "ready", then makes
// certificate-less handshakes from 4 goroutines until it is killed (at
// most 2 minutes).
func TestFlooderProcess(t *testing.T) {
	addr := os.Getenv(floodAddrEnv)
	if addr == "" {
		t.Skip("the flooder of BenchmarkClinicalDuringVendorFlood; runs only as its child process")
	}
	var idle []net.Conn
	for range 500 {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			idle = append(idle, c)
		}
	}
	os.Stdout.WriteString("ready\n")
	deadline := time.Now().Add(2 * time.Minute)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
				if err == nil {
					c.Close()
				}
			}
		}()
	}
	wg.Wait()
	for _, c := range idle {
		c.Close()
	}
}
