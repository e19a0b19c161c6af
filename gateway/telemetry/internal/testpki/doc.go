// Package testpki makes throwaway certificates for telemetry tests with
// go.step.sm/crypto/minica: a CA (root + intermediate), gateway, approver,
// server and plain identities, and PEM files for external brokers. Nothing
// here is for production use. Safe for concurrent use (no shared state
// besides the CA, which only signs).
package testpki
