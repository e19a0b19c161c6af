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
// oldest first within a class. When the byte capacity is reached, the
// oldest bulk messages are dropped and counted as lost; urgent and event
// messages are never dropped: past capacity they are stored anyway and an
// alarm is raised.
//
// Enqueue calls from many goroutines are group-committed: callers that
// arrive while a commit is in progress share the next transaction.
// All methods are safe for concurrent use.
package outbox
