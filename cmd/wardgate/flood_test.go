package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/certs/stepcatest"
)

// TestVendorFloodAgainstRealProcess is the vendor-port flood against the
// real binary (built without the race detector, so its memory is what a
// gateway sees) limited to 1,024 descriptors, with identities from a real
// step-ca: 1,500 idle connections and 1,500 certificate-less handshakes on
// the vendor port while a clinical client keeps echoing through the device
// relay. The agent stays up, clinical echo never fails, RSS stays under
// 150 MB and the log stays in the hundreds of lines.
func TestVendorFloodAgainstRealProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary under a flood")
	}
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Fatalf("prlimit (util-linux) is needed to cap the agent's descriptors: %v", err)
	}
	ca := stepcatest.New(t, stepcatest.Config{DefaultDur: time.Hour, MinDur: time.Minute,
		Provisioners: map[string]bool{"gateways": false}})
	bin := buildPlainBinary(t)
	dir := t.TempDir()

	device := echoServer(t)
	vendorPort, clinicalPort := freePort(t), freePort(t)
	cfgPath := filepath.Join(dir, "wardgate.yaml")
	cfg := fmt.Sprintf(`version: 1
gateway: {id: gw-flood, site: lab, trust_domain: hospital.example, state_dir: %[1]s/state,
          vendor_listen: "127.0.0.1:%[2]d", admin_socket: %[1]s/admin.sock}
identity: {ca: step, ca_url: %[3]q, root_fingerprint: %[4]s, lifetime: 1h}
mqtt: {broker: "mqtts://127.0.0.1:%[5]d"}
hal: {driver: sim}
vendors:
  - {org: acme-medical, identities: ["spiffe://hospital.example/vendor/acme-medical/*"]}
devices:
  - id: pump-07
    owner: clinical-engineering/icu
    link: {tcp: %[6]q}
    clinical: {listen: "127.0.0.1:%[7]d", allow: ["spiffe://hospital.example/svc/pump-server"]}
    vendor: {org: acme-medical, ports: [23], approval: [local]}
`, dir, vendorPort, ca.URL, ca.Fingerprint(), freePort(t), device, clinicalPort)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	gwURI := "spiffe://hospital.example/gateway/gw-flood"
	if out, err := exec.Command(bin, "enroll", "--config", cfgPath, "--token", ca.Token("gateways", "gw-flood", "gw-flood", gwURI)).CombinedOutput(); err != nil {
		t.Fatalf("enroll: %v\n%s", err, out)
	}
	clientCert, roots := enrollService(t, ca, "pump-server")

	var logs lineCounter
	agent := exec.Command(prlimit, "--nofile=1024:1024", "--", bin, "run", "--config", cfgPath, "--log-json")
	agent.Stderr = &logs
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	t.Cleanup(func() {
		if agent.ProcessState == nil {
			agent.Process.Kill()
			<-exited
		}
	})
	clinicalAddr := fmt.Sprintf("127.0.0.1:%d", clinicalPort)
	vendorAddr := fmt.Sprintf("127.0.0.1:%d", vendorPort)
	clientTLS := &tls.Config{Certificates: []tls.Certificate{clientCert}, RootCAs: roots, ServerName: "gw-flood", MinVersion: tls.VersionTLS12}
	var clin *tls.Conn
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", clinicalAddr, clientTLS)
		if err == nil {
			clin = c
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("agent exited before serving: %v\n%s", err, logs.tail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("clinical listener never accepted the service certificate: %v\n%s", err, logs.tail())
		}
		time.Sleep(100 * time.Millisecond) // polling another process's listener
	}
	defer clin.Close()
	if got := nofileLimit(t, agent.Process.Pid); got != 1024 {
		t.Fatalf("agent descriptor limit = %d, want 1024", got)
	}
	rd := bufio.NewReader(clin)
	echo := func(i int) error {
		want := fmt.Sprintf("vitals %d\n", i)
		clin.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(clin, want); err != nil {
			return err
		}
		got, err := rd.ReadString('\n')
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("echo %q, want %q", got, want)
		}
		return nil
	}
	if err := echo(0); err != nil {
		t.Fatalf("clinical echo before the flood: %v", err)
	}
	baseLines := logs.n.Load()

	// The flood: idle connections held open, and certificate-less
	// handshakes, from this process, while the clinical client echoes.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var idle []net.Conn
	var idleMu sync.Mutex
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	var handshakes, idleOpened atomic.Int64
	var flood sync.WaitGroup
	flood.Add(2)
	go func() { // 1,500 idle connections
		defer flood.Done()
		for i := 0; i < 1500 && ctx.Err() == nil; i++ {
			c, err := net.DialTimeout("tcp", vendorAddr, 2*time.Second)
			if err != nil {
				continue
			}
			idleOpened.Add(1)
			idleMu.Lock()
			idle = append(idle, c)
			idleMu.Unlock()
		}
	}()
	go func() { // 1,500 certificate-less handshakes, 8 at a time
		defer flood.Done()
		var wg sync.WaitGroup
		next := atomic.Int64{}
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= 1500 && ctx.Err() == nil {
					c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", vendorAddr,
						&tls.Config{InsecureSkipVerify: true, NextProtos: []string{strings.Repeat("x", 200), "h2", "http/1.1"}})
					handshakes.Add(1)
					if err == nil {
						c.Close()
					}
				}
			}()
		}
		wg.Wait()
	}()
	floodDone := make(chan struct{})
	go func() { flood.Wait(); close(floodDone) }()
	echoes := 0
	for i := 1; ; i++ {
		if err := echo(i); err != nil {
			t.Fatalf("clinical echo %d failed during the flood: %v\n%s", i, err, logs.tail())
		}
		echoes++
		select {
		case <-floodDone:
		default:
			continue
		}
		break
	}
	if ctx.Err() != nil {
		t.Fatalf("the flood did not finish within its time bound (%d idle, %d handshakes)", idleOpened.Load(), handshakes.Load())
	}
	for i := 0; i < 100; i++ { // and after it, with the idle connections still held
		if err := echo(100000 + i); err != nil {
			t.Fatalf("clinical echo after the flood: %v", err)
		}
	}
	select {
	case err := <-exited:
		t.Fatalf("agent exited during the flood: %v\n%s", err, logs.tail())
	default:
	}
	rss := peakRSS(t, agent.Process.Pid)
	floodLines := logs.n.Load() - baseLines
	t.Logf("flood: %d idle opened, %d handshakes; %d clinical echoes during it; agent peak RSS %d MB; %d log lines",
		idleOpened.Load(), handshakes.Load(), echoes, rss>>20, floodLines)
	if rss >= 150<<20 {
		t.Errorf("agent peak RSS %d MB, want < 150 MB", rss>>20)
	}
	if floodLines >= 1000 {
		t.Errorf("%d log lines during the flood, want them in the hundreds at most:\n%s", floodLines, logs.tail())
	}
	// The admin socket still answers.
	if out, err := exec.Command(bin, "status", "--config", cfgPath).CombinedOutput(); err != nil {
		t.Errorf("status after the flood: %v\n%s", err, out)
	}
}

// buildPlainBinary builds wardgate without the race detector, as shipped.
func buildPlainBinary(t *testing.T) string {
	t.Helper()
	plainOnce.Do(func() {
		dir, err := osMkdirTemp()
		if err != nil {
			plainErr = err
			return
		}
		plainPath = filepath.Join(dir, "wardgate-plain")
		out, err := exec.Command("go", "build", "-trimpath", "-tags", "nethttpomithttp2", "-o", plainPath, ".").CombinedOutput()
		if err != nil {
			plainErr = &buildError{err: err, out: string(out)}
		}
	})
	if plainErr != nil {
		t.Fatal(plainErr)
	}
	return plainPath
}

var (
	plainOnce sync.Once
	plainPath string
	plainErr  error
)

// enrollService obtains spiffe://hospital.example/svc/NAME from the CA
// the way any step client would (a token and a CSR).
func enrollService(t *testing.T, ca *stepcatest.StepCA, name string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "identity")
	uri := "spiffe://hospital.example/svc/" + name
	if _, err := certs.Enroll(context.Background(), certs.EnrollOptions{CAURL: ca.URL, RootFingerprint: ca.Fingerprint(),
		Token: ca.Token("gateways", name, name, uri), Dir: dir}); err != nil {
		t.Fatalf("enroll %s: %v", uri, err)
	}
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, certs.CertFile), filepath.Join(dir, certs.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	return c, roots
}

// echoServer is the legacy device: it echoes every line.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return l.Addr().String()
}

// lineCounter counts the lines written to it and keeps the last few KB.
type lineCounter struct {
	n    atomic.Int64
	mu   sync.Mutex
	last []byte
}

func (l *lineCounter) Write(p []byte) (int, error) {
	l.n.Add(int64(bytes.Count(p, []byte{'\n'})))
	l.mu.Lock()
	l.last = append(l.last, p...)
	if len(l.last) > 8192 {
		l.last = l.last[len(l.last)-8192:]
	}
	l.mu.Unlock()
	return len(p), nil
}

func (l *lineCounter) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.last)
}

// peakRSS reads VmHWM (peak resident set) of pid in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// nofileLimit reads the soft descriptor limit of pid.
func nofileLimit(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(line)
			n, _ := strconv.Atoi(f[3])
			return n
		}
	}
	return -1
}
