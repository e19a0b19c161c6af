package certs

import (
	"context"
	"crypto"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// TestManagerOutageAlarms: renewal failing past half the lifetime is
// reported at once (renewal_overdue 50), critical at 90%, and after expiry
// the retries are at most OutageRetry apart however far the backoff grew.
func TestManagerOutageAlarms(t *testing.T) {
	h := newMgrHarness(t, time.Hour, func(o *ManagerOptions) { o.RetryMax = 10 * time.Minute })
	h.dev.SetAllowRenewalAfterExpiry(true)
	h.ca.setFail(ErrCAUnreachable)
	// Before the renewal time nothing is overdue.
	h.at(35 * time.Minute)
	if st := h.m.Status(); st.Overdue != 0 {
		t.Fatalf("overdue before any failure: %+v", st)
	}
	h.at(40 * time.Minute) // 2/3: the first attempt fails
	h.ev.wait(t, EventRenewalFailed, wait)
	if e := h.ev.wait(t, EventRenewalOverdue, wait); e.UsedPercent != 50 || e.Serial == "" {
		t.Fatalf("first overdue event %+v", e)
	}
	if st := h.m.Status(); st.Overdue != 50 {
		t.Fatalf("status overdue %d, want 50", st.Overdue)
	}
	// The backoff is capped by OutageRetry past half the lifetime.
	at := 40 * time.Minute
	for h.clk.Now().Before(h.t0.Add(54 * time.Minute)) {
		at += 30 * time.Second
		h.at(at)
	}
	var e Event
	for e = h.ev.wait(t, EventRenewalOverdue, wait); e.UsedPercent != 90; e = h.ev.wait(t, EventRenewalOverdue, wait) {
	}
	if st := h.m.Status(); st.Overdue != 90 {
		t.Fatalf("status overdue %d, want 90", st.Overdue)
	}
	if n := h.ev.count(EventRenewalOverdue); n != 2 {
		t.Errorf("%d renewal_overdue events, want one per threshold", n)
	}
	// Expired, the CA still down: retries every 30 s at most.
	h.at(61 * time.Minute)
	h.ev.wait(t, EventExpired, wait)
	for i := 0; i < 3; i++ {
		f := h.ev.wait(t, EventRenewalFailed, wait)
		if f.Retry > 30*time.Second {
			t.Fatalf("retry after expiry in %s, want at most 30s", f.Retry)
		}
		h.at(h.clk.Since(h.t0) + f.Retry)
	}
	// The CA is back: renewed at the next retry, within 30 s.
	back := h.clk.Now()
	h.ca.setFail(nil)
	for h.ev.count(EventRenewed) == 0 && h.clk.Since(back) <= 30*time.Second {
		h.at(h.clk.Since(h.t0) + time.Second)
	}
	if h.ev.count(EventRenewed) == 0 {
		t.Fatal("not renewed within 30 s of the CA's return")
	}
	if st := h.m.Status(); st.Overdue != 0 || st.Expired {
		t.Fatalf("status after recovery %+v", st)
	}
}

// healthCA is a flakyCA with a health endpoint that answers while healthy.
type healthCA struct {
	*flakyCA
	healthy atomic.Bool
	probes  atomic.Int64
}

func (c *healthCA) Health(context.Context) error {
	c.probes.Add(1)
	if c.healthy.Load() {
		return nil
	}
	return ErrCAUnreachable
}

// TestManagerOutageProbe: during an outage a CA with a health endpoint is
// probed between attempts; its answer triggers a renewal at once.
func TestManagerOutageProbe(t *testing.T) {
	var hc *healthCA
	h := newMgrHarness(t, time.Hour, func(o *ManagerOptions) {
		hc = &healthCA{flakyCA: o.CA.(*flakyCA)}
		o.CA = hc
		o.ProbeEvery = 5 * time.Second
		o.RetryMax = 10 * time.Minute
	})
	h.ca.setFail(ErrCAUnreachable)
	h.at(40 * time.Minute)
	// Let the backoff grow to the outage cap of 30 s.
	at := 40 * time.Minute
	for i := 0; ; i++ {
		f := h.ev.wait(t, EventRenewalFailed, wait)
		if f.Retry >= 30*time.Second {
			break
		}
		if i == 20 {
			t.Fatalf("retry still %s after 20 failures, want the outage cap of 30s", f.Retry)
		}
		at += f.Retry
		h.at(at)
	}
	last := h.clk.Now()
	h.ca.setFail(nil)
	hc.healthy.Store(true)
	h.at(h.clk.Since(h.t0) + 5*time.Second)
	h.ev.wait(t, EventRenewed, wait)
	if d := h.clk.Since(last); d > 5*time.Second {
		t.Errorf("renewed %s after the CA's return, want at the next probe (5s)", d)
	}
	if hc.probes.Load() == 0 {
		t.Error("the CA was never probed")
	}
}

// TestManagerRenewOnce: an operator's renewal goes through the Manager:
// checked, stored, swapped, reported; a failure keeps the old certificate.
func TestManagerRenewOnce(t *testing.T) {
	h := newMgrHarness(t, time.Hour, func(o *ManagerOptions) { o.RekeyEvery = 100 })
	h.at(10 * time.Minute)
	old := h.m.Current()
	leaf, err := h.m.RenewOnce(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if h.m.Current() == old || !h.m.Chain()[0].Equal(leaf) || !keyutilEqual(h.m.Signer(), old.PrivateKey.(crypto.Signer)) {
		t.Fatalf("renewal not installed with the same key")
	}
	h.ev.wait(t, EventRenewed, wait)
	k := h.m.Signer()
	if _, err := h.m.RenewOnce(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if keyutilEqual(h.m.Signer(), k) {
		t.Fatal("re-key kept the key")
	}
	h.ev.wait(t, EventRekeyed, wait)
	cur := h.m.Current()
	h.ca.setFail(ErrCAUnreachable)
	if _, err := h.m.RenewOnce(context.Background(), false); !errors.Is(err, ErrCAUnreachable) {
		t.Fatalf("renewal with the CA down: %v", err)
	}
	if h.m.Current() != cur {
		t.Fatal("a failed operator renewal replaced the certificate")
	}
	h.ev.wait(t, EventRenewalFailed, wait)
}

// TestStepCAOutage runs the outage against the real step-ca with a short
// real lifetime: the CA stopped past half the lifetime raises the overdue
// status (50, then 90), the certificate expires, and once the CA is back
// the health probe makes the gateway renew well within a minute, although
// its renewal backoff allows five.
func TestStepCAOutage(t *testing.T) {
	t.Parallel()
	ca := newStepCA(t, stepCAConfig{DefaultDur: 12 * time.Second, MinDur: 5 * time.Second, Provisioners: map[string]bool{"gateways": true}})
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "identity")
	uri := GatewayURI(testTD, "gw-01")
	if _, err := Enroll(ctx, EnrollOptions{CAURL: ca.URL, RootFingerprint: ca.Fingerprint(), Token: ca.Token("gateways", "gw-01", "gw-01", uri), Dir: dir}); err != nil {
		t.Fatalf("enroll: %v\n%s", err, ca.Log())
	}
	ev := newEventLog()
	m, err := stepManager(dir, ca.URL, ManagerOptions{
		OnEvent: ev.add, RetryMax: 5 * time.Minute, MaxSleep: time.Second, AttemptTimeout: 3 * time.Second,
		ProbeEvery: time.Second, NotBefore: time.Now().Add(-time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	// The CA goes down before the first renewal.
	ca.Stop()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	held := m.Current()

	e := ev.wait(t, EventRenewalOverdue, stepWait)
	if e.UsedPercent != 50 || m.Status().Overdue < 50 {
		t.Fatalf("overdue %+v status %+v", e, m.Status())
	}
	// Still valid: the old certificate is served.
	if handshakeSerial(t, m) != held.Leaf.SerialNumber.Text(16) {
		t.Fatal("old certificate not served during the outage")
	}
	if e := ev.wait(t, EventRenewalOverdue, stepWait); e.UsedPercent != 90 {
		t.Fatalf("second overdue %+v", e)
	}
	ev.wait(t, EventExpired, stepWait)
	if st := m.Status(); !st.Expired || st.Overdue != 90 {
		t.Fatalf("status after expiry %+v", st)
	}
	ca.Start()
	back := time.Now()
	e = ev.wait(t, EventRenewed, time.Minute)
	took := time.Since(back)
	t.Logf("renewed %s after the CA came back", took.Round(10*time.Millisecond))
	if st := m.Status(); st.Expired || st.Overdue != 0 || !e.NotAfter.After(time.Now()) {
		t.Fatalf("status after recovery %+v", st)
	}
}
