// Package central is the root of wardgate-central, central security's
// fleet service. It holds no code: its subpackages are config (the strict
// YAML configuration), store (one schema on SQLite or PostgreSQL), ingest
// (the MQTT subscriber that verifies, orders and stores telemetry) and web
// (the JSON API, the HTML pages and /metrics). cmd/wardgate-central wires
// them. Nothing under central imports the gateway's packages; what both
// sides agree on lives in package wire.
package central
