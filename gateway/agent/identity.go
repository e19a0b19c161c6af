package agent

import (
	"context"
	"errors"
	"fmt"
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
	g, err := certs.OpenGateway(certs.GatewayOptions{
		CA: cfg.Identity.CA, CAURL: cfg.Identity.CAURL, StateDir: cfg.Gateway.StateDir,
		GatewayID: cfg.Gateway.ID, TrustDomain: cfg.Gateway.TrustDomain, Lifetime: cfg.Identity.Lifetime.D(),
		DevCA: a.o.DevCA, RekeyEvery: cfg.Identity.RekeyEvery, NotBefore: a.o.BuildTime,
		OnEvent: a.identityEvent, Clock: a.clock, Logger: a.o.Logger, PinnedRoots: cfg.Identity.ExtraRoots,
	})
	if errors.Is(err, certs.ErrNoIdentity) {
		return ErrNotEnrolled
	}
	if err != nil {
		return fmt.Errorf("gateway identity: %w", err)
	}
	a.ident, a.ca = g.Manager, g.CA
	a.verifier = g.Verifier(a.clock)
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
		a.clear("roots_untrusted")
	case certs.EventRootsRejected:
		sev = wire.SeverityAlarm
		a.raise("roots_untrusted", "the CA offered a root that the trusted roots did not cross-sign and identity.extra_roots does not pin; the old roots stay trusted: "+e.Err.Error())
	case certs.EventRootsTrusted:
		a.clear("roots_untrusted")
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
