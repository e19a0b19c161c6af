package telemetry

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/wardgate/wardgate/wire"

	"github.com/wardgate/wardgate/gateway/telemetry/outbox"
	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/envelope"
)

// rejectWindow is how long rejected commands of one reason are folded
// into one summary event.
const rejectWindow = time.Minute

// commandLoop verifies and executes commands one at a time, and reports
// folded rejections when their window ends.
func (p *Publisher) commandLoop(ctx context.Context) {
	t := p.clock.NewTicker(rejectWindow)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case data := <-p.cmds:
			p.handleCommand(ctx, data)
		case <-t.Chan():
			for _, f := range p.rejects.Flush(p.clock.Now()) {
				p.log.Warn("telemetry commands rejected", "reason", f.Reason, "count", f.Count)
				_, _ = p.Event(wire.Event{Kind: "command.rejected", Severity: wire.SeverityWarning, Attrs: map[string]string{
					"reason": f.Reason, "count": fmt.Sprint(f.Count),
					"first": f.First.UTC().Format(time.RFC3339), "last": f.Last.UTC().Format(time.RFC3339)}})
			}
		}
	}
}

// rejectReason names why a command was refused in a fixed vocabulary, so
// a report never carries the sender's bytes.
func rejectReason(err error) string {
	for _, r := range []struct {
		err  error
		name string
	}{
		{command.ErrMalformed, "malformed"}, {command.ErrUnsigned, "unsigned"},
		{command.ErrNotApprover, "not_approver"}, {command.ErrOtherGateway, "other_gateway"},
		{command.ErrExpired, "expired"}, {command.ErrTooLong, "too_long"},
		{command.ErrReplay, "replay"}, {command.ErrUnknown, "unknown_command"},
		{command.ErrNotOneGateway, "not_one_gateway"}, {command.ErrFleetLock, "fleet_lock"},
	} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "refused"
}

func (p *Publisher) handleCommand(ctx context.Context, data []byte) {
	reply := wire.Reply{Nonce: []byte{}}
	if _, pl, err := command.Decode(data); err == nil && pl != nil {
		reply.Command, reply.Nonce = pl.Name, pl.Nonce
		if reply.Nonce == nil {
			reply.Nonce = []byte{}
		}
	}
	approver := p.opts.VerifyApprover
	if approver == nil {
		approver = func(_ []*x509.Certificate, _ time.Time) (string, error) {
			return "", errors.New("this gateway accepts no commands (no approver trust configured)")
		}
	}
	if central := p.opts.VerifyCentral; central != nil && (reply.Command == command.Rebirth || reply.Command == command.InventoryNow) {
		// The name comes from the payload whose signature Verify checks
		// before it calls approver, so central cannot widen its scope.
		approver = resyncVerifier(approver, central)
	}
	// A restrictive command may outlive its signer's certificate: central's
	// endorsement then vouches for it (command.VerifyWith).
	c, err := command.VerifyWith(data, p.opts.GatewayID, p.opts.Site, p.clock.Now(),
		command.VerifyOptions{Approver: approver, Central: p.opts.VerifyCentral}, p.nonces)
	if err != nil {
		// Anyone who can publish on the command topic can send junk: the
		// first rejection of a reason in a window is reported and
		// answered, the rest are only counted (a summary event follows).
		reason := rejectReason(err)
		if !p.rejects.Note(p.clock.Now(), "mqtt", reason) {
			return
		}
		reply.Reason = printable(err.Error(), 200)
		p.log.Warn("telemetry command rejected", "reason", reason, "err", err)
		_, _ = p.Event(wire.Event{Kind: "command.rejected", Severity: wire.SeverityWarning,
			Attrs: map[string]string{"command": printable(reply.Command, 32), "reason": reason, "count": "1"}})
	} else {
		reply.Approver = c.Approver
		reply.Result, err = p.execute(ctx, *c)
		if err != nil {
			reply.Reason = err.Error()
		} else {
			reply.Accepted = true
		}
		p.log.Info("telemetry command", "command", c.Name, "approver", c.Approver, "accepted", reply.Accepted)
		_, _ = p.Event(wire.Event{Kind: "command.executed", Severity: wire.SeverityInfo, Attrs: map[string]string{
			"command": c.Name, "approver": c.Approver, "accepted": fmt.Sprint(reply.Accepted), "reason": reply.Reason}})
	}
	body, err := envelope.Marshal(reply)
	if err == nil {
		_, err = p.enqueue(outbox.ClassUrgent, envelope.KindReply, body)
	}
	if err != nil {
		p.log.Error("telemetry command reply not queued", "err", err)
	}
}

// resyncVerifier accepts an approver, or else central's own identity.
func resyncVerifier(approver, central command.VerifyApprover) command.VerifyApprover {
	return func(chain []*x509.Certificate, now time.Time) (string, error) {
		id, err := approver(chain, now)
		if err == nil {
			return id, nil
		}
		if cid, cerr := central(chain, now); cerr == nil {
			return cid, nil
		}
		return "", err
	}
}

func (p *Publisher) execute(ctx context.Context, c command.Command) (string, error) {
	if p.opts.Permit != nil {
		if err := p.opts.Permit(c); err != nil {
			return "", err
		}
	}
	switch c.Name {
	case command.Rebirth:
		_, chain := p.opts.Signer()
		if err := p.enqueueBirth(chain, p.deathSeq.Load()); err != nil {
			return "", err
		}
		return "birth queued", nil
	case command.InventoryNow:
		if p.opts.Inventory == nil {
			return "", errors.New("no inventory on this gateway")
		}
		seq, err := p.PublishInventory(p.opts.Inventory())
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("inventory queued as seq %d", seq), nil
	}
	if p.opts.Commands == nil {
		return "", fmt.Errorf("command %s is not handled by this gateway", c.Name)
	}
	return p.opts.Commands(ctx, c)
}

// scheduleLoop produces metrics every MetricsInterval and, on start and
// every AccountabilityEvery, the inventory and accountability events.
func (p *Publisher) scheduleLoop(ctx context.Context) {
	var metricsC <-chan time.Time
	if p.opts.Metrics != nil {
		t := p.clock.NewTicker(p.opts.MetricsInterval)
		defer t.Stop()
		metricsC = t.Chan()
	}
	var dailyC <-chan time.Time
	if p.opts.Inventory != nil {
		p.accountability()
		t := p.clock.NewTicker(p.opts.AccountabilityEvery)
		defer t.Stop()
		dailyC = t.Chan()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-metricsC:
			if _, err := p.PublishMetrics(p.opts.Metrics()); err != nil && !errors.Is(err, outbox.ErrDropped) {
				p.log.Error("telemetry metrics not queued", "err", err)
			}
		case <-dailyC:
			p.accountability()
		}
	}
}

func (p *Publisher) accountability() {
	inv := p.opts.Inventory()
	if _, err := p.PublishInventory(inv); err != nil {
		p.log.Error("telemetry inventory not queued", "err", err)
	}
	for _, e := range wire.Accountability(inv, p.clock.Now()) {
		if _, err := p.Event(e); err != nil {
			p.log.Error("telemetry accountability event not queued", "err", err)
		}
	}
}

// printable caps s at n bytes and replaces anything but printable ASCII,
// so sender-chosen text cannot forge log lines or bloat events.
func printable(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}
