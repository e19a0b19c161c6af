package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"path/filepath"
	"time"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/upload"
)

// setupUpload builds the recordings uploader when
// gateway.recordings.upload is configured (nil otherwise). Receipts must
// be signed by central's service identity spiffe://TD/svc/*.
func (a *Agent) setupUpload(cfg *config.Config) (*upload.Uploader, error) {
	up := cfg.Gateway.Recordings.Upload
	if up == nil {
		return nil, nil
	}
	u, _ := url.Parse(up.URL) // validated by config
	td := cfg.Gateway.TrustDomain
	central := certs.PeerPolicy{TrustDomain: td, Allow: []certs.Pattern{certs.MustCompilePattern("spiffe://" + td + "/svc/*")}}
	return upload.New(upload.Options{
		URL:       up.URL,
		GatewayID: cfg.Gateway.ID,
		TLSConfig: func() *tls.Config { return a.verifier.ClientTLSConfig(a.ident, u.Hostname()) },
		VerifyReceipt: func(chain []*x509.Certificate, _ time.Time) (string, error) {
			id, err := a.verifier.Verify(chain, central)
			if err != nil {
				return "", err
			}
			return id.URI, nil
		},
		MaxRate:    int64(up.MaxRate),
		ReceiptDir: filepath.Join(cfg.Gateway.StateDir, "receipts"),
		Store:      a.recs,
		Delivered: func(seq uint64) (bool, error) {
			if a.tel == nil {
				return false, nil
			}
			return a.tel.Delivered(seq)
		},
		OnRefused: func(session string, err error) {
			a.raise("recording_refused", "central refused the recording of session "+session+": it does not match its signed session-end event; the recording is kept")
		},
		Clock:  a.clock,
		Logger: a.o.Logger,
	})
}

// runUpload runs the uploader until ctx ends (nil: nothing to do).
func runUpload(u *upload.Uploader) func(context.Context) error {
	return func(ctx context.Context) error {
		if u == nil {
			<-ctx.Done()
			return nil
		}
		return u.Run(ctx)
	}
}

// archived is the recording store's Archived hook: with an upload URL a
// recording may be pruned only once central's receipt is kept; without,
// nil (the session-end event's delivery suffices).
func (a *Agent) archived(cfg *config.Config) func(string) (bool, error) {
	if cfg.Gateway.Recordings.Upload == nil {
		return nil
	}
	return func(session string) (bool, error) {
		if a.upl == nil {
			return false, nil
		}
		return a.upl.Archived(session)
	}
}
