// Package outbox is the durable store-and-forward queue of telemetry: a
// bbolt file in which every message is committed (fsync) before it may be
// sent and from which it is deleted only after the broker acknowledged it.
//
// It also owns the gateway's persistent counters: the message sequence
// number (never reused, survives restarts and kill -9) and the session
// number (incremented per broker connection).
//
// Messages have a class: urgent (birth, replies), event (security events,
// inventory) and bulk (metrics, status). Peek returns them in that order,
// oldest first within a class.
//
// The byte budget (Options.MaxBytes) is hard: the file's records never
// exceed it, whatever floods the gateway. Its Reserve is kept for urgent
// and event messages: bulk may fill only MaxBytes-Reserve and is dropped
// oldest first within it. Security events may use the whole budget; when
// they alone fill it, the oldest are dropped to keep the newest (events
// before urgent messages), counted in Stats.LostEvents, recorded for
// Delivered, and AlarmEventsDropped is raised. A failed write (full disk)
// stores nothing, returns ErrWriteFailed or ErrDiskFull and raises
// AlarmWriteFailed; the next Enqueue tries again.
//
// Delivered tells whether a message left the gateway (acknowledged, not
// dropped), for callers that keep data until central has it.
//
// Enqueue calls from many goroutines are group-committed: callers that
// arrive while a commit is in progress share the next transaction.
// All methods are safe for concurrent use.
package outbox
