// Package store is wardgate-central's database: one schema with versioned
// migrations (migrations.go) on SQLite (a file, the embedded default; pure
// Go driver, no cgo) or PostgreSQL (pgx), chosen by the DSN
// (sqlite:PATH or postgres://...). It holds gateways, devices, accounts,
// exceptions, events, vendor grants/sessions, alarms and security
// findings, and answers the queries of the API and the pages.
//
// Times are stored as milliseconds since the epoch (UTC), booleans as 0/1
// and lists as JSON text, so that the same SQL runs on both databases.
// A *Store is safe for concurrent use; Apply runs one write transaction.
package store
