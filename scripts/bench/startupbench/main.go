// Command startupbench measures how long `wardgate run` takes from exec to
// serving, with a development-CA configuration on loopback: to READY=1 on
// its systemd notify socket, and to the first TLS handshake its clinical
// listener completes (the listener serves TLS with this start's identity).
// It starts and stops the agent -n times (bounded by -budget) and prints one
// `go test -bench` style line per start and figure, which
// scripts/benchtable turns into medians. Run by scripts/bench/startup.sh.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/wardgate/wardgate/internal/testnet"
)

func main() {
	bin := flag.String("bin", "bin/wardgate", "the wardgate binary")
	n := flag.Int("n", 15, "starts to measure (after one warm-up start)")
	budget := flag.Duration("budget", 90*time.Second, "stop after this long even if fewer starts were measured")
	flag.Parse()
	if err := bench(os.Stdout, *bin, *n, *budget); err != nil {
		fmt.Fprintln(os.Stderr, "startupbench:", err)
		os.Exit(1)
	}
}

func bench(w io.Writer, bin string, n int, budget time.Duration) error {
	dir, err := os.MkdirTemp("", "startupbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	clinical := fmt.Sprintf("127.0.0.1:%d", ports[0])
	cfg := filepath.Join(dir, "wardgate.yaml")
	// The broker and the device are not there: the agent starts regardless
	// and keeps trying, as on a gateway whose network is still coming up.
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `version: 1
gateway:
  id: gw-bench
  site: lab
  trust_domain: hospital.example
  state_dir: %[1]s/state
  vendor_listen: "127.0.0.1:%[2]d"
  admin_socket: %[1]s/admin.sock
  drain_timeout: 2s
identity: {ca: dev, lifetime: 1h}
mqtt: {broker: "mqtts://127.0.0.1:%[3]d"}
hal: {driver: sim}
vendors:
  - {org: acme-medical, identities: ["spiffe://hospital.example/vendor/acme-medical/*"]}
devices:
  - id: pump-07
    owner: clinical-engineering/icu
    link: {tcp: "127.0.0.1:%[4]d"}
    clinical: {listen: "%[5]s", allow: ["spiffe://hospital.example/svc/pump-server"]}
    vendor: {org: acme-medical, ports: [23], approval: [local]}
`, dir, ports[1], ports[2], ports[3], clinical), 0o600); err != nil {
		return err
	}
	fmt.Fprintln(w, "pkg: cmd/wardgate (startup, dev CA, loopback)")
	deadline := time.Now().Add(budget)
	for i := 0; i <= n && time.Now().Before(deadline); i++ {
		ready, serving, err := start(bin, cfg, dir, clinical)
		if err != nil {
			return fmt.Errorf("start %d: %w", i, err)
		}
		if i == 0 {
			continue // warm-up: page cache, state directory
		}
		fmt.Fprintf(w, "BenchmarkStartupToReady 1 %.2f ms/start\n", ms(ready))
		fmt.Fprintf(w, "BenchmarkStartupToClinicalTLS 1 %.2f ms/start\n", ms(serving))
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// start runs the agent once and returns the time from exec to READY=1 and to
// the first completed TLS handshake on the clinical listener, then stops it.
func start(bin, cfg, dir, clinical string) (ready, serving time.Duration, err error) {
	sockPath := filepath.Join(dir, "notify.sock")
	os.Remove(sockPath)
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		return 0, 0, err
	}
	defer notify.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.Command(bin, "run", "--config", cfg, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath)
	var logs strings.Builder
	cmd.Stderr = &logs
	readyCh := make(chan time.Time, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := notify.Read(buf)
			if err != nil {
				return
			}
			if strings.Contains("\n"+string(buf[:k])+"\n", "\nREADY=1\n") {
				readyCh <- time.Now()
				return
			}
		}
	}()
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}()
	servingCh := make(chan time.Time, 1)
	go func() {
		if err := firstHandshake(ctx, clinical, filepath.Join(dir, "state", "dev-root.crt"), t0); err == nil {
			servingCh <- time.Now()
		}
	}()
	for ready == 0 || serving == 0 {
		select {
		case t := <-readyCh:
			ready = t.Sub(t0)
		case t := <-servingCh:
			serving = t.Sub(t0)
		case err := <-exited:
			exited <- err
			return 0, 0, fmt.Errorf("the agent exited: %v\n%s", err, logs.String())
		case <-ctx.Done():
			return 0, 0, fmt.Errorf("not serving after 15s (ready %v, serving %v)\n%s", ready, serving, logs.String())
		}
	}
	return ready, serving, nil
}

// firstHandshake dials addr every 2 ms until a TLS 1.3 handshake completes
// with a server certificate from the development root that this start wrote
// (modified after t0), so an earlier agent can never answer. Without a
// client certificate the agent then refuses the connection, but in TLS 1.3
// the client's handshake is complete once the server's Finished arrived: the
// listener is accepting and serving TLS.
func firstHandshake(ctx context.Context, addr, rootPath string, t0 time.Time) error {
	conf := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verified below, against this start's root
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			st, err := os.Stat(rootPath)
			if err != nil || st.ModTime().Before(t0) {
				return errors.New("no development root from this start yet")
			}
			pemBytes, err := os.ReadFile(rootPath)
			if err != nil {
				return err
			}
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(pemBytes)
			inter := x509.NewCertPool()
			var leaf *x509.Certificate
			for i, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				if i == 0 {
					leaf = c
				} else {
					inter.AddCert(c)
				}
			}
			if leaf == nil {
				return errors.New("no server certificate")
			}
			_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			return err
		},
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: conf}
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// freePorts returns k loopback ports nobody listens on right now.
func freePorts(k int) ([]int, error) { return testnet.Ports(k) }
