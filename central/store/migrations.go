package store

// migrations are applied in order, each once, recorded in the migrations
// table. Never edit a released migration: append a new one. {{id}} is the
// auto-increment primary key of the dialect.
var migrations = []string{
	// 1: the first schema.
	`CREATE TABLE gateways (
		id TEXT PRIMARY KEY,
		site TEXT NOT NULL DEFAULT '',
		version TEXT NOT NULL DEFAULT '',
		config_hash TEXT NOT NULL DEFAULT '',
		signer TEXT NOT NULL DEFAULT '',
		session BIGINT NOT NULL DEFAULT 0,
		last_seq BIGINT NOT NULL DEFAULT 0,
		death_seq BIGINT NOT NULL DEFAULT 0,
		online INTEGER NOT NULL DEFAULT 0,
		stale INTEGER NOT NULL DEFAULT 0,
		stale_reason TEXT NOT NULL DEFAULT '',
		stale_since_ms BIGINT NOT NULL DEFAULT 0,
		resync_ms BIGINT NOT NULL DEFAULT 0,
		first_seen_ms BIGINT NOT NULL DEFAULT 0,
		last_seen_ms BIGINT NOT NULL DEFAULT 0,
		last_birth_ms BIGINT NOT NULL DEFAULT 0,
		last_death_ms BIGINT NOT NULL DEFAULT 0,
		clock_offset_ms BIGINT NOT NULL DEFAULT 0,
		gaps BIGINT NOT NULL DEFAULT 0,
		messages BIGINT NOT NULL DEFAULT 0,
		state TEXT NOT NULL DEFAULT '',
		devices INTEGER NOT NULL DEFAULT 0
	);
	CREATE TABLE devices (
		gateway TEXT NOT NULL,
		id TEXT NOT NULL,
		kind TEXT NOT NULL DEFAULT '',
		manufacturer TEXT NOT NULL DEFAULT '',
		model TEXT NOT NULL DEFAULT '',
		serial TEXT NOT NULL DEFAULT '',
		firmware TEXT NOT NULL DEFAULT '',
		owner TEXT NOT NULL DEFAULT '',
		location TEXT NOT NULL DEFAULT '',
		link TEXT NOT NULL DEFAULT '',
		vendor_org TEXT NOT NULL DEFAULT '',
		vendor_ports TEXT NOT NULL DEFAULT '[]',
		approval TEXT NOT NULL DEFAULT '[]',
		updated_ms BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (gateway, id)
	);
	CREATE TABLE accounts (
		gateway TEXT NOT NULL,
		device TEXT NOT NULL,
		id TEXT NOT NULL,
		type TEXT NOT NULL DEFAULT '',
		owner TEXT NOT NULL DEFAULT '',
		vendor TEXT NOT NULL DEFAULT '',
		rotate_every_s BIGINT NOT NULL DEFAULT 0,
		last_rotated_ms BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (gateway, device, id)
	);
	CREATE TABLE exceptions (
		gateway TEXT NOT NULL,
		device TEXT NOT NULL,
		id TEXT NOT NULL,
		control TEXT NOT NULL DEFAULT '',
		reason TEXT NOT NULL DEFAULT '',
		compensating TEXT NOT NULL DEFAULT '[]',
		approved_by TEXT NOT NULL DEFAULT '',
		owner TEXT NOT NULL DEFAULT '',
		expires_ms BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (gateway, device, id)
	);
	CREATE TABLE events (
		id {{id}},
		gateway TEXT NOT NULL,
		session BIGINT NOT NULL,
		seq BIGINT NOT NULL,
		time_ms BIGINT NOT NULL,
		received_ms BIGINT NOT NULL,
		kind TEXT NOT NULL,
		severity TEXT NOT NULL DEFAULT '',
		device TEXT NOT NULL DEFAULT '',
		identity TEXT NOT NULL DEFAULT '',
		historical INTEGER NOT NULL DEFAULT 0,
		attrs TEXT NOT NULL DEFAULT '{}'
	);
	CREATE UNIQUE INDEX events_gateway_seq ON events (gateway, seq);
	CREATE INDEX events_time ON events (time_ms);
	CREATE INDEX events_kind ON events (kind, id);
	CREATE INDEX events_device ON events (device, id);
	CREATE INDEX events_identity ON events (identity, id);
	CREATE TABLE sessions (
		gateway TEXT NOT NULL,
		grant_id TEXT NOT NULL,
		session_id TEXT NOT NULL DEFAULT '',
		vendor TEXT NOT NULL DEFAULT '',
		device TEXT NOT NULL DEFAULT '',
		ports TEXT NOT NULL DEFAULT '',
		state TEXT NOT NULL DEFAULT '',
		approver TEXT NOT NULL DEFAULT '',
		requested_ms BIGINT NOT NULL DEFAULT 0,
		approved_ms BIGINT NOT NULL DEFAULT 0,
		started_ms BIGINT NOT NULL DEFAULT 0,
		ended_ms BIGINT NOT NULL DEFAULT 0,
		updated_ms BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (gateway, grant_id)
	);
	CREATE TABLE alarms (
		gateway TEXT NOT NULL,
		kind TEXT NOT NULL,
		message TEXT NOT NULL DEFAULT '',
		active INTEGER NOT NULL DEFAULT 1,
		raised_ms BIGINT NOT NULL DEFAULT 0,
		cleared_ms BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (gateway, kind)
	);
	CREATE TABLE findings (
		id {{id}},
		time_ms BIGINT NOT NULL,
		gateway TEXT NOT NULL DEFAULT '',
		topic TEXT NOT NULL DEFAULT '',
		kind TEXT NOT NULL,
		detail TEXT NOT NULL DEFAULT '',
		signer TEXT NOT NULL DEFAULT '',
		state TEXT NOT NULL DEFAULT 'open',
		triaged_by TEXT NOT NULL DEFAULT '',
		triaged_ms BIGINT NOT NULL DEFAULT 0,
		note TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX findings_state ON findings (state, id);`,
	// 2: recordings: the signed session-end events the archive checks
	// uploads against (kept apart from events, whose retention is shorter),
	// review marks, legal holds, and their audit trail.
	`CREATE TABLE recordings (
		gateway TEXT NOT NULL,
		session_id TEXT NOT NULL,
		grant_id TEXT NOT NULL DEFAULT '',
		vendor TEXT NOT NULL DEFAULT '',
		device TEXT NOT NULL DEFAULT '',
		seq BIGINT NOT NULL DEFAULT 0,
		end_ms BIGINT NOT NULL DEFAULT 0,
		received_ms BIGINT NOT NULL DEFAULT 0,
		hash TEXT NOT NULL DEFAULT '',
		event_cose TEXT NOT NULL DEFAULT '',
		archived_ms BIGINT NOT NULL DEFAULT 0,
		size BIGINT NOT NULL DEFAULT 0,
		refused TEXT NOT NULL DEFAULT '',
		pruned_ms BIGINT NOT NULL DEFAULT 0,
		reviewed_by TEXT NOT NULL DEFAULT '',
		reviewed_ms BIGINT NOT NULL DEFAULT 0,
		hold INTEGER NOT NULL DEFAULT 0,
		hold_by TEXT NOT NULL DEFAULT '',
		hold_ms BIGINT NOT NULL DEFAULT 0,
		hold_reason TEXT NOT NULL DEFAULT '',
		PRIMARY KEY (gateway, session_id)
	);
	CREATE INDEX recordings_end ON recordings (end_ms);
	CREATE TABLE recording_audit (
		id {{id}},
		gateway TEXT NOT NULL,
		session_id TEXT NOT NULL,
		time_ms BIGINT NOT NULL,
		actor TEXT NOT NULL,
		action TEXT NOT NULL,
		note TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX recording_audit_rec ON recording_audit (gateway, session_id, id);`,
	// 3: durable fleet commands, their per-gateway delivery, lock sets and
	// the lock-set version each gateway applied (central/commands).
	`CREATE TABLE commands (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		args TEXT NOT NULL DEFAULT '[]',
		scope TEXT NOT NULL,
		nonce TEXT NOT NULL,
		signer TEXT NOT NULL,
		submitted_by TEXT NOT NULL,
		note TEXT NOT NULL DEFAULT '',
		issued_ms BIGINT NOT NULL,
		expires_ms BIGINT NOT NULL,
		created_ms BIGINT NOT NULL,
		signed TEXT NOT NULL
	);
	CREATE UNIQUE INDEX commands_nonce ON commands (nonce);
	CREATE INDEX commands_expires ON commands (expires_ms);
	CREATE TABLE command_targets (
		command TEXT NOT NULL,
		gateway TEXT NOT NULL,
		state TEXT NOT NULL,
		queued_ms BIGINT NOT NULL DEFAULT 0,
		delivered_ms BIGINT NOT NULL DEFAULT 0,
		deliveries INTEGER NOT NULL DEFAULT 0,
		applied_ms BIGINT NOT NULL DEFAULT 0,
		rejected_ms BIGINT NOT NULL DEFAULT 0,
		expired_ms BIGINT NOT NULL DEFAULT 0,
		reason TEXT NOT NULL DEFAULT '',
		result TEXT NOT NULL DEFAULT '',
		PRIMARY KEY (command, gateway)
	);
	CREATE INDEX command_targets_gateway ON command_targets (gateway, state);
	CREATE TABLE locksets (
		scope TEXT NOT NULL,
		version BIGINT NOT NULL,
		issued_ms BIGINT NOT NULL,
		expires_ms BIGINT NOT NULL,
		approvers TEXT NOT NULL DEFAULT '[]',
		locks TEXT NOT NULL DEFAULT '[]',
		submitted_by TEXT NOT NULL,
		created_ms BIGINT NOT NULL,
		signed TEXT NOT NULL,
		PRIMARY KEY (scope, version)
	);
	CREATE TABLE lockset_applied (
		gateway TEXT NOT NULL,
		scope TEXT NOT NULL,
		version BIGINT NOT NULL DEFAULT 0,
		applied_ms BIGINT NOT NULL DEFAULT 0,
		refused_version BIGINT NOT NULL DEFAULT 0,
		refused_ms BIGINT NOT NULL DEFAULT 0,
		refused_reason TEXT NOT NULL DEFAULT '',
		PRIMARY KEY (gateway, scope)
	);`,
	// 4: seqs applied by each central instance (shared ingest): bit i of
	// bits is seq block*64+i, so instances that share one queue can tell a
	// seq another one applied from one that never came. One row per
	// instance, so that instances never wait for each other's row locks.
	`CREATE TABLE ingest_seqs (
		gateway TEXT NOT NULL,
		block BIGINT NOT NULL,
		instance TEXT NOT NULL,
		bits BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (gateway, block, instance)
	);`,
	// 5: events counted per hour of message time, kept in step with the
	// events table by every write and prune (store/write.go, Prune), so
	// that charts and totals never count a million rows on a page render;
	// indexes for the sessions page (open grants, recent, per vendor).
	`CREATE TABLE event_hours (
		hour BIGINT PRIMARY KEY,
		n BIGINT NOT NULL DEFAULT 0
	);
	INSERT INTO event_hours (hour, n) SELECT time_ms / 3600000, COUNT(*) FROM events GROUP BY time_ms / 3600000;
	CREATE INDEX sessions_state ON sessions (state, updated_ms);
	CREATE INDEX sessions_updated ON sessions (updated_ms);
	CREATE INDEX sessions_vendor ON sessions (vendor)`,
}

// LatestSchema is the schema version this binary migrates to.
func LatestSchema() int { return len(migrations) }
