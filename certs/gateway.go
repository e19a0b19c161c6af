package certs

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/internal/atomicfile"
)

// GatewayOptions says where a gateway's own identity comes from. It is the
// one wiring of Store, CA client, trust Bundle and Manager: `wardgate run`,
// the demo and tests all open their identity through OpenGateway.
type GatewayOptions struct {
	// CA is "step" (the hospital's step-ca at CAURL; the identity must have
	// been enrolled into StateDir/identity with Enroll) or "dev" (an
	// in-memory development CA; a fresh certificate at every start).
	CA    string
	CAURL string
	// StateDir holds the identity (StateDir/identity) and, for "dev", the
	// development root as dev-root.crt so local tools can trust it.
	StateDir string
	// GatewayID and TrustDomain name the certificate the development CA
	// issues (CN and DNS SAN ID, URI spiffe://TD/gateway/ID).
	GatewayID, TrustDomain string
	// Lifetime of certificates from the development CA (zero: its default).
	Lifetime time.Duration
	// DevCA, when set with CA "dev", is used instead of a new one (the demo
	// shares its CA with the simulated peers).
	DevCA *DevCA
	// Manager settings (see ManagerOptions).
	PinnedRoots []string
	RekeyEvery  int
	NotBefore   time.Time
	OnEvent     func(Event)
	Clock       clockwork.Clock
	Logger      *slog.Logger
}

// Gateway is an opened gateway identity: the Manager that holds, renews
// and re-keys the certificate, the trust Bundle it refreshes, and the CA
// client it uses. Dev is the development CA for CA "dev", else nil.
type Gateway struct {
	Manager *Manager
	Bundle  *Bundle
	CA      CA
	Dev     *DevCA
}

// Verifier returns a Verifier over the gateway's trust bundle.
func (g *Gateway) Verifier(clk clockwork.Clock) *Verifier { return NewVerifier(g.Bundle, clk) }

// OpenGateway opens the gateway's identity as o says. With CA "step" it
// fails with ErrNoIdentity when the gateway was never enrolled and with
// ErrKeyPermissions when the stored key is readable by others; with CA
// "dev" it issues a new certificate at once.
func OpenGateway(o GatewayOptions) (*Gateway, error) {
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{Bundle: NewBundle()}
	var store *Store
	switch o.CA {
	case "dev":
		dev := o.DevCA
		if dev == nil {
			var err error
			if dev, err = NewDevCA(DevCAOptions{Name: "wardgate dev " + o.GatewayID, Clock: o.Clock, Lifetime: o.Lifetime}); err != nil {
				return nil, err
			}
			if o.StateDir != "" {
				root := filepath.Join(o.StateDir, "dev-root.crt")
				if err := atomicfile.Write(root, EncodeCertsPEM([]*x509.Certificate{dev.Root()}), 0o644); err != nil {
					return nil, err
				}
				o.Logger.Warn("identity from the built-in development CA: for demos and labs only", "component", "certs", "root", root)
			}
		}
		g.Bundle.Set([]*x509.Certificate{dev.Root()})
		g.CA, g.Dev = dev, dev
	case "step":
		store = NewStore(IdentityDir(o.StateDir))
		step, err := NewStepClient(StepClientOptions{URL: o.CAURL, Bundle: g.Bundle, Clock: o.Clock, Logger: o.Logger})
		if err != nil {
			return nil, err
		}
		g.CA = step
	default:
		return nil, fmt.Errorf("identity CA %q: use step or dev", o.CA)
	}
	m, err := NewManager(ManagerOptions{CA: g.CA, Store: store, Bundle: g.Bundle, Clock: o.Clock, Logger: o.Logger,
		OnEvent: o.OnEvent, RekeyEvery: o.RekeyEvery, NotBefore: o.NotBefore, PinnedRoots: o.PinnedRoots})
	if err != nil {
		return nil, err
	}
	g.Manager = m
	if m.Current() != nil {
		return g, nil
	}
	if g.Dev == nil {
		return nil, ErrNoIdentity
	}
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	csr, err := NewCSR(o.GatewayID, []string{o.GatewayID, GatewayURI(o.TrustDomain, o.GatewayID)}, key)
	if err != nil {
		return nil, err
	}
	chain, err := g.Dev.Sign(context.Background(), csr, "", o.Lifetime)
	if err != nil {
		return nil, err
	}
	if err := m.Install(key, chain); err != nil {
		return nil, err
	}
	return g, nil
}
