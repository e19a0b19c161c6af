package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardgate/wardgate/wire"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/access/recording"
	"github.com/wardgate/wardgate/gateway/admin"
	"github.com/wardgate/wardgate/gateway/authority"
	"github.com/wardgate/wardgate/gateway/clinical"
	"github.com/wardgate/wardgate/gateway/front"
	"github.com/wardgate/wardgate/gateway/monitor"
	"github.com/wardgate/wardgate/gateway/release"
	"github.com/wardgate/wardgate/gateway/telemetry"
	"github.com/wardgate/wardgate/gateway/upload"
)

// Options configure an Agent. Config is required; other zero values take
// the defaults documented per field.
type Options struct {
	Config *config.Config
	Logger *slog.Logger    // default: discard
	Clock  clockwork.Clock // default: the real clock
	// Version is reported in birth messages and status.
	Version string
	// BuildTime is the earliest sane time: the identity is not enrolled or
	// renewed while the clock shows an earlier time. Zero disables the check.
	BuildTime time.Time
	// DevCA is the development CA used when identity.ca is "dev". Nil: the
	// agent creates one and keeps it in STATE_DIR/dev-ca.
	DevCA *certs.DevCA
	// Listen opens listeners (default net.Listen); tests and the demo
	// pass loopback listeners through it.
	Listen func(network, addr string) (net.Listener, error)
	// Dial reaches devices on the isolated segment (default net.Dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Ready, if set, is called once every listener is up.
	Ready func()
	// StartProblems, when set, says Config is the last known good
	// configuration because the file at ConfigFile has these problems: the
	// agent raises the config_invalid alarm and emits
	// config.started_last_good. Nil: Config is the file as it is, and is
	// saved as the last known good one once the agent runs.
	StartProblems error
	// ConfigFile is the configuration file the operator edits (default
	// Config.File); reported when StartProblems is set.
	ConfigFile string
}

// Agent is the running gateway.
type Agent struct {
	o     Options
	log   *slog.Logger
	clock clockwork.Clock
	start time.Time

	pol    atomic.Pointer[policy]
	events *eventSink
	sys    sysStats

	// Components, set up by New.
	ident    *certs.Manager
	ca       certs.CA
	verifier *certs.Verifier
	auth     *authority.Authority
	store    *access.Store
	recs     *recording.Store
	upl      *upload.Uploader // nil: recordings are not uploaded
	access   *access.Broker
	tel      *telemetry.Publisher
	hw       *hardware
	clin     *clinicalPath
	mon      *monitor.Monitor

	// sbom is the SHA-256 of the running binary's SBOM (birth, inventory).
	sbom string

	alarmsMu sync.Mutex
	alarms   map[string]string // kind -> message, raised until cleared (alarms.go)
	// statusWake asks statusLoop to publish now (an alarm changed).
	statusWake chan struct{}

	reloadMu sync.Mutex
}

// New checks the state directory and sets up every component; it starts
// nothing. Close releases what New opened when Run is never called.
func New(o Options) (*Agent, error) {
	if o.Config == nil {
		return nil, errors.New("agent: Options.Config is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Listen == nil {
		o.Listen = net.Listen
	}
	if o.ConfigFile == "" {
		o.ConfigFile = o.Config.File
	}
	if o.Dial == nil {
		var d net.Dialer
		o.Dial = d.DialContext
	}
	a := &Agent{o: o, log: o.Logger.With("component", "agent"), clock: o.Clock, sys: sysStats{proc: "/proc"}, alarms: map[string]string{}, statusWake: make(chan struct{}, 1)}
	a.events = &eventSink{log: o.Logger.With("component", "events")}
	a.sbom = release.SelfSBOMHash()
	a.start = a.clock.Now()
	cfg := o.Config
	if err := os.MkdirAll(cfg.Gateway.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", cfg.Gateway.StateDir, err)
	}
	pol, err := compile(cfg, a.lockedIdentity)
	if err != nil {
		return nil, err
	}
	a.pol.Store(pol)

	ok := false
	defer func() {
		if !ok {
			a.Close()
		}
	}()
	if err := a.setupIdentity(); err != nil {
		return nil, err
	}
	if err := a.setupHardware(); err != nil {
		return nil, err
	}
	if err := a.setupAuthority(); err != nil {
		return nil, err
	}
	if err := a.setupAccess(); err != nil {
		return nil, err
	}
	if err := a.setupClinical(); err != nil {
		return nil, err
	}
	if err := a.setupTelemetry(); err != nil {
		return nil, err
	}
	if err := a.setupMonitor(); err != nil {
		return nil, err
	}
	ok = true
	return a, nil
}

func (a *Agent) cfg() *config.Config { return a.pol.Load().cfg }

// lockedIdentity is the lock check every listener's peer policy asks.
func (a *Agent) lockedIdentity(id certs.Identity) (bool, string) {
	if a.auth == nil {
		return false, ""
	}
	return a.auth.Locked(id.URI)
}

// setupAuthority opens the owner of locks and the tamper latch.
func (a *Agent) setupAuthority() error {
	cfg := a.cfg()
	auth, err := authority.Open(authority.Options{
		Path:        filepath.Join(cfg.Gateway.StateDir, "authority.db"),
		TrustDomain: cfg.Gateway.TrustDomain,
		Clock:       a.clock,
		Logger:      a.o.Logger,
		BuildTime:   a.o.BuildTime,
		Events: func(e authority.Event) {
			a.events.emit(e.Time, e.Kind, e.Severity(), e.Attrs())
			switch e.Kind {
			case authority.EvClockBehind:
				a.raise("clock_behind", e.Reason)
			case authority.EvClockOK:
				a.clear("clock_behind")
			}
		},
	})
	if err != nil {
		return err
	}
	a.auth = auth
	scopes, err := compileScopes(cfg)
	if err != nil {
		return err
	}
	auth.SetScopes(scopes)
	return nil
}

// compileScopes compiles the approvers section (nil when it is absent:
// every approver may run every command, as config check warns).
func compileScopes(cfg *config.Config) (*authority.Scopes, error) {
	if cfg.Approvers == nil {
		return nil, nil
	}
	return authority.CompileScopes(*cfg.Approvers)
}

func (a *Agent) setupAccess() error {
	cfg := a.cfg()
	st, err := access.OpenStore(filepath.Join(cfg.Gateway.StateDir, "access.db"))
	if err != nil {
		return err
	}
	a.store = st
	// Locks and the tamper latch kept by earlier versions in access.db
	// move to the authority once.
	if locks, tamper, err := st.Legacy(); err != nil {
		return err
	} else if imported, err := a.auth.Import(locks, tamper); err != nil {
		return err
	} else if imported && (len(locks) > 0 || tamper) {
		if err := st.DropLegacy(); err != nil {
			a.log.Warn("old locks imported but not removed from access.db", "err", err)
		}
	}
	rc := cfg.Gateway.Recordings
	recs, err := recording.OpenStore(filepath.Join(cfg.Gateway.StateDir, "recordings"), recording.StoreOptions{
		MaxBytes:     int64(rc.MaxBytes),
		MaxFreeShare: rc.MaxFreeShare.Fraction(),
		FsyncEvery:   rc.FsyncEvery.D(),
		Delivered: func(seq uint64) (bool, error) {
			if a.tel == nil {
				return false, nil
			}
			return a.tel.Delivered(seq)
		},
		Archived: a.archived(cfg),
		OnRemove: func(r recording.Removed) {
			a.events.emit(a.clock.Now(), access.EvRecordingPrune, wire.SeverityInfo, map[string]string{
				"session": r.Session, "recording": r.File, "bytes": strconv.FormatInt(r.Bytes, 10)})
		},
		Clock:  a.clock,
		Logger: a.o.Logger,
	})
	if err != nil {
		return err
	}
	a.recs = recs
	if a.upl, err = a.setupUpload(cfg); err != nil {
		return err
	}
	limits, err := a.vendorLimits(cfg)
	if err != nil {
		return err
	}
	b, err := access.New(access.Options{
		Store:          st,
		Authority:      a.auth,
		Recordings:     recs,
		Devices:        accessDevices(cfg),
		GetCertificate: a.ident.GetCertificate,
		ClientCAs:      a.verifier.ClientCAs,
		Authorize: func(chain []*x509.Certificate) (access.VendorIdentity, string, error) {
			return a.pol.Load().vendorIdentity(a.verifier, chain)
		},
		Dial:       a.o.Dial,
		Events:     a.accessEvent,
		LED:        func(s access.LEDState) { a.hw.setVendor(s) },
		Clock:      a.clock,
		Logger:     a.o.Logger,
		RequestTTL: requestTTL(cfg),
		ConnLimits: limits,
	})
	if err != nil {
		return err
	}
	a.access = b
	return nil
}

// vendorLimits are the configured vendor caps, shrunk to fit the
// descriptors left after the clinical side's share (2 per clinical
// session: client and device) so a vendor flood never starves it.
func (a *Agent) vendorLimits(cfg *config.Config) (front.Limits, error) {
	vl := cfg.Gateway.VendorLimits
	want := front.Limits{MaxConns: vl.MaxConnections, MaxPending: vl.MaxPending, MaxPerSource: vl.MaxPerSource,
		HandshakeTimeout: vl.HandshakeTimeout.D(), HandshakeRate: vl.HandshakeRate}
	clin := 0
	for _, d := range cfg.Devices {
		n := d.Clinical.MaxConnections
		if n <= 0 {
			n = clinical.DefaultMaxConns
		}
		p := d.Clinical.MaxPending
		if p <= 0 {
			p = 16 // handshakes seldom pile up on a clinical port; the rest is headroom
		}
		clin += 2*n + p
	}
	budget, err := front.ProcessBudget(clin)
	if err != nil {
		return want, err
	}
	fit, shrank := want.Fit(budget.VendorConns())
	if shrank {
		a.log.Warn("vendor connection caps lowered to fit the descriptor limit; raise LimitNOFILE to restore them",
			"descriptor_limit", budget.Limit, "clinical_share", clin, "max_connections", fit.MaxConns, "max_pending", fit.MaxPending)
	}
	return fit, nil
}

// requestTTL is the shortest request timeout of the configured devices
// (the broker has one for all).
func requestTTL(cfg *config.Config) time.Duration {
	ttl := config.DefaultRequestTimeout
	for _, d := range cfg.Devices {
		if d.Vendor != nil && d.Vendor.RequestTimeout.D() < ttl {
			ttl = d.Vendor.RequestTimeout.D()
		}
	}
	return ttl
}

// Run starts every component and serves until ctx ends, then drains within
// the configured drain timeout. It returns the first component failure.
func (a *Agent) Run(ctx context.Context) error {
	cfg := a.cfg()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	defer wg.Wait()
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				a.log.Error("component failed", "component", name, "err", err)
				cancel(fmt.Errorf("%s: %w", name, err))
			}
		}()
	}

	// The vendor side never stops the agent: a listener that cannot be
	// opened, or a broker that fails, is an alarm while the clinical path
	// goes on.
	vl, err := a.o.Listen("tcp", cfg.Gateway.VendorListen)
	if err != nil {
		a.raise("vendor_listener", fmt.Sprintf("the vendor listener %s cannot be opened: %v (is another service using the port?); vendor access is off, the clinical path is unaffected", cfg.Gateway.VendorListen, err))
		vl = nil
	}
	adminSrv := &admin.Server{Path: cfg.Gateway.AdminSocket, Handler: a.adminRoutes(), Logger: a.o.Logger, Group: -1}
	al, err := adminSrv.Listen()
	if err != nil {
		if vl != nil {
			vl.Close()
		}
		return err
	}
	a.events.setPublisher(a.tel.Event)

	run("identity", a.ident.Run)
	run("telemetry", a.tel.Run)
	if vl != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.access.Run(ctx, vl); err != nil && ctx.Err() == nil {
				a.log.Error("vendor listener failed", "err", err)
				a.raise("vendor_listener", "the vendor listener stopped: "+err.Error()+"; vendor access is off, the clinical path is unaffected")
			}
		}()
	}
	run("recordings", a.recs.Run)
	run("upload", runUpload(a.upl))
	run("admin", func(ctx context.Context) error { return adminSrv.Serve(ctx, al) })
	// The clinical path outlives ctx by the drain below.
	clinCtx, clinCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer clinCancel()
	run("clinical", func(context.Context) error { return a.clin.run(clinCtx) })
	run("hardware", a.hw.run)
	run("indicators", a.indicatorLoop)
	run("status", a.statusLoop)
	run("monitor", a.mon.Run)

	a.events.emit(a.clock.Now(), "gateway.started", wire.SeverityInfo, map[string]string{
		"version": a.o.Version, "config_hash": cfg.Hash, "devices": fmt.Sprint(len(cfg.Devices))})
	a.retireDevices(a.previousGood(), cfg)
	a.emitUpdateJournal()
	if a.o.StartProblems != nil {
		a.startedOnLastGood()
	} else {
		a.configAccepted(cfg)
	}
	a.hw.notifyReady()
	if a.o.Ready != nil {
		a.o.Ready()
	}
	<-ctx.Done()
	err = context.Cause(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	a.hw.notifyStopping()
	a.log.Info("stopping: draining connections", "deadline", cfg.Gateway.DrainTimeout.D())
	a.clin.drain(cfg.Gateway.DrainTimeout.D())
	clinCancel()
	return err
}

// Close releases what New opened. Call it after Run returned (or instead
// of Run). Idempotent.
func (a *Agent) Close() error {
	var errs []error
	if a.access != nil {
		errs = append(errs, a.access.Close())
	}
	if a.store != nil {
		errs = append(errs, a.store.Close())
	}
	if a.auth != nil {
		errs = append(errs, a.auth.Close())
	}
	if a.tel != nil {
		errs = append(errs, a.tel.Close())
	}
	if a.hw != nil {
		errs = append(errs, a.hw.close())
	}
	a.clin.close()
	if a.mon != nil {
		errs = append(errs, a.mon.Close())
	}
	return errors.Join(errs...)
}

// Reload applies a new configuration: devices whose settings did not
// change keep their connections; policies, vendor devices and inventory are
// swapped. Settings that need a restart (gateway id, trust domain, state
// directory, listeners of the gateway itself, identity, broker, hardware)
// are refused with an error saying so; the running configuration stays.
func (a *Agent) Reload(cfg *config.Config) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	old := a.cfg()
	if err := restartNeeded(old, cfg); err != nil {
		return err
	}
	pol, err := compile(cfg, a.lockedIdentity)
	if err != nil {
		return err
	}
	scopes, err := compileScopes(cfg)
	if err != nil {
		return err
	}
	if err := a.clin.update(cfg); err != nil {
		return err
	}
	a.pol.Store(pol)
	a.auth.SetScopes(scopes)
	a.access.SetDevices(accessDevices(cfg))
	a.mon.SetConfig(cfg)
	a.retireDevices(old, cfg)
	a.events.emit(a.clock.Now(), EvConfigReloaded, wire.SeverityInfo, map[string]string{"config_hash": cfg.Hash, "previous": old.Hash})
	a.configAccepted(cfg)
	if _, err := a.tel.PublishInventory(a.inventory()); err != nil {
		a.log.Warn("inventory after reload not queued", "err", err)
	}
	return nil
}

// restartNeeded refuses reloads that change what only a restart can.
func restartNeeded(old, cfg *config.Config) error {
	type field struct {
		name     string
		old, new any
	}
	for _, f := range []field{
		{"gateway.id", old.Gateway.ID, cfg.Gateway.ID},
		{"gateway.trust_domain", old.Gateway.TrustDomain, cfg.Gateway.TrustDomain},
		{"gateway.state_dir", old.Gateway.StateDir, cfg.Gateway.StateDir},
		{"gateway.vendor_listen", old.Gateway.VendorListen, cfg.Gateway.VendorListen},
		{"gateway.admin_socket", old.Gateway.AdminSocket, cfg.Gateway.AdminSocket},
		{"identity", old.Identity, cfg.Identity},
		{"mqtt", old.MQTT, cfg.MQTT},
		{"hal", old.HAL, cfg.HAL},
	} {
		if !reflect.DeepEqual(f.old, f.new) { // identity holds lists (extra_roots, pins)
			return fmt.Errorf("%s changed: this needs a restart (systemctl restart wardgate); the running configuration is kept", f.name)
		}
	}
	return nil
}
