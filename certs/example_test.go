package certs_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/certs"
)

// ExampleOpenGateway opens a gateway identity (here from the development
// CA; "step" with an enrolled state directory in production), serves mutual
// TLS with it, and admits a clinical service whose identity the policy
// allows.
func ExampleOpenGateway() {
	clk := clockwork.NewRealClock()
	g, err := certs.OpenGateway(certs.GatewayOptions{CA: "dev", GatewayID: "gw-01", TrustDomain: "hospital.example",
		Lifetime: time.Hour, Clock: clk})
	if err != nil {
		panic(err)
	}
	fmt.Println("gateway:", g.Manager.Current().Leaf.URIs[0])

	v := g.Verifier(clk)
	policy := certs.PeerPolicy{TrustDomain: "hospital.example", Usage: x509.ExtKeyUsageClientAuth,
		Allow: []certs.Pattern{certs.MustCompilePattern("spiffe://hospital.example/svc/pump-server")}}
	admitted := make(chan string, 1)
	srv := v.ServerTLSConfig(g.Manager, policy, func(id certs.Identity, err error) {
		if err == nil {
			admitted <- id.URI
		}
	})
	l, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		panic(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()

	client, err := g.Dev.Issue(certs.IssueOptions{URI: "spiffe://hospital.example/svc/pump-server"})
	if err != nil {
		panic(err)
	}
	conn, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{Certificates: []tls.Certificate{client},
		RootCAs: g.Bundle.Pool(), ServerName: "gw-01"})
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	fmt.Println("admitted:", <-admitted)
	// Output:
	// gateway: spiffe://hospital.example/gateway/gw-01
	// admitted: spiffe://hospital.example/svc/pump-server
}
