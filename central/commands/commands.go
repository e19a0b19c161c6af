package commands

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/envelope"
	"github.com/wardgate/wardgate/wire/lockset"
)

// Errors of Submit and SubmitLockSet (match with errors.Is); the wrapped
// message says what is wrong and what to do.
var (
	// ErrInvalid: the signed bytes, their signer or their content are not
	// acceptable (HTTP 400).
	ErrInvalid = errors.New("command refused")
	// ErrNotSigner: the submitting identity is not the (or a) signer
	// (HTTP 403).
	ErrNotSigner = errors.New("submitted by someone who did not sign it")
	// ErrConflict: the command was submitted already, or the lock set's
	// version is not newer than the stored one (HTTP 409).
	ErrConflict = errors.New("conflict")
)

// MaxSkew is how far in the future a command may claim to be issued
// (clocks of operators' machines differ).
const MaxSkew = 5 * time.Minute

// Options configures a Service.
type Options struct {
	Store       *store.Store // required
	TrustDomain string       // required
	// Approver verifies a signer's chain (leaf first) at now and returns
	// its identity, spiffe://TD/approver/ROLE/PERSON. Required.
	Approver command.VerifyApprover
	// Publish sends payload on topic with QoS 1, retained when retain is
	// set (ingest.Ingester.Publish). Required for delivery; nil stores and
	// never publishes.
	Publish func(topic string, payload []byte, retain bool) error
	// SweepEvery is how often expired targets are marked; default 10s.
	SweepEvery time.Duration
	// Endorser is central's own key and chain (spiffe://TD/svc/central):
	// every lock set is published with central's endorsement
	// (lockset.Endorse), and so is a restrictive command whose signer's
	// certificate ends within EndorseMargin (command.Endorse), which keeps
	// them acceptable after their approvers' day-long certificates
	// expired. Nil: published as the approvers signed them.
	Endorser *lockset.Signer
	// NoRetain says the broker connection cannot retain (the AMQP source:
	// RabbitMQ's MQTT plugin retains only MQTT publishes). Central then
	// publishes the newest sets that apply to a gateway on the gateway's
	// own lock-set topic at each of its births, so a gateway that was
	// offline still converges as soon as it is back.
	NoRetain bool
	// ReendorseEvery is how often the newest unexpired set of every scope
	// is endorsed and published again; default 12h (well within central's
	// certificate lifetime).
	ReendorseEvery time.Duration
	Clock          clockwork.Clock
	Logger         *slog.Logger
	// OnChange, when set, is called after the queue changed state (for
	// live pages); keep it short.
	OnChange func()
}

// Service is the command queue. Create it with New, run it with Run.
type Service struct {
	o     Options
	clock clockwork.Clock
	log   *slog.Logger

	mu   sync.Mutex
	work []job
	busy int // jobs queued or running
	wake chan struct{}
	lsMu sync.Mutex // serializes lock-set version checks
	// cleared holds "scope@version" of expired sets whose retained topic
	// was cleared (Run's goroutine only).
	cleared map[string]bool
}

type jobKind int

const (
	jobDeliver        jobKind = iota // deliver a new command: ID
	jobBirth                         // gateway born: gw, site
	jobReply                         // a reply from gw
	jobLockSetEvent                  // authority.lockset_* from gw
	jobConnected                     // central (re)subscribed
	jobPublishLockSet                // publish a stored lock set: scope
	jobRepublish                     // endorse and publish every scope's set again
)

type job struct {
	kind  jobKind
	id    string // command id, or lock-set scope
	gw    string
	site  string
	at    time.Time
	reply wire.Reply
	event wire.Event
}

// New checks o.
func New(o Options) (*Service, error) {
	if o.Store == nil || o.TrustDomain == "" || o.Approver == nil {
		return nil, errors.New("commands: a store, the trust domain and an approver verifier are required")
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SweepEvery <= 0 {
		o.SweepEvery = 10 * time.Second
	}
	if o.ReendorseEvery <= 0 {
		o.ReendorseEvery = 12 * time.Hour
	}
	s := &Service{o: o, clock: o.Clock, log: o.Logger.With("component", "central-commands"), wake: make(chan struct{}, 1)}
	s.push(job{kind: jobConnected}) // at start, Run re-checks what is due
	return s, nil
}

func (s *Service) push(j job) {
	s.mu.Lock()
	s.work = append(s.work, j)
	s.busy++
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Observe takes one verified telemetry message (the ingest's OnApplied
// hook): live births, replies and lock-set events are queued for Run; the
// rest is ignored. It never blocks.
func (s *Service) Observe(m *envelope.Message) {
	if m == nil {
		return
	}
	at := time.UnixMilli(m.Time).UTC()
	switch m.Kind {
	case envelope.KindBirth:
		if m.Historical {
			return
		}
		var b wire.Birth
		if err := envelope.Unmarshal(m.Body, &b); err != nil {
			return
		}
		s.push(job{kind: jobBirth, gw: m.Gateway, site: b.Site, at: at})
	case envelope.KindReply:
		var r wire.Reply
		if err := envelope.Unmarshal(m.Body, &r); err != nil || len(r.Nonce) == 0 {
			return
		}
		s.push(job{kind: jobReply, gw: m.Gateway, at: at, reply: r})
	case envelope.KindEvent:
		if !bytes.Contains(m.Body, lockSetKind) {
			return // most events: skip the decode on ingest's goroutine
		}
		var e wire.Event
		if err := envelope.Unmarshal(m.Body, &e); err != nil {
			return
		}
		if e.Kind == EvLockSetApplied || e.Kind == EvLockSetRefused {
			s.push(job{kind: jobLockSetEvent, gw: m.Gateway, at: at, event: e})
		}
	}
}

var lockSetKind = []byte("authority.lockset_")

// The gateway's lock-set events (gateway/authority; the wire contract is
// the kind and the scope and version attributes).
const (
	EvLockSetApplied = "authority.lockset_applied"
	EvLockSetRefused = "authority.lockset_refused"
)

// Connected tells the service that central (re)subscribed to the broker:
// the retained lock sets are published again and queued commands of online
// gateways delivered. It never blocks.
func (s *Service) Connected() { s.push(job{kind: jobConnected}) }

// Run processes the queue until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := s.clock.NewTicker(s.o.SweepEvery)
	defer t.Stop()
	re := s.clock.NewTicker(s.o.ReendorseEvery)
	defer re.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.Chan():
			s.sweep(ctx)
		case <-re.Chan():
			s.push(job{kind: jobRepublish})
		case <-s.wake:
			for {
				s.mu.Lock()
				work := s.work
				s.work = nil
				s.mu.Unlock()
				if len(work) == 0 {
					break
				}
				for _, j := range work {
					if ctx.Err() != nil {
						return nil
					}
					s.do(ctx, j)
				}
				s.mu.Lock()
				s.busy -= len(work)
				s.mu.Unlock()
				s.changed()
			}
		}
	}
}

// Idle reports whether no work is queued or running (for tests and
// benchmarks).
func (s *Service) Idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.busy == 0
}

func (s *Service) changed() {
	if s.o.OnChange != nil {
		s.o.OnChange()
	}
}

func (s *Service) do(ctx context.Context, j job) {
	var err error
	switch j.kind {
	case jobDeliver:
		err = s.deliverNew(ctx, j.id)
	case jobBirth:
		err = s.birth(ctx, j.gw, j.site)
	case jobReply:
		err = s.reply(ctx, j.gw, j.reply, j.at)
	case jobLockSetEvent:
		err = s.lockSetEvent(ctx, j.gw, j.event, j.at)
	case jobConnected:
		err = s.connected(ctx)
	case jobRepublish:
		err = s.republish(ctx)
	case jobPublishLockSet:
		err = s.publishLockSet(ctx, j.id)
	}
	if err != nil && ctx.Err() == nil {
		s.log.Error("command queue step failed", "err", err, "gateway", j.gw, "id", j.id)
	}
}

func (s *Service) sweep(ctx context.Context) {
	n, err := s.o.Store.ExpireTargets(ctx, s.clock.Now())
	if err != nil {
		s.log.Error("expiring commands failed", "err", err)
		return
	}
	if n > 0 {
		s.log.Info("commands expired before the gateways answered", "targets", n)
		s.changed()
	}
	if err := s.clearExpiredLockSets(ctx); err != nil {
		s.log.Error("clearing expired lock sets failed", "err", err)
	}
}

// Submit verifies a signed command submitted by submitter (the TLS
// identity of the request), stores it with one queued target per addressed
// gateway known now, and queues its delivery. note is the operator's free
// text (not signed).
func (s *Service) Submit(ctx context.Context, signed []byte, submitter, note string) (store.Command, error) {
	now := s.clock.Now()
	c, err := s.verify(signed, submitter, now)
	if err != nil {
		return store.Command{}, err
	}
	if len(note) > 1000 {
		return store.Command{}, fmt.Errorf("%w: the note is longer than 1000 characters", ErrInvalid)
	}
	rec := store.Command{ID: hex.EncodeToString(c.Nonce[:6]), Name: c.Name, Args: c.Args, Scope: scopeOf(c.Payload),
		Nonce: hex.EncodeToString(c.Nonce), Signer: c.Approver, SubmittedBy: submitter, Note: note,
		Issued: time.UnixMilli(c.IssuedAt).UTC(), Expires: time.UnixMilli(c.Expires).UTC(), Created: now.UTC(), Signed: signed}
	gws, err := s.resolve(ctx, c.Payload)
	if err != nil {
		return store.Command{}, err
	}
	targets := make([]store.CommandTarget, 0, len(gws))
	for _, g := range gws {
		targets = append(targets, store.CommandTarget{Gateway: g, State: store.TargetQueued, Queued: now.UTC()})
	}
	if _, err := s.o.Store.Apply(ctx, func(tx *store.Tx) error { return tx.AddCommand(rec, targets) }); err != nil {
		if errors.Is(err, store.ErrDuplicate) {
			return store.Command{}, fmt.Errorf("%w: this command (nonce %s) was submitted already: sign a new one", ErrConflict, rec.Nonce)
		}
		return store.Command{}, err
	}
	s.log.Info("command queued", "id", rec.ID, "command", rec.Name, "scope", rec.Scope, "signer", rec.Signer, "gateways", len(targets),
		"expires", rec.Expires)
	s.push(job{kind: jobDeliver, id: rec.ID})
	out, err := s.o.Store.Command(ctx, rec.ID)
	if err != nil {
		return rec, nil
	}
	return out, nil
}

func scopeOf(p command.Payload) string {
	switch {
	case p.Fleet:
		return lockset.ScopeFleet
	case p.Site != "":
		return lockset.Site(p.Site)
	}
	return lockset.Gateway(p.Gateway)
}

// verify checks everything central can check of a command before it
// queues it; the gateway checks it all again.
func (s *Service) verify(signed []byte, submitter string, now time.Time) (*command.Command, error) {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: "+f, append([]any{ErrInvalid}, a...)...) }
	if len(signed) == 0 || len(signed) > 64<<10 {
		return nil, bad("give the signed command (COSE_Sign1, at most 64 KiB), %d bytes received", len(signed))
	}
	env, p, err := command.Decode(signed)
	if err != nil {
		return nil, bad("not a signed command: %v", err)
	}
	if err := env.VerifySignature(); err != nil {
		return nil, bad("the signature does not verify: %v", err)
	}
	signer, err := s.o.Approver(env.Chain, now)
	if err != nil {
		return nil, bad("the signer is not an approver of trust domain %s: %v", s.o.TrustDomain, err)
	}
	if signer != submitter {
		return nil, fmt.Errorf("%w: the command is signed by %s but submitted by %s: each approver submits the commands they signed", ErrNotSigner, signer, submitter)
	}
	if err := Check(*p, now); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return &command.Command{Payload: *p, Approver: signer}, nil
}

// Check validates a command payload as central does before queuing it,
// at now: one addressee with valid names, a known command with its
// argument count, a permissive command (approve, unlock, clear-tamper)
// for exactly one gateway, no fleet-wide lock, a nonce of 16..64 bytes,
// and a validity that has not ended, is at most command.MaxTTLOf(name)
// from now and from its issue time, and was issued at most MaxSkew in the
// future. The CLI runs it before signing too.
func Check(p command.Payload, now time.Time) error {
	to := 0
	for _, set := range []bool{p.Gateway != "", p.Site != "", p.Fleet} {
		if set {
			to++
		}
	}
	n, known := command.Names[p.Name]
	switch {
	case !known:
		return fmt.Errorf("unknown command %q (one of approve, deny, revoke, lock, unlock, end-session, clear-tamper, rebirth, inventory)", p.Name)
	case to != 1:
		return fmt.Errorf("a command names exactly one addressee (one gateway, one site or the fleet), this one names %d", to)
	case p.Gateway == "" && command.Permissive(p.Name):
		return fmt.Errorf("%s widens access and must name exactly one gateway (--gateway ID), never a site or the fleet", p.Name)
	case p.Fleet && p.Name == command.Lock:
		return errors.New("a fleet-wide lock needs two approvers: put it in the fleet lock set (wardgate-central lockset sign --fleet)")
	case p.Gateway == "" && !command.Restrictive(p.Name):
		return fmt.Errorf("%s is for one gateway (--gateway ID); only lock, end-session, revoke and deny may address a site or the fleet", p.Name)
	case p.Gateway != "" && !envelope.ValidGatewayID(p.Gateway):
		return fmt.Errorf("gateway id %q is not valid (letters, digits, '-', '_', '.')", p.Gateway)
	case p.Site != "" && !envelope.ValidGatewayID(p.Site):
		return fmt.Errorf("site %q is not valid (letters, digits, '-', '_', '.')", p.Site)
	case len(p.Args) < n[0] || len(p.Args) > n[1]:
		return fmt.Errorf("%s takes %d to %d arguments, got %d", p.Name, n[0], n[1], len(p.Args))
	case len(p.Nonce) < command.MinNonce || len(p.Nonce) > command.MaxNonce:
		return fmt.Errorf("nonce of %d bytes (%d..%d)", len(p.Nonce), command.MinNonce, command.MaxNonce)
	}
	for i, a := range p.Args {
		if (i == 0 && a == "") || len(a) > 256 {
			return errors.New("the first argument is empty, or an argument is longer than 256 bytes")
		}
	}
	if p.Name == command.Approve {
		if _, err := command.ParseApprove(p.Args); err != nil {
			return err
		}
	}
	maxTTL := command.MaxTTLOf(p.Name)
	iat, exp := time.UnixMilli(p.IssuedAt), time.UnixMilli(p.Expires)
	switch {
	case !exp.After(iat):
		return errors.New("the command expires before it was issued")
	case !exp.After(now):
		return fmt.Errorf("the command expired at %s: sign a new one", exp.UTC().Format(time.RFC3339))
	case exp.Sub(iat) > maxTTL || exp.Sub(now) > maxTTL:
		return fmt.Errorf("%s may be valid for at most %s, this one until %s: sign it with a shorter --valid", p.Name, maxTTL, exp.UTC().Format(time.RFC3339))
	case iat.After(now.Add(MaxSkew)):
		return fmt.Errorf("the command was issued at %s, in the future: check the signing machine's clock", iat.UTC().Format(time.RFC3339))
	}
	return nil
}

// resolve lists the gateways a command addresses now.
func (s *Service) resolve(ctx context.Context, p command.Payload) ([]string, error) {
	switch {
	case p.Fleet:
		return s.o.Store.GatewaysAt(ctx, "")
	case p.Site != "":
		return s.o.Store.GatewaysAt(ctx, p.Site)
	}
	return []string{p.Gateway}, nil
}

// deliverNew adds the gateways that reported since Submit resolved the
// scope, then publishes to every online target.
func (s *Service) deliverNew(ctx context.Context, id string) error {
	c, err := s.o.Store.Command(ctx, id)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, t := range c.Targets {
		have[t.Gateway] = true
	}
	if site, ok := strings.CutPrefix(c.Scope, "site/"); ok || c.Scope == lockset.ScopeFleet {
		gws, err := s.o.Store.GatewaysAt(ctx, site)
		if err != nil {
			return err
		}
		now := s.clock.Now().UTC()
		for _, g := range gws {
			if !have[g] {
				t := store.CommandTarget{Command: id, Gateway: g, State: store.TargetQueued, Queued: now}
				if err := s.o.Store.PutTarget(ctx, t); err != nil {
					return err
				}
				c.Targets = append(c.Targets, t)
			}
		}
	}
	for _, t := range c.Targets {
		if t.State != store.TargetQueued {
			continue
		}
		g, err := s.o.Store.Gateway(ctx, t.Gateway)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !g.Online) {
			continue // delivered at its birth
		}
		if err != nil {
			return err
		}
		if err := s.publish(ctx, c, t); err != nil {
			return err
		}
	}
	return nil
}

// publish sends c to t's gateway unless it expired (then t is marked
// expired) and records the delivery. A publish failure leaves t as it
// was: it is retried at the next birth or reconnection.
func (s *Service) publish(ctx context.Context, c store.Command, t store.CommandTarget) error {
	now := s.clock.Now().UTC()
	if !now.Before(c.Expires) {
		t.State, t.Expired = store.TargetExpired, now
		return s.o.Store.PutTarget(ctx, t)
	}
	if s.o.Publish == nil {
		return nil
	}
	data, err := s.endorsed(c, now)
	if err != nil {
		s.log.Error("command not endorsed, not published", "id", c.ID, "gateway", t.Gateway, "err", err)
		return nil
	}
	if err := s.o.Publish(wire.CommandTopic(t.Gateway), data, false); err != nil {
		s.log.Warn("command not published; retried at the gateway's next birth or central's reconnection", "id", c.ID, "gateway", t.Gateway, "err", err)
		return nil
	}
	t.State, t.Delivered = store.TargetDelivered, now
	t.Deliveries++
	s.log.Info("command published", "id", c.ID, "command", c.Name, "gateway", t.Gateway, "deliveries", t.Deliveries)
	return s.o.Store.PutTarget(ctx, t)
}

// EndorseMargin: a restrictive command is published with central's
// endorsement once its signer's certificate ends within this margin, so
// that it is still acceptable when the gateway checks it (at once: it is
// online when central publishes). Before that it goes as signed, which
// every gateway version reads.
const EndorseMargin = 10 * time.Minute

// endorsed returns the bytes to publish for c at now: c as signed, or with
// central's endorsement (see EndorseMargin).
func (s *Service) endorsed(c store.Command, now time.Time) ([]byte, error) {
	if s.o.Endorser == nil || !command.Restrictive(c.Name) {
		return c.Signed, nil
	}
	sig, _, err := command.Decode(c.Signed)
	if err != nil {
		return nil, fmt.Errorf("command %s: %w", c.ID, err)
	}
	if len(sig.Chain) > 0 && sig.Chain[0].NotAfter.After(now.Add(EndorseMargin)) {
		return c.Signed, nil
	}
	return command.Endorse(c.Signed, s.o.Endorser.Key, s.o.Endorser.Chain, now)
}

// birth delivers what waits for gw: commands addressed to it, and site or
// fleet commands that are still valid and it has not had yet (publish
// marks the expired ones instead).
func (s *Service) birth(ctx context.Context, gw, site string) error {
	now := s.clock.Now()
	scoped, err := s.o.Store.ScopedActive(ctx, gw, site, now)
	if err != nil {
		return err
	}
	for _, c := range scoped {
		t := store.CommandTarget{Command: c.ID, Gateway: gw, State: store.TargetQueued, Queued: now.UTC()}
		if err := s.o.Store.PutTarget(ctx, t); err != nil {
			return err
		}
	}
	pending, err := s.o.Store.PendingFor(ctx, gw)
	if err != nil {
		return err
	}
	for _, p := range pending {
		if err := s.publish(ctx, p.Command, p.Target); err != nil {
			return err
		}
	}
	if s.o.NoRetain {
		return s.lockSetsAtBirth(ctx, gw, site)
	}
	return nil
}

// reply records the gateway's answer to a queued command.
func (s *Service) reply(ctx context.Context, gw string, r wire.Reply, at time.Time) error {
	c, err := s.o.Store.CommandByNonce(ctx, hex.EncodeToString(r.Nonce))
	if errors.Is(err, store.ErrNotFound) {
		return nil // central's resync, or a command published by hand
	}
	if err != nil {
		return err
	}
	t, err := s.o.Store.Target(ctx, c.ID, gw)
	if errors.Is(err, store.ErrNotFound) {
		s.log.Warn("reply from a gateway the command did not address", "id", c.ID, "gateway", gw)
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case t.State == store.TargetApplied || t.State == store.TargetRejected:
		return nil // answered already (a re-delivery's replay refusal, or a duplicate)
	case !r.Accepted && strings.Contains(r.Reason, command.ErrReplay.Error()):
		// The gateway has the nonce: it executed an earlier delivery and
		// that reply is still on its way (its outbox keeps it).
		return nil
	case r.Accepted:
		t.State, t.Applied, t.Result, t.Reason = store.TargetApplied, at, clip(r.Result), ""
	default:
		t.State, t.Rejected, t.Reason, t.Result = store.TargetRejected, at, clip(r.Reason), clip(r.Result)
	}
	s.log.Info("command answered", "id", c.ID, "gateway", gw, "state", t.State, "reason", t.Reason)
	return s.o.Store.PutTarget(ctx, t)
}

func clip(s string) string {
	if len(s) > 500 {
		return s[:500]
	}
	return s
}

func (s *Service) connected(ctx context.Context) error {
	if err := s.republish(ctx); err != nil {
		return err
	}
	if err := s.clearExpiredLockSets(ctx); err != nil {
		return err
	}
	if _, err := s.o.Store.ExpireTargets(ctx, s.clock.Now()); err != nil {
		return err
	}
	queued, err := s.o.Store.PendingQueued(ctx, s.clock.Now())
	if err != nil {
		return err
	}
	online := map[string]bool{}
	if len(queued) > 0 {
		gs, err := s.o.Store.Gateways(ctx)
		if err != nil {
			return err
		}
		for _, g := range gs {
			online[g.ID] = g.Online
		}
	}
	for _, p := range queued {
		if online[p.Target.Gateway] {
			if err := s.publish(ctx, p.Command, p.Target); err != nil {
				return err
			}
		}
	}
	return nil
}
