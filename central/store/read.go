package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

type scanner interface{ Scan(...any) error }

const gatewayCols = `SELECT id, site, version, config_hash, signer, session, last_seq, death_seq, online, stale, stale_reason,
	stale_since_ms, resync_ms, first_seen_ms, last_seen_ms, last_birth_ms, last_death_ms, clock_offset_ms, gaps, messages, state, devices,
	(SELECT COUNT(*) FROM alarms a WHERE a.gateway = gateways.id AND a.active = 1) FROM gateways`

func scanGateway(r scanner) (Gateway, error) {
	var g Gateway
	var session, last, death, gaps, msgs int64
	var online, stale int
	var ss, rs, fs, ls, lb, ld int64
	err := r.Scan(&g.ID, &g.Site, &g.Version, &g.ConfigHash, &g.Signer, &session, &last, &death, &online, &stale, &g.StaleReason,
		&ss, &rs, &fs, &ls, &lb, &ld, &g.ClockOffsetMS, &gaps, &msgs, &g.State, &g.Devices, &g.ActiveAlarms)
	g.Session, g.LastSeq, g.DeathSeq, g.Gaps, g.Messages = uint64(session), uint64(last), uint64(death), uint64(gaps), uint64(msgs)
	g.Online, g.Stale = online == 1, stale == 1
	g.StaleSince, g.ResyncAt, g.FirstSeen, g.LastSeen, g.LastBirth, g.LastDeath = tm(ss), tm(rs), tm(fs), tm(ls), tm(lb), tm(ld)
	return g, err
}

// Gateways returns every gateway, by id.
func (s *Store) Gateways(ctx context.Context) ([]Gateway, error) {
	rows, err := s.db.QueryContext(ctx, gatewayCols+` ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: gateways: %w", err)
	}
	defer rows.Close()
	out := []Gateway{}
	for rows.Next() {
		g, err := scanGateway(rows)
		if err != nil {
			return nil, fmt.Errorf("store: gateways: %w", err)
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// Gateway returns one gateway or ErrNotFound.
func (s *Store) Gateway(ctx context.Context, id string) (Gateway, error) {
	g, err := scanGateway(s.db.QueryRowContext(ctx, s.rebind(gatewayCols+` WHERE id = ?`), id))
	if err == sql.ErrNoRows {
		return g, ErrNotFound
	}
	return g, err
}

// Device is a device with its accounts and exceptions.
type Device struct {
	Gateway      string      `json:"gateway"`
	ID           string      `json:"id"`
	Kind         string      `json:"kind"`
	Manufacturer string      `json:"manufacturer"`
	Model        string      `json:"model"`
	Serial       string      `json:"serial"`
	Firmware     string      `json:"firmware"`
	Owner        string      `json:"owner"`
	Location     string      `json:"location"`
	Link         string      `json:"link"`
	VendorOrg    string      `json:"vendor,omitempty"`
	VendorPorts  []int       `json:"vendor_ports"`
	Approval     []string    `json:"approval"`
	Updated      time.Time   `json:"updated"`
	Accounts     []Account   `json:"accounts"`
	Exceptions   []Exception `json:"exceptions"`
}

// Account is a supporting account (never its secret).
type Account struct {
	Gateway     string    `json:"gateway"`
	Device      string    `json:"device"`
	ID          string    `json:"id"`
	Type        string    `json:"type"`
	Owner       string    `json:"owner"`
	Vendor      string    `json:"vendor,omitempty"`
	RotateEvery int64     `json:"rotate_every_s"`
	LastRotated time.Time `json:"last_rotated"`
}

// Exception is a risk exception.
type Exception struct {
	Gateway      string    `json:"gateway"`
	Device       string    `json:"device"`
	ID           string    `json:"id"`
	Control      string    `json:"control"`
	Reason       string    `json:"reason"`
	Compensating []string  `json:"compensating"`
	ApprovedBy   string    `json:"approved_by"`
	Owner        string    `json:"owner"`
	Expires      time.Time `json:"expires"`
}

// Devices returns the devices of gateway ("" for all), with accounts and
// exceptions.
func (s *Store) Devices(ctx context.Context, gateway string) ([]Device, error) {
	where, args := "", []any{}
	if gateway != "" {
		where, args = " WHERE gateway = ?", []any{gateway}
	}
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT gateway, id, kind, manufacturer, model, serial, firmware, owner, location, link,
		vendor_org, vendor_ports, approval, updated_ms FROM devices`+where+` ORDER BY gateway, id`), args...)
	if err != nil {
		return nil, fmt.Errorf("store: devices: %w", err)
	}
	out := []Device{}
	idx := map[[2]string]int{}
	for rows.Next() {
		var d Device
		var ports, appr string
		var up int64
		if err := rows.Scan(&d.Gateway, &d.ID, &d.Kind, &d.Manufacturer, &d.Model, &d.Serial, &d.Firmware, &d.Owner, &d.Location, &d.Link,
			&d.VendorOrg, &ports, &appr, &up); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: devices: %w", err)
		}
		_ = json.Unmarshal([]byte(ports), &d.VendorPorts)
		_ = json.Unmarshal([]byte(appr), &d.Approval)
		d.Updated, d.Accounts, d.Exceptions = tm(up), []Account{}, []Exception{}
		idx[[2]string{d.Gateway, d.ID}] = len(out)
		out = append(out, d)
	}
	rows.Close()
	accts, err := s.accounts(ctx, where, args)
	if err != nil {
		return nil, err
	}
	for _, a := range accts {
		if i, ok := idx[[2]string{a.Gateway, a.Device}]; ok {
			out[i].Accounts = append(out[i].Accounts, a)
		}
	}
	exs, err := s.exceptions(ctx, where, args)
	if err != nil {
		return nil, err
	}
	for _, e := range exs {
		if i, ok := idx[[2]string{e.Gateway, e.Device}]; ok {
			out[i].Exceptions = append(out[i].Exceptions, e)
		}
	}
	return out, nil
}

func (s *Store) accounts(ctx context.Context, where string, args []any) ([]Account, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT gateway, device, id, type, owner, vendor, rotate_every_s, last_rotated_ms FROM accounts`+where+` ORDER BY gateway, device, id`), args...)
	if err != nil {
		return nil, fmt.Errorf("store: accounts: %w", err)
	}
	defer rows.Close()
	var out []Account
	for rows.Next() {
		var a Account
		var lr int64
		if err := rows.Scan(&a.Gateway, &a.Device, &a.ID, &a.Type, &a.Owner, &a.Vendor, &a.RotateEvery, &lr); err != nil {
			return nil, fmt.Errorf("store: accounts: %w", err)
		}
		a.LastRotated = tm(lr)
		out = append(out, a)
	}
	return out, rows.Err()
}

func (s *Store) exceptions(ctx context.Context, where string, args []any) ([]Exception, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT gateway, device, id, control, reason, compensating, approved_by, owner, expires_ms FROM exceptions`+where+` ORDER BY gateway, device, id`), args...)
	if err != nil {
		return nil, fmt.Errorf("store: exceptions: %w", err)
	}
	defer rows.Close()
	var out []Exception
	for rows.Next() {
		var e Exception
		var comp string
		var ex int64
		if err := rows.Scan(&e.Gateway, &e.Device, &e.ID, &e.Control, &e.Reason, &comp, &e.ApprovedBy, &e.Owner, &ex); err != nil {
			return nil, fmt.Errorf("store: exceptions: %w", err)
		}
		_ = json.Unmarshal([]byte(comp), &e.Compensating)
		e.Expires = tm(ex)
		out = append(out, e)
	}
	return out, rows.Err()
}

// OverdueRotation is an account whose rotation is overdue.
type OverdueRotation struct {
	Account
	Due         time.Time `json:"due"`
	OverdueDays int       `json:"overdue_days"`
}

// ExpiringException is an exception expiring within the warning window or
// already expired (DaysLeft <= 0).
type ExpiringException struct {
	Exception
	DaysLeft int  `json:"days_left"`
	Expired  bool `json:"expired"`
}

// OwnerReport is what one accountable owner (or approver) has to act on.
type OwnerReport struct {
	Owner      string              `json:"owner"`
	Overdue    []OverdueRotation   `json:"overdue_rotations"`
	Exceptions []ExpiringException `json:"expiring_exceptions"`
}

// Accountability groups overdue rotations (by the account's owner) and
// exceptions expiring within warn (by the device's owner and, when
// different, the approver) at now.
func (s *Store) Accountability(ctx context.Context, now time.Time, warn time.Duration) ([]OwnerReport, error) {
	// Only the rows that are overdue or expiring are read; the checks
	// below decide in Go as before (the SQL bounds are inclusive at
	// millisecond precision, so they never drop a row the checks keep).
	accts, err := s.accounts(ctx, ` WHERE rotate_every_s > 0 AND last_rotated_ms + rotate_every_s * 1000 <= ?`, []any{ms(now)})
	if err != nil {
		return nil, err
	}
	exs, err := s.exceptions(ctx, ` WHERE expires_ms <= ?`, []any{ms(now.Add(warn))})
	if err != nil {
		return nil, err
	}
	by := map[string]*OwnerReport{}
	get := func(o string) *OwnerReport {
		r := by[o]
		if r == nil {
			r = &OwnerReport{Owner: o, Overdue: []OverdueRotation{}, Exceptions: []ExpiringException{}}
			by[o] = r
		}
		return r
	}
	for _, a := range accts {
		if a.RotateEvery <= 0 {
			continue
		}
		due := a.LastRotated.Add(time.Duration(a.RotateEvery) * time.Second)
		if due.Before(now) {
			r := get(a.Owner)
			r.Overdue = append(r.Overdue, OverdueRotation{Account: a, Due: due, OverdueDays: int(now.Sub(due).Hours() / 24)})
		}
	}
	for _, e := range exs {
		left := e.Expires.Sub(now)
		if left > warn {
			continue
		}
		x := ExpiringException{Exception: e, DaysLeft: int(left.Hours() / 24), Expired: left <= 0}
		get(e.Owner).Exceptions = append(get(e.Owner).Exceptions, x)
		if e.ApprovedBy != "" && e.ApprovedBy != e.Owner {
			get(e.ApprovedBy).Exceptions = append(get(e.ApprovedBy).Exceptions, x)
		}
	}
	out := make([]OwnerReport, 0, len(by))
	for _, r := range by {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Owner < out[j].Owner })
	return out, nil
}

const sessionCols = `SELECT gateway, grant_id, session_id, vendor, device, ports, state, approver, requested_ms, approved_ms, started_ms, ended_ms, updated_ms FROM sessions`

func scanSession(r scanner) (Session, error) {
	var x Session
	var rq, ap, st, en, up int64
	err := r.Scan(&x.Gateway, &x.Grant, &x.SessionID, &x.Vendor, &x.Device, &x.Ports, &x.State, &x.Approver, &rq, &ap, &st, &en, &up)
	x.Requested, x.Approved, x.Started, x.Ended, x.Updated = tm(rq), tm(ap), tm(st), tm(en), tm(up)
	return x, err
}

// Sessions returns vendor requests and sessions in states (all when
// empty), newest first, at most limit (0: 1000).
func (s *Store) Sessions(ctx context.Context, states []string, limit int) ([]Session, error) {
	if limit <= 0 {
		limit = 1000
	}
	q, args := sessionCols, []any{}
	if len(states) > 0 {
		q += ` WHERE state IN (?` + strings.Repeat(",?", len(states)-1) + `)`
		for _, st := range states {
			args = append(args, st)
		}
	}
	q += fmt.Sprintf(` ORDER BY updated_ms DESC LIMIT %d`, limit)
	rows, err := s.db.QueryContext(ctx, s.rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("store: sessions: %w", err)
	}
	defer rows.Close()
	out := []Session{}
	for rows.Next() {
		x, err := scanSession(rows)
		if err != nil {
			return nil, fmt.Errorf("store: sessions: %w", err)
		}
		out = append(out, x)
	}
	return out, rows.Err()
}

// EventQuery filters events; zero fields do not filter. Kind "vendor.*"
// matches a prefix.
type EventQuery struct {
	Since, Until                    time.Time
	Kind, Gateway, Device, Identity string
	After                           int64 // cursor: events with id > After
	Limit                           int   // 0: no limit (stream everything)
}

// Events calls fn for each matching event in id order, reading pages of
// 1000 so that any number of rows streams in bounded memory. It returns
// the id of the last event passed to fn (the next cursor).
func (s *Store) Events(ctx context.Context, q EventQuery, fn func(Event) error) (int64, error) {
	cursor := q.After
	left := q.Limit
	for {
		page := 1000
		if q.Limit > 0 && left < page {
			page = left
		}
		if page == 0 {
			return cursor, nil
		}
		where := []string{"id > ?"}
		args := []any{cursor}
		if !q.Since.IsZero() {
			where, args = append(where, "time_ms >= ?"), append(args, ms(q.Since))
		}
		if !q.Until.IsZero() {
			where, args = append(where, "time_ms < ?"), append(args, ms(q.Until))
		}
		if k, ok := strings.CutSuffix(q.Kind, "*"); ok {
			where, args = append(where, "kind LIKE ?"), append(args, strings.NewReplacer("%", "", "_", "").Replace(k)+"%")
		} else if q.Kind != "" {
			where, args = append(where, "kind = ?"), append(args, q.Kind)
		}
		for col, v := range map[string]string{"gateway": q.Gateway, "device": q.Device, "identity": q.Identity} {
			if v != "" {
				where, args = append(where, col+" = ?"), append(args, v)
			}
		}
		rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT id, gateway, session, seq, time_ms, received_ms, kind, severity, device, identity, historical, attrs
			FROM events WHERE `+strings.Join(where, " AND ")+fmt.Sprintf(` ORDER BY id LIMIT %d`, page)), args...)
		if err != nil {
			return cursor, fmt.Errorf("store: events: %w", err)
		}
		var batch []Event
		for rows.Next() {
			var e Event
			var session, seq, t, r int64
			var hist int
			var attrs string
			if err := rows.Scan(&e.ID, &e.Gateway, &session, &seq, &t, &r, &e.Kind, &e.Severity, &e.Device, &e.Identity, &hist, &attrs); err != nil {
				rows.Close()
				return cursor, fmt.Errorf("store: events: %w", err)
			}
			e.Session, e.Seq, e.Time, e.Received, e.Historical = uint64(session), uint64(seq), tm(t), tm(r), hist == 1
			_ = json.Unmarshal([]byte(attrs), &e.Attrs)
			batch = append(batch, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return cursor, fmt.Errorf("store: events: %w", err)
		}
		for _, e := range batch {
			if err := fn(e); err != nil {
				return cursor, err
			}
			cursor = e.ID
		}
		left -= len(batch)
		if len(batch) < page {
			return cursor, nil
		}
	}
}

// Alarms returns alarms, active ones only when active is true.
func (s *Store) Alarms(ctx context.Context, active bool) ([]Alarm, error) {
	q := `SELECT gateway, kind, message, active, raised_ms, cleared_ms FROM alarms`
	if active {
		q += ` WHERE active = 1`
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY raised_ms DESC, gateway, kind`)
	if err != nil {
		return nil, fmt.Errorf("store: alarms: %w", err)
	}
	defer rows.Close()
	out := []Alarm{}
	for rows.Next() {
		var a Alarm
		var act int
		var r, c int64
		if err := rows.Scan(&a.Gateway, &a.Kind, &a.Message, &act, &r, &c); err != nil {
			return nil, fmt.Errorf("store: alarms: %w", err)
		}
		a.Active, a.Raised, a.Cleared = act == 1, tm(r), tm(c)
		out = append(out, a)
	}
	return out, rows.Err()
}

// Findings returns findings in state ("" for all), newest first, at most
// limit (0: 1000).
func (s *Store) Findings(ctx context.Context, state string, limit int) ([]Finding, error) {
	if limit <= 0 {
		limit = 1000
	}
	q, args := `SELECT id, time_ms, gateway, topic, kind, detail, signer, state, triaged_by, triaged_ms, note FROM findings`, []any{}
	if state != "" {
		q, args = q+` WHERE state = ?`, append(args, state)
	}
	rows, err := s.db.QueryContext(ctx, s.rebind(q+fmt.Sprintf(` ORDER BY id DESC LIMIT %d`, limit)), args...)
	if err != nil {
		return nil, fmt.Errorf("store: findings: %w", err)
	}
	defer rows.Close()
	out := []Finding{}
	for rows.Next() {
		var f Finding
		var t, tr int64
		if err := rows.Scan(&f.ID, &t, &f.Gateway, &f.Topic, &f.Kind, &f.Detail, &f.Signer, &f.State, &f.TriagedBy, &tr, &f.Note); err != nil {
			return nil, fmt.Errorf("store: findings: %w", err)
		}
		f.Time, f.TriagedAt = tm(t), tm(tr)
		out = append(out, f)
	}
	return out, rows.Err()
}

// Triage actions and the state each leads to.
var triageStates = map[string]string{"acknowledge": FindingAcknowledged, "suppress": FindingSuppressed, "resolve": FindingResolved}

// Triage applies action (acknowledge, suppress, resolve) to finding id on
// behalf of who at at, and returns the updated finding.
func (s *Store) Triage(ctx context.Context, id int64, action, who, note string, at time.Time) (Finding, error) {
	st, ok := triageStates[action]
	if !ok {
		return Finding{}, fmt.Errorf("store: %q is not a triage action; use acknowledge, suppress or resolve", action)
	}
	res, err := s.db.ExecContext(ctx, s.rebind(`UPDATE findings SET state = ?, triaged_by = ?, triaged_ms = ?, note = ? WHERE id = ?`), st, who, ms(at), note, id)
	if err != nil {
		return Finding{}, fmt.Errorf("store: triage: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Finding{}, ErrNotFound
	}
	var f Finding
	var t, tr int64
	err = s.db.QueryRowContext(ctx, s.rebind(`SELECT id, time_ms, gateway, topic, kind, detail, signer, state, triaged_by, triaged_ms, note FROM findings WHERE id = ?`), id).
		Scan(&f.ID, &t, &f.Gateway, &f.Topic, &f.Kind, &f.Detail, &f.Signer, &f.State, &f.TriagedBy, &tr, &f.Note)
	f.Time, f.TriagedAt = tm(t), tm(tr)
	return f, err
}

// Retention says how long rows are kept; zero keeps them.
type Retention struct{ Events, Findings, Sessions time.Duration }

// Prune deletes events, closed findings and ended sessions older than the
// retention at now and returns how many rows went.
func (s *Store) Prune(ctx context.Context, now time.Time, r Retention) (int64, error) {
	var total int64
	run := func(d time.Duration, q string) error {
		if d <= 0 {
			return nil
		}
		res, err := s.db.ExecContext(ctx, s.rebind(q), ms(now.Add(-d)))
		if err != nil {
			return fmt.Errorf("store: prune: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
		return nil
	}
	if r.Events > 0 {
		n, err := s.pruneEvents(ctx, ms(now.Add(-r.Events)))
		total += n
		if err != nil {
			return total, fmt.Errorf("store: prune: %w", err)
		}
	}
	if err := run(r.Findings, `DELETE FROM findings WHERE time_ms < ? AND state <> 'open'`); err != nil {
		return total, err
	}
	if err := run(r.Sessions, `DELETE FROM sessions WHERE updated_ms < ? AND state NOT IN ('requested', 'approved', 'live')`); err != nil {
		return total, err
	}
	return total, nil
}

// pruneEvents deletes the events before cut and keeps event_hours in step
// in the same transaction: the hours wholly before cut go, the cut's own
// hour is counted again. On PostgreSQL that hour's row is locked before
// the count, so that an ingest batch writing into it (a gateway's old
// events arriving late) either committed before the count, which then
// includes it, or adds its own events after it.
func (s *Store) pruneEvents(ctx context.Context, cut int64) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	h := cut / hourMS
	if s.pg {
		if _, err := tx.ExecContext(ctx, `SELECT n FROM event_hours WHERE hour = $1 FOR UPDATE`, h); err != nil {
			return 0, err
		}
	}
	res, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM events WHERE time_ms < ?`), cut)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	if _, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM event_hours WHERE hour < ?`), h); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, s.rebind(`UPDATE event_hours SET n = (SELECT COUNT(*) FROM events WHERE time_ms >= ? AND time_ms < ?) WHERE hour = ?`),
		h*hourMS, (h+1)*hourMS, h); err != nil {
		return 0, err
	}
	return n, tx.Commit()
}

// Count is a label and a number, for charts.
type Count struct {
	Label string `json:"label"`
	N     int64  `json:"n"`
}

// EventsPerHour counts events by hour from since (message time). Whole
// hours come from event_hours; a partial first hour is counted from the
// events themselves.
func (s *Store) EventsPerHour(ctx context.Context, since time.Time) ([]Count, error) {
	from := ms(since)
	first := (from + hourMS - 1) / hourMS // the first whole hour
	var out []Count
	label := func(h int64) string { return time.UnixMilli(h * hourMS).UTC().Format("15:04") }
	if from%hourMS != 0 {
		var n int64
		if err := s.db.QueryRowContext(ctx, s.rebind(`SELECT COUNT(*) FROM events WHERE time_ms >= ? AND time_ms < ?`), from, first*hourMS).Scan(&n); err != nil {
			return nil, fmt.Errorf("store: events per hour: %w", err)
		}
		if n > 0 {
			out = append(out, Count{Label: label(first - 1), N: n})
		}
	}
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT hour, n FROM event_hours WHERE hour >= ? AND n > 0 ORDER BY hour`), first)
	if err != nil {
		return nil, fmt.Errorf("store: events per hour: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var h, n int64
		if err := rows.Scan(&h, &n); err != nil {
			return nil, err
		}
		out = append(out, Count{Label: label(h), N: n})
	}
	return out, rows.Err()
}

// SessionsPerVendor counts grants by vendor identity.
func (s *Store) SessionsPerVendor(ctx context.Context) ([]Count, error) {
	return s.counts(ctx, `SELECT vendor, COUNT(*) FROM sessions GROUP BY vendor ORDER BY 2 DESC, 1`)
}

func (s *Store) counts(ctx context.Context, q string) ([]Count, error) {
	rows, err := s.db.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("store: counts: %w", err)
	}
	defer rows.Close()
	var out []Count
	for rows.Next() {
		var c Count
		if err := rows.Scan(&c.Label, &c.N); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Totals are row counts for /metrics.
type Totals struct {
	Gateways, Online, Stale, Events, OpenFindings, ActiveAlarms int64
}

// Totals counts rows.
func (s *Store) Totals(ctx context.Context) (Totals, error) {
	var t Totals
	err := s.db.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM gateways), (SELECT COUNT(*) FROM gateways WHERE online = 1),
		(SELECT COUNT(*) FROM gateways WHERE stale = 1), (SELECT COALESCE(SUM(n), 0) FROM event_hours),
		(SELECT COUNT(*) FROM findings WHERE state = 'open'), (SELECT COUNT(*) FROM alarms WHERE active = 1)`).
		Scan(&t.Gateways, &t.Online, &t.Stale, &t.Events, &t.OpenFindings, &t.ActiveAlarms)
	if err != nil {
		return t, fmt.Errorf("store: totals: %w", err)
	}
	return t, nil
}
