package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"time"

	"github.com/wardgate/wardgate/wire"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/clinical"
)

// DeviceStatus is one device in `wardgate status`.
type DeviceStatus = clinical.DeviceStatus

// clinicalPath adapts the clinical relay to the agent.
type clinicalPath struct {
	a   *Agent
	srv *clinical.Server
}

func (a *Agent) clinicalOptions() clinical.Options {
	return clinical.Options{
		GetCertificate: a.ident.GetCertificate,
		ClientCAs:      a.verifier.ClientCAs,
		Authorize: func(device string, chain []*x509.Certificate) (string, string, error) {
			pol, ok := a.pol.Load().clinical[device]
			if !ok {
				return "", "unknown_device", errors.New("device not configured")
			}
			id, err := a.verifier.Verify(chain, pol)
			if err != nil {
				var pe *certs.PeerError
				if errors.As(err, &pe) {
					return pe.Identity.URI, pe.Reason, err
				}
				return "", "refused", err
			}
			return id.URI, "", nil
		},
		Locks:  a.auth,
		Listen: a.o.Listen,
		Dial:   a.o.Dial,
		Events: a.clinicalEvent,
		Clock:  a.clock,
		Logger: a.o.Logger.With("component", "clinical"),
	}
}

func (a *Agent) setupClinical() error {
	srv, err := clinical.New(a.clinicalOptions(), clinicalDevices(a.cfg()))
	if err != nil {
		return err
	}
	a.clin = &clinicalPath{a: a, srv: srv}
	return nil
}

// clinicalEvent forwards a clinical event (never payload) to the sink.
func (a *Agent) clinicalEvent(e clinical.Event) {
	a.events.emit(e.Time, e.Kind, e.Severity(), e.Attrs())
}

// clinicalDevices maps the configuration to the relay's devices.
func clinicalDevices(cfg *config.Config) []clinical.DeviceOptions {
	out := make([]clinical.DeviceOptions, 0, len(cfg.Devices))
	for _, d := range cfg.Devices {
		if d.IsRetired() {
			continue // its listener is closed (retired: DATE)
		}
		cd := clinical.DeviceOptions{
			ID: d.ID, Listen: d.Clinical.Listen, TCP: d.Link.TCP,
			Allow: d.Clinical.Allow, MaxCertLifetime: d.Clinical.MaxCertLifetime.D(),
			MaxConns: d.Clinical.MaxConnections, MaxPerSource: d.Clinical.MaxPerSource,
			HandshakeTimeout: d.Clinical.HandshakeTimeout.D(), IdleTimeout: d.Clinical.IdleTimeout.D(),
			MaxLifetime: d.Clinical.MaxLifetime.D(), MaxPending: d.Clinical.MaxPending,
		}
		if s := d.Link.Serial; s != nil {
			sc := *s
			cd.Serial = &sc
		}
		out = append(out, cd)
	}
	return out
}

// run serves the clinical path until ctx ends (drain cuts what is left).
func (c *clinicalPath) run(ctx context.Context) error { return c.srv.Run(ctx) }

// drain lets live sessions finish within timeout, then cuts them.
func (c *clinicalPath) drain(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.srv.Shutdown(ctx); err != nil {
		c.a.log.Warn("clinical drain", "err", err)
	}
}

func (c *clinicalPath) close() {
	if c != nil {
		c.srv.Close()
	}
}

func (c *clinicalPath) update(cfg *config.Config) error { return c.srv.Update(clinicalDevices(cfg)) }

func (c *clinicalPath) status() []DeviceStatus { return c.srv.Snapshot() }

func (c *clinicalPath) metrics() []wire.DeviceMetrics {
	var out []wire.DeviceMetrics
	for _, d := range c.srv.Snapshot() {
		k := d.Counters
		var hs, auth int64
		for _, n := range k.HandshakeFailures {
			hs += n
		}
		for _, n := range k.AuthFailures {
			auth += n
		}
		out = append(out, wire.DeviceMetrics{ID: d.ID, BytesIn: uint64(k.BytesFromDevice), BytesOut: uint64(k.BytesToDevice),
			Connections: uint64(k.Sessions), HandshakeFailures: uint64(hs), AuthFailures: uint64(auth), LinkUp: d.LinkState == "up"})
	}
	return out
}
