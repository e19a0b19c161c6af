package agent

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/wire"

	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/authority"
	"github.com/wardgate/wardgate/gateway/telemetry"
	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/lockset"
)

func (a *Agent) setupTelemetry() error {
	cfg := a.cfg()
	p, err := telemetry.New(telemetry.Options{
		GatewayID:  cfg.Gateway.ID,
		Site:       cfg.Gateway.Site,
		Version:    a.o.Version,
		ConfigHash: cfg.Hash,
		SBOM:       a.sbom,
		Brokers:    cfg.MQTT.Brokers,
		TLSConfig: func(host string) *tls.Config {
			return a.verifier.ClientTLSConfig(a.ident, host)
		},
		Signer:          a.signer,
		Clock:           a.clock,
		Logger:          a.o.Logger,
		MetricsInterval: cfg.MQTT.MetricsInterval.D(),
		Metrics:         a.metrics,
		Inventory:       a.inventory,
		OutboxPath:      filepath.Join(cfg.Gateway.StateDir, "telemetry.db"),
		OutboxMax:       int64(cfg.MQTT.OutboxMax),
		OutboxReserve:   int64(cfg.MQTT.OutboxReserve),
		OnAlarm: func(al telemetry.Alarm) {
			a.raise("telemetry."+al.Kind, al.Message)
		},
		Commands:      a.command,
		Permit:        a.permitCommand,
		LockSetTopics: lockset.Topics(cfg.Gateway.ID, cfg.Gateway.Site),
		LockSets:      a.lockSet,
		// at is now, or a command's issue time when central endorsed it
		// (command.VerifyWith).
		VerifyApprover: func(chain []*x509.Certificate, at time.Time) (string, error) {
			// A clock set back would make expired commands valid again.
			if err := a.auth.CheckClock(); err != nil {
				return "", err
			}
			id, err := a.verifier.VerifyAt(chain, a.pol.Load().approver, at)
			if err != nil {
				return "", err
			}
			return id.URI, nil
		},
		VerifyCentral: func(chain []*x509.Certificate, at time.Time) (string, error) {
			id, err := a.verifier.VerifyAt(chain, a.pol.Load().central, at)
			if err != nil {
				return "", err
			}
			return id.URI, nil
		},
	})
	if err != nil {
		return err
	}
	a.tel = p
	return nil
}

// lockSet verifies a lock set received on topic and hands it to the
// authority, which converges the locks and reports the outcome as events.
// An empty retained message (a cleared topic) is ignored.
func (a *Agent) lockSet(topic string, data []byte) {
	if len(data) == 0 {
		return
	}
	cfg := a.cfg()
	if err := a.auth.CheckClock(); err != nil {
		a.auth.RefuseLockSet(topic, err)
		return
	}
	pol := a.pol.Load()
	as := func(p certs.PeerPolicy) command.VerifyApprover {
		return func(chain []*x509.Certificate, at time.Time) (string, error) {
			id, err := a.verifier.VerifyAt(chain, p, at)
			return id.URI, err
		}
	}
	// Approvers' certificates last a day, a set up to a week: once they
	// expired, central's endorsement vouches for the set (lockset.VerifyWith).
	s, err := lockset.VerifyWith(data, cfg.Gateway.TrustDomain, a.clock.Now(),
		lockset.VerifyOptions{Approver: as(pol.approver), Central: as(pol.central)})
	if err == nil && !s.Applies(cfg.Gateway.ID, cfg.Gateway.Site) {
		err = fmt.Errorf("lock set for %s does not apply to gateway %s at site %q", s.Scope, cfg.Gateway.ID, cfg.Gateway.Site)
	}
	if err != nil {
		a.auth.RefuseLockSet(topic, err)
		return
	}
	if _, _, err := a.auth.ApplyLockSet(s); err != nil && !errors.Is(err, authority.ErrStaleLockSet) {
		a.log.Warn("lock set applied with errors", "scope", s.Scope, "version", s.Version, "err", err)
	}
}

// signer returns the current gateway key and chain for signing telemetry.
func (a *Agent) signer() (crypto.Signer, []*x509.Certificate) {
	c, err := a.ident.GetClientCertificate(nil)
	if err != nil || c == nil {
		return nil, nil
	}
	var chain []*x509.Certificate
	for _, der := range c.Certificate {
		if x, err := x509.ParseCertificate(der); err == nil {
			chain = append(chain, x)
		}
	}
	s, _ := c.PrivateKey.(crypto.Signer)
	return s, chain
}

// commandDevice is the device a central command acts on, for the approver
// scopes: the grant's device for approve, deny and revoke, the session's
// grant's device for end-session, and the whole gateway (the zero
// DeviceRef) for lock, unlock, clear-tamper, rebirth and inventory, and for
// a grant or session that does not exist.
func (a *Agent) commandDevice(c command.Command) authority.DeviceRef {
	if len(c.Args) == 0 {
		return authority.DeviceRef{}
	}
	id := strings.ToUpper(strings.TrimSpace(c.Args[0]))
	s := a.access.Snapshot()
	device := ""
	switch c.Name {
	case command.Approve, command.Deny, command.Revoke:
		for _, list := range [][]access.Grant{s.Requests, s.Grants, s.Recent} {
			for _, g := range list {
				if g.ID == id {
					device = g.Device
				}
			}
		}
	case command.EndSession:
		for _, ss := range s.Sessions {
			if ss.ID == id {
				device = ss.Device
			}
		}
	}
	if device == "" {
		return authority.DeviceRef{}
	}
	ref := authority.DeviceRef{ID: device}
	for _, d := range a.cfg().Devices {
		if d.ID == device {
			ref.Kind = d.Kind
		}
	}
	return ref
}

// permitCommand checks a verified command against the clock guard and the
// approver scopes (refusals are the authority's events).
func (a *Agent) permitCommand(c command.Command) error {
	// Central's own identity reaches here only for a resync (VerifyCentral
	// admits it for nothing else); a resync changes no access, so approver
	// scopes, which name people, do not apply to it.
	if (c.Name == command.Rebirth || c.Name == command.InventoryNow) && c.Approver == certs.ServiceURI(a.cfg().Gateway.TrustDomain, "central") {
		return nil
	}
	if err := a.auth.CheckClock(); err != nil {
		return err
	}
	return a.auth.Permit(c.Approver, c.Name, a.commandDevice(c))
}

// command executes a verified central command (permitCommand ran first).
func (a *Agent) command(_ context.Context, c command.Command) (string, error) {
	actor := access.Actor{Kind: access.KindCentral, Via: "command", Approver: c.Approver}
	arg := func(i int) string {
		if i < len(c.Args) {
			return c.Args[i]
		}
		return ""
	}
	var r opRequest
	switch c.Name {
	case command.Approve:
		ap, err := command.ParseApprove(c.Args)
		if err != nil {
			return "", err
		}
		r.Grant = ap.Grant
		if ap.Bound {
			r.Binding = &access.Binding{Vendor: ap.Vendor, Device: ap.Device, Ports: ap.Ports}
		}
	case command.Deny, command.Revoke:
		r.Grant = arg(0)
	case command.EndSession:
		r.Session = arg(0)
	case command.Lock:
		r.Target, r.Reason = arg(0), arg(2)
		if d := arg(1); d != "" {
			dur, err := config.ParseDuration(d)
			if err != nil {
				return "", fmt.Errorf("lock duration: %w", err)
			}
			r.For = dur
		}
	case command.Unlock:
		r.Target = arg(0)
	}
	res, err := a.do(c.Name, actor, r)
	return res.Summary, err
}

// metrics fills the periodic metrics snapshot.
func (a *Agent) metrics() wire.Metrics {
	cfg := a.cfg()
	var m wire.Metrics
	s, err := a.sys.sample(cfg.Gateway.StateDir)
	if err != nil {
		a.log.Debug("system metrics incomplete", "err", err)
	}
	m.CPUPercent, m.MemoryUsedBytes, m.MemoryTotalBytes = s.CPUPercent, s.MemUsed, s.MemTotal
	m.DiskUsedBytes, m.DiskTotalBytes = s.DiskUsed, s.DiskTotal
	if s.DiskTotal > 0 && float64(s.DiskUsed)/float64(s.DiskTotal) > 0.98 {
		a.raise("disk_full", fmt.Sprintf("the state disk is %d%% full", 100*s.DiskUsed/s.DiskTotal))
	} else if s.DiskTotal > 0 {
		a.clear("disk_full")
	}
	m.TemperatureC = a.hw.temperature()
	if exp := a.certNotAfter(); !exp.IsZero() {
		m.CertExpiresIn = exp.Sub(a.clock.Now())
	}
	m.Devices = a.clin.metrics()
	m.ListeningPorts = listeningPorts(cfg)
	return m
}

func listeningPorts(cfg *config.Config) []int {
	var ports []int
	add := func(addr string) {
		if _, p, err := net.SplitHostPort(addr); err == nil {
			if n, err := strconv.Atoi(p); err == nil {
				ports = append(ports, n)
			}
		}
	}
	add(cfg.Gateway.VendorListen)
	for _, d := range cfg.Devices {
		add(d.Clinical.Listen)
	}
	return ports
}
