// Package gateway is the wardgate agent. Its subpackages hold the clinical
// relay (clinical), brokered vendor access (access), telemetry (telemetry),
// the monitor that judges what they report (monitor), the admin API (admin)
// and the agent that wires them together (agent).
//
// Dependencies point one way: cmd -> gateway -> {certs, hal, config}. The
// certs, hal and config packages never import gateway; deps_test.go keeps it
// so.
package gateway
