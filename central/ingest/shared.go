package ingest

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/envelope"
)

// Shared ingest (Options.AMQP): several instances consume one queue, so
// each sees only part of every gateway's messages. What this instance
// applies is marked in the store (store.MarkSeqs) in the batch that stores
// it; a seq this instance is missing is looked up there before it is
// waited for or called a gap; the gateways row is merged, not replaced
// (store.MergeGateway); a resync request is claimed through the row
// (store.ClaimResync) so that two instances do not both ask.

// sharedGW is the shared-mode part of a gateway's state.
type sharedGW struct {
	// elsewhere are seqs above next that another instance applied.
	elsewhere map[uint64]bool
	// birthCheck is when this instance first saw the gateway without a
	// birth on record; after the reorder window it looks again.
	birthCheck time.Time
	// flushedMsgs, flushedGaps are the counters already added to the row.
	flushedMsgs, flushedGaps uint64
}

// stallAfter: no message for this long means the source is stalled (a
// broker without quorum); the reorder window does not run meanwhile.
func (in *Ingester) stallAfter() time.Duration {
	return min(in.o.ReorderWindow/2, 2*time.Second)
}

// flowing says whether messages arrived recently enough for a held
// message's wait to count against the reorder window.
func (b *batchWork) flowing() bool {
	return !b.in.shared() || b.now.Sub(b.in.lastFlow) < b.in.stallAfter()
}

// sharedBefore runs before a batch is received: it loads the stored rows
// of gateways this instance has not met yet (another instance may have
// their birth), and after a stall moves the reorder clocks on by its
// length.
func (b *batchWork) sharedBefore(ctx context.Context, batch []item) {
	in := b.in
	if len(batch) > 0 {
		if gap := b.now.Sub(in.lastFlow); !in.lastFlow.IsZero() && gap >= in.stallAfter() {
			for _, st := range in.gws {
				if st.ahead() > 0 && !st.heldSince.IsZero() {
					st.heldSince = st.heldSince.Add(gap)
				}
				if !st.sh.birthCheck.IsZero() {
					st.sh.birthCheck = st.sh.birthCheck.Add(gap)
				}
			}
		}
		in.lastFlow = b.now
	}
	for _, it := range batch {
		if it.msg == nil || in.gws[it.msg.Gateway] != nil {
			continue
		}
		g, err := in.o.Store.Gateway(ctx, it.msg.Gateway)
		if err != nil {
			continue // new to every instance, or the store is down: start fresh
		}
		st := newState(g)
		in.gws[g.ID] = st
	}
}

// sharedCheck looks up, for every gateway holding messages, the missing
// seqs other instances applied, skips them, and applies what is then in
// order; and it settles due birth checks. It reports whether some
// gateway still waits for seqs.
func (b *batchWork) sharedCheck(ctx context.Context) bool {
	in := b.in
	ids := make([]string, 0)
	for id, st := range in.gws {
		if st.ahead() > 0 || (!st.sh.birthCheck.IsZero() && b.now.Sub(st.sh.birthCheck) >= in.o.ReorderWindow) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		st := in.gws[id]
		if st.ahead() > 0 {
			hi := st.next
			for s := range st.held {
				hi = max(hi, s)
			}
			for s := range st.sh.elsewhere {
				hi = max(hi, s)
			}
			found, err := in.o.Store.StoredSeqs(ctx, id, st.next, hi)
			if err != nil {
				in.log.Warn("shared ingest: stored seqs lookup failed", "gateway", id, "err", err)
				continue
			}
			if len(found) > 0 {
				if st.sh.elsewhere == nil {
					st.sh.elsewhere = map[uint64]bool{}
				}
				for s := range found {
					if _, mine := st.held[s]; !mine && s >= st.next {
						st.sh.elsewhere[s] = true
					}
				}
				b.refresh(ctx, st)
				b.drain(st)
			}
		}
		if !st.sh.birthCheck.IsZero() && b.now.Sub(st.sh.birthCheck) >= in.o.ReorderWindow {
			b.refresh(ctx, st)
			if !st.sh.birthCheck.IsZero() {
				st.sh.birthCheck = time.Time{}
				b.markStale(st, "no birth seen yet")
			}
		}
	}
	for _, st := range in.gws {
		if st.ahead() > 0 {
			return true
		}
	}
	return false
}

// ahead counts the seqs above next this instance holds or knows done.
func (st *gwState) ahead() int { return len(st.held) + len(st.sh.elsewhere) }

// applyAhead stores, in shared mode, a message above next at once when
// its kind does not change the gateway's ordered state (events other than
// vendor.*, metrics, replies): the other instance has the seqs before it,
// and holding it would make the two instances wait for each other's
// commits one message at a time. Its seq counts as done for the order.
func (b *batchWork) applyAhead(st *gwState, it item) bool {
	if !b.in.shared() {
		return false
	}
	m := it.msg
	switch m.Kind {
	case envelope.KindMetrics, envelope.KindReply:
	case envelope.KindEvent:
		var e wire.Event
		if err := envelope.Unmarshal(m.Body, &e); err != nil || strings.HasPrefix(e.Kind, "vendor.") {
			return false
		}
	default:
		return false
	}
	b.apply(st, it, false)
	if st.sh.elsewhere == nil {
		st.sh.elsewhere = map[uint64]bool{}
	}
	st.sh.elsewhere[m.Seq] = true
	if st.heldSince.IsZero() {
		st.heldSince = b.now
	}
	return true
}

// skipElsewhere moves next past a seq another instance applied; drain
// calls it.
func (st *gwState) skipElsewhere() bool {
	if !st.sh.elsewhere[st.next] {
		return false
	}
	delete(st.sh.elsewhere, st.next)
	st.seen[st.next] = struct{}{}
	st.next++
	return true
}

// refresh merges the stored row (what other instances wrote) into the
// in-memory state: the newer view of session and online, the later
// times, and a birth recorded after this instance marked it stale.
func (b *batchWork) refresh(ctx context.Context, st *gwState) {
	row, err := b.in.o.Store.Gateway(ctx, st.g.ID)
	if err != nil {
		return
	}
	g := &st.g
	if row.Session > g.Session || (row.Session == g.Session && row.LastSeen.After(g.LastSeen)) {
		g.Session, g.Online, g.State, g.Signer = row.Session, row.Online, row.State, row.Signer
	}
	if row.LastBirth.After(g.LastBirth) {
		g.Site, g.Version, g.ConfigHash, g.Devices, g.DeathSeq = row.Site, row.Version, row.ConfigHash, row.Devices, row.DeathSeq
	}
	later := func(dst *time.Time, v time.Time) {
		if v.After(*dst) {
			*dst = v
		}
	}
	later(&g.LastSeen, row.LastSeen)
	later(&g.LastBirth, row.LastBirth)
	later(&g.LastDeath, row.LastDeath)
	later(&g.ResyncAt, row.ResyncAt)
	g.LastSeq = max(g.LastSeq, row.LastSeq)
	if !g.LastBirth.IsZero() {
		st.sh.birthCheck = time.Time{}
	}
	if g.Stale && !row.LastBirth.IsZero() && row.LastBirth.After(g.StaleSince) {
		// Another instance received the resync's birth (and its inventory
		// follows it).
		st.needBirth, st.needInv, st.resyncDue = false, false, false
		g.Stale, g.StaleReason, g.StaleSince = false, "", time.Time{}
	}
}

// mark records an applied seq for MarkSeqs.
func (b *batchWork) mark(gw string, seq uint64) {
	if !b.in.shared() {
		return
	}
	if b.marks == nil {
		b.marks = map[string][]uint64{}
	}
	b.marks[gw] = append(b.marks[gw], seq)
}

// putGateway writes the row: replaced by a single instance, merged in
// shared mode.
func (b *batchWork) putGateway(tx *store.Tx, st *gwState) error {
	if !b.in.shared() {
		return tx.PutGateway(st.g)
	}
	dm, dg := st.g.Messages-st.sh.flushedMsgs, st.g.Gaps-st.sh.flushedGaps
	if err := tx.MergeGateway(st.g, dm, dg); err != nil {
		return err
	}
	st.sh.flushedMsgs, st.sh.flushedGaps = st.g.Messages, st.g.Gaps
	return nil
}

// sharedWrites are the shared-mode writes of a batch: the seq marks, in
// an order two instances share (no deadlocks).
func (b *batchWork) sharedWrites(tx *store.Tx) error {
	if !b.in.shared() {
		return nil
	}
	return tx.MarkSeqs(b.in.o.AMQP.Name, b.marks)
}

// sortEvents orders a shared batch's events by gateway and seq, so that
// two instances inserting the same (duplicate) rows lock them in the same
// order.
func (b *batchWork) sortEvents() {
	if !b.in.shared() {
		return
	}
	sort.SliceStable(b.events, func(i, j int) bool {
		if b.events[i].Gateway != b.events[j].Gateway {
			return b.events[i].Gateway < b.events[j].Gateway
		}
		return b.events[i].Seq < b.events[j].Seq
	})
}

// claimResync asks the shared row whether this instance may send the
// resync now; a single instance always may.
func (b *batchWork) claimResync(st *gwState) bool {
	if !b.in.shared() {
		return true
	}
	ok, err := b.in.o.Store.ClaimResync(b.ctx, st.g.ID, b.now, b.in.o.ResyncInterval)
	if err != nil {
		b.in.log.Warn("shared ingest: resync claim failed; asking anyway", "gateway", st.g.ID, "err", err)
		return true
	}
	return ok
}

// finish hands the item's outcome to its source (acknowledgement once
// stored); items without a source hook are ignored.
func (b *batchWork) finish(it item) {
	if it.done != nil {
		b.done = append(b.done, it.done)
	}
}

// failed undoes what a batch that did not commit would make a
// redelivery look like: its applied seqs are forgotten (so the redelivery
// is applied, not dropped as a duplicate) and its items go back to their
// source (the AMQP source requeues them).
func (b *batchWork) failed() {
	for _, it := range b.applied {
		if st := b.in.gws[it.msg.Gateway]; st != nil {
			delete(st.seen, it.msg.Seq)
		}
	}
	for _, d := range b.done {
		d(false)
	}
}

// markGap marks a recorded gap's seqs as handled, so that another
// instance waiting for them records no second gap for the same seqs.
func (b *batchWork) markGap(gw string, from, to uint64) {
	for s := from; s <= to && s-from < maxHeld; s++ {
		b.mark(gw, s)
	}
}
