package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// FindingRecordingRefused is the finding of an upload whose chain did not
// verify against its signed session-end event (tampered or truncated).
const FindingRecordingRefused = "recording_refused"

// Recording audit actions.
const (
	RecordingReviewed       = "reviewed"
	RecordingHoldSet        = "hold_set"
	RecordingHoldCleared    = "hold_cleared"
	RecordingArchived       = "archived"
	RecordingRefused        = "refused"
	RecordingPruned         = "pruned"
	RecordingExportedAction = "exported"
)

// Recording is a vendor session recording as central knows it: from the
// signed session-end event (always), the archive (once uploaded), and the
// operators' review and legal hold.
type Recording struct {
	Gateway  string    `json:"gateway"`
	Session  string    `json:"session"`
	Site     string    `json:"site,omitempty"`
	Grant    string    `json:"grant,omitempty"`
	Vendor   string    `json:"vendor,omitempty"`
	Device   string    `json:"device,omitempty"`
	Seq      uint64    `json:"event_seq"`
	Ended    time.Time `json:"ended"`
	Received time.Time `json:"received"`
	// Hash is the recording's final hash (hex) the signed event states.
	Hash string `json:"hash"`
	// EventCOSE is the signed session-end event as received (COSE_Sign1).
	EventCOSE  []byte    `json:"-"`
	Archived   time.Time `json:"archived,omitzero"`
	Size       int64     `json:"size,omitempty"`
	Refused    string    `json:"refused,omitempty"` // why the last upload was refused
	Pruned     time.Time `json:"pruned,omitzero"`
	ReviewedBy string    `json:"reviewed_by,omitempty"`
	Reviewed   time.Time `json:"reviewed,omitzero"`
	Hold       bool      `json:"legal_hold"`
	HoldBy     string    `json:"hold_by,omitempty"`
	HoldAt     time.Time `json:"hold_changed,omitzero"`
	HoldReason string    `json:"hold_reason,omitempty"`
}

// RecordingAudit is one change to a recording.
type RecordingAudit struct {
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Note   string    `json:"note,omitempty"`
}

// PutRecordingEnd stores a session-end event for its recording; the first
// one stored for a gateway and session wins (a replayed duplicate changes
// nothing).
func (t *Tx) PutRecordingEnd(r Recording) error {
	return t.exec(`INSERT INTO recordings (gateway, session_id, grant_id, vendor, device, seq, end_ms, received_ms, hash, event_cose)
		VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (gateway, session_id) DO NOTHING`,
		r.Gateway, r.Session, r.Grant, r.Vendor, r.Device, int64(r.Seq), ms(r.Ended), ms(r.Received), strings.ToLower(r.Hash),
		base64.StdEncoding.EncodeToString(r.EventCOSE))
}

const recordingCols = `SELECT r.gateway, r.session_id, COALESCE(g.site, ''), r.grant_id, r.vendor, r.device, r.seq, r.end_ms, r.received_ms,
	r.hash, r.event_cose, r.archived_ms, r.size, r.refused, r.pruned_ms, r.reviewed_by, r.reviewed_ms, r.hold, r.hold_by, r.hold_ms,
	r.hold_reason FROM recordings r LEFT JOIN gateways g ON g.id = r.gateway`

func scanRecording(sc scanner) (Recording, error) {
	var r Recording
	var seq, end, recv, arch, pruned, rev, holdMS int64
	var hold int
	var cose string
	err := sc.Scan(&r.Gateway, &r.Session, &r.Site, &r.Grant, &r.Vendor, &r.Device, &seq, &end, &recv, &r.Hash, &cose, &arch, &r.Size,
		&r.Refused, &pruned, &r.ReviewedBy, &rev, &hold, &r.HoldBy, &holdMS, &r.HoldReason)
	if err != nil {
		return r, err
	}
	r.Seq, r.Ended, r.Received, r.Archived, r.Pruned, r.Reviewed, r.HoldAt = uint64(seq), tm(end), tm(recv), tm(arch), tm(pruned), tm(rev), tm(holdMS)
	r.Hold = hold == 1
	r.EventCOSE, err = base64.StdEncoding.DecodeString(cose)
	return r, err
}

// Recording returns one recording or ErrNotFound.
func (s *Store) Recording(ctx context.Context, gateway, session string) (Recording, error) {
	r, err := scanRecording(s.db.QueryRowContext(ctx, s.rebind(recordingCols+` WHERE r.gateway = ? AND r.session_id = ?`), gateway, session))
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("store: recording: %w", err)
	}
	return r, nil
}

// RecordingQuery filters Recordings; zero fields do not filter.
type RecordingQuery struct {
	Gateway, Device, Vendor string
	Since, Until            time.Time // by end of session
	// Reviewed: "yes" or "no"; Hold: "yes" or "no"; Archived: "yes" or "no".
	Reviewed, Hold, Archived string
	Limit                    int // default 200, at most 1000
}

// Recordings returns the recordings matching q, newest first.
func (s *Store) Recordings(ctx context.Context, q RecordingQuery) ([]Recording, error) {
	var where []string
	var args []any
	eq := func(col, v string) {
		if v != "" {
			where = append(where, col+" = ?")
			args = append(args, v)
		}
	}
	eq("r.gateway", q.Gateway)
	eq("r.device", q.Device)
	if q.Vendor != "" {
		where = append(where, "r.vendor LIKE ?")
		args = append(args, "%"+q.Vendor+"%")
	}
	if !q.Since.IsZero() {
		where = append(where, "r.end_ms >= ?")
		args = append(args, q.Since.UnixMilli())
	}
	if !q.Until.IsZero() {
		where = append(where, "r.end_ms < ?")
		args = append(args, q.Until.UnixMilli())
	}
	yesNo := func(v, yes, no string) {
		switch v {
		case "yes":
			where = append(where, yes)
		case "no":
			where = append(where, no)
		}
	}
	yesNo(q.Reviewed, "r.reviewed_ms > 0", "r.reviewed_ms = 0")
	yesNo(q.Hold, "r.hold = 1", "r.hold = 0")
	yesNo(q.Archived, "r.archived_ms > 0", "r.archived_ms = 0")
	lim := q.Limit
	if lim <= 0 {
		lim = 200
	}
	lim = min(lim, 1000)
	sqlq := recordingCols
	if len(where) > 0 {
		sqlq += " WHERE " + strings.Join(where, " AND ")
	}
	sqlq += fmt.Sprintf(" ORDER BY r.end_ms DESC, r.gateway, r.session_id LIMIT %d", lim)
	rows, err := s.db.QueryContext(ctx, s.rebind(sqlq), args...)
	if err != nil {
		return nil, fmt.Errorf("store: recordings: %w", err)
	}
	defer rows.Close()
	out := []Recording{}
	for rows.Next() {
		r, err := scanRecording(rows)
		if err != nil {
			return nil, fmt.Errorf("store: recordings: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// RecordingHolds returns the gateway/session keys under legal hold.
func (s *Store) RecordingHolds(ctx context.Context) (map[string]bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT gateway, session_id FROM recordings WHERE hold = 1`)
	if err != nil {
		return nil, fmt.Errorf("store: holds: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var gw, s string
		if err := rows.Scan(&gw, &s); err != nil {
			return nil, fmt.Errorf("store: holds: %w", err)
		}
		out[gw+"/"+s] = true
	}
	return out, rows.Err()
}

// changeRecording runs set (an UPDATE's SET clause) on one recording and
// adds an audit row, in one transaction; ErrNotFound when there is no such
// recording.
func (s *Store) changeRecording(ctx context.Context, gateway, session string, at time.Time, actor, action, note, set string, args ...any) error {
	_, err := s.Apply(ctx, func(t *Tx) error {
		res, err := t.tx.Exec(s.rebind(`UPDATE recordings SET `+set+` WHERE gateway = ? AND session_id = ?`), append(args, gateway, session)...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return t.exec(`INSERT INTO recording_audit (gateway, session_id, time_ms, actor, action, note) VALUES (?,?,?,?,?,?)`,
			gateway, session, ms(at), actor, action, note)
	})
	return err
}

// ReviewRecording marks a recording reviewed by who at at.
func (s *Store) ReviewRecording(ctx context.Context, gateway, session, who, note string, at time.Time) error {
	return s.changeRecording(ctx, gateway, session, at, who, RecordingReviewed, note, `reviewed_by = ?, reviewed_ms = ?`, who, ms(at))
}

// SetRecordingHold sets (hold true) or clears a legal hold.
func (s *Store) SetRecordingHold(ctx context.Context, gateway, session string, hold bool, who, reason string, at time.Time) error {
	action := RecordingHoldCleared
	if hold {
		action = RecordingHoldSet
	}
	return s.changeRecording(ctx, gateway, session, at, who, action, reason, `hold = ?, hold_by = ?, hold_ms = ?, hold_reason = ?`,
		b2i(hold), who, ms(at), reason)
}

// RecordingArchived records a verified upload of size bytes.
func (s *Store) RecordingArchived(ctx context.Context, gateway, session string, size int64, at time.Time) error {
	return s.changeRecording(ctx, gateway, session, at, "gateway:"+gateway, RecordingArchived, fmt.Sprintf("%d bytes", size),
		`archived_ms = ?, size = ?, refused = ''`, ms(at), size)
}

// RecordingRefusedUpload records a refused upload and why.
func (s *Store) RecordingRefusedUpload(ctx context.Context, gateway, session, reason string, at time.Time) error {
	return s.changeRecording(ctx, gateway, session, at, "gateway:"+gateway, RecordingRefused, reason, `refused = ?`, reason)
}

// RecordingPruned records that retention deleted the recording's file.
func (s *Store) RecordingPruned(ctx context.Context, gateway, session string, at time.Time) error {
	return s.changeRecording(ctx, gateway, session, at, "central", RecordingPruned, "", `pruned_ms = ?`, ms(at))
}

// RecordingAuditTrail returns the changes to a recording, oldest first.
func (s *Store) RecordingAuditTrail(ctx context.Context, gateway, session string) ([]RecordingAudit, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT time_ms, actor, action, note FROM recording_audit WHERE gateway = ? AND session_id = ? ORDER BY id`), gateway, session)
	if err != nil {
		return nil, fmt.Errorf("store: recording audit: %w", err)
	}
	defer rows.Close()
	out := []RecordingAudit{}
	for rows.Next() {
		var a RecordingAudit
		var t int64
		if err := rows.Scan(&t, &a.Actor, &a.Action, &a.Note); err != nil {
			return nil, fmt.Errorf("store: recording audit: %w", err)
		}
		a.Time = tm(t)
		out = append(out, a)
	}
	return out, rows.Err()
}

// RecordingExported records that who exported the recording's bundle.
func (s *Store) RecordingExported(ctx context.Context, gateway, session, who string, at time.Time) error {
	return s.changeRecording(ctx, gateway, session, at, who, RecordingExportedAction, "", `reviewed_ms = reviewed_ms`)
}
