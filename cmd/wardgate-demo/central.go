package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/wardgate/wardgate/central/app"
	"github.com/wardgate/wardgate/central/config"
	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/gateway/demo"
)

// startCentral runs wardgate-central beside the demo: SQLite in env.Dir,
// the demo's broker, a certificate for spiffe://TD/svc/central and one for
// an operator (an approver) to open the pages with, written as the files
// demo.CentralEnv names. It returns the dashboard's URL once central
// serves; central stops with ctx.
func startCentral(ctx context.Context, env demo.CentralEnv) (string, error) {
	if err := os.MkdirAll(env.Dir, 0o700); err != nil {
		return "", err
	}
	write := func(name string, data []byte) (string, error) {
		p := filepath.Join(env.Dir, name)
		return p, os.WriteFile(p, data, 0o600)
	}
	files := map[string]string{}
	issue := func(name string, o certs.IssueOptions) error {
		c, err := env.CA.Issue(o)
		if err != nil {
			return err
		}
		var parsed []*x509.Certificate
		for _, der := range c.Certificate {
			x, err := x509.ParseCertificate(der)
			if err != nil {
				return err
			}
			parsed = append(parsed, x)
		}
		chain := certs.EncodeCertsPEM(parsed)
		key, err := certs.EncodeKeyPEM(c.PrivateKey.(crypto.Signer))
		if err != nil {
			return err
		}
		if files[name+".crt"], err = write(name+".crt", chain); err != nil {
			return err
		}
		files[name+".key"], err = write(name+".key", key)
		return err
	}
	td := env.TrustDomain
	if err := issue("central", certs.IssueOptions{URI: certs.ServiceURI(td, "central"), DNSNames: []string{"localhost"},
		IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Lifetime: 24 * time.Hour}); err != nil {
		return "", err
	}
	if err := issue("operator", certs.IssueOptions{URI: "spiffe://" + td + "/approver/security/demo", Lifetime: 12 * time.Hour}); err != nil {
		return "", err
	}
	root, err := write("root.crt", certs.EncodeCertsPEM(env.CA.Bundle().Roots()))
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	cfg, err := config.Parse("central.yaml", fmt.Appendf(nil, `version: 1
central: {id: central-demo, trust_domain: %s, listen: %q, db: "sqlite:%s"}
tls: {cert: %q, key: %q, ca: %q}
mqtt: {brokers: [%q]}
ingest: {reorder_window: 2s, resync_interval: 10s}
`, td, ln.Addr().String(), filepath.Join(env.Dir, "central.db"), files["central.crt"], files["central.key"], root, env.BrokerURL))
	if err != nil {
		ln.Close()
		return "", err
	}
	logf, err := os.OpenFile(filepath.Join(env.Dir, "central.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		ln.Close()
		return "", err
	}
	ready := make(chan string, 1)
	failed := make(chan error, 1)
	go func() {
		defer logf.Close()
		err := app.Run(ctx, cfg, app.Options{Listener: ln, Version: version, Logger: slog.New(slog.NewTextHandler(logf, nil)),
			Ready: func(addr string) { ready <- addr }})
		if err != nil {
			failed <- err
		}
	}()
	select {
	case addr := <-ready:
		return "https://" + addr + "/", nil
	case err := <-failed:
		return "", err
	case <-time.After(20 * time.Second):
		return "", fmt.Errorf("central did not start within 20s; see %s", filepath.Join(env.Dir, "central.log"))
	case <-ctx.Done():
		return "", ctx.Err()
	}
}
