package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/wardgate/wardgate/wire"

	"github.com/wardgate/wardgate/certs"
)

// ErrNotEnrolled is returned by New when the gateway has no identity yet
// and its CA is the hospital's (identity.ca: step).
var ErrNotEnrolled = errors.New("this gateway has no identity yet: run `wardgate enroll --config FILE --token TOKEN` with a token from the CA operator")

// alarmRenewal is raised while renewal keeps failing past half the
// certificate's lifetime (critical past 90%).
const alarmRenewal = "certificate_renewal"

func (a *Agent) setupIdentity() error {
	cfg := a.cfg()
	bundle := certs.NewBundle()
	var ca certs.CA
	var store *certs.Store
	var dev *certs.DevCA
	switch cfg.Identity.CA {
	case "dev":
		// The development CA lives in memory: its root changes with every
		// start, so the gateway takes a fresh certificate each time.
		dev = a.o.DevCA
		if dev == nil {
			var err error
			if dev, err = certs.NewDevCA(certs.DevCAOptions{Name: "wardgate dev " + cfg.Gateway.ID, Clock: a.clock, Lifetime: cfg.Identity.Lifetime.D()}); err != nil {
				return err
			}
			root := filepath.Join(cfg.Gateway.StateDir, "dev-root.crt")
			if err := certs.WriteFileAtomic(root, certs.EncodeCertsPEM([]*x509.Certificate{dev.Root()}), 0o644); err != nil {
				return err
			}
			a.log.Warn("identity from the built-in development CA: for demos and labs only", "root", root)
		}
		bundle.Set([]*x509.Certificate{dev.Root()})
		ca = dev
	default:
		store = certs.NewStore(filepath.Join(cfg.Gateway.StateDir, "identity"))
		step, err := certs.NewStepClient(certs.StepClientOptions{URL: cfg.Identity.CAURL, Bundle: bundle, Clock: a.clock, Logger: a.o.Logger})
		if err != nil {
			return err
		}
		ca = step
	}
	m, err := certs.NewManager(certs.ManagerOptions{
		CA: ca, Store: store, Bundle: bundle, Clock: a.clock, Logger: a.o.Logger,
		OnEvent: a.identityEvent, RekeyEvery: cfg.Identity.RekeyEvery, NotBefore: a.o.BuildTime,
	})
	if err != nil {
		return fmt.Errorf("gateway identity: %w", err)
	}
	if m.Current() == nil {
		if dev == nil {
			return ErrNotEnrolled
		}
		key, err := certs.GenerateKey()
		if err != nil {
			return err
		}
		uri := certs.GatewayURI(cfg.Gateway.TrustDomain, cfg.Gateway.ID)
		csr, err := certs.NewCSR(cfg.Gateway.ID, []string{cfg.Gateway.ID, uri}, key)
		if err != nil {
			return err
		}
		chain, err := dev.Sign(context.Background(), csr, "", cfg.Identity.Lifetime.D())
		if err != nil {
			return err
		}
		if err := m.Install(key, chain); err != nil {
			return err
		}
	}
	a.ident = m
	a.verifier = certs.NewVerifier(bundle, a.clock)
	a.ca = ca
	return nil
}

// identityEvent turns certificate manager events into agent events and
// alarms.
func (a *Agent) identityEvent(e certs.Event) {
	attrs := map[string]string{}
	if e.Serial != "" {
		attrs["serial"] = e.Serial
	}
	if !e.NotAfter.IsZero() {
		attrs["not_after"] = e.NotAfter.UTC().Format(time.RFC3339)
	}
	if e.Err != nil {
		attrs["error"] = e.Err.Error()
	}
	sev := wire.SeverityInfo
	switch e.Kind {
	case certs.EventExpiring:
		attrs["used_percent"] = fmt.Sprint(e.UsedPercent)
		sev = wire.SeverityWarning
	case certs.EventRenewalFailed:
		attrs["attempt"], attrs["retry_in"] = fmt.Sprint(e.Attempt), e.Retry.String()
		sev = wire.SeverityWarning
	case certs.EventExpired:
		sev = wire.SeverityAlarm
		a.raise("certificate_expired", "the gateway certificate expired; the gateway keeps trying to renew it")
	case certs.EventReenrollNeeded:
		sev = wire.SeverityAlarm
		a.raise("reenroll_needed", "re-enrollment needed: run `wardgate enroll --config FILE --token TOKEN`")
	case certs.EventClockInsane:
		sev = wire.SeverityAlarm
		a.raise("clock_insane", "the system clock is earlier than the build time; fix NTP")
	case certs.EventRenewalOverdue:
		attrs["used_percent"] = fmt.Sprint(e.UsedPercent)
		sev = wire.SeverityWarning
		msg := fmt.Sprintf("the gateway certificate could not be renewed and %d%% of its lifetime is used (expires %s); check that the CA at %s answers", e.UsedPercent, e.NotAfter.UTC().Format(time.RFC3339), a.cfg().Identity.CAURL)
		if e.UsedPercent >= 90 {
			sev = wire.SeverityAlarm
			msg = "CRITICAL: " + msg + "; at expiry the clinical listeners refuse new clients"
		}
		a.raise(alarmRenewal, msg)
	case certs.EventRenewed, certs.EventRekeyed:
		a.clear(alarmRenewal)
		a.clear("certificate_expired")
		a.clear("reenroll_needed")
		a.clear("clock_insane")
	case certs.EventRootsChanged:
		attrs["roots"] = fmt.Sprint(e.Roots)
	}
	a.events.emit(e.Time, "identity."+string(e.Kind), sev, attrs)
}

// renewNow renews (or re-keys) the gateway certificate at once, on an
// operator's request, through the certificate manager (the same checks,
// store, swap and events as a scheduled renewal); established connections
// keep their certificate.
func (a *Agent) renewNow(ctx context.Context, rekey bool) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	leaf, err := a.ident.RenewOnce(ctx, rekey)
	if errors.Is(err, certs.ErrNoIdentity) {
		return "", ErrNotEnrolled
	}
	if err != nil {
		return "", err
	}
	return leaf.SerialNumber.Text(16), nil
}

// certNotAfter is the current certificate's expiry (zero if none).
func (a *Agent) certNotAfter() time.Time {
	if ch := a.ident.Chain(); len(ch) > 0 {
		return ch[0].NotAfter
	}
	return time.Time{}
}

// certLeft is the fraction of the current certificate's lifetime left.
func (a *Agent) certLeft() float64 {
	ch := a.ident.Chain()
	if len(ch) == 0 {
		return 0
	}
	life := ch[0].NotAfter.Sub(ch[0].NotBefore)
	if life <= 0 {
		return 0
	}
	return float64(ch[0].NotAfter.Sub(a.clock.Now())) / float64(life)
}
