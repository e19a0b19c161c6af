package app

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/central/commands"
	"github.com/wardgate/wardgate/central/config"
	"github.com/wardgate/wardgate/central/ingest"
	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/central/web"
	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/envelope"
	"github.com/wardgate/wardgate/wire/lockset"
	"github.com/wardgate/wardgate/wire/siem"
)

// Identity is central's certificate, key and trust bundle.
type Identity struct {
	Cert     tls.Certificate
	Key      crypto.Signer
	Chain    []*x509.Certificate
	Roots    []*x509.Certificate
	Verifier *certs.Verifier
	URI      string
}

// LoadIdentity reads the files of tls: and checks that the certificate is
// spiffe://TD/svc/central.
func LoadIdentity(c *config.Config, clock clockwork.Clock) (*Identity, error) {
	cert, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key)
	if err != nil {
		return nil, fmt.Errorf("tls.cert %s / tls.key %s: %w", c.TLS.Cert, c.TLS.Key, err)
	}
	key, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("tls.key is not a signing key")
	}
	id := &Identity{Cert: cert, Key: key}
	for _, der := range cert.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("tls.cert: %w", err)
		}
		id.Chain = append(id.Chain, x)
	}
	pem, err := os.ReadFile(c.TLS.CA)
	if err != nil {
		return nil, fmt.Errorf("tls.ca: %w", err)
	}
	id.Roots, err = certs.ParseCertsPEM(pem)
	if err != nil || len(id.Roots) == 0 {
		return nil, fmt.Errorf("tls.ca %s holds no certificate: give the hospital's root CA bundle (PEM)", c.TLS.CA)
	}
	want := certs.ServiceURI(c.Central.TrustDomain, "central")
	ident, err := certs.IdentityFromCert(id.Chain[0], c.Central.TrustDomain)
	if err != nil || ident.URI != want {
		return nil, fmt.Errorf("tls.cert must name %s (gateways accept resync requests only from it), it names %v: %v", want, id.Chain[0].URIs, err)
	}
	id.URI = ident.URI
	id.Verifier = certs.NewVerifier(certs.NewBundle(id.Roots...), clock)
	return id, nil
}

// Options are the parts of Run tests replace.
type Options struct {
	Clock   clockwork.Clock
	Logger  *slog.Logger
	Version string
	// Listener, when set, is used instead of listening on central.listen
	// (it is wrapped in TLS).
	Listener net.Listener
	// Ready, when set, is called with the HTTPS address once serving.
	Ready func(addr string)
	// Stdout receives the SIEM records when siem: writes to stdout;
	// default os.Stdout.
	Stdout io.Writer
}

// Run runs central until ctx ends.
func Run(ctx context.Context, cfg *config.Config, o Options) error {
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	log := o.Logger.With("component", "central")
	id, err := LoadIdentity(cfg, o.Clock)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, cfg.Central.DB)
	if err != nil {
		return err
	}
	defer st.Close()
	pool := id.Verifier.ClientCAs()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	siemLines, siemRun, err := openSIEM(ctx, cfg, o)
	if err != nil {
		return err
	}
	var srv *web.Server
	var cmds *commands.Service // set before in.Run starts: the hooks run after
	var shared *ingest.AMQPOptions
	if a := cfg.AMQP; a != nil {
		shared = &ingest.AMQPOptions{URLs: a.URLs, Queue: a.Queue, Prefetch: a.Prefetch, Name: "wardgate-central-" + cfg.Central.ID}
	}
	in, err := ingest.New(ctx, ingest.Options{AMQP: shared,
		Store: st, Brokers: cfg.MQTT.Brokers, ClientID: "wardgate-central-" + cfg.Central.ID,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{id.Cert}},
		Verify:    envelope.RootsVerifier(pool), Signer: id.Key, Chain: id.Chain,
		ReorderWindow: cfg.Ingest.ReorderWindow.D(), ResyncInterval: cfg.Ingest.ResyncInterval.D(), OfflineAfter: cfg.Ingest.OfflineAfter.D(),
		Retention: store.Retention{Events: cfg.Retention.Events.D(), Findings: cfg.Retention.Findings.D(), Sessions: cfg.Retention.Sessions.D()},
		KeepAlive: cfg.MQTT.KeepAlive.D(), Clock: o.Clock, Logger: o.Logger, OnLine: siemLines,
		OnChange: func(c ingest.Change) {
			if srv != nil {
				srv.Notify(c)
			}
		},
		OnApplied:   func(m *envelope.Message) { cmds.Observe(m) },
		OnConnected: func() { cmds.Connected() },
	})
	if err != nil {
		return err
	}
	rec, err := openArchive(ctx, cfg, st, id, o)
	if err != nil {
		return err
	}
	approvers := web.ApproverPolicy(cfg.Central.TrustDomain, cfg.Central.OperatorCertLifetime.D())
	cmds, err = commands.New(commands.Options{Store: st, TrustDomain: cfg.Central.TrustDomain, Publish: in.Publish,
		Endorser: &lockset.Signer{Key: id.Key, Chain: id.Chain}, NoRetain: cfg.AMQP != nil,
		Clock: o.Clock, Logger: o.Logger,
		Approver: func(chain []*x509.Certificate, _ time.Time) (string, error) {
			who, err := id.Verifier.Verify(chain, approvers)
			if err != nil {
				return "", err
			}
			return who.URI, nil
		},
		OnChange: func() {
			if srv != nil {
				srv.Notify(ingest.Change{})
			}
		}})
	if err != nil {
		return err
	}
	srv, err = web.New(web.Options{Store: st, TrustDomain: cfg.Central.TrustDomain, Stats: in.Stats, Version: o.Version, Commands: cmds,
		Clock: o.Clock, Logger: o.Logger, Recordings: rec.web})
	if err != nil {
		return err
	}
	stopPprof, _, err := servePprof(cfg.Central.PprofListen, log)
	if err != nil {
		return err
	}
	defer stopPprof()
	ln := o.Listener
	if ln == nil {
		ln, err = net.Listen("tcp", cfg.Central.Listen)
		if err != nil {
			return fmt.Errorf("central.listen %s: %w", cfg.Central.Listen, err)
		}
	}
	tlsLn := tls.NewListener(ln, listenerTLS(cfg, id, rec.web != nil))
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	wg.Add(5)
	go func() {
		defer wg.Done()
		rec.prune(ctx)
	}()
	go func() {
		defer wg.Done()
		if err := cmds.Run(ctx); err != nil {
			errs <- fmt.Errorf("commands: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := siemRun(ctx); err != nil {
			errs <- fmt.Errorf("siem: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := in.Run(ctx); err != nil {
			errs <- fmt.Errorf("ingest: %w", err)
		}
		cancel()
	}()
	go func() {
		defer wg.Done()
		if err := srv.Run(ctx, tlsLn); err != nil {
			errs <- fmt.Errorf("https: %w", err)
		}
		cancel()
	}()
	log.Info("central running", "id", cfg.Central.ID, "identity", id.URI, "https", ln.Addr().String(), "db", st.Dialect, "brokers", cfg.MQTT.Brokers, "amqp", shared != nil)
	if o.Ready != nil {
		o.Ready(ln.Addr().String())
	}
	wg.Wait()
	close(errs)
	return errors.Join(func() []error {
		var out []error
		for e := range errs {
			out = append(out, e)
		}
		return out
	}()...)
}

// openSIEM opens the siem: output (if any). It returns the ingest hook
// that hands it every line and the loop that delivers them in batches
// (one queue commit per batch, not per message); both are no-ops without
// siem:.
func openSIEM(ctx context.Context, cfg *config.Config, o Options) (func(wire.Line), func(context.Context) error, error) {
	if cfg.SIEM == nil {
		return nil, func(context.Context) error { return nil }, nil
	}
	w := o.Stdout
	if w == nil {
		w = os.Stdout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	out, err := siem.OpenOutput(*cfg.SIEM, w, siem.OutputOptions{Version: o.Version, Logger: o.Logger, Clock: o.Clock,
		Name: func(k string) string { return "siem." + k }})
	if err != nil {
		return nil, nil, fmt.Errorf("siem: %w", err)
	}
	lines := make(chan wire.Line, 4096)
	push := func(l wire.Line) {
		select {
		case lines <- l:
		case <-ctx.Done():
		}
	}
	run := func(ctx context.Context) error {
		defer out.Close()
		done := make(chan error, 1)
		go func() { done <- out.Run(ctx) }()
		log := o.Logger.With("component", "central-siem")
		batch := make([]wire.Line, 0, 256)
		for {
			select {
			case <-ctx.Done():
				return <-done
			case l := <-lines:
				batch = append(batch[:0], l)
			more:
				for len(batch) < cap(batch) {
					select {
					case l := <-lines:
						batch = append(batch, l)
					default:
						break more
					}
				}
				if err := out.Sinks.SendBatch(batch); err != nil {
					log.Error("SIEM records not queued", "records", len(batch), "err", err)
				}
			}
		}
	}
	return push, run, nil
}
