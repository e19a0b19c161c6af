package demo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// centralView: wardgate-central (when the demo started it) lists the
// gateway online in its fleet API, reached as an operator with an approver
// certificate over mutual TLS.
func (d *demo) centralView(ctx context.Context) error {
	if d.dashboard == "" {
		return nil
	}
	d.n.heading("Central security's fleet view (wardgate-central on SQLite)")
	dir := filepath.Join(d.dir, "central")
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "operator.crt"), filepath.Join(dir, "operator.key"))
	if err != nil {
		return err
	}
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root.crt"))
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, Certificates: []tls.Certificate{cert}}}}
	defer client.CloseIdleConnections()
	type gateway struct {
		ID       string `json:"id"`
		Online   bool   `json:"online"`
		Messages int    `json:"messages"`
		Devices  int    `json:"devices"`
	}
	var seen gateway
	deadline := time.Now().Add(15 * time.Second)
	for {
		var out struct {
			Gateways []gateway `json:"gateways"`
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.dashboard+"api/v1/gateways", nil)
		resp, err := client.Do(req)
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
		}
		for _, g := range out.Gateways {
			if g.ID == gatewayID {
				seen = g
			}
		}
		if (seen.Online && seen.Devices > 0) || time.Now().After(deadline) || ctx.Err() != nil {
			d.n.check("central-fleet", seen.Online && seen.Devices > 0, "central lists %s online with %d devices and %d verified messages (GET /api/v1/gateways as an approver): %v",
				gatewayID, seen.Devices, seen.Messages, errText(err))
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond): // polling another component's API
		}
	}
}
