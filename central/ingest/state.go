package ingest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/envelope"
)

// maxHeld bounds the messages held per gateway while waiting for a
// missing one; beyond it the gap is recorded at once.
const maxHeld = 10000

// seenKeep is how many recent seqs per gateway are remembered to drop
// redeliveries; older duplicates are caught by the events table's key.
const seenKeep = 20000

// gwState is the in-memory state of one gateway.
type gwState struct {
	g         store.Gateway
	next      uint64 // the next seq expected; 0: none seen yet
	held      map[uint64]item
	heldSince time.Time
	optional  map[uint64]bool     // announced death seqs, which may never come
	seen      map[uint64]struct{} // applied seqs, the most recent ones, to drop redeliveries
	needBirth bool                // stale: waiting for the resync's birth
	needInv   bool                // stale: waiting for the resync's inventory
	resyncDue bool                // a resync is wanted but was rate-limited
	// major says the row changed in a way pages must see at once (online,
	// session, stale, inventory, status); otherwise, under load, the row
	// is written at most once per flushEvery.
	major     bool
	flushedAt time.Time
	pending   bool // changed but not written yet
	// deadSession is the session whose death was applied: its messages
	// still verified later (sent before the death, verified in parallel)
	// do not bring the gateway back online; only a birth does.
	deadSession uint64
	sh          sharedGW
}

// flushEvery bounds how long minor gateway changes (last seen, last seq,
// counters) wait before they are written while central is busy.
const flushEvery = time.Second

// busyBatch is the batch size from which minor changes are throttled.
const busyBatch = 64

// busyRate is the messages per second from which minor changes are
// throttled even when batches are small (a steady stream verified as fast
// as it arrives comes in many small batches).
const busyRate = 256

// busy says whether central is under load: a large batch, or at least
// busyRate messages applied within the current or the previous second.
func (in *Ingester) busy(now time.Time, applied int) bool {
	if now.Sub(in.rateStart) >= time.Second || now.Before(in.rateStart) {
		in.ratePrev, in.rateStart, in.rateN = in.rateN, now, 0
	}
	in.rateN += applied
	return applied >= busyBatch || in.rateN >= busyRate || in.ratePrev >= busyRate
}

func newState(g store.Gateway) *gwState {
	st := &gwState{g: g, held: map[uint64]item{}, optional: map[uint64]bool{}, seen: map[uint64]struct{}{}}
	if g.LastSeq > 0 {
		st.next = g.LastSeq + 1
	}
	return st
}

type batchWork struct {
	in       *Ingester
	ctx      context.Context
	now      time.Time
	events   []store.Event
	inv      []invWrite
	sessions []store.Event // vendor.* events, applied in order
	alarms   []alarmWrite
	findings []store.Finding
	dirty    map[string]bool
	applied  []item              // for latency
	done     []func(bool)        // source hooks of the items this batch finishes
	marks    map[string][]uint64 // shared mode: seqs applied, for MarkSeqs

	// recordings are vendor.session_end events with their signed bytes,
	// for the recordings archive.
	recordings []store.Recording
}

type invWrite struct {
	gw  string
	inv wire.Inventory
	at  time.Time
}

type alarmWrite struct {
	gw    string
	kinds map[string]string
	at    time.Time
}

func (b *batchWork) state(id string) *gwState {
	st := b.in.gws[id]
	if st == nil {
		st = newState(store.Gateway{ID: id, FirstSeen: b.now})
		b.in.gws[id] = st
	}
	return st
}

func (b *batchWork) finding(f store.Finding) {
	key := f.Gateway + "\x00" + f.Kind
	fs := b.in.fold[key]
	if fs == nil || b.now.Sub(fs.start) >= time.Minute {
		fs = &foldState{start: b.now}
		b.in.fold[key] = fs
	}
	fs.n++
	if fs.n > 20 {
		b.in.folded.Add(1) // a flood: counted, the first 20 a minute are kept
		return
	}
	b.findings = append(b.findings, f)
}

// receive takes one inspected message.
func (b *batchWork) receive(it item) {
	in := b.in
	if it.msg == nil {
		b.finish(it)
		if it.line.Kind == "command" && it.line.Alert == "" {
			return // a verified command on a .../cmd topic: central's or an approver's
		}
		in.rejected.Add(1)
		b.finding(store.Finding{Time: it.received, Gateway: it.line.Gateway, Topic: it.topic, Kind: it.line.Alert,
			Detail: it.line.Error, Signer: it.line.Signer})
		return
	}
	in.verified.Add(1)
	m := it.msg
	st := b.state(m.Gateway)
	if m.Kind == envelope.KindBirth {
		var birth wire.Birth
		if err := envelope.Unmarshal(m.Body, &birth); err == nil && birth.DeathSeq > 0 {
			st.optional[birth.DeathSeq] = true
		}
	}
	switch {
	case st.next == 0 || m.Seq == st.next:
		if st.next == 0 {
			st.next = m.Seq
			if m.Kind != envelope.KindBirth && st.g.LastBirth.IsZero() {
				// Central joined mid-session: ask for the birth and inventory
				// it missed instead of waiting a day for the next ones. A
				// shared instance first gives the others a reorder window
				// to store the birth.
				if in.shared() {
					st.sh.birthCheck = b.now
				} else {
					b.markStale(st, "no birth seen yet")
				}
			}
		}
		b.apply(st, it, false)
		st.next = m.Seq + 1
		b.drain(st)
	case m.Seq > st.next:
		if _, dup := st.held[m.Seq]; dup || st.sh.elsewhere[m.Seq] {
			in.dups.Add(1)
			b.finish(it)
			return
		}
		if b.applyAhead(st, it) {
			return
		}
		if len(st.held) == 0 {
			st.heldSince = b.now
		}
		st.held[m.Seq] = it
		in.held.Add(1)
		b.drain(st)
		if len(st.held) > maxHeld {
			b.gap(st)
		}
	default: // below next: a redelivery, or late (after its gap was recorded)
		if _, dup := st.seen[m.Seq]; dup {
			in.dups.Add(1)
			b.finish(it)
			return
		}
		if !st.optional[m.Seq] {
			in.late.Add(1)
		}
		delete(st.optional, m.Seq)
		b.apply(st, it, true)
	}
}

// drain applies held messages that are next in order, skipping announced
// death seqs that did not come.
func (b *batchWork) drain(st *gwState) {
	for st.ahead() > 0 {
		if it, ok := st.held[st.next]; ok {
			delete(st.held, st.next)
			b.in.held.Add(-1)
			b.apply(st, it, false)
			st.next++
			continue
		}
		if st.optional[st.next] {
			st.next++
			continue
		}
		if st.skipElsewhere() {
			continue
		}
		break
	}
	if st.ahead() > 0 && st.heldSince.IsZero() {
		st.heldSince = b.now
	}
	if st.ahead() == 0 {
		st.heldSince = time.Time{}
	}
}

// gap records the missing seqs before the lowest held one and moves on.
func (b *batchWork) gap(st *gwState) {
	lowest := uint64(0)
	for s := range st.held {
		if lowest == 0 || s < lowest {
			lowest = s
		}
	}
	for s := range st.sh.elsewhere {
		if lowest == 0 || s < lowest {
			lowest = s
		}
	}
	from, to := st.next, lowest-1
	b.in.gaps.Add(1)
	st.g.Gaps++
	b.finding(store.Finding{Time: b.now, Gateway: st.g.ID, Topic: wire.TopicPrefix + st.g.ID + "/#", Kind: store.FindingGap,
		Detail: fmt.Sprintf("sequence numbers %d..%d did not arrive within the reorder window of %s", from, to, b.in.o.ReorderWindow)})
	b.in.log.Warn("telemetry gap", "gateway", st.g.ID, "from", from, "to", to)
	st.major = true
	b.markGap(st.g.ID, from, to)
	st.next = lowest
	st.heldSince = time.Time{}
	b.markStale(st, fmt.Sprintf("gap %d..%d", from, to))
	b.drain(st)
}

func (b *batchWork) markStale(st *gwState, reason string) {
	if !st.g.Stale {
		st.g.StaleSince = b.now
	}
	st.g.Stale, st.g.StaleReason = true, reason
	st.needBirth, st.needInv, st.resyncDue = true, true, true
	st.major = true
	b.dirty[st.g.ID] = true
}

// housekeeping records gaps whose window passed, marks silent gateways
// offline and sends due resync requests.
func (b *batchWork) housekeeping() {
	ids := make([]string, 0, len(b.in.gws))
	for id := range b.in.gws {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		st := b.in.gws[id]
		if st.ahead() > 0 && !st.heldSince.IsZero() && b.now.Sub(st.heldSince) >= b.in.o.ReorderWindow && b.flowing() {
			b.gap(st)
		}
		if st.g.Online && !st.g.LastSeen.IsZero() && b.now.Sub(st.g.LastSeen) >= b.in.o.OfflineAfter {
			st.g.Online = false
			st.major = true
			b.dirty[id] = true
		}
		if st.pending && b.now.Sub(st.flushedAt) >= flushEvery {
			b.dirty[id] = true
		}
		if st.resyncDue && (st.g.ResyncAt.IsZero() || b.now.Sub(st.g.ResyncAt) >= b.in.o.ResyncInterval) {
			b.resync(st)
		}
	}
}

// resync asks the gateway for a new birth and inventory, signed by
// central's own key.
func (b *batchWork) resync(st *gwState) {
	st.resyncDue = false
	st.g.ResyncAt = b.now
	st.major = true
	b.dirty[st.g.ID] = true
	if !b.claimResync(st) {
		b.in.log.Info("resync already requested by another central instance", "gateway", st.g.ID)
		return
	}
	if b.in.o.Signer == nil || len(b.in.o.Chain) == 0 {
		b.in.log.Warn("gateway is stale but central has no signing key to ask for a resync", "gateway", st.g.ID)
		return
	}
	for _, name := range []string{command.Rebirth, command.InventoryNow} {
		data, err := command.Sign(b.in.o.Signer, b.in.o.Chain, st.g.ID, name, nil, b.now, 2*time.Minute)
		if err == nil {
			err = b.in.publish(wire.CommandTopic(st.g.ID), data)
		}
		if err != nil {
			b.in.log.Warn("resync request not sent; retrying after the resync interval", "gateway", st.g.ID, "command", name, "err", err)
			st.resyncDue = true
			return
		}
	}
	b.in.resyncs.Add(1)
	b.in.log.Info("resync requested", "gateway", st.g.ID)
}

// identityOf picks the identity an event is about, for audit search.
func identityOf(attrs map[string]string) string {
	for _, k := range []string{"vendor", "identity", "approver", "actor", "peer", "target"} {
		if v := attrs[k]; v != "" {
			return v
		}
	}
	return ""
}

// apply takes one verified message in order (late: below the expected
// seq, after its gap was recorded or a duplicate).
func (b *batchWork) apply(st *gwState, it item, late bool) {
	m := it.msg
	g := &st.g
	st.seen[m.Seq] = struct{}{}
	b.finish(it)
	b.mark(g.ID, m.Seq)
	if len(st.seen) > 2*seenKeep {
		for s := range st.seen {
			if s+seenKeep < st.next {
				delete(st.seen, s)
			}
		}
	}
	b.dirty[g.ID] = true
	b.applied = append(b.applied, it)
	at := time.UnixMilli(m.Time).UTC()
	if g.FirstSeen.IsZero() {
		g.FirstSeen = it.received
	}
	if it.received.After(g.LastSeen) {
		g.LastSeen = it.received
	}
	g.Messages++
	if m.Seq > g.LastSeq {
		g.LastSeq = m.Seq
	}
	if !m.Historical {
		g.ClockOffsetMS = it.received.UnixMilli() - m.Time
	}
	g.Signer = m.Signer
	wasOnline, wasStale, wasSession := g.Online, g.Stale, g.Session
	defer func() {
		if g.Online != wasOnline || g.Stale != wasStale || g.Session != wasSession {
			st.major = true
		}
	}()
	ev := store.Event{Gateway: g.ID, Session: m.Session, Seq: m.Seq, Time: at, Received: it.received,
		Historical: m.Historical, Attrs: map[string]string{}}
	switch m.Kind {
	case envelope.KindBirth:
		var birth wire.Birth
		if err := envelope.Unmarshal(m.Body, &birth); err != nil {
			return
		}
		ev.Kind, ev.Severity = "gateway.birth", wire.SeverityInfo
		ev.Attrs["version"], ev.Attrs["session"] = birth.Version, fmt.Sprint(m.Session)
		b.events = append(b.events, ev)
		if late && m.Session < g.Session {
			return
		}
		g.Session, g.Online, g.LastBirth, g.DeathSeq = m.Session, true, at, birth.DeathSeq
		st.deadSession = 0
		g.Site, g.Version, g.ConfigHash, g.Devices = birth.Site, birth.Version, birth.ConfigHash, birth.Inventory.Devices
		st.needBirth, st.major = false, true
	case envelope.KindDeath:
		var d wire.Death
		_ = envelope.Unmarshal(m.Body, &d)
		ev.Kind, ev.Severity = "gateway.death", wire.SeverityWarning
		ev.Attrs["reason"] = d.Reason
		if m.Session != g.Session {
			ev.Attrs["ignored"] = fmt.Sprintf("session %d is not the current session %d", m.Session, g.Session)
			b.in.log.Info("death of an old session ignored", "gateway", g.ID, "session", m.Session, "current", g.Session)
		} else {
			g.Online, g.LastDeath = false, at
			st.deadSession = m.Session
		}
		b.events = append(b.events, ev)
	case envelope.KindStatus:
		var s wire.Status
		if err := envelope.Unmarshal(m.Body, &s); err != nil || late {
			return
		}
		g.State, st.major = s.State, true
		kinds := map[string]string{}
		for _, a := range s.Alarms {
			kinds[a] = s.Message
		}
		b.alarms = append(b.alarms, alarmWrite{gw: g.ID, kinds: kinds, at: at})
	case envelope.KindMetrics:
		// Counters only update last seen; they are not stored.
	case envelope.KindEvent:
		var e wire.Event
		if err := envelope.Unmarshal(m.Body, &e); err != nil {
			return
		}
		ev.Kind, ev.Severity, ev.Attrs = e.Kind, e.Severity, e.Attrs
		if ev.Attrs == nil {
			ev.Attrs = map[string]string{}
		}
		ev.Device, ev.Identity = e.Attrs["device"], identityOf(e.Attrs)
		b.events = append(b.events, ev)
		if strings.HasPrefix(e.Kind, "vendor.") && e.Attrs["grant"] != "" {
			b.sessions = append(b.sessions, ev)
		}
		if e.Kind == "vendor.session_end" && e.Attrs["session"] != "" {
			b.recordings = append(b.recordings, store.Recording{Gateway: g.ID, Session: e.Attrs["session"], Grant: e.Attrs["grant"],
				Vendor: e.Attrs["vendor"], Device: e.Attrs["device"], Seq: m.Seq, Ended: at, Received: it.received, Hash: e.Attrs["hash"],
				EventCOSE: it.payload})
		}
	case envelope.KindInventory:
		inv, err := wire.DecodeInventory(m.Body)
		if err != nil {
			return
		}
		if !late {
			b.inv = append(b.inv, invWrite{gw: g.ID, inv: inv, at: at})
			g.Devices, st.major = len(inv.Devices), true
		}
		st.needInv = false
	case envelope.KindReply:
		var r wire.Reply
		if err := envelope.Unmarshal(m.Body, &r); err != nil {
			return
		}
		ev.Kind, ev.Severity = "command.reply", wire.SeverityInfo
		ev.Attrs = map[string]string{"command": r.Command, "accepted": fmt.Sprint(r.Accepted), "reason": r.Reason, "result": r.Result, "approver": r.Approver}
		ev.Identity = r.Approver
		b.events = append(b.events, ev)
	}
	if !m.Historical && !late && m.Kind != envelope.KindDeath && m.Session >= g.Session &&
		(m.Kind == envelope.KindBirth || m.Session != st.deadSession) {
		g.Online, g.Session = true, m.Session
	}
	if g.Stale && !st.needBirth && !st.needInv {
		g.Stale, g.StaleReason, g.StaleSince = false, "", time.Time{}
		st.resyncDue = false
	}
}

// sessionFrom folds a vendor.* event into the grant's row.
func sessionFrom(s store.Session, e store.Event) store.Session {
	s.Gateway, s.Grant = e.Gateway, e.Attrs["grant"]
	set := func(dst *string, k string) {
		if v := e.Attrs[k]; v != "" {
			*dst = v
		}
	}
	set(&s.Vendor, "vendor")
	set(&s.Device, "device")
	set(&s.Ports, "ports")
	set(&s.SessionID, "session")
	if e.Time.After(s.Updated) {
		s.Updated = e.Time
	}
	switch e.Kind {
	case "vendor.request":
		s.Requested = e.Time
		if s.State == "" {
			s.State = "requested"
		}
	case "vendor.approve":
		set(&s.Approver, "actor")
		if e.Attrs["complete"] == "true" {
			s.State, s.Approved = "approved", e.Time
		}
	case "vendor.deny":
		s.State, s.Ended = "denied", e.Time
		set(&s.Approver, "actor")
	case "vendor.request_expired", "vendor.grant_expired":
		s.State, s.Ended = "expired", e.Time
	case "vendor.revoke":
		s.State, s.Ended = "revoked", e.Time
	case "vendor.session_start":
		s.State, s.Started = "live", e.Time
	case "vendor.session_end":
		s.State, s.Ended = "ended", e.Time
	}
	return s
}

func (b *batchWork) commit(ctx context.Context) error {
	if len(b.dirty) == 0 && len(b.findings) == 0 && len(b.events) == 0 {
		return nil
	}
	b.sortEvents()
	n, err := b.in.o.Store.Apply(ctx, func(tx *store.Tx) error {
		if err := tx.AddEvents(b.events); err != nil {
			return err
		}
		for _, w := range b.inv {
			if err := tx.PutInventory(w.gw, w.inv, w.at); err != nil {
				return err
			}
		}
		for _, e := range b.sessions {
			s, err := tx.Session(e.Gateway, e.Attrs["grant"])
			if err != nil && err != store.ErrNotFound {
				return err
			}
			if err := tx.PutSession(sessionFrom(s, e)); err != nil {
				return err
			}
		}
		for _, a := range b.alarms {
			if err := tx.SetAlarms(a.gw, a.kinds, a.at); err != nil {
				return err
			}
		}
		for _, f := range b.findings {
			if err := tx.AddFinding(f); err != nil {
				return err
			}
		}
		for _, r := range b.recordings {
			if err := tx.PutRecordingEnd(r); err != nil {
				return err
			}
		}
		if err := b.sharedWrites(tx); err != nil {
			return err
		}
		busy := b.in.busy(b.now, len(b.applied))
		var rows []store.Gateway
		var written []*gwState
		ids := make([]string, 0, len(b.dirty))
		for id := range b.dirty {
			ids = append(ids, id)
		}
		sort.Strings(ids) // one lock order for every writer
		for _, id := range ids {
			st := b.in.gws[id]
			if busy && !st.major && b.now.Sub(st.flushedAt) < flushEvery {
				st.pending = true // written by a later batch or tick
				delete(b.dirty, id)
				continue
			}
			if b.in.shared() {
				// merged row by row, never moving another instance's view back
				if err := b.putGateway(tx, st); err != nil {
					return err
				}
			} else {
				rows = append(rows, st.g)
			}
			written = append(written, st)
		}
		if err := tx.PutGateways(rows); err != nil {
			return err
		}
		for _, st := range written {
			st.major, st.pending, st.flushedAt = false, false, b.now
		}
		return nil
	})
	if err != nil {
		return err
	}
	done := b.in.clock.Now()
	b.in.stored.Add(uint64(len(b.applied)))
	dups := len(b.events) - n
	if dups > 0 {
		b.in.dups.Add(uint64(dups))
	}
	b.in.latMu.Lock()
	for _, it := range b.applied {
		if !it.msg.Historical {
			b.in.lat.observe(max(done.Sub(time.UnixMilli(it.msg.Time)).Seconds(), 0))
		}
	}
	b.in.latMu.Unlock()
	if b.in.o.OnApplied != nil {
		for _, it := range b.applied {
			b.in.o.OnApplied(it.msg)
		}
	}
	if b.in.o.OnChange != nil {
		ch := Change{Events: n, Findings: len(b.findings)}
		for id := range b.dirty {
			ch.Gateways = append(ch.Gateways, id)
		}
		sort.Strings(ch.Gateways)
		b.in.o.OnChange(ch)
	}
	return nil
}
