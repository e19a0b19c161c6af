package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/wardgate/wardgate/wire"
)

// Gateway is central's record of one gateway. Its JSON is part of the API
// (docs/central.md).
type Gateway struct {
	ID          string    `json:"id"`
	Site        string    `json:"site"`
	Version     string    `json:"version"`
	ConfigHash  string    `json:"config_hash"`
	Signer      string    `json:"signer"`
	Session     uint64    `json:"session"`
	LastSeq     uint64    `json:"last_seq"`
	DeathSeq    uint64    `json:"death_seq"`
	Online      bool      `json:"online"`
	Stale       bool      `json:"stale"`
	StaleReason string    `json:"stale_reason,omitempty"`
	StaleSince  time.Time `json:"stale_since,omitzero"`
	ResyncAt    time.Time `json:"resync_requested,omitzero"`
	FirstSeen   time.Time `json:"first_seen,omitzero"`
	LastSeen    time.Time `json:"last_seen,omitzero"`
	LastBirth   time.Time `json:"last_birth,omitzero"`
	LastDeath   time.Time `json:"last_death,omitzero"`
	// ClockOffsetMS is receive time minus message time of the latest live
	// message, in milliseconds (positive: the gateway's clock is behind,
	// or delivery took that long).
	ClockOffsetMS int64  `json:"clock_offset_ms"`
	Gaps          uint64 `json:"gaps"`
	Messages      uint64 `json:"messages"`
	// State is the latest status state: ok, degraded or alarm.
	State   string `json:"state"`
	Devices int    `json:"devices"`
	// ActiveAlarms is filled by reads.
	ActiveAlarms int `json:"active_alarms"`
}

// Event is one stored event (an event message, or a birth, death or
// command reply recorded as gateway.birth, gateway.death, command.reply).
type Event struct {
	ID         int64             `json:"id"`
	Gateway    string            `json:"gateway"`
	Session    uint64            `json:"session"`
	Seq        uint64            `json:"seq"`
	Time       time.Time         `json:"time"`
	Received   time.Time         `json:"received"`
	Kind       string            `json:"kind"`
	Severity   string            `json:"severity"`
	Device     string            `json:"device,omitempty"`
	Identity   string            `json:"identity,omitempty"`
	Historical bool              `json:"historical"`
	Attrs      map[string]string `json:"attrs"`
}

// Session is a vendor grant and its session, built from vendor.* events.
type Session struct {
	Gateway   string    `json:"gateway"`
	Grant     string    `json:"grant"`
	SessionID string    `json:"session,omitempty"`
	Vendor    string    `json:"vendor"`
	Device    string    `json:"device"`
	Ports     string    `json:"ports,omitempty"`
	State     string    `json:"state"` // requested, approved, live, ended, denied, expired, revoked
	Approver  string    `json:"approver,omitempty"`
	Requested time.Time `json:"requested,omitzero"`
	Approved  time.Time `json:"approved,omitzero"`
	Started   time.Time `json:"started,omitzero"`
	Ended     time.Time `json:"ended,omitzero"`
	Updated   time.Time `json:"updated"`
}

// Alarm is a gateway condition raised by a status message or an alarm
// event.
type Alarm struct {
	Gateway string    `json:"gateway"`
	Kind    string    `json:"kind"`
	Message string    `json:"message,omitempty"`
	Active  bool      `json:"active"`
	Raised  time.Time `json:"raised"`
	Cleared time.Time `json:"cleared,omitzero"`
}

// Finding kinds.
const (
	FindingVerifyFailed  = "verify_failed"  // signature or chain did not verify
	FindingTopicMismatch = "topic_mismatch" // a valid message on another gateway's topic
	FindingBodyInvalid   = "body_invalid"   // a signed message whose body does not decode
	FindingGap           = "gap"            // sequence numbers that never arrived
)

// Finding states and the triage actions that lead to them.
const (
	FindingOpen         = "open"
	FindingAcknowledged = "acknowledged"
	FindingSuppressed   = "suppressed"
	FindingResolved     = "resolved"
)

// Finding is a security finding: a message central could not accept, or
// a gap. Raw payloads are never stored (they may carry anything).
type Finding struct {
	ID        int64     `json:"id"`
	Time      time.Time `json:"time"`
	Gateway   string    `json:"gateway,omitempty"`
	Topic     string    `json:"topic,omitempty"`
	Kind      string    `json:"kind"`
	Detail    string    `json:"detail"`
	Signer    string    `json:"signer,omitempty"`
	State     string    `json:"state"`
	TriagedBy string    `json:"triaged_by,omitempty"`
	TriagedAt time.Time `json:"triaged_at,omitzero"`
	Note      string    `json:"note,omitempty"`
}

// Tx is one write transaction, see Apply.
type Tx struct {
	s  *Store
	tx *sql.Tx
	// EventsInserted counts new event rows (duplicates are skipped).
	EventsInserted int
}

func (t *Tx) exec(q string, args ...any) error {
	_, err := t.tx.Exec(t.s.rebind(q), args...)
	return err
}

// Apply runs fn in one transaction and commits it when fn returns nil.
func (s *Store) Apply(ctx context.Context, fn func(*Tx) error) (int, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("store: begin: %w", err)
	}
	t := &Tx{s: s, tx: tx}
	if err := fn(t); err != nil {
		tx.Rollback()
		return 0, fmt.Errorf("store: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("store: commit: %w", err)
	}
	return t.EventsInserted, nil
}

// PutGateway writes g (insert or replace).
func (t *Tx) PutGateway(g Gateway) error { return t.PutGateways([]Gateway{g}) }

const gatewayInsert = `INSERT INTO gateways (id, site, version, config_hash, signer, session, last_seq, death_seq, online, stale,
	stale_reason, stale_since_ms, resync_ms, first_seen_ms, last_seen_ms, last_birth_ms, last_death_ms, clock_offset_ms,
	gaps, messages, state, devices) VALUES `

const gatewayUpsert = ` ON CONFLICT (id) DO UPDATE SET site=excluded.site, version=excluded.version, config_hash=excluded.config_hash,
	signer=excluded.signer, session=excluded.session, last_seq=excluded.last_seq, death_seq=excluded.death_seq,
	online=excluded.online, stale=excluded.stale, stale_reason=excluded.stale_reason, stale_since_ms=excluded.stale_since_ms,
	resync_ms=excluded.resync_ms, first_seen_ms=excluded.first_seen_ms, last_seen_ms=excluded.last_seen_ms,
	last_birth_ms=excluded.last_birth_ms, last_death_ms=excluded.last_death_ms, clock_offset_ms=excluded.clock_offset_ms,
	gaps=excluded.gaps, messages=excluded.messages, state=excluded.state, devices=excluded.devices`

// gatewaysPerInsert bounds the rows of one multi-row gateway upsert (22
// parameters each).
const gatewaysPerInsert = 100

// PutGateways writes gs (insert or replace) in multi-row statements. The
// ids must be distinct (a statement cannot upsert one row twice).
func (t *Tx) PutGateways(gs []Gateway) error {
	for len(gs) > 0 {
		n := min(len(gs), gatewaysPerInsert)
		var q strings.Builder
		q.WriteString(gatewayInsert)
		args := make([]any, 0, n*22)
		for i, g := range gs[:n] {
			if i > 0 {
				q.WriteString(",")
			}
			q.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
			args = append(args, g.ID, g.Site, g.Version, g.ConfigHash, g.Signer, int64(g.Session), int64(g.LastSeq), int64(g.DeathSeq), b2i(g.Online), b2i(g.Stale),
				g.StaleReason, ms(g.StaleSince), ms(g.ResyncAt), ms(g.FirstSeen), ms(g.LastSeen), ms(g.LastBirth), ms(g.LastDeath), g.ClockOffsetMS,
				int64(g.Gaps), int64(g.Messages), g.State, g.Devices)
		}
		q.WriteString(gatewayUpsert)
		if err := t.exec(q.String(), args...); err != nil {
			return err
		}
		gs = gs[n:]
	}
	return nil
}

// AddEvent stores e unless an event with the same gateway and seq exists.
func (t *Tx) AddEvent(e Event) error { return t.AddEvents([]Event{e}) }

// eventsPerInsert bounds the rows of one multi-row INSERT (11 parameters
// each, well below both databases' parameter limits).
const eventsPerInsert = 200

// hourMS is the width of an event_hours bucket.
const hourMS = 3600000

// AddEvents stores es in multi-row statements, skipping events whose
// gateway and seq are already stored, and counts the new ones in
// event_hours.
func (t *Tx) AddEvents(es []Event) error {
	hours := map[int64]int64{}
	for len(es) > 0 {
		n := min(len(es), eventsPerInsert)
		var q strings.Builder
		q.WriteString(`INSERT INTO events (gateway, session, seq, time_ms, received_ms, kind, severity, device, identity, historical, attrs) VALUES `)
		args := make([]any, 0, n*11)
		for i, e := range es[:n] {
			if i > 0 {
				q.WriteString(",")
			}
			q.WriteString("(?,?,?,?,?,?,?,?,?,?,?)")
			if e.Attrs == nil {
				e.Attrs = map[string]string{}
			}
			args = append(args, e.Gateway, int64(e.Session), int64(e.Seq), ms(e.Time), ms(e.Received), e.Kind, e.Severity, e.Device,
				e.Identity, b2i(e.Historical), js(e.Attrs))
		}
		// RETURNING names only the rows inserted (not the skipped
		// duplicates), on both databases.
		q.WriteString(" ON CONFLICT (gateway, seq) DO NOTHING RETURNING time_ms")
		rows, err := t.tx.Query(t.s.rebind(q.String()), args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var at int64
			if err := rows.Scan(&at); err != nil {
				rows.Close()
				return err
			}
			hours[at/hourMS]++
			t.EventsInserted++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		es = es[n:]
	}
	return t.countHours(hours)
}

// countHours adds n[hour] to event_hours.
func (t *Tx) countHours(n map[int64]int64) error {
	var q strings.Builder
	var args []any
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		q.WriteString(` ON CONFLICT (hour) DO UPDATE SET n = event_hours.n + excluded.n`)
		err := t.exec(q.String(), args...)
		q.Reset()
		args = args[:0]
		return err
	}
	for h, k := range n {
		if len(args) == 0 {
			q.WriteString(`INSERT INTO event_hours (hour, n) VALUES (?,?)`)
		} else {
			q.WriteString(",(?,?)")
		}
		args = append(args, h, k)
		if len(args) >= 2000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// PutInventory replaces the devices, accounts and exceptions of gateway.
func (t *Tx) PutInventory(gateway string, inv wire.Inventory, at time.Time) error {
	for _, q := range []string{`DELETE FROM devices WHERE gateway = ?`, `DELETE FROM accounts WHERE gateway = ?`, `DELETE FROM exceptions WHERE gateway = ?`} {
		if err := t.exec(q, gateway); err != nil {
			return err
		}
	}
	for _, d := range inv.Devices {
		ports, appr := d.VendorPorts, d.Approval
		if ports == nil {
			ports = []int{}
		}
		if appr == nil {
			appr = []string{}
		}
		if err := t.exec(`INSERT INTO devices (gateway, id, kind, manufacturer, model, serial, firmware, owner, location, link, vendor_org, vendor_ports, approval, updated_ms)
			VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (gateway, id) DO NOTHING`,
			gateway, d.ID, d.Kind, d.Manufacturer, d.Model, d.Serial, d.Firmware, d.Owner, d.Location, d.Link, d.VendorOrg, js(ports), js(appr), ms(at)); err != nil {
			return err
		}
		for _, a := range d.Accounts {
			if err := t.exec(`INSERT INTO accounts (gateway, device, id, type, owner, vendor, rotate_every_s, last_rotated_ms) VALUES (?,?,?,?,?,?,?,?)
				ON CONFLICT (gateway, device, id) DO NOTHING`,
				gateway, d.ID, a.ID, a.Type, a.Owner, a.Vendor, int64(a.RotateEvery/time.Second), ms(a.LastRotated)); err != nil {
				return err
			}
		}
		for _, e := range d.Exceptions {
			comp := e.Compensating
			if comp == nil {
				comp = []string{}
			}
			if err := t.exec(`INSERT INTO exceptions (gateway, device, id, control, reason, compensating, approved_by, owner, expires_ms) VALUES (?,?,?,?,?,?,?,?,?)
				ON CONFLICT (gateway, device, id) DO NOTHING`,
				gateway, d.ID, e.ID, e.Control, e.Reason, js(comp), e.ApprovedBy, d.Owner, ms(e.Expires)); err != nil {
				return err
			}
		}
	}
	return nil
}

// PutSession writes s (insert or replace).
func (t *Tx) PutSession(s Session) error {
	return t.exec(`INSERT INTO sessions (gateway, grant_id, session_id, vendor, device, ports, state, approver, requested_ms, approved_ms, started_ms, ended_ms, updated_ms)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (gateway, grant_id) DO UPDATE SET session_id=excluded.session_id, vendor=excluded.vendor,
		device=excluded.device, ports=excluded.ports, state=excluded.state, approver=excluded.approver, requested_ms=excluded.requested_ms,
		approved_ms=excluded.approved_ms, started_ms=excluded.started_ms, ended_ms=excluded.ended_ms, updated_ms=excluded.updated_ms`,
		s.Gateway, s.Grant, s.SessionID, s.Vendor, s.Device, s.Ports, s.State, s.Approver, ms(s.Requested), ms(s.Approved), ms(s.Started), ms(s.Ended), ms(s.Updated))
}

// Session reads one session inside the transaction; ErrNotFound when absent.
func (t *Tx) Session(gateway, grant string) (Session, error) {
	rows, err := t.tx.Query(t.s.rebind(sessionCols+` WHERE gateway = ? AND grant_id = ?`), gateway, grant)
	if err != nil {
		return Session{}, err
	}
	defer rows.Close()
	if !rows.Next() {
		return Session{}, ErrNotFound
	}
	return scanSession(rows)
}

// SetAlarms makes exactly kinds (with messages) the active alarms of
// gateway from the status message at at: new ones are raised, missing ones
// cleared.
func (t *Tx) SetAlarms(gateway string, kinds map[string]string, at time.Time) error {
	if err := t.exec(`UPDATE alarms SET active = 0, cleared_ms = ? WHERE gateway = ? AND active = 1`, ms(at), gateway); err != nil {
		return err
	}
	for k, m := range kinds {
		if err := t.RaiseAlarm(gateway, k, m, at); err != nil {
			return err
		}
	}
	return nil
}

// RaiseAlarm raises (or keeps raised) one alarm.
func (t *Tx) RaiseAlarm(gateway, kind, msg string, at time.Time) error {
	return t.exec(`INSERT INTO alarms (gateway, kind, message, active, raised_ms, cleared_ms) VALUES (?,?,?,1,?,0)
		ON CONFLICT (gateway, kind) DO UPDATE SET message = excluded.message, active = 1, cleared_ms = 0,
		raised_ms = CASE WHEN alarms.active = 1 THEN alarms.raised_ms ELSE excluded.raised_ms END`, gateway, kind, msg, ms(at))
}

// AddFinding stores a new open finding.
func (t *Tx) AddFinding(f Finding) error {
	return t.exec(`INSERT INTO findings (time_ms, gateway, topic, kind, detail, signer, state) VALUES (?,?,?,?,?,?,'open')`,
		ms(f.Time), f.Gateway, f.Topic, f.Kind, f.Detail, f.Signer)
}
