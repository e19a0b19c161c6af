package telemetry

import (
	"bufio"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wardgate/wardgate/wire"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire/brokertest"
)

// producer queues events at a steady pace until stopped or max reached.
type producer struct {
	mu   sync.Mutex
	seqs []uint64
	stop chan struct{}
	done chan struct{}
}

func produce(t testing.TB, p *Publisher, max int, every time.Duration) *producer {
	pr := &producer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(pr.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; i < max; i++ {
			select {
			case <-pr.stop:
				return
			case <-tick.C:
			}
			s, err := p.Event(wire.Event{Kind: "test.load", Attrs: map[string]string{"i": strconv.Itoa(i)}})
			if err != nil {
				t.Errorf("event %d: %v", i, err)
				return
			}
			pr.mu.Lock()
			pr.seqs = append(pr.seqs, s)
			pr.mu.Unlock()
		}
	}()
	return pr
}

func (pr *producer) finish() []uint64 {
	select {
	case <-pr.stop:
	default:
		close(pr.stop)
	}
	<-pr.done
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return append([]uint64(nil), pr.seqs...)
}

func (pr *producer) count() int {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return len(pr.seqs)
}

// checkDelivered waits until every seq was delivered, then checks that no
// seq between the first and the last is missing (death Wills announced in
// a birth may be missing: the broker only sends them on a broken
// connection).
func checkDelivered(t *testing.T, cons *consumer, gw string, seqs []uint64, within time.Duration) {
	t.Helper()
	cons.waitFor(t, within, fmt.Sprintf("%d events", len(seqs)), func() bool {
		for _, s := range seqs {
			if !cons.has(gw, s) {
				return false
			}
		}
		return true
	})
	cons.mu.Lock()
	defer cons.mu.Unlock()
	optional := map[uint64]bool{}
	historical := 0
	for _, l := range cons.byGW[gw] {
		if l.Kind == "birth" {
			if ds, ok := l.Body.(map[string]any)["death_seq"].(uint64); ok {
				optional[ds] = true
			}
		}
		if l.Historical {
			historical++
		}
	}
	var missing []uint64
	for s := seqs[0]; s <= seqs[len(seqs)-1]; s++ {
		if _, ok := cons.byGW[gw][s]; !ok && !optional[s] {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("seq gap: %d missing between %d and %d: %v", len(missing), seqs[0], seqs[len(seqs)-1], missing[:min(len(missing), 20)])
	}
	t.Logf("%d events delivered, %d historical messages, seqs %d..%d", len(seqs), historical, seqs[0], seqs[len(seqs)-1])
}

func TestMosquittoOutage(t *testing.T) {
	pki := certstest.NewMini(t)
	broker := brokertest.StartMosquitto(t, pki)
	cons := startConsumer(t, pki, broker.URL, "gw-test")
	gw := pki.Gateway(t, "gw-test")
	p, err := New(gatewayOptions(t, pki, broker.URL, "gw-test", gw, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	runPublisher(t, p)
	pr := produce(t, p, 400, 5*time.Millisecond)
	waitCount(t, pr, 50)
	broker.Stop()
	// The scenario is 60 s; the default keeps the suite fast.
	// TELEMETRY_OUTAGE=60s runs the full one.
	outage := 3 * time.Second
	if testing.Short() {
		outage = time.Second
	}
	if d, err := time.ParseDuration(os.Getenv("TELEMETRY_OUTAGE")); err == nil {
		outage = d
	}
	start := pr.count()
	time.Sleep(outage) // the outage itself: events keep being produced
	if pr.count() <= start {
		t.Fatal("no events produced during the outage")
	}
	if d := p.Stats().Outbox.Depth; d == 0 {
		t.Fatal("outbox empty during the outage")
	}
	broker.Start()
	checkDelivered(t, cons, "gw-test", pr.finish(), 60*time.Second)
}

func waitCount(t *testing.T, pr *producer, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for pr.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d events produced", pr.count())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMosquittoRestartsUnderLoad(t *testing.T) {
	pki := certstest.NewMini(t)
	broker := brokertest.StartMosquitto(t, pki)
	cons := startConsumer(t, pki, broker.URL, "gw-test")
	gw := pki.Gateway(t, "gw-test")
	p, err := New(gatewayOptions(t, pki, broker.URL, "gw-test", gw, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	runPublisher(t, p)
	pr := produce(t, p, 2000, 2*time.Millisecond)
	for i := range 5 {
		// Restart while connected and sending under load.
		deadline := time.Now().Add(20 * time.Second)
		for st := p.Stats(); !st.Connected || st.Session < uint64(i+1) || st.Sent < uint64(40*(i+1)); st = p.Stats() {
			if time.Now().After(deadline) {
				t.Fatalf("restart %d: publisher not sending: %+v", i, st)
			}
			time.Sleep(10 * time.Millisecond)
		}
		broker.Stop()
		time.Sleep(200 * time.Millisecond)
		broker.Start()
	}
	seqs := pr.finish()
	checkDelivered(t, cons, "gw-test", seqs, 60*time.Second)
	if st := p.Stats(); st.Session < 6 {
		t.Errorf("session %d after 5 restarts", st.Session)
	}
}

// TestChildPublisher is the child process of TestKill9: it publishes and
// prints every event seq once it is committed, until it is killed.
func TestChildPublisher(t *testing.T) {
	dir := os.Getenv("WARDGATE_TELEMETRY_CHILD")
	if dir == "" {
		t.Skip("child process of TestKill9")
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "gw.crt"), filepath.Join(dir, "gw.key"))
	if err != nil {
		t.Fatal(err)
	}
	var chain []*x509.Certificate
	for _, der := range pair.Certificate {
		c, _ := x509.ParseCertificate(der)
		chain = append(chain, c)
	}
	rootPEM, _ := os.ReadFile(filepath.Join(dir, "root.crt"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	p, err := New(Options{
		GatewayID: "gw-test", Brokers: []string{os.Getenv("WARDGATE_TELEMETRY_BROKER")},
		TLSConfig: func(string) *tls.Config {
			return &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{pair}}
		},
		Signer:     func() (crypto.Signer, []*x509.Certificate) { return pair.PrivateKey.(crypto.Signer), chain },
		OutboxPath: filepath.Join(dir, "telemetry.db"), BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go p.Run(ctx)
	if os.Getenv("WARDGATE_TELEMETRY_PRODUCE") == "1" {
		for i := 0; ctx.Err() == nil; i++ {
			s, err := p.Event(wire.Event{Kind: "test.kill", Attrs: map[string]string{"i": strconv.Itoa(i)}})
			if err != nil {
				t.Fatal(err)
			}
			fmt.Printf("SEQ %d\n", s)
			time.Sleep(2 * time.Millisecond)
		}
	}
	<-ctx.Done()
}

func TestKill9(t *testing.T) {
	if os.Getenv("WARDGATE_TELEMETRY_CHILD") != "" {
		t.Skip("in the child")
	}
	pki := certstest.NewMini(t)
	broker := brokertest.StartMosquitto(t, pki)
	cons := startConsumer(t, pki, broker.URL, "gw-test")
	dir := t.TempDir()
	gw := pki.Gateway(t, "gw-test")
	gw.WriteFiles(t, dir, "gw")
	pki.WriteRoot(t, dir)
	_ = pem.Block{}

	run := func(produce bool, until func(n int) bool) []uint64 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestChildPublisher$", "-test.v=false")
		cmd.Env = append(os.Environ(), "WARDGATE_TELEMETRY_CHILD="+dir, "WARDGATE_TELEMETRY_BROKER="+broker.URL)
		if produce {
			cmd.Env = append(cmd.Env, "WARDGATE_TELEMETRY_PRODUCE=1")
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		sc := bufio.NewScanner(out)
		lines := make(chan uint64)
		go func() {
			defer close(lines)
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "SEQ "); ok {
					s, _ := strconv.ParseUint(v, 10, 64)
					lines <- s
				}
			}
		}()
		deadline := time.After(30 * time.Second)
	loop:
		for !until(len(seqs)) {
			select {
			case s, ok := <-lines:
				if !ok {
					break loop
				}
				seqs = append(seqs, s)
			case <-time.After(50 * time.Millisecond):
			case <-deadline:
				t.Errorf("child run not done after 30s (%d events)", len(seqs))
				break loop
			}
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		for range lines {
		}
		_ = cmd.Wait()
		return seqs
	}
	var all []uint64
	for range 10 {
		all = append(all, run(true, func(n int) bool { return n >= 40 })...)
	}
	// A last, unkilled run drains the outbox.
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		run(false, func(int) bool {
			for _, s := range all {
				if !cons.has("gw-test", s) {
					return false
				}
			}
			return true
		})
	}()
	checkDelivered(t, cons, "gw-test", all, 60*time.Second)
	<-drained
}
