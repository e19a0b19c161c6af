package store

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Writes and reads for central instances that share one ingest queue
// (docs/scale.md): each instance receives part of every gateway's
// messages, so the gateways row is merged instead of replaced, the seqs
// each instance applied are recorded where the others can see them, and a
// resync request is claimed through the row before it is sent.

// greatest is the larger of two values in the dialect (PostgreSQL's
// GREATEST, SQLite's scalar max).
func (s *Store) greatest(a, b string) string {
	if s.pg {
		return "GREATEST(" + a + ", " + b + ")"
	}
	return "MAX(" + a + ", " + b + ")"
}

// MarkSeqs records that instance applied seqs of each gateway. Each
// instance writes its own rows (no lock waits between instances), in
// (gateway, block) order.
func (t *Tx) MarkSeqs(instance string, seqs map[string][]uint64) error {
	type key struct {
		gw    string
		block uint64
	}
	bits := map[key]uint64{}
	for gw, ss := range seqs {
		for _, s := range ss {
			bits[key{gw, s / 64}] |= 1 << (s % 64)
		}
	}
	keys := make([]key, 0, len(bits))
	for k := range bits {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].gw != keys[j].gw {
			return keys[i].gw < keys[j].gw
		}
		return keys[i].block < keys[j].block
	})
	for len(keys) > 0 {
		n := min(len(keys), 300)
		var q strings.Builder
		q.WriteString(`INSERT INTO ingest_seqs (gateway, block, instance, bits) VALUES `)
		args := make([]any, 0, 4*n)
		for i, k := range keys[:n] {
			if i > 0 {
				q.WriteString(",")
			}
			q.WriteString("(?,?,?,?)")
			args = append(args, k.gw, int64(k.block), instance, int64(bits[k]))
		}
		q.WriteString(` ON CONFLICT (gateway, block, instance) DO UPDATE SET bits = ingest_seqs.bits | excluded.bits`)
		if err := t.exec(q.String(), args...); err != nil {
			return fmt.Errorf("mark seqs: %w", err)
		}
		keys = keys[n:]
	}
	return nil
}

// StoredSeqs returns which seqs of gateway in from..to (inclusive) any
// instance applied, as MarkSeqs recorded them.
func (s *Store) StoredSeqs(ctx context.Context, gateway string, from, to uint64) (map[uint64]bool, error) {
	out := map[uint64]bool{}
	if to < from {
		return out, nil
	}
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT block, bits FROM ingest_seqs WHERE gateway = ? AND block >= ? AND block <= ?`),
		gateway, int64(from/64), int64(to/64))
	if err != nil {
		return nil, fmt.Errorf("store: stored seqs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var block, bits int64
		if err := rows.Scan(&block, &bits); err != nil {
			return nil, fmt.Errorf("store: stored seqs: %w", err)
		}
		for i := range uint64(64) {
			seq := uint64(block)*64 + i
			if uint64(bits)&(1<<i) != 0 && seq >= from && seq <= to {
				out[seq] = true
			}
		}
	}
	return out, rows.Err()
}

// MergeGateway writes g as one of several instances' views of the
// gateway: session, last seq, the times and resync_ms only move forward
// (GREATEST); online, state, signer and clock offset come from the newer
// view (higher session, then the later last seen); site, version, config
// hash, death seq and devices from the view with the latest birth; messages and gaps add this instance's increments dMessages
// and dGaps; the gateway is stale while the latest stale mark of any
// instance is later than the latest birth.
func (t *Tx) MergeGateway(g Gateway, dMessages, dGaps uint64) error {
	gr := t.s.greatest
	newer := `(excluded.session > gateways.session OR (excluded.session = gateways.session AND excluded.last_seen_ms >= gateways.last_seen_ms))`
	pick := func(col string) string {
		return col + " = CASE WHEN " + newer + " THEN excluded." + col + " ELSE gateways." + col + " END"
	}
	staleSince := gr("CASE WHEN gateways.stale = 1 THEN gateways.stale_since_ms ELSE 0 END", "CASE WHEN excluded.stale = 1 THEN excluded.stale_since_ms ELSE 0 END")
	isStale := "(" + staleSince + " > " + gr("gateways.last_birth_ms", "excluded.last_birth_ms") + ")"
	var set []string
	for _, c := range []string{"signer", "online", "clock_offset_ms", "state"} {
		set = append(set, pick(c))
	}
	// What a birth says comes from the latest birth: an instance that saw
	// later messages but not the birth must not blank it.
	for _, c := range []string{"site", "version", "config_hash", "death_seq", "devices"} {
		set = append(set, c+" = CASE WHEN excluded.last_birth_ms >= gateways.last_birth_ms THEN excluded."+c+" ELSE gateways."+c+" END")
	}
	for _, c := range []string{"session", "last_seq", "resync_ms", "last_seen_ms", "last_birth_ms", "last_death_ms"} {
		set = append(set, c+" = "+gr("gateways."+c, "excluded."+c))
	}
	set = append(set,
		"first_seen_ms = CASE WHEN gateways.first_seen_ms = 0 OR (excluded.first_seen_ms > 0 AND excluded.first_seen_ms < gateways.first_seen_ms) THEN excluded.first_seen_ms ELSE gateways.first_seen_ms END",
		"messages = gateways.messages + excluded.messages",
		"gaps = gateways.gaps + excluded.gaps",
		"stale = CASE WHEN "+isStale+" THEN 1 ELSE 0 END",
		"stale_since_ms = CASE WHEN "+isStale+" THEN "+staleSince+" ELSE 0 END",
		"stale_reason = CASE WHEN "+isStale+" THEN (CASE WHEN excluded.stale = 1 THEN excluded.stale_reason ELSE gateways.stale_reason END) ELSE '' END",
	)
	return t.exec(`INSERT INTO gateways (id, site, version, config_hash, signer, session, last_seq, death_seq, online, stale,
		stale_reason, stale_since_ms, resync_ms, first_seen_ms, last_seen_ms, last_birth_ms, last_death_ms, clock_offset_ms,
		gaps, messages, state, devices) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (id) DO UPDATE SET `+strings.Join(set, ", "),
		g.ID, g.Site, g.Version, g.ConfigHash, g.Signer, int64(g.Session), int64(g.LastSeq), int64(g.DeathSeq), b2i(g.Online), b2i(g.Stale),
		g.StaleReason, ms(g.StaleSince), ms(g.ResyncAt), ms(g.FirstSeen), ms(g.LastSeen), ms(g.LastBirth), ms(g.LastDeath), g.ClockOffsetMS,
		int64(dGaps), int64(dMessages), g.State, g.Devices)
}

// ClaimResync takes the right to send gateway a resync request at now:
// it is true (and resync_ms is set to now) when no instance asked within
// interval before now, false when another did. The claim is one
// conditional write, so of two instances asking at once one wins.
func (s *Store) ClaimResync(ctx context.Context, gateway string, now time.Time, interval time.Duration) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(`INSERT INTO gateways (id, resync_ms, first_seen_ms) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET resync_ms = excluded.resync_ms WHERE gateways.resync_ms <= ?`),
		gateway, ms(now), ms(now), ms(now.Add(-interval)))
	if err != nil {
		return false, fmt.Errorf("store: claim resync: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// PruneSeqs deletes the seq marks more than keep seqs below each
// gateway's last seq (no instance waits that far back) and returns how
// many rows went.
func (s *Store) PruneSeqs(ctx context.Context, keep uint64) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM ingest_seqs WHERE block * 64 + 64 + ? <
		(SELECT g.last_seq FROM gateways g WHERE g.id = ingest_seqs.gateway)`), int64(keep))
	if err != nil {
		return 0, fmt.Errorf("store: prune seq marks: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
