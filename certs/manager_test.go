package certs

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// flakyCA wraps a CA: while fail is set every call fails with it.
type flakyCA struct {
	CA
	fail  atomic.Pointer[error]
	calls atomic.Int64
}

func (f *flakyCA) setFail(err error) {
	if err == nil {
		f.fail.Store(nil)
		return
	}
	f.fail.Store(&err)
}

func (f *flakyCA) err() error {
	f.calls.Add(1)
	if p := f.fail.Load(); p != nil {
		return *p
	}
	return nil
}

func (f *flakyCA) Renew(ctx context.Context, cur *tls.Certificate) ([]*x509.Certificate, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.CA.Renew(ctx, cur)
}

func (f *flakyCA) Rekey(ctx context.Context, cur *tls.Certificate, csr *x509.CertificateRequest) ([]*x509.Certificate, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.CA.Rekey(ctx, cur, csr)
}

func (f *flakyCA) RenewExpired(ctx context.Context, cur *tls.Certificate) ([]*x509.Certificate, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.CA.RenewExpired(ctx, cur)
}

// mgrHarness runs a Manager on a fake clock against a development CA.
type mgrHarness struct {
	t       testing.TB
	clk     *clockwork.FakeClock
	dev     *DevCA
	ca      *flakyCA
	m       *Manager
	ev      *eventLog
	cancel  context.CancelFunc
	done    chan error
	t0      time.Time
	waiting chan struct{}
}

// kick makes the Manager re-evaluate now and returns once it waits again
// on a timer computed after the kick.
func (h *mgrHarness) kick() {
	h.t.Helper()
	h.idle()
	for {
		select {
		case <-h.waiting:
			continue
		default:
		}
		break
	}
	h.m.Kick()
	select {
	case <-h.waiting:
	case <-time.After(10 * time.Second):
		h.t.Fatal("manager did not settle after a kick")
	}
}

func newMgrHarness(t testing.TB, lifetime time.Duration, mod func(*ManagerOptions)) *mgrHarness {
	t.Helper()
	clk := clockwork.NewFakeClockAt(time.Now().Truncate(time.Second))
	dev := newDevCA(t, clk, lifetime)
	h := &mgrHarness{t: t, clk: clk, dev: dev, ca: &flakyCA{CA: dev}, ev: newEventLog(), t0: clk.Now()}
	o := ManagerOptions{
		CA: h.ca, Bundle: dev.Bundle(), Clock: clk, OnEvent: h.ev.add,
		RetryMin: time.Second, RetryMax: 8 * time.Second, RootsEvery: -1, MaxSleep: 24 * time.Hour,
		Jitter: func(time.Duration) time.Duration { return 0 },
	}
	if mod != nil {
		mod(&o)
	}
	m, err := NewManager(o)
	if err != nil {
		t.Fatal(err)
	}
	h.m = m
	tc, err := dev.Issue(IssueOptions{URI: GatewayURI(testTD, "gw-01"), DNSNames: []string{"gw-01"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Install(tc.PrivateKey.(crypto.Signer), leafChain(t, tc)); err != nil {
		t.Fatal(err)
	}
	h.waiting = make(chan struct{}, 1)
	m.testHookWaiting = func() {
		select {
		case h.waiting <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- m.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

func (h *mgrHarness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; !errors.Is(err, context.Canceled) {
		h.t.Errorf("Run returned %v", err)
	}
	h.cancel = nil
}

// idle waits until the Manager waits on the clock.
func (h *mgrHarness) idle() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clk.BlockUntilContext(ctx, 1); err != nil {
		h.t.Fatalf("manager not waiting: %v; events %v", err, h.ev.kinds())
	}
}

// at moves the clock to t0+d once the Manager is idle, then waits until it
// is idle again.
func (h *mgrHarness) at(d time.Duration) {
	h.t.Helper()
	h.idle()
	h.clk.Advance(h.t0.Add(d).Sub(h.clk.Now()))
	h.idle()
}

const wait = 10 * time.Second

func TestPlanFor(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	leaf := &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(61 * time.Minute)}
	// step-ca backdates NotBefore by 1 minute: measured from reception.
	p := planFor(leaf, nb.Add(time.Minute), nil)
	if want := nb.Add(time.Minute + 40*time.Minute); !p.renewAt.Equal(want) {
		t.Fatalf("renewAt %v, want %v", p.renewAt, want)
	}
	if !p.half.Equal(nb.Add(31*time.Minute)) || !p.ninety.Equal(nb.Add(55*time.Minute)) {
		t.Fatalf("thresholds %v %v", p.half, p.ninety)
	}
	// Unknown reception (loaded from disk): from NotBefore.
	if p := planFor(leaf, time.Time{}, nil); !p.start.Equal(nb) {
		t.Fatalf("start %v", p.start)
	}
	// Jitter is bounded by lifetime/20.
	var seen time.Duration
	p = planFor(leaf, nb.Add(time.Minute), func(max time.Duration) time.Duration { seen = max; return max })
	if seen != 3*time.Minute || !p.renewAt.Equal(nb.Add(44*time.Minute)) {
		t.Fatalf("jitter max %v renewAt %v", seen, p.renewAt)
	}
}

func TestBackoffCaps(t *testing.T) {
	lo, hi := time.Second, 30*time.Second
	for _, j := range []func(time.Duration) time.Duration{
		func(m time.Duration) time.Duration { return -m },
		func(time.Duration) time.Duration { return 0 },
		func(m time.Duration) time.Duration { return m },
	} {
		prev := time.Duration(0)
		for n := 1; n <= 40; n++ {
			d := backoff(n, lo, hi, j)
			if d > hi || d < lo*3/4 {
				t.Fatalf("n=%d: %v outside [%v, %v]", n, d, lo*3/4, hi)
			}
			if d < prev {
				t.Fatalf("n=%d: %v < %v", n, d, prev)
			}
			prev = d
		}
		if d := backoff(40, lo, hi, j); d < hi*3/4 {
			t.Fatalf("not capped near max: %v", d)
		}
	}
	if d := backoff(3, lo, hi, func(m time.Duration) time.Duration { return m }); d != 4*time.Second {
		t.Fatalf("backoff(3) = %v", d)
	}
}

// TestManagerSchedule: nothing before the window, expiring at 50%, renewal
// at 2/3, the new certificate served at once.
func TestManagerSchedule(t *testing.T) {
	h := newMgrHarness(t, time.Hour, nil)
	first := h.m.Current()
	h.at(29 * time.Minute)
	if h.ca.calls.Load() != 0 || h.ev.count(EventExpiring) != 0 {
		t.Fatalf("early activity: %v", h.ev.kinds())
	}
	h.at(30 * time.Minute)
	if e := h.ev.wait(t, EventExpiring, wait); e.UsedPercent != 50 {
		t.Fatalf("expiring %d%%", e.UsedPercent)
	}
	h.at(40*time.Minute - time.Second)
	if h.ca.calls.Load() != 0 {
		t.Fatal("renewed before 2/3")
	}
	h.at(40 * time.Minute)
	e := h.ev.wait(t, EventRenewed, wait)
	cur := h.m.Current()
	if cur == first || cur.Leaf.SerialNumber.Text(16) != e.Serial {
		t.Fatal("new certificate not current")
	}
	if got, _ := h.m.GetCertificate(nil); got != cur {
		t.Fatal("GetCertificate serves the old certificate")
	}
	if !keyutilEqual(h.m.Signer(), first.PrivateKey.(crypto.Signer)) {
		t.Fatal("renewal changed the key")
	}
	st := h.m.Status()
	if st.Renewals != 1 || st.Failures != 0 || !st.NotAfter.Equal(h.t0.Add(100*time.Minute)) || !st.NextRenewal.Equal(h.t0.Add(80*time.Minute)) {
		t.Fatalf("status %+v", st)
	}
	// Second cycle.
	h.at(80 * time.Minute)
	h.ev.wait(t, EventRenewed, wait)
	if h.m.Status().Renewals != 2 {
		t.Fatal("second renewal missing")
	}
}

func TestManagerRekeyEvery(t *testing.T) {
	h := newMgrHarness(t, time.Hour, func(o *ManagerOptions) { o.RekeyEvery = 2 })
	k0 := h.m.Signer()
	h.at(40 * time.Minute)
	h.ev.wait(t, EventRenewed, wait)
	if !keyutilEqual(h.m.Signer(), k0) {
		t.Fatal("first renewal re-keyed")
	}
	h.at(80 * time.Minute)
	h.ev.wait(t, EventRekeyed, wait)
	if keyutilEqual(h.m.Signer(), k0) {
		t.Fatal("re-key kept the key")
	}
	if st := h.m.Status(); st.Rekeys != 1 || st.Renewals != 2 {
		t.Fatalf("status %+v", st)
	}
}

// TestManagerBackoff: failures retried with capped exponential backoff; the
// old certificate is served meanwhile; recovery resets the count.
func TestManagerBackoff(t *testing.T) {
	h := newMgrHarness(t, time.Hour, func(o *ManagerOptions) {
		o.Jitter = func(m time.Duration) time.Duration { return m }
	})
	h.ca.setFail(ErrCAUnreachable)
	old := h.m.Current()
	at := 43 * time.Minute // 2/3 + the maximum jitter (lifetime/20)
	h.at(at)
	var retries []time.Duration
	for i := 0; i < 6; i++ {
		e := h.ev.wait(t, EventRenewalFailed, wait)
		if e.Attempt != i+1 || !errors.Is(e.Err, ErrCAUnreachable) {
			t.Fatalf("event %+v", e)
		}
		retries = append(retries, e.Retry)
		if h.m.Current() != old {
			t.Fatal("old certificate not served during failures")
		}
		at += e.Retry
		h.at(at)
	}
	want := []time.Duration{1, 2, 4, 8, 8, 8}
	for i, r := range retries {
		if r != want[i]*time.Second {
			t.Fatalf("retries %v, want %v s", retries, want)
		}
	}
	st := h.m.Status()
	if st.Failures < 6 || !strings.Contains(st.LastError, "unreachable") {
		t.Fatalf("status %+v", st)
	}
	h.ca.setFail(nil)
	h.ev.wait(t, EventRenewalFailed, wait) // the 7th, already under way
	at += 8 * time.Second
	h.at(at)
	h.ev.wait(t, EventRenewed, wait)
	if st := h.m.Status(); st.Failures != 0 || st.LastError != "" {
		t.Fatalf("status after recovery %+v", st)
	}
}

func TestManagerExpiredRecovery(t *testing.T) {
	h := newMgrHarness(t, time.Hour, func(o *ManagerOptions) { o.RetryMax = 10 * time.Minute })
	h.dev.SetAllowRenewalAfterExpiry(true)
	h.ca.setFail(ErrCAUnreachable)
	h.at(40 * time.Minute)
	h.ev.wait(t, EventRenewalFailed, wait)
	// Jump past expiry at once (clock jump forward).
	h.at(2 * time.Hour)
	if e := h.ev.wait(t, EventExpired, wait); e.Serial == "" {
		t.Fatal("no serial")
	}
	if !h.m.Status().Expired {
		t.Fatal("status not expired")
	}
	h.ca.setFail(nil)
	h.at(2*time.Hour + 10*time.Minute)
	h.ev.wait(t, EventRenewed, wait)
	if st := h.m.Status(); st.Expired || st.ReenrollNeeded || !st.NotAfter.After(h.clk.Now()) {
		t.Fatalf("status %+v", st)
	}
}

func TestManagerReenrollNeeded(t *testing.T) {
	h := newMgrHarness(t, time.Hour, nil)
	h.ca.setFail(ErrCAUnreachable)
	h.at(40 * time.Minute)
	h.ev.wait(t, EventRenewalFailed, wait)
	h.at(61 * time.Minute)
	h.ev.wait(t, EventExpired, wait)
	h.ca.setFail(nil)
	h.at(62 * time.Minute)
	e := h.ev.wait(t, EventReenrollNeeded, wait)
	if !errors.Is(e.Err, ErrRenewAfterExpiryNotAllowed) {
		t.Fatalf("err %v", e.Err)
	}
	if st := h.m.Status(); !st.ReenrollNeeded || !st.Expired {
		t.Fatalf("status %+v", st)
	}
	h.at(70 * time.Minute)
	if n := h.ev.count(EventReenrollNeeded); n != 1 {
		t.Fatalf("reenroll_needed %d times", n)
	}
}

// TestManagerExpiring90: a 90% event when the renewal keeps failing.
func TestManagerExpiring90(t *testing.T) {
	h := newMgrHarness(t, time.Hour, func(o *ManagerOptions) { o.RetryMin, o.RetryMax = time.Hour, time.Hour })
	h.ca.setFail(ErrCAUnreachable)
	h.at(40 * time.Minute)
	h.ev.wait(t, EventRenewalFailed, wait)
	if n := h.ev.count(EventExpiring); n != 1 {
		t.Fatalf("expiring (50%%) events: %d", n)
	}
	h.at(54*time.Minute - time.Second)
	if n := h.ev.count(EventExpiring); n != 1 {
		t.Fatalf("expiring 90%% too early")
	}
	h.at(54 * time.Minute)
	e := h.ev.wait(t, EventExpiring, wait)
	if e.UsedPercent != 90 {
		t.Fatalf("expiring %d", e.UsedPercent)
	}
}

// TestManagerClockJumpBack: after the clock goes back nothing is renewed
// early and nothing expires; going back before the build time is "clock
// insane"; renewal resumes when the clock is right again.
func TestManagerClockJumpBack(t *testing.T) {
	build := time.Now().Add(-24 * time.Hour)
	h := newMgrHarness(t, time.Hour, func(o *ManagerOptions) { o.NotBefore = build; o.MaxSleep = time.Minute })
	h.at(35 * time.Minute)
	h.ev.wait(t, EventExpiring, wait)
	h.at(-2 * time.Hour)
	h.at(-90 * time.Minute)
	if h.ca.calls.Load() != 0 || h.ev.count(EventExpired) != 0 {
		t.Fatalf("activity after jump back: %v", h.ev.kinds())
	}
	// Before the build time.
	h.idle()
	h.clk.Advance(build.Add(-time.Hour).Sub(h.clk.Now()))
	h.kick()
	e := h.ev.wait(t, EventClockInsane, wait)
	if !errors.Is(e.Err, ErrClockInsane) || !h.m.Status().ClockInsane {
		t.Fatalf("clock insane: %v", e.Err)
	}
	h.at(40 * time.Minute)
	h.kick()
	h.ev.wait(t, EventRenewed, wait)
	if h.m.Status().ClockInsane {
		t.Fatal("clock still insane")
	}
}

// TestManagerClockInsaneAtStart: nothing is renewed before the build time.
func TestManagerClockInsaneAtStart(t *testing.T) {
	h := newMgrHarness(t, time.Hour, func(o *ManagerOptions) { o.NotBefore = time.Now().Add(24 * time.Hour) })
	h.ev.wait(t, EventClockInsane, wait)
	h.at(50 * time.Minute)
	if h.ca.calls.Load() != 0 {
		t.Fatal("renewed with an insane clock")
	}
}

// TestManagerRejectsBadAnswer: a CA answering a certificate for another
// key, other names, or an untrusted chain is a failure; the old one stays.
func TestManagerRejectsBadAnswer(t *testing.T) {
	clk := clockwork.NewFakeClockAt(time.Now())
	dev := newDevCA(t, clk, time.Hour)
	other := newDevCA(t, clk, time.Hour)
	m, err := NewManager(ManagerOptions{CA: dev, Bundle: dev.Bundle(), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	tc, _ := dev.Issue(IssueOptions{URI: GatewayURI(testTD, "gw-01")})
	key := tc.PrivateKey.(crypto.Signer)
	if err := m.Install(key, leafChain(t, tc)); err != nil {
		t.Fatal(err)
	}
	c := m.cur.Load()
	otherKey, _ := dev.Issue(IssueOptions{URI: GatewayURI(testTD, "gw-01")})
	otherName, _ := dev.Issue(IssueOptions{URI: GatewayURI(testTD, "gw-02"), Key: key})
	untrusted, _ := other.Issue(IssueOptions{URI: GatewayURI(testTD, "gw-01"), Key: key})
	for name, chain := range map[string][]*x509.Certificate{
		"empty": nil, "other key": leafChain(t, otherKey), "other name": leafChain(t, otherName), "untrusted": leafChain(t, untrusted),
	} {
		if err := m.checkNew(c, key, chain); !errors.Is(err, ErrCABadResponse) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestManagerLoadsFromStore(t *testing.T) {
	clk := clockwork.NewFakeClockAt(time.Now())
	dev := newDevCA(t, clk, time.Hour)
	store := NewStore(t.TempDir())
	m, err := NewManager(ManagerOptions{CA: dev, Store: store, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if m.Current() != nil || m.Signer() != nil || m.Chain() != nil {
		t.Fatal("identity before enrollment")
	}
	if _, err := m.GetCertificate(nil); !errors.Is(err, ErrNoIdentity) {
		t.Fatal(err)
	}
	if c, _ := m.GetClientCertificate(nil); c == nil || len(c.Certificate) != 0 {
		t.Fatal("client certificate before enrollment")
	}
	tc, _ := dev.Issue(IssueOptions{URI: GatewayURI(testTD, "gw-01")})
	if err := installTLS(m, &tc); err != nil {
		t.Fatal(err)
	}
	_ = store.SaveRoots(dev.Bundle().Roots())
	m2, err := NewManager(ManagerOptions{CA: dev, Store: store, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if m2.Current() == nil || !m2.Chain()[0].Equal(tc.Leaf) || len(m2.Roots().Roots()) != 1 {
		t.Fatal("not loaded")
	}
}

// TestManagerNoIdentity: Run without a certificate reports that enrollment
// is needed.
func TestManagerNoIdentity(t *testing.T) {
	clk := clockwork.NewFakeClockAt(time.Now())
	dev := newDevCA(t, clk, time.Hour)
	ev := newEventLog()
	m, _ := NewManager(ManagerOptions{CA: dev, Clock: clk, OnEvent: ev.add, RootsEvery: -1})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = m.Run(ctx) }()
	ev.wait(t, EventReenrollNeeded, wait)
	if !m.Status().ReenrollNeeded {
		t.Fatal("status")
	}
	cancel()
	wg.Wait()
}

// TestManagerRootsRefresh: roots_changed when the CA's roots change.
func TestManagerRootsRefresh(t *testing.T) {
	h := newMgrHarness(t, time.Hour, func(o *ManagerOptions) { o.RootsEvery = 10 * time.Minute; o.Bundle = &Bundle{} })
	e := h.ev.wait(t, EventRootsChanged, wait)
	if e.Roots != 1 || len(h.m.Roots().Roots()) != 1 {
		t.Fatalf("roots %d", e.Roots)
	}
	h.at(10 * time.Minute)
	h.at(20 * time.Minute)
	if n := h.ev.count(EventRootsChanged); n != 1 {
		t.Fatalf("roots_changed %d times for unchanged roots", n)
	}
}

func TestManagerRenewNow(t *testing.T) {
	h := newMgrHarness(t, time.Hour, nil)
	h.at(10 * time.Minute)
	old := h.m.Current()
	h.m.RenewNow()
	h.ev.wait(t, EventRenewed, wait)
	if h.m.Current() == old || !h.m.Status().NextRenewal.Equal(h.t0.Add(10*time.Minute+40*time.Minute)) {
		t.Fatalf("status %+v", h.m.Status())
	}
}
