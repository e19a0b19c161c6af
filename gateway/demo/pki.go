package demo

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/wardgate/wardgate/certs"
)

// pki holds the demo's identities, all issued at start by the development
// CA, as a hospital CA would for its systems and people.
type pki struct {
	ca       *certs.DevCA
	td       string
	roots    *x509.CertPool
	broker   tls.Certificate // the MQTT broker (server)
	central  tls.Certificate // spiffe://TD/svc/central: telemetry consumer
	pumpSrv  tls.Certificate // spiffe://TD/svc/pump-server: clinical system
	station  tls.Certificate // spiffe://TD/svc/central-station: monitors
	vendor   tls.Certificate // spiffe://TD/vendor/acme-medical/jane, 8h
	approver tls.Certificate // spiffe://TD/approver/security/alice
}

func newPKI(td string) (*pki, error) {
	ca, err := certs.NewDevCA(certs.DevCAOptions{Name: "wardgate demo"})
	if err != nil {
		return nil, err
	}
	p := &pki{ca: ca, td: td, roots: x509.NewCertPool()}
	p.roots.AddCert(ca.Root())
	issue := func(dst *tls.Certificate, o certs.IssueOptions) error {
		c, err := ca.Issue(o)
		if err != nil {
			return fmt.Errorf("issue %s: %w", o.URI, err)
		}
		*dst = c
		return nil
	}
	h := "spiffe://" + td
	return p, errors.Join(
		issue(&p.broker, certs.IssueOptions{URI: h + "/svc/mqtt-broker", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}),
		issue(&p.central, certs.IssueOptions{URI: h + "/svc/central"}),
		issue(&p.pumpSrv, certs.IssueOptions{URI: h + "/svc/pump-server"}),
		issue(&p.station, certs.IssueOptions{URI: h + "/svc/central-station"}),
		issue(&p.vendor, certs.IssueOptions{URI: h + "/vendor/acme-medical/jane", Lifetime: 8 * time.Hour}),
		issue(&p.approver, certs.IssueOptions{URI: h + "/approver/security/alice"}),
	)
}

// client returns a TLS client configuration presenting cert and accepting
// only a server whose chain verifies against the demo root and whose URI
// SAN is wantURI (clinical systems pin the gateway's identity, not a name).
func (p *pki) client(cert tls.Certificate, wantURI string) *tls.Config {
	return &tls.Config{
		Certificates:       []tls.Certificate{cert},
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // verified below against the root and the URI
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no server certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: p.roots, Intermediates: inter}); err != nil {
				return err
			}
			for _, u := range leaf.URIs {
				if u.String() == wantURI {
					return nil
				}
			}
			return fmt.Errorf("server is not %s", wantURI)
		},
	}
}

// brokerTLS is the embedded broker's server configuration: client
// certificates required and verified against the demo root.
func (p *pki) brokerTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.broker},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.roots,
		MinVersion:   tls.VersionTLS12,
	}
}
