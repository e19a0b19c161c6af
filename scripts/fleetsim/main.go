// Command fleetsim simulates a fleet of gateways against a real
// wardgate-central: it makes a development CA, starts mosquitto (TLS,
// client certificates, the gateway ACL) and the wardgate-central binary on
// SQLite or PostgreSQL (a throwaway PostgreSQL 15 from
// central/store/storetest), connects N gateways, each with its own key and
// certificate, and publishes messages signed as the gateways sign them.
//
// It measures two figures and prints them as `go test -bench` lines for
// scripts/benchtable: the rate at which central verifies and stores a
// burst (msgs/s, from the first publish to the last commit), and the
// publish-to-stored p99 at a steady rate (from central's own histogram).
// Run by scripts/bench/central.sh.
package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/wardgate/wardgate/central/store/storetest"
	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/internal/testnet"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/envelope"
)

const td = "hospital.example"

func main() {
	o := opts{}
	flag.StringVar(&o.central, "central", "bin/wardgate-central", "the wardgate-central binary")
	flag.StringVar(&o.db, "db", "sqlite", "sqlite or postgres")
	flag.IntVar(&o.gateways, "gateways", 1000, "simulated gateways (one MQTT connection each)")
	flag.IntVar(&o.burst, "burst", 30000, "messages of the throughput burst")
	flag.IntVar(&o.rate, "rate", 1000, "messages per second of the latency phase")
	flag.DurationVar(&o.steady, "for", 10*time.Second, "length of the latency phase")
	flag.DurationVar(&o.budget, "budget", 4*time.Minute, "give up after this long")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write central's CPU profile of the burst to this file (via central.pprof_listen)")
	flag.DurationVar(&o.profileFor, "profile-for", 6*time.Second, "length of the -cpuprofile capture from the start of the burst")
	flag.StringVar(&o.mode, "mode", "ingest", "ingest (throughput and latency) or lock (fleet lock-set delivery, lockbench.go)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), o.budget)
	defer cancel()
	runMode := run
	if o.mode == "lock" {
		runMode = runLock
	}
	err := runMode(ctx, os.Stdout, o)
	storetest.Stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetsim:", err)
		os.Exit(1)
	}
}

type opts struct {
	central, db     string
	mode            string
	gateways, burst int
	rate            int
	steady, budget  time.Duration
	cpuprofile      string
	profileFor      time.Duration
}

type gateway struct {
	id    string
	key   crypto.Signer
	chain []*x509.Certificate
	cli   paho.Client
	seq   atomic.Uint64
}

// sign makes the gateway's next message, timed at at.
func (g *gateway) sign(kind envelope.Kind, body []byte, at time.Time) ([]byte, error) {
	payload, err := envelope.EncodePayload(&envelope.Envelope{Version: envelope.Version, Gateway: g.id, Session: 1,
		Seq: g.seq.Add(1), Time: at.UnixMilli(), Kind: kind, Body: body})
	if err != nil {
		return nil, err
	}
	return envelope.Sign(g.key, g.chain, payload)
}

func (g *gateway) publish(kind envelope.Kind, body []byte) (paho.Token, error) {
	data, err := g.sign(kind, body, time.Now())
	if err != nil {
		return nil, err
	}
	return g.cli.Publish(wire.Topic(g.id, kind), 1, false, data), nil
}

func freePort() (int, error) { return testnet.Port() }

func writePair(dir, name string, c tls.Certificate) (string, string, error) {
	var chain []*x509.Certificate
	for _, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			return "", "", err
		}
		chain = append(chain, x)
	}
	key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return "", "", err
	}
	cf, kf := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(cf, certs.EncodeCertsPEM(chain), 0o600); err != nil {
		return "", "", err
	}
	return cf, kf, os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600)
}

func run(ctx context.Context, w io.Writer, o opts) error {
	st, err := newStack()
	if err != nil {
		return err
	}
	defer st.close()
	ca := st.ca
	op, err := ca.Issue(certs.IssueOptions{URI: certs.ApproverURI(td, "security", "bench")})
	if err != nil {
		return err
	}
	pprofAddr, pprofKey := "", ""
	if o.cpuprofile != "" {
		pport, err := freePort()
		if err != nil {
			return err
		}
		pprofAddr = fmt.Sprintf("127.0.0.1:%d", pport)
		pprofKey = fmt.Sprintf(", pprof_listen: %q", pprofAddr)
	}
	if err := st.start(ctx, o, pprofKey, op); err != nil {
		return err
	}
	brokerURL := st.brokerURL
	api := &metricsClient{url: st.base + "/metrics", c: st.client(op, 5*time.Second)}

	// The fleet: one identity, key and connection per gateway.
	gws := make([]*gateway, o.gateways)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var cerr atomic.Value
	for i := range gws {
		id := fmt.Sprintf("gw-%04d", i)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := ca.Issue(certs.IssueOptions{URI: certs.GatewayURI(td, id), CommonName: id})
			if err != nil {
				cerr.Store(err)
				return
			}
			g := &gateway{id: id, key: c.PrivateKey.(crypto.Signer)}
			for _, der := range c.Certificate {
				x, _ := x509.ParseCertificate(der)
				g.chain = append(g.chain, x)
			}
			g.cli = paho.NewClient(paho.NewClientOptions().AddBroker(brokerURL).SetClientID(id).SetCleanSession(true).
				SetAutoReconnect(false).SetOrderMatters(false).SetMaxResumePubInFlight(256).
				SetTLSConfig(&tls.Config{RootCAs: ca.Bundle().Pool(), Certificates: []tls.Certificate{c}, ServerName: "localhost"}))
			if t := g.cli.Connect(); !t.WaitTimeout(20*time.Second) || t.Error() != nil {
				cerr.Store(fmt.Errorf("gateway %s connect: %v", id, t.Error()))
				return
			}
			gws[i] = g
		}()
	}
	wg.Wait()
	if e, _ := cerr.Load().(error); e != nil {
		return e
	}
	defer func() {
		for _, g := range gws {
			g.cli.Disconnect(0)
		}
	}()
	eventBody, _ := wire.EventBody(wire.Event{Kind: "clinical.refused", Severity: "warning",
		Attrs: map[string]string{"device": "pump-07", "peer": "spiffe://hospital.example/svc/unknown", "reason": "not allowed"}})
	var sent atomic.Int64
	send := func(g *gateway, kind envelope.Kind, body []byte, wait bool) error {
		t, err := g.publish(kind, body)
		if err != nil {
			return err
		}
		sent.Add(1)
		if wait && (!t.WaitTimeout(20*time.Second) || t.Error() != nil) {
			return fmt.Errorf("publish: %v", t.Error())
		}
		return nil
	}
	for _, g := range gws {
		bb, _ := wire.BirthBody(wire.Birth{Gateway: g.id, Site: "sim", Version: "fleetsim", Chain: wire.ChainDER(g.chain)})
		if err := send(g, envelope.KindBirth, bb, false); err != nil {
			return err
		}
	}
	if err := api.await(ctx, 60*time.Second, func(m map[string]float64) bool {
		return m["wardgate_central_messages_stored_total"] >= float64(sent.Load())
	}); err != nil {
		return fmt.Errorf("births not stored: %w", err)
	}

	// Phase 1: a burst spread over the fleet, signed beforehand (signing
	// is the gateways' work, not central's), published as fast as the
	// publishers go.
	per := o.burst / len(gws)
	signed := make([][][]byte, len(gws))
	for i, g := range gws {
		for range per {
			d, err := g.sign(envelope.KindEvent, eventBody, time.Now())
			if err != nil {
				return err
			}
			signed[i] = append(signed[i], d)
		}
	}
	before := sent.Load()
	prof := make(chan error, 1)
	if pprofAddr != "" {
		go func() { prof <- saveProfile(ctx, pprofAddr, o.profileFor, o.cpuprofile) }()
	} else {
		prof <- nil
	}
	start := time.Now()
	cpu0 := [3]time.Duration{cpuTime(st.centralPID), cpuTime(st.brokerPID), cpuTime(os.Getpid())}
	var pw sync.WaitGroup
	for i, g := range gws {
		pw.Add(1)
		go func() {
			defer pw.Done()
			var last paho.Token
			for _, d := range signed[i] {
				last = g.cli.Publish(wire.Topic(g.id, envelope.KindEvent), 1, false, d)
				sent.Add(1)
			}
			if last != nil {
				last.WaitTimeout(60 * time.Second)
			}
		}()
	}
	pw.Wait()
	signed = nil
	want := float64(sent.Load())
	if err := api.await(ctx, 120*time.Second, func(m map[string]float64) bool { return m["wardgate_central_messages_stored_total"] >= want }); err != nil {
		return fmt.Errorf("burst not stored: %w", err)
	}
	el := time.Since(start)
	burst := sent.Load() - before
	cpu1 := [3]time.Duration{cpuTime(st.centralPID), cpuTime(st.brokerPID), cpuTime(os.Getpid())}
	perMsg := func(i int) float64 { return float64((cpu1[i] - cpu0[i]).Microseconds()) / float64(max(burst, 1)) }
	// CPU per message (from /proc, so steadier than msgs/s on a shared
	// machine): central, mosquitto, and the simulated fleet itself.
	fmt.Fprintf(w, "BenchmarkCentralIngest/%s/%dgw/burst 1 %.0f msgs/s %d msgs %.0f central-cpu-us/msg %.0f broker-cpu-us/msg %.0f fleet-cpu-us/msg\n",
		o.db, len(gws), float64(burst)/el.Seconds(), burst, perMsg(0), perMsg(1), perMsg(2))
	if err := <-prof; err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}

	// Phase 2: a steady rate; p99 of message time to commit.
	h0, err := api.hist(ctx)
	if err != nil {
		return err
	}
	tick := time.NewTicker(10 * time.Millisecond)
	perTick := max(o.rate/100, 1)
	end := time.Now().Add(o.steady)
	i := 0
	for time.Now().Before(end) {
		<-tick.C
		for range perTick {
			if err := send(gws[i%len(gws)], envelope.KindEvent, eventBody, false); err != nil {
				return err
			}
			i++
		}
	}
	tick.Stop()
	want = float64(sent.Load())
	if err := api.await(ctx, 60*time.Second, func(m map[string]float64) bool { return m["wardgate_central_messages_stored_total"] >= want }); err != nil {
		return fmt.Errorf("steady messages not stored: %w", err)
	}
	h1, err := api.hist(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "BenchmarkCentralIngest/%s/%dgw/steady%d 1 %.0f p99-ms %d msgs\n", o.db, len(gws), o.rate, 1000*quantile(h0, h1, 0.99), i)
	return nil
}

// saveProfile fetches central's CPU profile over d into file.
func saveProfile(ctx context.Context, addr string, d time.Duration, file string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, max(int(d.Seconds()), 1)), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cpuTime is the user+system CPU time of process pid so far, from
// /proc/PID/stat (0 when it cannot be read).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields after its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

func tail(b []byte) string {
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

type metricsClient struct {
	url string
	c   *http.Client
}

func (m *metricsClient) get(ctx context.Context) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", m.url, nil)
	resp, err := m.c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// await polls /metrics (central is another process) until cond holds.
func (m *metricsClient) await(ctx context.Context, limit time.Duration, cond func(map[string]float64) bool) error {
	deadline := time.Now().Add(limit)
	for {
		v, err := m.get(ctx)
		if err == nil && cond(v) {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("condition not met")
			}
			return fmt.Errorf("after %s: %w (stored %v)", limit, err, v["wardgate_central_messages_stored_total"])
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type bucket struct {
	le float64
	n  float64
}

func (m *metricsClient) hist(ctx context.Context) ([]bucket, error) {
	v, err := m.get(ctx)
	if err != nil {
		return nil, err
	}
	var out []bucket
	for k, n := range v {
		rest, ok := strings.CutPrefix(k, `wardgate_central_store_latency_seconds_bucket{le="`)
		if !ok {
			continue
		}
		le, err := strconv.ParseFloat(strings.TrimSuffix(rest, `"}`), 64)
		if err != nil {
			le = 1e9 // +Inf
		}
		out = append(out, bucket{le, n})
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j].le < out[i].le {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out, nil
}

// quantile estimates q of the observations between two cumulative
// histogram snapshots as a bucket's upper bound.
func quantile(h0, h1 []bucket, q float64) float64 {
	if len(h0) != len(h1) || len(h1) == 0 {
		return 0
	}
	total := h1[len(h1)-1].n - h0[len(h0)-1].n
	for i := range h1 {
		if h1[i].n-h0[i].n >= q*total {
			return h1[i].le
		}
	}
	return h1[len(h1)-1].le
}
