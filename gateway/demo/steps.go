package demo

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/access/recording"
	"github.com/wardgate/wardgate/gateway/authority"
)

func (d *demo) uri(path string) string { return "spiffe://" + trustDomain + "/" + path }

// clinical: the pump server passes the mTLS front; a vendor certificate on
// the clinical port does not.
func (d *demo) clinical(ctx context.Context) error {
	d.n.heading("Clinical path: mutual TLS in front of a plaintext infusion pump")
	c, err := d.dialClinical(d.pumpAt, d.pki.pumpSrv)
	if !d.n.check("clinical-allowed-handshake", err == nil, "pump-server (%s) completes mutual TLS with the gateway: %v", d.uri("svc/pump-server"), errText(err)) {
		return nil
	}
	defer c.Close()
	r := bufio.NewReader(c)
	got, err := exchange(c, r, "STATUS?")
	d.n.check("clinical-allowed", err == nil && strings.HasPrefix(got, "RUNNING"), "STATUS? through the relay -> %q", got)

	c2, err := d.dialClinical(d.pumpAt, d.pki.vendor)
	refused := err != nil
	if err == nil { // TLS 1.3: the refusal arrives with the first read
		_, err = exchange(c2, bufio.NewReader(c2), "STATUS?")
		refused = err != nil
		c2.Close()
	}
	d.n.check("clinical-refused", refused, "a vendor certificate on the clinical port is refused at the handshake")
	_, ok := d.waitTelemetry(ctx, 10*time.Second, func(m map[string]any) bool {
		body, _ := m["body"].(map[string]any)
		k, _ := body["kind"].(string)
		return m["kind"] == "event" && strings.HasPrefix(k, "clinical.") && strings.Contains(fmt.Sprint(body["attrs"]), "not_allowed")
	})
	d.n.check("clinical-refused-event", ok, "central receives the refusal as a signed event naming the reason (not_allowed)")
	return nil
}

// serial: the central station reads vitals from the RS-232 monitor.
func (d *demo) serial(ctx context.Context) error {
	d.n.heading("Clinical path over RS-232: a patient monitor on a serial line")
	c, err := d.dialClinical(d.monAt, d.pki.station)
	if !d.n.check("serial-handshake", err == nil, "central-station completes mutual TLS: %v", errText(err)) {
		return nil
	}
	defer c.Close()
	got, err := exchange(c, bufio.NewReader(c), "VITALS?")
	d.n.check("serial", err == nil && strings.HasPrefix(got, "HR "), "VITALS? over the serial line -> %q", got)
	return nil
}

func (d *demo) vendorClient() *access.Client {
	return &access.Client{Gateway: d.vendorAt, Target: fmt.Sprintf("pump-07:%d", d.pumpSvc), Reason: "firmware log review, ticket 4711",
		TLS: d.pki.client(d.pki.vendor, d.uri("gateway/"+gatewayID))}
}

type halView struct {
	LEDs map[string]struct {
		Pattern string `json:"pattern"`
	} `json:"leds"`
}

func (d *demo) ledPattern(ctx context.Context, name string) string {
	var v halView
	if err := d.adminc.Do(ctx, "GET", "/v1/hal", nil, &v); err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return v.LEDs[name].Pattern
}

// vendorRequest: the vendor is refused and asks; the button approves.
func (d *demo) vendorRequest(ctx context.Context) error {
	d.n.heading("Vendor access: refused, asks, the owner presses the approve button")
	_, err := d.vendorClient().DialTunnel(ctx)
	var re *access.RefusedError
	ok := errors.As(err, &re) && re.Status == 403 && re.Code == access.CodeNoGrant && re.Request != ""
	d.n.check("vendor-refused", ok, "jane@acme-medical CONNECT pump-07:%d -> %v", d.pumpSvc, errText(err))
	if !ok {
		return nil
	}
	_, ok = d.waitTelemetry(ctx, 10*time.Second, eventIs(access.EvRequest, map[string]string{"grant": re.Request}))
	d.n.check("vendor-request-event", ok, "request %s announced to central as a signed event", re.Request)
	p := d.ledPattern(ctx, "vendor")
	d.n.check("led-pending", strings.Contains(p, "blink"), "amber LED: %s (a request is pending)", p)

	d.n.say("the clinical owner presses and holds the approve button for 2.5 s ...")
	err = d.adminc.Do(ctx, "POST", "/v1/hal/press", map[string]any{"name": "approve", "hold": "2.5s"}, nil)
	// The agent's button loop handles the press; central hears of it.
	_, approved := d.waitTelemetry(ctx, 10*time.Second, eventIs(access.EvApprove, map[string]string{"grant": re.Request, "complete": "true"}))
	var snap access.Snapshot
	if err == nil {
		err = d.adminc.Do(ctx, "GET", "/v1/grants", nil, &snap)
	}
	ok = approved && err == nil && len(snap.Grants) == 1 && snap.Grants[0].ID == re.Request
	d.n.check("approve-button", ok, "button approval makes %s active until %s: %v", re.Request, deadlineOf(snap), errText(err))
	return nil
}

func deadlineOf(s access.Snapshot) string {
	if len(s.Grants) == 0 {
		return "-"
	}
	return s.Grants[0].Deadline.Local().Format("15:04:05")
}

// vendorSession: the session runs, is recorded, and is cut at expiry.
func (d *demo) vendorSession(ctx context.Context) error {
	d.n.heading("Vendor session: time-boxed, recorded, cut at expiry")
	var snap access.Snapshot
	if err := d.adminc.Do(ctx, "GET", "/v1/grants", nil, &snap); err != nil || len(snap.Grants) == 0 {
		d.n.check("vendor-session", false, "no active grant to use: %v", errText(err))
		return nil
	}
	g := snap.Grants[0]
	conn, err := d.vendorClient().DialTunnel(ctx)
	if !d.n.check("vendor-tunnel", err == nil, "CONNECT pump-07:%d -> 200, raw tunnel to the service console: %v", d.pumpSvc, errText(err)) {
		return nil
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	banner, _ := r.ReadString('\n')
	got, err := exchange(conn, r, "LOG")
	d.n.check("vendor-session", err == nil && strings.Contains(got, "E-104"), "service console %q, LOG -> %q", strings.TrimSpace(banner), strings.TrimPrefix(got, "> "))
	p := d.ledPattern(ctx, "vendor")
	d.n.check("led-live", p == "on", "amber LED: %s (a vendor session is live)", p)

	wait := time.Until(g.Deadline)
	d.n.say("waiting %s for the grant to expire at %s ...", wait.Round(time.Second), g.Deadline.Local().Format("15:04:05"))
	_, closed := waitClosed(conn, wait+5*time.Second)
	late := time.Since(g.Deadline)
	d.n.check("vendor-expiry", closed && late < 1500*time.Millisecond, "the tunnel is cut %s after expiry", late.Round(10*time.Millisecond))

	end, ok := d.waitTelemetry(ctx, 10*time.Second, eventIs(access.EvSessionEnd, map[string]string{"grant": g.ID}))
	hash := attr(end, "hash")
	d.n.check("session-end-event", ok && hash != "", "session-end event carries the recording's final hash %.16s...", hash)

	recs, _ := filepath.Glob(filepath.Join(d.cfg.Gateway.StateDir, "recordings", "*"))
	var sum *recording.Summary
	var verr error = errors.New("no recording found")
	for _, f := range recs {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		s, err := recording.Verify(fh, nil)
		fh.Close()
		if err == nil && s.Header.Grant == g.ID {
			sum, verr = s, nil
			break
		}
		verr = err
	}
	ok = verr == nil && hex.EncodeToString(sum.FinalHash) == hash
	d.n.check("recording", ok, "the recording verifies (wardgate replay) and its chain ends in the hash central received: %v", errText(verr))
	return nil
}

// lock: a lock cuts a live clinical session and refuses the identity.
func (d *demo) lock(ctx context.Context) error {
	d.n.heading("Locks: security stops an identity everywhere at once")
	c, err := d.dialClinical(d.pumpAt, d.pki.pumpSrv)
	if !d.n.check("lock-setup", err == nil, "pump-server holds a live clinical session: %v", errText(err)) {
		return nil
	}
	defer c.Close()
	if _, err := exchange(c, bufio.NewReader(c), "STATUS?"); err != nil {
		d.n.check("lock-setup-io", false, "clinical session broken before the lock: %v", err)
		return nil
	}
	id := d.uri("svc/pump-server")
	start := time.Now()
	err = d.adminc.Do(ctx, "POST", "/v1/locks", map[string]string{"identity": id, "for": "10m", "reason": "suspected credential theft (demo)"}, nil)
	took, closed := waitClosed(c, 3*time.Second)
	d.n.check("lock-cuts", err == nil && closed && time.Since(start) < 1500*time.Millisecond, "`wardgate lock add %s` cuts its live session in %s", id, took.Round(time.Millisecond))
	c2, err := d.dialClinical(d.pumpAt, d.pki.pumpSrv)
	refused := err != nil
	if err == nil {
		_, err = exchange(c2, bufio.NewReader(c2), "STATUS?")
		refused = err != nil
		c2.Close()
	}
	d.n.check("lock-refuses", refused, "a new connection of the locked identity is refused")
	_, ok := d.waitTelemetry(ctx, 10*time.Second, eventIs(authority.EvLockAdd, map[string]string{}))
	d.n.check("lock-event", ok, "central receives the lock as a signed event with the actor's uid")
	err = d.adminc.Do(ctx, "DELETE", "/v1/locks?identity="+id, nil, nil)
	c3, err2 := d.dialClinical(d.pumpAt, d.pki.pumpSrv)
	if err2 == nil {
		_, err2 = exchange(c3, bufio.NewReader(c3), "STATUS?")
		c3.Close()
	}
	d.n.check("unlock", err == nil && err2 == nil, "`wardgate lock remove` restores access: %v", errText(errors.Join(err, err2)))
	return nil
}

// accountability: overdue rotation and a nearing exception are reported.
func (d *demo) accountability(ctx context.Context) error {
	d.n.heading("Accountability: owners of accounts and exceptions are told")
	m, ok := d.waitTelemetry(ctx, 10*time.Second, eventIs("account.rotation_overdue", map[string]string{"account": "acme-svc"}))
	d.n.check("rotation-overdue", ok, "account acme-svc (owner %s) is %s days overdue for rotation", attr(m, "owner"), attr(m, "overdue_days"))
	m, ok = d.waitTelemetry(ctx, 10*time.Second, eventIs("exception.expiring", map[string]string{"exception": "EX-2026-014"}))
	d.n.check("exception-expiring", ok, "exception EX-2026-014 (approved by %s) expires %s", attr(m, "approved_by"), attr(m, "expires"))
	_, ok = d.waitTelemetry(ctx, 10*time.Second, func(m map[string]any) bool { return m["kind"] == "inventory" })
	d.n.check("inventory", ok, "the inventory (devices, owners, accounts, exceptions; no secrets) reached central")
	return nil
}

// rotation: the gateway certificate rotates under a live session.
func (d *demo) rotation(ctx context.Context) error {
	d.n.heading("Identity: the gateway renews and re-keys its certificate, nothing is dropped")
	c, err := d.dialClinical(d.monAt, d.pki.station)
	if !d.n.check("rotation-setup", err == nil, "central-station holds a live session across the rotation: %v", errText(err)) {
		return nil
	}
	defer c.Close()
	r := bufio.NewReader(c)
	before := fmt.Sprintf("%x", c.ConnectionState().PeerCertificates[0].SerialNumber)
	var out struct {
		Serial string `json:"serial"`
	}
	err = d.adminc.Do(ctx, "POST", "/v1/identity/renew", map[string]bool{"rekey": true}, &out)
	d.n.check("rotation", err == nil && out.Serial != "" && out.Serial != before, "re-keyed: certificate serial %.12s... -> %.12s...: %v", before, out.Serial, errText(err))
	got, err := exchange(c, r, "VITALS?")
	d.n.check("rotation-no-drop", err == nil && strings.HasPrefix(got, "HR "), "the established session still works after the rotation -> %q", got)
	c2, err := d.dialClinical(d.monAt, d.pki.station)
	if err == nil {
		after := fmt.Sprintf("%x", c2.ConnectionState().PeerCertificates[0].SerialNumber)
		c2.Close()
		d.n.check("rotation-new-handshakes", after == out.Serial, "new handshakes present the new certificate at once")
	} else {
		d.n.check("rotation-new-handshakes", false, "new handshake failed: %v", err)
	}
	_, ok := d.waitTelemetry(ctx, 10*time.Second, func(m map[string]any) bool {
		body, _ := m["body"].(map[string]any)
		k, _ := body["kind"].(string)
		return m["kind"] == "event" && strings.HasPrefix(k, "identity.re")
	})
	d.n.check("rotation-event", ok, "central receives the rotation event, signed with the new key")
	return nil
}

// telemetrySummary: everything central received verified, with no gaps.
func (d *demo) telemetrySummary(ctx context.Context) error {
	d.n.heading("Telemetry: signed, sequenced, nothing lost")
	_, _ = d.waitTelemetry(ctx, 15*time.Second, func(m map[string]any) bool { return m["kind"] == "metrics" })
	d.mu.Lock()
	defer d.mu.Unlock()
	kinds := map[string]int{}
	bad := 0
	seqs := map[uint64]bool{}
	var lo, hi uint64
	for _, m := range d.seen {
		if v, _ := m["verified"].(bool); !v {
			bad++
			continue
		}
		kinds[fmt.Sprint(m["kind"])]++
		seq, _ := m["seq"].(uint64)
		if seq == 0 {
			continue
		}
		seqs[seq] = true
		if lo == 0 || seq < lo {
			lo = seq
		}
		hi = max(hi, seq)
	}
	// Urgent messages (command replies) may overtake others, so count the
	// holes in what arrived, not jumps in arrival order.
	gaps := 0
	if hi > 0 {
		gaps = int(hi-lo+1) - len(seqs)
	}
	d.n.check("telemetry-verified", bad == 0 && len(d.seen) > 0, "%d messages received, every signature verified against the hospital CA (%d failures)", len(d.seen), bad)
	for _, k := range []string{"birth", "status", "event", "metrics", "inventory"} {
		d.n.check("telemetry-"+k, kinds[k] > 0, "%d %s message(s)", kinds[k], k)
	}
	// Gaps are sequence numbers reserved for a death Will that was not needed.
	d.n.check("telemetry-sequence", gaps <= 1, "sequence numbers continuous (%d reserved for the unused death Will)", gaps)
	return nil
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out"
	}
	return err.Error()
}
