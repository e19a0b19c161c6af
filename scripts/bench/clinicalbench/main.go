// Command clinicalbench compares the clinical relay (gateway/clinical) with
// a direct connection, a plain TCP relay and stunnel4 configured alike (mTLS,
// P-256 certificates, X25519/P-256, the same AEAD suites): throughput each
// way, 64-byte ping-pong latency, full and resumed handshakes per second, and
// the relay's RSS idle and with 1,000 idle sessions. It prints one markdown
// table. Run by scripts/bench/clinical.sh; bounded to a few minutes.
package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/gateway/clinical"
	"github.com/wardgate/wardgate/internal/testnet"
)

const clientURI = "spiffe://hospital.example/svc/pump-server"

func main() {
	mode := flag.String("mode", "bench", "bench | serve | plain | archive")
	listen := flag.String("listen", "127.0.0.1:0", "listen address (serve, plain)")
	backend := flag.String("backend", "", "device address (serve, plain)")
	dir := flag.String("dir", "", "PKI directory (serve)")
	mb := flag.Int("mb", 128, "MiB per throughput run")
	uploadURL := flag.String("upload", "", "central's archive URL: the relay also uploads DIR/recordings (serve)")
	uploadRate := flag.Int64("upload-rate", 256<<10, "upload bytes per second (serve)")
	flag.Parse()
	var err error
	switch *mode {
	case "serve":
		err = serve(*listen, *backend, *dir, *uploadURL, *uploadRate)
	case "archive":
		err = serveArchive(*listen, *dir)
	case "plain":
		err = plain(*listen, *backend)
	default:
		err = bench(*mb)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// ---- children ----

func announce(ln net.Listener) { fmt.Printf("READY %s\n", ln.Addr()) }

func waitSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
}

func serve(listen, backend, dir, uploadURL string, uploadRate int64) error {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	if err != nil {
		return err
	}
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root.crt"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootPEM)
	authorize := func(_ string, chain []*x509.Certificate) (string, string, error) {
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			return "", "untrusted", err
		}
		if len(chain[0].URIs) == 0 || chain[0].URIs[0].String() != clientURI {
			return "", "not_allowed", errors.New("not allowed")
		}
		return clientURI, "", nil
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	s, err := clinical.New(clinical.Options{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil },
		ClientCAs:      func() *x509.CertPool { return pool },
		Authorize:      authorize,
	}, []clinical.DeviceOptions{{ID: "bench", Listener: ln, TCP: backend, MaxConns: 5000, MaxPerSource: 5000, MaxPending: 5000}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	if uploadURL != "" {
		go func() {
			if err := runUploader(ctx, uploadURL, dir, uploadRate); err != nil {
				log.Printf("uploader: %v", err)
			}
		}()
	}
	announce(ln)
	waitSignal()
	cancel()
	return <-done
}

func plain(listen, backend string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	announce(ln)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				d, err := net.Dial("tcp", backend)
				if err != nil {
					return
				}
				defer d.Close()
				go func() {
					_, _ = io.Copy(d, c)
					_ = d.(*net.TCPConn).CloseWrite()
				}()
				_, _ = io.Copy(c, d)
			}()
		}
	}()
	waitSignal()
	return nil
}

// ---- backend: 'U' upload sink (answers 1 byte at EOF), 'D'+len download
// source, 'E' echo ----

func runBackend() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var op [1]byte
				if _, err := io.ReadFull(c, op[:]); err != nil {
					return
				}
				switch op[0] {
				case 'U':
					_, _ = io.Copy(io.Discard, c)
					_, _ = c.Write([]byte{1})
				case 'D':
					var n [8]byte
					if _, err := io.ReadFull(c, n[:]); err != nil {
						return
					}
					buf := make([]byte, 64<<10)
					left := int64(binary.BigEndian.Uint64(n[:]))
					for left > 0 {
						k := min(left, int64(len(buf)))
						if _, err := c.Write(buf[:k]); err != nil {
							return
						}
						left -= k
					}
				default:
					_, _ = io.Copy(c, c)
				}
			}()
		}
	}()
	return ln.Addr().String(), nil
}

// ---- PKI ----

type pkiFiles struct {
	dir       string
	clientTLS *tls.Config
}

func writePEM(path, typ string, ders ...[]byte) error {
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
	}
	return os.WriteFile(path, out, 0o600)
}

// makePKI mints the benchmark's server and client certificates from the
// development CA (certs.DevCA, the same one the demo and tests use).
func makePKI(dir string) (*pkiFiles, error) {
	ca, err := certs.NewDevCA(certs.DevCAOptions{Name: "Bench", Lifetime: 4 * time.Hour})
	if err != nil {
		return nil, err
	}
	srv, err := ca.Issue(certs.IssueOptions{CommonName: "localhost", DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		return nil, err
	}
	cli, err := ca.Issue(certs.IssueOptions{URI: clientURI, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return nil, err
	}
	sk, err := certs.EncodeKeyPEM(srv.PrivateKey.(crypto.Signer))
	if err != nil {
		return nil, err
	}
	if err := makeUploadPKI(ca, dir); err != nil {
		return nil, err
	}
	if err := errors.Join(
		writePEM(filepath.Join(dir, "root.crt"), "CERTIFICATE", ca.Root().Raw),
		writePEM(filepath.Join(dir, "server.crt"), "CERTIFICATE", srv.Certificate...),
		os.WriteFile(filepath.Join(dir, "server.key"), sk, 0o600)); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Root())
	return &pkiFiles{dir: dir, clientTLS: &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{cli}}}, nil
}

// ---- children management ----

type child struct {
	cmd  *exec.Cmd
	addr string
}

func startChild(name string, args ...string) (*child, error) {
	cmd := exec.Command(name, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "READY ") {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("%s did not start: %q %v", name, line, err)
	}
	return &child{cmd: cmd, addr: strings.TrimSpace(strings.TrimPrefix(line, "READY "))}, nil
}

func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

func freePort() string {
	p, err := testnet.Port()
	if err != nil {
		log.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(p)
}

func startStunnel(dir, backend string) (*child, error) {
	path, err := exec.LookPath("stunnel4")
	if err != nil {
		if path, err = exec.LookPath("stunnel"); err != nil {
			return nil, err
		}
	}
	addr := freePort()
	conf := fmt.Sprintf(`foreground = yes
pid =
debug = 3
[clinical]
accept = %s
connect = %s
cert = %s
key = %s
CAfile = %s
verifyChain = yes
requireCert = yes
sslVersionMin = TLSv1.2
ciphers = ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305
ciphersuites = TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
curves = X25519:P-256
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
`, addr, backend, filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "root.crt"))
	cf := filepath.Join(dir, "stunnel.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(path, cf)
	cmd.Stderr = io.Discard
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return &child{cmd: cmd, addr: addr}, nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return nil, fmt.Errorf("stunnel did not listen: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- measurements ----

type target struct {
	name string
	addr string
	tls  *tls.Config // nil: plain TCP
	proc *child
}

func (t *target) dial() (net.Conn, error) {
	if t.tls == nil {
		return net.Dial("tcp", t.addr)
	}
	return tls.Dial("tcp", t.addr, t.tls)
}

func closeWrite(c net.Conn) error {
	switch c := c.(type) {
	case *tls.Conn:
		return c.CloseWrite()
	case *net.TCPConn:
		return c.CloseWrite()
	}
	return nil
}

func upload(t *target, size int64) (float64, error) {
	c, err := t.dial()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	start := time.Now()
	if _, err := c.Write([]byte{'U'}); err != nil {
		return 0, err
	}
	for left := size; left > 0; {
		k := min(left, int64(len(buf)))
		if _, err := c.Write(buf[:k]); err != nil {
			return 0, err
		}
		left -= k
	}
	if err := closeWrite(c); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		return 0, err
	}
	return float64(size) / time.Since(start).Seconds() / 1e6, nil
}

func download(t *target, size int64) (float64, error) {
	c, err := t.dial()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	req := make([]byte, 9)
	req[0] = 'D'
	binary.BigEndian.PutUint64(req[1:], uint64(size))
	start := time.Now()
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	n, err := io.CopyBuffer(io.Discard, io.LimitReader(c, size), make([]byte, 64<<10))
	if err != nil || n != size {
		return 0, fmt.Errorf("download: %d bytes, %v", n, err)
	}
	return float64(size) / time.Since(start).Seconds() / 1e6, nil
}

func pingPong(t *target, n int) (p50, p99 time.Duration, err error) {
	c, err := t.dial()
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	if _, err := c.Write([]byte{'E'}); err != nil {
		return 0, 0, err
	}
	msg := make([]byte, 64)
	got := make([]byte, 64)
	rtts := make([]time.Duration, 0, n)
	for i := range n + 200 {
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			return 0, 0, err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return 0, 0, err
		}
		if i >= 200 {
			rtts = append(rtts, time.Since(start))
		}
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2], rtts[len(rtts)*99/100], nil
}

// handshakes counts completed handshakes (with one echo round trip, so the
// server's verification is included) per second over d with 2 workers.
func handshakes(t *target, resume bool, d time.Duration) float64 {
	cfg := t.tls.Clone()
	if resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	} else {
		cfg.SessionTicketsDisabled = true
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	start := time.Now()
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]byte, 1)
			for time.Now().Before(end) {
				c, err := tls.Dial("tcp", t.addr, cfg)
				if err != nil {
					continue
				}
				if _, err := c.Write([]byte{'E', 'x'}); err == nil {
					if _, err := io.ReadFull(c, b); err == nil && (!resume || c.ConnectionState().DidResume) {
						n.Add(1)
					}
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
}

func rssKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return -1
}

// idleRSS opens n idle sessions (one echo each) and returns the process's
// RSS before and with them, in KiB.
func idleRSS(t *target, n int) (idle, loaded int64, err error) {
	time.Sleep(500 * time.Millisecond)
	idle = rssKB(t.proc.cmd.Process.Pid)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	b := make([]byte, 1)
	for range n {
		c, err := t.dial()
		if err != nil {
			return idle, 0, err
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte{'E', 'x'}); err != nil {
			return idle, 0, err
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return idle, 0, err
		}
	}
	time.Sleep(time.Second)
	return idle, rssKB(t.proc.cmd.Process.Pid), nil
}

type result struct {
	up, down           float64
	p50, p99           time.Duration
	full, resumed      float64
	rssIdle, rssLoaded int64
}

func median(f func() (float64, error), runs int) (float64, error) {
	var v []float64
	for range runs {
		x, err := f()
		if err != nil {
			return 0, err
		}
		v = append(v, x)
	}
	slices.Sort(v)
	return v[len(v)/2], nil
}

func bench(mb int) error {
	start := time.Now()
	dir, err := os.MkdirTemp("", "clinicalbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := makePKI(dir)
	if err != nil {
		return err
	}
	be, err := runBackend()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	wg, err := startChild(self, "-mode", "serve", "-backend", be, "-dir", dir)
	if err != nil {
		return err
	}
	defer wg.stop()
	pl, err := startChild(self, "-mode", "plain", "-backend", be)
	if err != nil {
		return err
	}
	defer pl.stop()
	targets := []*target{
		{name: "direct to the device", addr: be},
		{name: "plain TCP relay (Go, splice)", addr: pl.addr, proc: pl},
	}
	st, err := startStunnel(dir, be)
	if err != nil {
		fmt.Fprintf(os.Stderr, "stunnel4 unavailable: %v\n", err)
	} else {
		defer st.stop()
		targets = append(targets, &target{name: "stunnel4 (mTLS)", addr: st.addr, tls: p.clientTLS, proc: st})
	}
	targets = append(targets, &target{name: "wardgate clinical relay (mTLS)", addr: wg.addr, tls: p.clientTLS, proc: wg})

	size := int64(mb) << 20
	res := map[string]*result{}
	for _, t := range targets {
		r := &result{}
		res[t.name] = r
		if r.up, err = median(func() (float64, error) { return upload(t, size) }, 3); err != nil {
			return fmt.Errorf("%s upload: %w", t.name, err)
		}
		if r.down, err = median(func() (float64, error) { return download(t, size) }, 3); err != nil {
			return fmt.Errorf("%s download: %w", t.name, err)
		}
		if r.p50, r.p99, err = pingPong(t, 5000); err != nil {
			return fmt.Errorf("%s ping-pong: %w", t.name, err)
		}
		if t.tls != nil {
			r.full = handshakes(t, false, 3*time.Second)
			r.resumed = handshakes(t, true, 3*time.Second)
			if r.rssIdle, r.rssLoaded, err = idleRSS(t, 1000); err != nil {
				return fmt.Errorf("%s idle sessions: %w", t.name, err)
			}
		}
	}
	cs := "?"
	if c, err := tls.Dial("tcp", wg.addr, p.clientTLS); err == nil {
		s := c.ConnectionState()
		cs = tls.VersionName(s.Version) + " " + tls.CipherSuiteName(s.CipherSuite)
		c.Close()
	}
	fmt.Printf("Loopback, %d MiB per throughput run (median of 3), 5,000 ping-pongs of 64 bytes, handshakes with 2 client\n", mb)
	fmt.Printf("workers for 3 s each (one echo byte included), RSS of the relay process via /proc with 1,000 idle sessions.\n")
	fmt.Printf("TLS: %s, P-256 ECDSA certificates on both sides.\n\n", cs)
	fmt.Println("| path | upload MB/s | download MB/s | RTT p50 | RTT p99 | full hs/s | resumed hs/s | RSS idle | RSS +1,000 idle | per idle session |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	us := func(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d.Microseconds())) }
	for _, t := range targets {
		r := res[t.name]
		row := fmt.Sprintf("| %s | %.0f | %.0f | %s | %s |", t.name, r.up, r.down, us(r.p50), us(r.p99))
		if t.tls != nil {
			row += fmt.Sprintf(" %.0f | %.0f | %.1f MB | %.1f MB | %.1f KB |", r.full, r.resumed,
				float64(r.rssIdle)/1024, float64(r.rssLoaded)/1024, float64(r.rssLoaded-r.rssIdle)/1000)
		} else {
			row += " | | | | |"
		}
		fmt.Println(row)
	}
	w := res["wardgate clinical relay (mTLS)"]
	pr := res["plain TCP relay (Go, splice)"]
	fmt.Println()
	fmt.Println("| ratio | upload | download | p99 | full hs/s | resumed hs/s | target |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---|")
	if s := res["stunnel4 (mTLS)"]; s != nil {
		fmt.Printf("| wardgate / stunnel4 | %.2fx | %.2fx | %.2fx | %.2fx | %.2fx | throughput >= 1.2x, p99 < 1x |\n",
			w.up/s.up, w.down/s.down, float64(w.p99)/float64(s.p99), w.full/s.full, w.resumed/s.resumed)
	}
	fmt.Printf("| wardgate / plain relay | %.2fx | %.2fx | %.2fx | | | throughput >= 0.7x |\n",
		w.up/pr.up, w.down/pr.down, float64(w.p99)/float64(pr.p99))
	fmt.Printf("\nwardgate RSS: idle %.1f MB (target <= 20 MB), %.1f KB per idle session (target <= 40 KB).\n",
		float64(w.rssIdle)/1024, float64(w.rssLoaded-w.rssIdle)/1000)
	var wgt *target
	for _, t := range targets {
		if t.proc == wg {
			wgt = t
		}
	}
	if err := benchUploadBeside(dir, be, wgt, p.clientTLS, size); err != nil {
		return err
	}
	fmt.Printf("\nTook %s.\n", time.Since(start).Round(time.Second))
	return nil
}
