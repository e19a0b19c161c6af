package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Delivery states of a command for one gateway (CommandTarget.State).
const (
	// TargetQueued: stored, not published yet (the gateway is offline, or
	// central could not publish).
	TargetQueued = "queued"
	// TargetDelivered: published on the gateway's command topic (again at
	// each of its births) and not answered yet.
	TargetDelivered = "delivered"
	// TargetApplied: the gateway's signed reply accepted the command.
	TargetApplied = "applied"
	// TargetRejected: the gateway's signed reply refused it (Reason says
	// why); it is not published again.
	TargetRejected = "rejected"
	// TargetExpired: the command expired before the gateway answered; an
	// expired command is never published.
	TargetExpired = "expired"
)

// TargetStates lists the states in their order.
var TargetStates = []string{TargetQueued, TargetDelivered, TargetApplied, TargetRejected, TargetExpired}

// Command is a durable fleet command: a command signed by an approver,
// stored with the signed bytes, and its delivery per addressed gateway.
// Its JSON is part of the API (docs/central.md).
type Command struct {
	ID   string   `json:"id"`
	Name string   `json:"command"`
	Args []string `json:"args"`
	// Scope is the addressee: gateway/ID, site/SITE or fleet.
	Scope       string    `json:"scope"`
	Nonce       string    `json:"nonce"` // hex
	Signer      string    `json:"signer"`
	SubmittedBy string    `json:"submitted_by"`
	Note        string    `json:"note,omitempty"`
	Issued      time.Time `json:"issued"`
	Expires     time.Time `json:"expires"`
	Created     time.Time `json:"created"`
	// Signed is the COSE_Sign1 as submitted (base64 in JSON).
	Signed []byte `json:"signed,omitempty"`
	// States counts the targets per state (filled by reads).
	States map[string]int `json:"states"`
	// Targets are the addressed gateways (filled by Store.Command).
	Targets []CommandTarget `json:"targets,omitempty"`
}

// CommandTarget is the delivery of one command to one gateway.
type CommandTarget struct {
	Command    string    `json:"command"`
	Gateway    string    `json:"gateway"`
	State      string    `json:"state"`
	Queued     time.Time `json:"queued,omitzero"`
	Delivered  time.Time `json:"delivered,omitzero"` // the latest publish
	Deliveries int       `json:"deliveries"`
	Applied    time.Time `json:"applied,omitzero"`
	Rejected   time.Time `json:"rejected,omitzero"`
	Expired    time.Time `json:"expired,omitzero"`
	Reason     string    `json:"reason,omitempty"`
	Result     string    `json:"result,omitempty"`
}

// Open reports whether the target still waits for the gateway.
func (t CommandTarget) Open() bool { return t.State == TargetQueued || t.State == TargetDelivered }

// ErrDuplicate is returned when a command with the same id or nonce, or a
// lock set with the same scope and version, is already stored.
var ErrDuplicate = errors.New("already stored")

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func unb64(s string) []byte {
	b, _ := base64.StdEncoding.DecodeString(s)
	return b
}

func isDup(err error) bool {
	if err == nil {
		return false
	}
	m := strings.ToLower(err.Error())
	return strings.Contains(m, "unique") || strings.Contains(m, "duplicate key")
}

// AddCommand stores a new command and its initial targets; ErrDuplicate
// when its id or nonce is stored already.
func (t *Tx) AddCommand(c Command, targets []CommandTarget) error {
	args := c.Args
	if args == nil {
		args = []string{}
	}
	err := t.exec(`INSERT INTO commands (id, name, args, scope, nonce, signer, submitted_by, note, issued_ms, expires_ms, created_ms, signed)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`, c.ID, c.Name, js(args), c.Scope, c.Nonce, c.Signer, c.SubmittedBy, c.Note,
		ms(c.Issued), ms(c.Expires), ms(c.Created), b64(c.Signed))
	if isDup(err) {
		return fmt.Errorf("command %s: %w", c.ID, ErrDuplicate)
	}
	if err != nil {
		return err
	}
	for _, tg := range targets {
		tg.Command = c.ID
		if err := t.PutTarget(tg); err != nil {
			return err
		}
	}
	return nil
}

// PutTarget writes a target (insert or replace).
func (t *Tx) PutTarget(tg CommandTarget) error {
	return t.exec(`INSERT INTO command_targets (command, gateway, state, queued_ms, delivered_ms, deliveries, applied_ms, rejected_ms, expired_ms, reason, result)
		VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (command, gateway) DO UPDATE SET state=excluded.state, queued_ms=excluded.queued_ms,
		delivered_ms=excluded.delivered_ms, deliveries=excluded.deliveries, applied_ms=excluded.applied_ms, rejected_ms=excluded.rejected_ms,
		expired_ms=excluded.expired_ms, reason=excluded.reason, result=excluded.result`,
		tg.Command, tg.Gateway, tg.State, ms(tg.Queued), ms(tg.Delivered), tg.Deliveries, ms(tg.Applied), ms(tg.Rejected), ms(tg.Expired),
		tg.Reason, tg.Result)
}

// PutTarget writes one target in its own transaction.
func (s *Store) PutTarget(ctx context.Context, tg CommandTarget) error {
	_, err := s.Apply(ctx, func(tx *Tx) error { return tx.PutTarget(tg) })
	return err
}

// ExpireTargets marks every queued or delivered target of a command that
// expired at or before now as expired, and returns how many.
func (s *Store) ExpireTargets(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(`UPDATE command_targets SET state = 'expired', expired_ms = ?
		WHERE state IN ('queued', 'delivered') AND command IN (SELECT id FROM commands WHERE expires_ms <= ?)`), ms(now), ms(now))
	if err != nil {
		return 0, fmt.Errorf("store: expire commands: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

const commandCols = `SELECT id, name, args, scope, nonce, signer, submitted_by, note, issued_ms, expires_ms, created_ms, signed FROM commands`

func scanCommand(r scanner) (Command, error) {
	var c Command
	var args, signed string
	var is, ex, cr int64
	err := r.Scan(&c.ID, &c.Name, &args, &c.Scope, &c.Nonce, &c.Signer, &c.SubmittedBy, &c.Note, &is, &ex, &cr, &signed)
	if err != nil {
		return c, err
	}
	_ = json.Unmarshal([]byte(args), &c.Args)
	if c.Args == nil {
		c.Args = []string{}
	}
	c.Issued, c.Expires, c.Created, c.Signed = tm(is), tm(ex), tm(cr), unb64(signed)
	c.States = map[string]int{}
	return c, nil
}

const targetCols = `SELECT command, gateway, state, queued_ms, delivered_ms, deliveries, applied_ms, rejected_ms, expired_ms, reason, result FROM command_targets`

func scanTarget(r scanner) (CommandTarget, error) {
	var t CommandTarget
	var q, d, a, rj, ex int64
	err := r.Scan(&t.Command, &t.Gateway, &t.State, &q, &d, &t.Deliveries, &a, &rj, &ex, &t.Reason, &t.Result)
	t.Queued, t.Delivered, t.Applied, t.Rejected, t.Expired = tm(q), tm(d), tm(a), tm(rj), tm(ex)
	return t, err
}

func (s *Store) queryCommands(ctx context.Context, where string, args ...any) ([]Command, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(commandCols+where), args...)
	if err != nil {
		return nil, fmt.Errorf("store: commands: %w", err)
	}
	defer rows.Close()
	out := []Command{}
	for rows.Next() {
		c, err := scanCommand(rows)
		if err != nil {
			return nil, fmt.Errorf("store: commands: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (s *Store) queryTargets(ctx context.Context, where string, args ...any) ([]CommandTarget, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(targetCols+where), args...)
	if err != nil {
		return nil, fmt.Errorf("store: command targets: %w", err)
	}
	defer rows.Close()
	out := []CommandTarget{}
	for rows.Next() {
		t, err := scanTarget(rows)
		if err != nil {
			return nil, fmt.Errorf("store: command targets: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Commands returns the newest commands first (at most limit, 1..10000),
// with their per-state counts but without targets.
func (s *Store) Commands(ctx context.Context, limit int) ([]Command, error) {
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	cs, err := s.queryCommands(ctx, fmt.Sprintf(` ORDER BY created_ms DESC, id LIMIT %d`, limit))
	if err != nil || len(cs) == 0 {
		return cs, err
	}
	idx := map[string]int{}
	for i, c := range cs {
		idx[c.ID] = i
	}
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT command, state, COUNT(*) FROM command_targets
		WHERE command IN (SELECT id FROM commands ORDER BY created_ms DESC, id LIMIT `+fmt.Sprint(limit)+`) GROUP BY command, state`))
	if err != nil {
		return nil, fmt.Errorf("store: command states: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, state string
		var n int
		if err := rows.Scan(&id, &state, &n); err != nil {
			return nil, fmt.Errorf("store: command states: %w", err)
		}
		if i, ok := idx[id]; ok {
			cs[i].States[state] = n
		}
	}
	return cs, rows.Err()
}

// Command returns one command with its targets (by gateway) or
// ErrNotFound.
func (s *Store) Command(ctx context.Context, id string) (Command, error) {
	cs, err := s.queryCommands(ctx, ` WHERE id = ?`, id)
	if err != nil {
		return Command{}, err
	}
	if len(cs) == 0 {
		return Command{}, ErrNotFound
	}
	c := cs[0]
	c.Targets, err = s.queryTargets(ctx, ` WHERE command = ? ORDER BY gateway`, id)
	for _, t := range c.Targets {
		c.States[t.State]++
	}
	return c, err
}

// CommandByNonce returns the command with nonce (hex) or ErrNotFound.
func (s *Store) CommandByNonce(ctx context.Context, nonce string) (Command, error) {
	cs, err := s.queryCommands(ctx, ` WHERE nonce = ?`, nonce)
	if err != nil {
		return Command{}, err
	}
	if len(cs) == 0 {
		return Command{}, ErrNotFound
	}
	return cs[0], nil
}

// Target returns the delivery of command to gateway or ErrNotFound.
func (s *Store) Target(ctx context.Context, command, gateway string) (CommandTarget, error) {
	ts, err := s.queryTargets(ctx, ` WHERE command = ? AND gateway = ?`, command, gateway)
	if err != nil {
		return CommandTarget{}, err
	}
	if len(ts) == 0 {
		return CommandTarget{}, ErrNotFound
	}
	return ts[0], nil
}

// Pending is an open target with its command.
type Pending struct {
	Command Command
	Target  CommandTarget
}

// PendingFor returns the queued and delivered targets of gateway with
// their commands, oldest command first.
func (s *Store) PendingFor(ctx context.Context, gateway string) ([]Pending, error) {
	ts, err := s.queryTargets(ctx, ` WHERE gateway = ? AND state IN ('queued', 'delivered')`, gateway)
	if err != nil || len(ts) == 0 {
		return nil, err
	}
	out := make([]Pending, 0, len(ts))
	for _, t := range ts {
		cs, err := s.queryCommands(ctx, ` WHERE id = ?`, t.Command)
		if err != nil {
			return nil, err
		}
		if len(cs) == 1 {
			out = append(out, Pending{Command: cs[0], Target: t})
		}
	}
	sortPending(out)
	return out, nil
}

// PendingQueued returns every queued target (not published yet) whose
// command has not expired at now, oldest command first.
func (s *Store) PendingQueued(ctx context.Context, now time.Time) ([]Pending, error) {
	cs, err := s.queryCommands(ctx, ` WHERE expires_ms > ? AND id IN (SELECT command FROM command_targets WHERE state = 'queued')`, ms(now))
	if err != nil {
		return nil, err
	}
	var out []Pending
	for _, c := range cs {
		ts, err := s.queryTargets(ctx, ` WHERE command = ? AND state = 'queued'`, c.ID)
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			out = append(out, Pending{Command: c, Target: t})
		}
	}
	sortPending(out)
	return out, nil
}

func sortPending(ps []Pending) {
	for i := 1; i < len(ps); i++ { // insertion sort: lists are short
		for j := i; j > 0 && less(ps[j], ps[j-1]); j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

func less(a, b Pending) bool {
	if !a.Command.Created.Equal(b.Command.Created) {
		return a.Command.Created.Before(b.Command.Created)
	}
	if a.Command.ID != b.Command.ID {
		return a.Command.ID < b.Command.ID
	}
	return a.Target.Gateway < b.Target.Gateway
}

// ScopedActive returns the site- and fleet-scoped commands that have not
// expired at now and have no target for gateway yet (a gateway that
// appeared after the command was queued), for a gateway at site.
func (s *Store) ScopedActive(ctx context.Context, gateway, site string, now time.Time) ([]Command, error) {
	scopes := []any{"fleet"}
	q := ` WHERE expires_ms > ? AND (scope = ?`
	if site != "" {
		q += ` OR scope = ?`
		scopes = append(scopes, "site/"+site)
	}
	q += `) AND id NOT IN (SELECT command FROM command_targets WHERE gateway = ?) ORDER BY created_ms, id`
	args := append([]any{ms(now)}, scopes...)
	return s.queryCommands(ctx, q, append(args, gateway)...)
}

// LockSet is one signed lock set as central stored and published it.
type LockSet struct {
	Scope       string          `json:"scope"`
	Version     uint64          `json:"version"`
	Issued      time.Time       `json:"issued"`
	Expires     time.Time       `json:"expires"`
	Approvers   []string        `json:"approvers"`
	Locks       []LockSetLock   `json:"locks"`
	SubmittedBy string          `json:"submitted_by"`
	Created     time.Time       `json:"created"`
	Signed      []byte          `json:"signed,omitempty"`
	Gateways    []LockSetStatus `json:"gateways,omitempty"`
}

// LockSetLock is one lock of a set.
type LockSetLock struct {
	Target string    `json:"target"`
	Until  time.Time `json:"until,omitzero"`
	Reason string    `json:"reason,omitempty"`
}

// LockSetStatus is the lock-set version a gateway reported for a scope
// (authority.lockset_applied and authority.lockset_refused events).
type LockSetStatus struct {
	Gateway        string    `json:"gateway"`
	Scope          string    `json:"scope"`
	Version        uint64    `json:"applied_version"`
	Applied        time.Time `json:"applied,omitzero"`
	RefusedVersion uint64    `json:"refused_version,omitempty"`
	Refused        time.Time `json:"refused,omitzero"`
	RefusedReason  string    `json:"refused_reason,omitempty"`
}

// AddLockSet stores ls; ErrDuplicate when its scope and version exist.
// It does not compare versions: see NewestLockSet.
func (t *Tx) AddLockSet(ls LockSet) error {
	if ls.Approvers == nil {
		ls.Approvers = []string{}
	}
	if ls.Locks == nil {
		ls.Locks = []LockSetLock{}
	}
	err := t.exec(`INSERT INTO locksets (scope, version, issued_ms, expires_ms, approvers, locks, submitted_by, created_ms, signed)
		VALUES (?,?,?,?,?,?,?,?,?)`, ls.Scope, int64(ls.Version), ms(ls.Issued), ms(ls.Expires), js(ls.Approvers), js(ls.Locks),
		ls.SubmittedBy, ms(ls.Created), b64(ls.Signed))
	if isDup(err) {
		return fmt.Errorf("lock set %s version %d: %w", ls.Scope, ls.Version, ErrDuplicate)
	}
	return err
}

// NewestLockSetVersion returns the highest stored version of scope (0:
// none), inside the transaction. On PostgreSQL it first locks the lock-set
// table against other writers until the transaction ends, so that two
// central instances comparing and adding versions at once are serialized
// (an older version can never land after a newer one); readers are not
// blocked. SQLite serializes writers by itself.
func (t *Tx) NewestLockSetVersion(scope string) (uint64, error) {
	if t.s.pg {
		if _, err := t.tx.Exec(`LOCK TABLE locksets IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return 0, err
		}
	}
	var v int64
	err := t.tx.QueryRow(t.s.rebind(`SELECT COALESCE(MAX(version), 0) FROM locksets WHERE scope = ?`), scope).Scan(&v)
	return uint64(v), err
}

const lockSetCols = `SELECT scope, version, issued_ms, expires_ms, approvers, locks, submitted_by, created_ms, signed FROM locksets`

func scanLockSet(r scanner) (LockSet, error) {
	var l LockSet
	var v, is, ex, cr int64
	var appr, locks, signed string
	err := r.Scan(&l.Scope, &v, &is, &ex, &appr, &locks, &l.SubmittedBy, &cr, &signed)
	l.Version, l.Issued, l.Expires, l.Created, l.Signed = uint64(v), tm(is), tm(ex), tm(cr), unb64(signed)
	_ = json.Unmarshal([]byte(appr), &l.Approvers)
	_ = json.Unmarshal([]byte(locks), &l.Locks)
	return l, err
}

// LockSets returns the newest lock set of every scope, by scope.
func (s *Store) LockSets(ctx context.Context) ([]LockSet, error) {
	rows, err := s.db.QueryContext(ctx, lockSetCols+` l WHERE version = (SELECT MAX(version) FROM locksets m WHERE m.scope = l.scope) ORDER BY scope`)
	if err != nil {
		return nil, fmt.Errorf("store: lock sets: %w", err)
	}
	defer rows.Close()
	out := []LockSet{}
	for rows.Next() {
		l, err := scanLockSet(rows)
		if err != nil {
			return nil, fmt.Errorf("store: lock sets: %w", err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// LockSet returns the newest lock set of scope or ErrNotFound.
func (s *Store) LockSet(ctx context.Context, scope string) (LockSet, error) {
	l, err := scanLockSet(s.db.QueryRowContext(ctx, s.rebind(lockSetCols+` WHERE scope = ? ORDER BY version DESC LIMIT 1`), scope))
	if errors.Is(err, sql.ErrNoRows) {
		return l, ErrNotFound
	}
	return l, err
}

// LockSetApplied records that gateway applied version of scope at at
// (an older version than the one recorded is ignored).
func (s *Store) LockSetApplied(ctx context.Context, gateway, scope string, version uint64, at time.Time) error {
	_, err := s.db.ExecContext(ctx, s.rebind(`INSERT INTO lockset_applied (gateway, scope, version, applied_ms) VALUES (?,?,?,?)
		ON CONFLICT (gateway, scope) DO UPDATE SET version = excluded.version, applied_ms = excluded.applied_ms
		WHERE excluded.version >= lockset_applied.version`), gateway, scope, int64(version), ms(at))
	if err != nil {
		return fmt.Errorf("store: lock set applied: %w", err)
	}
	return nil
}

// LockSetRefused records that gateway refused version of scope.
func (s *Store) LockSetRefused(ctx context.Context, gateway, scope string, version uint64, reason string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, s.rebind(`INSERT INTO lockset_applied (gateway, scope, refused_version, refused_ms, refused_reason) VALUES (?,?,?,?,?)
		ON CONFLICT (gateway, scope) DO UPDATE SET refused_version = excluded.refused_version, refused_ms = excluded.refused_ms,
		refused_reason = excluded.refused_reason`), gateway, scope, int64(version), ms(at), reason)
	if err != nil {
		return fmt.Errorf("store: lock set refused: %w", err)
	}
	return nil
}

// LockSetStatuses returns what every gateway reported for scope ("" for
// every scope), by gateway and scope.
func (s *Store) LockSetStatuses(ctx context.Context, scope string) ([]LockSetStatus, error) {
	where, args := "", []any{}
	if scope != "" {
		where, args = " WHERE scope = ?", []any{scope}
	}
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT gateway, scope, version, applied_ms, refused_version, refused_ms, refused_reason
		FROM lockset_applied`+where+` ORDER BY gateway, scope`), args...)
	if err != nil {
		return nil, fmt.Errorf("store: lock set status: %w", err)
	}
	defer rows.Close()
	out := []LockSetStatus{}
	for rows.Next() {
		var st LockSetStatus
		var v, a, rv, r int64
		if err := rows.Scan(&st.Gateway, &st.Scope, &v, &a, &rv, &r, &st.RefusedReason); err != nil {
			return nil, fmt.Errorf("store: lock set status: %w", err)
		}
		st.Version, st.Applied, st.RefusedVersion, st.Refused = uint64(v), tm(a), uint64(rv), tm(r)
		out = append(out, st)
	}
	return out, rows.Err()
}

// GatewaysAt returns the ids of the gateways at site ("" for every
// gateway), by id.
func (s *Store) GatewaysAt(ctx context.Context, site string) ([]string, error) {
	q, args := `SELECT id FROM gateways`, []any{}
	if site != "" {
		q, args = q+` WHERE site = ?`, []any{site}
	}
	rows, err := s.db.QueryContext(ctx, s.rebind(q+` ORDER BY id`), args...)
	if err != nil {
		return nil, fmt.Errorf("store: gateways: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}
