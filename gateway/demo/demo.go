package demo

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/wire"

	"github.com/creack/pty"

	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/admin"
	"github.com/wardgate/wardgate/gateway/agent"
	"github.com/wardgate/wardgate/gateway/telemetry"
	"github.com/wardgate/wardgate/wire/envelope"
)

// Options configure a demo run.
type Options struct {
	// For is the time budget of the whole scenario (default 90s); vendor
	// sessions are sized to fit it.
	For  time.Duration
	JSON bool      // one JSON object per line instead of narration
	Out  io.Writer // narration (default stdout)
	// Log receives the agent's own log (default: STATE/agent.log).
	Log     io.Writer
	Version string
	// Keep leaves the state directory in place for a look afterwards and,
	// when Central is set, keeps everything running after the scenario
	// until ctx ends (Ctrl-C), so a newcomer can click through central's
	// pages.
	Keep bool
	// Central, when set, starts central security's service beside the
	// gateway and returns its dashboard's URL. cmd/wardgate-demo runs
	// wardgate-central's packages on SQLite here; the gateway's packages
	// never import central, hence the hook.
	Central func(ctx context.Context, env CentralEnv) (dashboard string, err error)
}

// CentralEnv is what central needs from the demo: the broker, the trust
// domain, the development CA (for central's and an operator's
// certificates) and a directory of its own, where the hook leaves
// operator.crt, operator.key (an approver certificate for the pages and
// the API) and root.crt.
type CentralEnv struct {
	BrokerURL   string
	TrustDomain string
	CA          *certs.DevCA
	Dir         string
}

const (
	trustDomain = "hospital.example"
	gatewayID   = "gw-demo-01"
)

// Run plays the scenario. It returns true when every step behaved.
func Run(ctx context.Context, o Options) (bool, error) {
	if o.For <= 0 {
		o.For = 90 * time.Second
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if !o.Keep || o.Central == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.For)
		defer cancel()
	}
	d := &demo{o: o, n: &narrator{w: o.Out, json: o.JSON, start: time.Now()}, lines: make(chan map[string]any, 1024)}
	err := d.run(ctx)
	ok := d.n.summary()
	return ok && err == nil, err
}

type demo struct {
	o   Options
	n   *narrator
	dir string
	pki *pki
	cfg *config.Config

	adminc   *admin.Client
	vendorAt string // the agent's vendor listener
	pumpAt   string // the pump's clinical listener on the agent
	monAt    string // the monitor's clinical listener on the agent
	pumpSvc  int    // the pump's service port (a vendor port)
	// dashboard is central's URL when Options.Central started it.
	dashboard string

	mu      sync.Mutex
	seen    []map[string]any // verified telemetry, in arrival order
	lines   chan map[string]any
	waiters []chan struct{}
}

func (d *demo) run(ctx context.Context) (err error) {
	d.dir, err = os.MkdirTemp("", "wardgate-demo-")
	if err != nil {
		return err
	}
	if !d.o.Keep {
		defer os.RemoveAll(d.dir)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	d.n.heading("Starting everything on loopback: CA, broker, devices, hardware, agent")
	if d.pki, err = newPKI(trustDomain); err != nil {
		return err
	}
	d.n.say("development CA ........ root %q, ECDSA P-256, issuing short-lived certificates", d.pki.ca.Root().Subject.CommonName)
	broker, err := StartBroker("127.0.0.1:0", d.pki.brokerTLS(), trustDomain, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("demo broker: %w", err)
	}
	defer broker.Close()
	d.n.say("MQTT broker ........... mqtts://%s (mutual TLS; each gateway may write only its own topics)", broker.Addr)
	if d.o.Central != nil {
		cdir := filepath.Join(d.dir, "central")
		url, err := d.o.Central(ctx, CentralEnv{BrokerURL: "mqtts://" + broker.Addr, TrustDomain: trustDomain, CA: d.pki.ca, Dir: cdir})
		if err != nil {
			return fmt.Errorf("central: %w", err)
		}
		d.dashboard = url
		d.n.say("wardgate-central ...... %s (SQLite in %s)", url, cdir)
		d.n.say("operator login ........ an approver certificate: curl --cert %[1]s/operator.crt --key %[1]s/operator.key --cacert %[1]s/root.crt %[2]sapi/v1/gateways", cdir, url)
	}

	pump := NewPump("AP2-0042", "3.1.4")
	pumpClin, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	pumpSvc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	d.pumpSvc = pumpSvc.Addr().(*net.TCPAddr).Port
	wg.Add(2)
	go func() { defer wg.Done(); pump.ServeClinical(ctx, pumpClin) }()
	go func() { defer wg.Done(); pump.ServeService(ctx, pumpSvc) }()
	d.n.say("infusion pump pump-07 . plaintext TCP %s, service console on port %d, no authentication at all", pumpClin.Addr(), d.pumpSvc)

	ptmx, tty, err := pty.Open()
	if err != nil {
		return fmt.Errorf("pseudo-terminal for the serial monitor: %w", err)
	}
	// The gateway opens the terminal by path, as it would /dev/ttyUSB0. This
	// descriptor stays open so that the device side never sees a hang-up
	// (EIO) between the gateway's sessions.
	ttyPath := tty.Name()
	defer tty.Close()
	defer ptmx.Close()
	wg.Add(1)
	go func() { defer wg.Done(); Monitor{}.Serve(ptmx) }()
	context.AfterFunc(ctx, func() { ptmx.Close() })
	d.n.say("patient monitor mon-03  RS-232 on %s (9600 8N1), answers VITALS?", ttyPath)

	// Listeners of the agent, opened here so their ports are known for the
	// configuration; the agent takes them through Options.Listen.
	pre := map[string]net.Listener{}
	for _, name := range []string{"vendor", "pump", "monitor"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close()
		pre[l.Addr().String()] = l
		switch name {
		case "vendor":
			d.vendorAt = l.Addr().String()
		case "pump":
			d.pumpAt = l.Addr().String()
		case "monitor":
			d.monAt = l.Addr().String()
		}
	}
	yaml := d.configText(broker.Addr, pumpClin.Addr().String(), ttyPath)
	cfgPath := filepath.Join(d.dir, "wardgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		return err
	}
	d.cfg, err = config.Load(cfgPath, time.Now())
	if err != nil {
		return fmt.Errorf("demo configuration: %w", err)
	}
	d.n.check("config", true, "configuration %s passes `wardgate config check` (%d devices, 1 vendor)", cfgPath, len(d.cfg.Devices))

	// Central security's view: every message verified against the CA. It
	// subscribes before the agent starts, so that it also sees what the
	// agent publishes at start (inventory, accountability events).
	tailReady := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = telemetry.Tail(ctx, telemetry.TailOptions{
			BrokerURL: "mqtts://" + broker.Addr, TLSConfig: d.pki.client(d.pki.central, "spiffe://"+trustDomain+"/svc/mqtt-broker"),
			Verify: envelope.RootsVerifier(d.pki.roots), Out: io.Discard, OnLine: d.onTelemetry, Ready: tailReady,
		})
	}()
	select {
	case <-tailReady:
		d.n.say("central security ...... subscribed to wardgate/v1/+/#, verifying every signature")
	case <-ctx.Done():
		return ctx.Err()
	}

	logw := d.o.Log
	if logw == nil {
		f, err := os.Create(filepath.Join(d.dir, "agent.log"))
		if err != nil {
			return err
		}
		defer f.Close()
		logw = f
	}
	ready := make(chan struct{})
	a, err := agent.New(agent.Options{
		Config: d.cfg, Logger: slog.New(slog.NewTextHandler(logw, nil)), Version: d.o.Version, DevCA: d.pki.ca,
		Listen: func(network, addr string) (net.Listener, error) {
			if l, ok := pre[addr]; ok {
				return l, nil
			}
			return net.Listen(network, addr)
		},
		Ready: func() { close(ready) },
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer a.Close()
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(ctx) }()
	defer func() {
		cancel()
		if aerr := <-agentDone; aerr != nil && err == nil {
			err = aerr
		}
	}()
	select {
	case <-ready:
	case err := <-agentDone:
		return fmt.Errorf("agent stopped at start: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
	d.adminc = admin.NewClient(d.cfg.Gateway.AdminSocket)
	d.n.check("agent", true, "agent %s running: vendor channel %s, admin socket %s", gatewayID, d.vendorAt, d.cfg.Gateway.AdminSocket)

	for _, step := range []func(context.Context) error{
		d.clinical, d.serial, d.vendorRequest, d.vendorSession, d.lock, d.accountability, d.rotation, d.telemetrySummary, d.centralView,
	} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	if d.o.Keep && d.dashboard != "" {
		d.n.heading("Everything stays up: press Ctrl-C to stop")
		d.n.say("dashboard ............. %s", d.dashboard)
		d.n.say("state ................. %s", d.dir)
		<-ctx.Done()
	}
	return nil
}

// configText is the demo's configuration, written as an operator would.
func (d *demo) configText(broker, pump, tty string) string {
	session := max(10*time.Second, min(time.Minute, d.o.For/8)).Round(time.Second)
	return fmt.Sprintf(`version: 1
gateway:
  id: %[1]s
  site: demo-hospital
  trust_domain: %[2]s
  state_dir: %[3]s/state
  vendor_listen: %[4]q
  admin_socket: %[3]s/admin.sock
  drain_timeout: 2s
identity:
  ca: dev
  lifetime: 10m
mqtt:
  broker: mqtts://%[5]s
  metrics_interval: 5s
  outbox_max: 16MiB
hal:
  driver: sim
  long_press: 2s
vendors:
  - org: acme-medical
    identities: ["spiffe://%[2]s/vendor/acme-medical/*"]
    max_cert_lifetime: 12h
devices:
  - id: pump-07
    kind: infusion-pump
    manufacturer: Acme Medical
    model: AP-200
    serial: "AP2-0042"
    firmware: "3.1.4"
    owner: clinical-engineering/icu
    location: ICU-3 bed 12
    link: {tcp: %[6]s}
    clinical:
      listen: %[7]q
      allow: ["spiffe://%[2]s/svc/pump-server"]
    vendor:
      org: acme-medical
      ports: [%[8]d]
      approval: [local]
      max_session: %[9]s
    accounts:
      - {id: acme-svc, type: shared-password, owner: clinical-engineering/icu, rotate_every: 90d,
         last_rotated: %[10]s, vendor: acme-medical}
    exceptions:
      - {id: EX-2026-014, control: PR.PS-02, reason: vendor has not validated OS patches,
         compensating: [segmentation, restricted-admin-path, continuous-monitoring],
         approved_by: ciso/jdoe, expires: %[11]s}
  - id: mon-03
    kind: patient-monitor
    manufacturer: Example Monitors
    model: PM-9
    owner: clinical-engineering/icu
    location: ICU-3 bed 12
    link: {serial: {port: %[12]s, baud: 9600}}
    clinical:
      listen: %[13]q
      allow: ["spiffe://%[2]s/svc/central-station"]
`, gatewayID, trustDomain, d.dir, d.vendorAt, broker, pump, d.pumpAt, d.pumpSvc, session,
		time.Now().AddDate(0, 0, -120).Format(time.DateOnly), time.Now().AddDate(0, 0, 20).Format(time.DateOnly), tty, d.monAt)
}

// onTelemetry receives every line central sees.
func (d *demo) onTelemetry(l wire.Line) {
	m := map[string]any{"gateway": l.Gateway, "seq": l.Seq, "kind": l.Kind, "time": l.Time, "verified": l.Verified,
		"historical": l.Historical, "session": l.Session}
	if l.Alert != "" {
		m["alert"], m["error"] = l.Alert, l.Error
	}
	if l.Kind != "metrics" {
		m["body"] = l.Body
	}
	d.mu.Lock()
	d.seen = append(d.seen, m)
	ws := d.waiters
	d.waiters = nil
	d.mu.Unlock()
	for _, w := range ws {
		close(w)
	}
	summary := describe(l.Kind, l.Body)
	if l.Alert != "" {
		summary = "ALERT " + l.Alert + ": " + l.Error
	}
	d.n.telemetry(m, summary)
}

// waitTelemetry waits until a verified message satisfying match arrived.
func (d *demo) waitTelemetry(ctx context.Context, timeout time.Duration, match func(m map[string]any) bool) (map[string]any, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for i := 0; ; {
		d.mu.Lock()
		for ; i < len(d.seen); i++ {
			if v, _ := d.seen[i]["verified"].(bool); v && match(d.seen[i]) {
				m := d.seen[i]
				d.mu.Unlock()
				return m, true
			}
		}
		w := make(chan struct{})
		d.waiters = append(d.waiters, w)
		d.mu.Unlock()
		select {
		case <-w:
		case <-deadline.C:
			return nil, false
		case <-ctx.Done():
			return nil, false
		}
	}
}

// eventIs matches a telemetry event of kind whose attributes contain want.
func eventIs(kind string, want map[string]string) func(map[string]any) bool {
	return func(m map[string]any) bool {
		if m["kind"] != "event" {
			return false
		}
		body, _ := m["body"].(map[string]any)
		if body["kind"] != kind {
			return false
		}
		attrs, _ := body["attrs"].(map[string]any)
		for k, v := range want {
			if fmt.Sprint(attrs[k]) != v {
				return false
			}
		}
		return true
	}
}

func attr(m map[string]any, key string) string {
	body, _ := m["body"].(map[string]any)
	attrs, _ := body["attrs"].(map[string]any)
	if v, ok := attrs[key]; ok {
		return fmt.Sprint(v)
	}
	return ""
}

// exchange sends one line and reads one line back.
func exchange(c net.Conn, r *bufio.Reader, line string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, line+"\r\n"); err != nil {
		return "", err
	}
	s, err := r.ReadString('\n')
	return strings.TrimSpace(s), err
}

// dialClinical connects a clinical system to a device listener.
func (d *demo) dialClinical(addr string, cert tls.Certificate) (*tls.Conn, error) {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(dialer, "tcp", addr, d.pki.client(cert, "spiffe://"+trustDomain+"/gateway/"+gatewayID))
	if err != nil {
		return nil, err
	}
	return c, nil
}

// waitClosed reports whether c is closed by the other side within limit.
func waitClosed(c net.Conn, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return time.Since(start), false
			}
			return time.Since(start), true
		}
	}
}
