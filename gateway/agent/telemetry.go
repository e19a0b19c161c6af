package agent

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/wardgate/wardgate/wire"

	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/telemetry"
	"github.com/wardgate/wardgate/wire/command"
)

func (a *Agent) setupTelemetry() error {
	cfg := a.cfg()
	u, err := url.Parse(cfg.MQTT.Broker)
	if err != nil {
		return fmt.Errorf("mqtt.broker: %w", err)
	}
	brokerHost := u.Hostname()
	p, err := telemetry.New(telemetry.Options{
		GatewayID:  cfg.Gateway.ID,
		Site:       cfg.Gateway.Site,
		Version:    a.o.Version,
		ConfigHash: cfg.Hash,
		BrokerURL:  cfg.MQTT.Broker,
		TLSConfig: func() *tls.Config {
			return a.verifier.ClientTLSConfig(a.ident, brokerHost)
		},
		Signer:          a.signer,
		Clock:           a.clock,
		Logger:          a.o.Logger,
		MetricsInterval: cfg.MQTT.MetricsInterval.D(),
		Metrics:         a.metrics,
		Inventory:       func() wire.Inventory { return inventory(a.cfg()) },
		OutboxPath:      filepath.Join(cfg.Gateway.StateDir, "telemetry.db"),
		OutboxMax:       int64(cfg.MQTT.OutboxMax),
		OutboxReserve:   int64(cfg.MQTT.OutboxReserve),
		OnAlarm: func(al telemetry.Alarm) {
			a.raise("telemetry."+al.Kind, al.Message)
		},
		Commands: a.command,
		VerifyApprover: func(chain []*x509.Certificate, now time.Time) (string, error) {
			id, err := a.verifier.Verify(chain, a.pol.Load().approver)
			if err != nil {
				return "", err
			}
			return id.URI, nil
		},
		VerifyCentral: func(chain []*x509.Certificate, now time.Time) (string, error) {
			id, err := a.verifier.Verify(chain, a.pol.Load().central)
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

// command executes a verified central command.
func (a *Agent) command(_ context.Context, c command.Command) (string, error) {
	actor := access.Actor{Kind: access.KindCentral, Via: "command", Approver: c.Approver}
	arg := func(i int) string {
		if i < len(c.Args) {
			return c.Args[i]
		}
		return ""
	}
	switch c.Name {
	case command.Approve:
		g, err := a.access.Approve(arg(0), actor)
		if err != nil {
			return "", err
		}
		if g.State == access.StateActive {
			return fmt.Sprintf("grant %s active until %s", g.ID, g.Deadline.UTC().Format(time.RFC3339)), nil
		}
		return fmt.Sprintf("approval recorded; %s still needs %v", g.ID, g.Policy), nil
	case command.Deny:
		return "denied", a.access.Deny(arg(0), actor)
	case command.Revoke:
		return "revoked", a.access.Revoke(arg(0), actor)
	case command.EndSession:
		return "session ended", a.access.EndSession(arg(0), actor)
	case command.Lock:
		var until time.Time
		if d := arg(1); d != "" {
			dur, err := config.ParseDuration(d)
			if err != nil {
				return "", fmt.Errorf("lock duration: %w", err)
			}
			until = a.clock.Now().Add(dur)
		}
		if _, err := a.lock(arg(0), until, arg(2), actor); err != nil {
			return "", err
		}
		return "locked", nil
	case command.Unlock:
		return "unlocked", a.auth.RemoveLock(arg(0), actor)
	case command.ClearTamper:
		return "tamper cleared", a.clearTamper(actor)
	}
	return "", fmt.Errorf("command %s is not handled by this gateway", c.Name)
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
