// Package certs holds the gateway's identity: SPIFFE identities and URI
// patterns, peer verification against a trust bundle, ECDSA P-256 keys and
// CSRs, the on-disk identity store, a small client for the step-ca API
// (enroll, renew, re-key, roots, renewal after expiry), the Manager that
// keeps the current certificate fresh and swaps it atomically, and a
// development CA for demos and tests (see also certs/certstest).
//
// # Wiring
//
// Enrollment (`wardgate enroll --config F --token T`) stores the first
// identity: Enroll(ctx, EnrollOptions{CAURL, RootFingerprint, Token,
// Dir: IdentityDir(stateDir), ...}).
//
// Everything that runs with an identity (`wardgate run`, the demo, tests)
// opens it with OpenGateway, the one wiring of Store, CA client, Bundle
// and Manager (see ExampleOpenGateway):
//
//	g, err := certs.OpenGateway(certs.GatewayOptions{CA: "step", CAURL: url,
//		StateDir: stateDir, OnEvent: toTelemetry, Clock: clk, Logger: log})
//	go g.Manager.Run(ctx)
//	v := g.Verifier(clk)
//	srv := v.ServerTLSConfig(g.Manager, certs.PeerPolicy{...}, onPeerResult)
//	cli := v.ClientTLSConfig(g.Manager, "broker.hospital.example")
//
// Operator renewals and re-keys go through the same Manager.
//
// Errors callers match with errors.Is are listed in errors.go; peer
// refusals are *PeerError with a stable Reason code.
//
// # Concurrency
//
// Bundle, Verifier, Manager, StepClient and DevCA are safe for concurrent
// use. Store is safe for concurrent use within one process (writes are
// serialised and atomic on disk). Identity and Pattern are immutable
// values. Manager.Run owns the Manager's only goroutine and returns after
// it stopped; GetCertificate and GetClientCertificate only load an atomic
// pointer, so a handshake never waits for, nor triggers, a renewal, and a
// rotation never touches established connections.
//
// Time is injected everywhere (clockwork.Clock): verification, the renewal
// schedule, expiry checks, tokens.
package certs
