package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/relay"
	"github.com/wardgate/wardgate/gateway/telemetry"
	"github.com/wardgate/wardgate/hal"
)

// DeviceStatus is one device in `wardgate status`.
type DeviceStatus = relay.DeviceSnapshot

// clinicalPath adapts the relay to the agent.
type clinicalPath struct {
	a   *Agent
	srv *relay.Server
}

func (a *Agent) setupClinical() error {
	srv, err := relay.New(relay.Options{
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
		Listen: a.o.Listen,
		Dial:   a.o.Dial,
		Events: func(e relay.Event) {
			attrs := map[string]string{"device": e.Device}
			for k, v := range e.Attrs {
				attrs[k] = v
			}
			sev := telemetry.SeverityInfo
			switch e.Kind {
			case relay.EvAuthFailure, relay.EvHandshakeFailure, relay.EvLimit, relay.EvBusy, relay.EvCut:
				sev = telemetry.SeverityWarning
			case relay.EvLinkDown:
				sev = telemetry.SeverityAlarm
			}
			a.events.emit(e.Time, e.Kind, sev, attrs)
		},
		Clock:  a.clock,
		Logger: a.o.Logger,
	})
	if err != nil {
		return err
	}
	a.clin = &clinicalPath{a: a, srv: srv}
	return nil
}

// relayDevices maps the configuration to the relay's devices.
func relayDevices(cfg *config.Config) []relay.Device {
	out := make([]relay.Device, 0, len(cfg.Devices))
	for _, d := range cfg.Devices {
		rd := relay.Device{
			ID: d.ID, Listen: d.Clinical.Listen, TCP: d.Link.TCP,
			MaxConns: d.Clinical.MaxConnections, MaxPerSource: d.Clinical.MaxPerSource,
			HandshakeTimeout: d.Clinical.HandshakeTimeout.D(), IdleTimeout: d.Clinical.IdleTimeout.D(),
			MaxLifetime: d.Clinical.MaxLifetime.D(),
			Policy:      fmt.Sprintf("%q %s", d.Clinical.Allow, d.Clinical.MaxCertLifetime),
		}
		if s := d.Link.Serial; s != nil {
			rd.Serial = &hal.SerialConfig{Port: s.Port, Baud: s.Baud, DataBits: s.DataBits, Parity: s.Parity, StopBits: s.StopBits, Flow: s.Flow}
		}
		out = append(out, rd)
	}
	return out
}

// listen opens every device listener.
func (c *clinicalPath) listen() error { return c.srv.Update(relayDevices(c.a.cfg())) }

// run returns when ctx ends; connections are drained by drain.
func (c *clinicalPath) run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

func (c *clinicalPath) drain(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c.srv.Shutdown(ctx)
}

func (c *clinicalPath) update(cfg *config.Config) error { return c.srv.Update(relayDevices(cfg)) }

func (c *clinicalPath) cut(identity string) {
	if c == nil {
		return
	}
	c.srv.CutIdentity(identity, "locked")
}

func (c *clinicalPath) status() []DeviceStatus { return c.srv.Snapshot() }

func (c *clinicalPath) metrics() []telemetry.DeviceMetrics {
	var out []telemetry.DeviceMetrics
	for _, d := range c.srv.Snapshot() {
		var hs uint64
		for _, n := range d.HandshakeFailures {
			hs += n
		}
		out = append(out, telemetry.DeviceMetrics{ID: d.ID, BytesIn: d.FromDevice, BytesOut: d.ToDevice,
			Connections: d.Connections, HandshakeFailures: hs, AuthFailures: d.AuthFailures, LinkUp: d.LinkUp != nil && *d.LinkUp})
	}
	return out
}
