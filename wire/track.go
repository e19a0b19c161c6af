package wire

import (
	"sort"
	"sync"
	"time"
)

// Gap is a run of sequence numbers of one gateway that did not arrive
// within the tracker's grace period.
type Gap struct {
	Gateway  string `json:"gateway"`
	From, To uint64 // inclusive
}

// Tracker de-duplicates messages on (gateway, seq) and finds gaps. Seqs
// may arrive out of order (events overtake a metrics backlog; a backlog
// is replayed after an outage), so a missing seq is only a gap once it
// stayed missing for Grace. It is safe for concurrent use.
type Tracker struct {
	grace time.Duration
	mu    sync.Mutex
	gws   map[string]*gwTrack
}

type gwTrack struct {
	seen       map[uint64]struct{}
	optional   map[uint64]struct{} // death Wills that may never be sent
	floor      uint64              // every seq <= floor is accounted for
	high       uint64
	stuckSince time.Time
	started    bool
}

// maxTracked bounds the de-duplication memory per gateway.
const maxTracked = 200_000

// NewTracker returns a Tracker reporting gaps after grace.
func NewTracker(grace time.Duration) *Tracker {
	return &Tracker{grace: grace, gws: map[string]*gwTrack{}}
}

func (t *Tracker) gw(id string) *gwTrack {
	g := t.gws[id]
	if g == nil {
		g = &gwTrack{seen: map[uint64]struct{}{}, optional: map[uint64]struct{}{}}
		t.gws[id] = g
	}
	return g
}

// Observe records seq of gateway at now and reports whether it was
// already seen (a duplicate, to be skipped).
func (t *Tracker) Observe(gateway string, seq uint64, now time.Time) (dup bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.gw(gateway)
	if _, ok := g.seen[seq]; ok {
		return true
	}
	g.seen[seq] = struct{}{}
	if !g.started {
		g.started = true
		if seq > 0 {
			g.floor = seq - 1
		}
		g.high = seq
		g.stuckSince = now
	}
	if seq > g.high {
		if g.floor == g.high {
			g.stuckSince = now
		}
		g.high = seq
	}
	g.advance(now)
	if len(g.seen) > maxTracked {
		for s := range g.seen {
			if s+maxTracked/2 < g.floor {
				delete(g.seen, s)
			}
		}
	}
	return false
}

// Optional marks seq as a message that may never arrive (the death Will
// announced in a birth).
func (t *Tracker) Optional(gateway string, seq uint64, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.gw(gateway)
	g.optional[seq] = struct{}{}
	if g.started {
		g.advance(now)
	}
}

func (g *gwTrack) accounted(s uint64) bool {
	if _, ok := g.seen[s]; ok {
		return true
	}
	_, ok := g.optional[s]
	return ok
}

func (g *gwTrack) advance(now time.Time) {
	moved := false
	for g.floor < g.high && g.accounted(g.floor+1) {
		g.floor++
		delete(g.optional, g.floor)
		moved = true
	}
	if moved {
		g.stuckSince = now
	}
}

// Gaps returns the gaps that stayed open for the grace period at now.
// Each gap is returned once.
func (t *Tracker) Gaps(now time.Time) []Gap {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Gap
	ids := make([]string, 0, len(t.gws))
	for id := range t.gws {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		g := t.gws[id]
		if g.floor >= g.high || now.Sub(g.stuckSince) < t.grace {
			continue
		}
		for g.floor < g.high {
			from := g.floor + 1
			to := from
			for to+1 <= g.high && !g.accounted(to+1) {
				to++
			}
			out = append(out, Gap{Gateway: id, From: from, To: to})
			g.floor = to
			for g.floor < g.high && g.accounted(g.floor+1) {
				g.floor++
			}
		}
		g.stuckSince = now
	}
	return out
}

// Seen reports whether seq of gateway was observed.
func (t *Tracker) Seen(gateway string, seq uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.gws[gateway]
	if g == nil {
		return false
	}
	_, ok := g.seen[seq]
	return ok
}
