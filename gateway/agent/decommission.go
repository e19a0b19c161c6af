package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/wire"
)

// EvDecommissioned is the last event a gateway sends: `wardgate
// decommission` is revoking its certificate and wiping its state. Attrs:
// serial, config_hash, version.
const EvDecommissioned = "gateway.decommissioned"

// ErrUndelivered is returned by Decommission when telemetry could not be
// delivered within the timeout and Force was not set: nothing was revoked
// or wiped.
var ErrUndelivered = errors.New("telemetry not delivered")

// DecommissionOptions configure Decommission.
type DecommissionOptions struct {
	// Agent are the agent's options (Config is required); no listener is
	// opened.
	Agent Options
	// DeliveryTimeout bounds the wait for the outbox (with the final
	// event) to reach the broker. Default 60s.
	DeliveryTimeout time.Duration
	// Force revokes and wipes the keys even when telemetry was not
	// delivered in time; the undelivered outbox and recordings then stay
	// on disk (reported as kept) for someone to copy off.
	Force bool
}

// DecommissionReport says what Decommission did.
type DecommissionReport struct {
	// FinalEventSeq is the telemetry sequence number of the
	// gateway.decommissioned event.
	FinalEventSeq uint64
	// Delivered: every queued message, the final event included, reached
	// the broker; Queued is what was left otherwise.
	Delivered bool
	Queued    int
	// Revoked is the serial (hex) of the certificate revoked at the CA;
	// empty with the development CA (Note says so).
	Revoked string
	Note    string
	// Wiped and Kept list the paths removed and the paths left.
	Wiped, Kept []string
}

// Decommission takes a gateway out of service for good, with the agent
// stopped: it publishes a final signed gateway.decommissioned event and
// waits until the outbox is delivered, revokes the gateway certificate at
// the CA (step-ca /1.0/revoke, authenticated by the certificate itself),
// then wipes the identity (keys, certificates), the outbox, the
// recordings, grants and locks and the last known good configuration.
// When telemetry is not delivered in time it stops before revoking
// (ErrUndelivered) unless Force is set. It refuses to run while the agent
// holds the state (its databases are locked).
func Decommission(ctx context.Context, o DecommissionOptions) (DecommissionReport, error) {
	var rep DecommissionReport
	if o.DeliveryTimeout <= 0 {
		o.DeliveryTimeout = time.Minute
	}
	a, err := New(o.Agent)
	if err != nil {
		if errors.Is(err, ErrNotEnrolled) {
			return rep, err
		}
		return rep, fmt.Errorf("open the gateway's state: %w (is the agent still running? stop it first: systemctl stop wardgate)", err)
	}
	closed := false
	defer func() {
		if !closed {
			a.Close()
		}
	}()
	cfg := a.cfg()
	leaf := a.ident.Chain()[0]
	serial := leaf.SerialNumber.Text(16)

	// The final event, then everything queued, to the broker.
	telCtx, telStop := context.WithCancel(ctx)
	telDone := make(chan error, 1)
	go func() { telDone <- a.tel.Run(telCtx) }()
	stopTel := func() {
		telStop()
		<-telDone
	}
	a.events.setPublisher(a.tel.Event)
	seqc := make(chan uint64, 1)
	a.events.emitThen(a.clock.Now(), EvDecommissioned, wire.SeverityWarning, map[string]string{
		"serial": serial, "config_hash": cfg.Hash, "version": a.o.Version}, func(seq uint64) { seqc <- seq })
	select {
	case rep.FinalEventSeq = <-seqc:
	default:
		stopTel()
		return rep, errors.New("the final event could not be queued; see the log")
	}
	rep.Delivered, rep.Queued = a.awaitDelivery(ctx, o.DeliveryTimeout)
	stopTel()
	if !rep.Delivered && !o.Force {
		return rep, fmt.Errorf("%w: %d message(s) still queued after %s; nothing was revoked or wiped: check mqtt.broker and the network and try again, or pass --force to revoke anyway and keep the undelivered outbox and recordings on disk", ErrUndelivered, rep.Queued, o.DeliveryTimeout)
	}

	// Revoke at the CA.
	switch ca := a.ca.(type) {
	case *certs.StepClient:
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := ca.Revoke(rctx, a.ident.Current(), certs.ReasonCessationOfOperation, "wardgate decommission of "+cfg.Gateway.ID)
		cancel()
		if err != nil {
			return rep, fmt.Errorf("%w; nothing was wiped: make sure the CA at %s answers and run decommission again", err, cfg.Identity.CAURL)
		}
		rep.Revoked = serial
	default:
		rep.Note = "identity from the development CA: there is no CA to revoke at"
	}
	a.Close()
	closed = true

	// Wipe. Undelivered telemetry and recordings stay when forced.
	dir := cfg.Gateway.StateDir
	wipe := []string{certs.IdentityDir(dir), filepath.Join(dir, "authority.db"), filepath.Join(dir, "access.db"),
		filepath.Join(dir, "dev-root.crt"), filepath.Join(dir, config.LastGoodFile), filepath.Join(dir, config.LastGoodHashFile)}
	data := []string{filepath.Join(dir, "telemetry.db"), filepath.Join(dir, "recordings")}
	if rep.Delivered {
		wipe = append(wipe, data...)
	} else {
		for _, p := range data {
			if _, err := os.Stat(p); err == nil {
				rep.Kept = append(rep.Kept, p)
			}
		}
	}
	var errs []error
	for _, p := range wipe {
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
			rep.Kept = append(rep.Kept, p)
			continue
		}
		rep.Wiped = append(rep.Wiped, p)
	}
	return rep, errors.Join(errs...)
}

// awaitDelivery waits until the outbox is empty (every message
// acknowledged by the broker) or timeout passes; it returns whether it
// emptied and how many messages are left.
func (a *Agent) awaitDelivery(ctx context.Context, timeout time.Duration) (bool, int) {
	deadline := a.clock.Now().Add(timeout)
	tick := a.clock.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		st := a.tel.Stats()
		if st.Outbox.Depth == 0 {
			return true, 0
		}
		if !a.clock.Now().Before(deadline) {
			return false, st.Outbox.Depth
		}
		select {
		case <-ctx.Done():
			return false, st.Outbox.Depth
		case <-tick.Chan():
		}
	}
}

// String is the report as the CLI prints it.
func (r DecommissionReport) String() string {
	var b []byte
	add := func(format string, args ...any) { b = fmt.Appendf(b, format+"\n", args...) }
	if r.Delivered {
		add("final event gateway.decommissioned (seq %d) and every queued message delivered to the broker", r.FinalEventSeq)
	} else {
		add("final event gateway.decommissioned queued (seq %d) but NOT delivered: %s message(s) left", r.FinalEventSeq, strconv.Itoa(r.Queued))
	}
	if r.Revoked != "" {
		add("certificate %s revoked at the CA: it can no longer be renewed", r.Revoked)
	}
	if r.Note != "" {
		add("%s", r.Note)
	}
	for _, p := range r.Wiped {
		add("wiped %s", p)
	}
	for _, p := range r.Kept {
		add("kept  %s (not delivered: copy it off before reusing the disk)", p)
	}
	return string(b)
}
