package app

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/wardgate/wardgate/central/archive"
	"github.com/wardgate/wardgate/central/config"
	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/central/web"
	"github.com/wardgate/wardgate/certs"
)

// recordings is the mounted archive (zero without archive:).
type recordings struct {
	arch  *archive.Archive
	web   *web.RecordingsOptions
	every time.Duration
	o     Options
	log   *slog.Logger
}

// openArchive mounts archive: on the store: the session-end events the
// ingest stored give the expected hashes, refused uploads become
// findings, and retention follows the gateway's site and legal holds.
func openArchive(ctx context.Context, cfg *config.Config, st *store.Store, id *Identity, o Options) (*recordings, error) {
	r := &recordings{o: o, log: o.Logger.With("component", "central-archive")}
	a := cfg.Archive
	if a == nil {
		return r, nil
	}
	bg := context.WithoutCancel(ctx)
	signer := func() (crypto.Signer, []*x509.Certificate) { return id.Key, id.Chain }
	var err error
	r.arch, err = archive.New(archive.Options{Dir: a.Dir, TrustDomain: cfg.Central.TrustDomain, MaxSize: int64(a.MaxSize),
		Verifier: id.Verifier, MaxCertLifetime: gatewayCertLifetime(cfg), Signer: signer, Clock: o.Clock, Logger: o.Logger,
		ExpectedHead: func(ctx context.Context, gw, session string) ([]byte, error) {
			rec, err := st.Recording(ctx, gw, session)
			if errors.Is(err, store.ErrNotFound) {
				return nil, archive.ErrUnknownSession
			}
			if err != nil {
				return nil, err
			}
			h, err := hex.DecodeString(rec.Hash)
			if err != nil || len(h) != 32 {
				return nil, fmt.Errorf("the session-end event of %s/%s carries no valid hash (%q)", gw, session, rec.Hash)
			}
			return h, nil
		},
		OnFinding: func(f archive.Finding) {
			if _, err := st.Apply(bg, func(tx *store.Tx) error {
				return tx.AddFinding(store.Finding{Time: f.Time, Gateway: f.Gateway, Kind: store.FindingRecordingRefused, State: store.FindingOpen,
					Detail: fmt.Sprintf("recording %s (%d bytes) refused: %s", f.Session, f.Bytes, f.Reason)})
			}); err != nil {
				r.log.Error("finding not stored", "err", err)
			}
			if err := st.RecordingRefusedUpload(bg, f.Gateway, f.Session, f.Reason, f.Time); err != nil {
				r.log.Error("refusal not recorded", "err", err)
			}
		},
		OnArchived: func(gw, session string, size int64) {
			if err := st.RecordingArchived(bg, gw, session, size, o.Clock.Now()); err != nil {
				r.log.Error("archiving not recorded", "gateway", gw, "session", session, "err", err)
			}
		},
		OnPruned: func(gw, session string) {
			if err := st.RecordingPruned(bg, gw, session, o.Clock.Now()); err != nil {
				r.log.Error("pruning not recorded", "err", err)
			}
		},
		// Asked per file at prune time, so a hold placed a moment ago
		// counts; when the store cannot answer, the file is kept.
		Retention: func(gw, session string) (time.Duration, bool) {
			rec, err := st.Recording(bg, gw, session)
			if err != nil {
				return 0, true
			}
			return a.Retention.For(rec.Site), rec.Hold
		},
	})
	if err != nil {
		return nil, err
	}
	r.every = a.PruneEvery.D()
	r.web = &web.RecordingsOptions{Archive: r.arch, Signer: signer, Retention: a.Retention.For}
	return r, nil
}

// prune deletes expired recordings every archive.prune_every until ctx
// ends.
func (r *recordings) prune(ctx context.Context) {
	if r.arch == nil {
		return
	}
	t := r.o.Clock.NewTicker(r.every)
	defer t.Stop()
	for {
		if n, err := r.arch.Prune(); err != nil || n > 0 {
			r.log.Info("recordings pruned", "deleted", n, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
	}
}

// gatewayCertLifetime bounds the lifetime of gateway certificates on the
// HTTPS listener: operator_cert_lifetime, and at least a day (the longest
// identity.lifetime a gateway may request).
func gatewayCertLifetime(cfg *config.Config) time.Duration {
	return max(cfg.Central.OperatorCertLifetime.D(), certs.DefaultMaxPeerLifetime)
}

// listenerTLS is the HTTPS listener's TLS: approvers (operators, with
// their certificate lifetime bound) and, when the archive is mounted,
// gateways (the handler lets them reach the upload protocol only).
func listenerTLS(cfg *config.Config, id *Identity, gateways bool) *tls.Config {
	td := cfg.Central.TrustDomain
	operators := web.ApproverPolicy(td, cfg.Central.OperatorCertLifetime.D())
	c := id.Verifier.ServerTLSConfig(certs.Static(&id.Cert), operators, nil)
	if !gateways {
		return c
	}
	gws := certs.PeerPolicy{TrustDomain: td, Allow: []certs.Pattern{certs.MustCompilePattern("spiffe://" + td + "/gateway/*")},
		MaxLifetime: gatewayCertLifetime(cfg)}
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		_, err := id.Verifier.Verify(cs.PeerCertificates, operators)
		if err == nil {
			return nil
		}
		gid, gerr := id.Verifier.Verify(cs.PeerCertificates, gws)
		if gerr == nil {
			return nil
		}
		if gid.Kind == certs.KindGateway {
			return gerr
		}
		return err
	}
	return c
}
