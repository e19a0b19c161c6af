// Package certs holds the gateway's identity: SPIFFE identities and URI
// patterns, peer verification against a trust bundle, ECDSA P-256 keys and
// CSRs, the on-disk identity store, a small client for the step-ca API
// (enroll, renew, re-key, roots, renewal after expiry), the Manager that
// keeps the current certificate fresh and swaps it atomically, and a
// development CA for demos and tests (see also certs/certstest).
//
// # Wiring
//
// Enrollment (`wardgate enroll --config F --token T`):
//
//	leaf, err := certs.Enroll(ctx, certs.EnrollOptions{
//		CAURL: cfg.Identity.CAURL, RootFingerprint: cfg.Identity.RootFingerprint,
//		Token: token, Dir: certs.IdentityDir(cfg.Gateway.StateDir),
//		Lifetime: cfg.Identity.Lifetime, NotBefore: buildTime, Logger: log})
//
// The agent (`wardgate run`):
//
//	m, err := certs.NewStepManager(certs.IdentityDir(stateDir), cfg.Identity.CAURL,
//		certs.ManagerOptions{RekeyEvery: cfg.Identity.RekeyEvery, NotBefore: buildTime,
//			Clock: clk, Logger: log, OnEvent: toTelemetry})
//	go m.Run(ctx)
//	v := certs.NewVerifier(m.Roots(), clk)
//	srv := v.ServerTLSConfig(m, certs.PeerPolicy{Allow: patterns, MaxLifetime: max,
//		Locked: locks.IsLocked}, onPeerResult)
//	cli := v.ClientTLSConfig(m, "broker.hospital.example")
//
// With the development CA (`wardgate demo`): dev, _ := certs.NewDevCA(...);
// m, _ := certs.NewManager(certs.ManagerOptions{CA: dev, Bundle: dev.Bundle()});
// tc, _ := dev.IssueIdentity(certs.GatewayURI(td, id), dnsNames, 0);
// m.InstallCertificate(&tc).
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
