// Package release holds what a gateway knows about the software it runs
// and how it changes it: the CycloneDX SBOM of the running binary (from
// its build information) and signed self-update (a COSE_Sign1-signed
// release manifest verified against pinned release keys, A/B install next
// to the running binary, health check and automatic rollback).
//
// Concurrency: SBOM and Verify are pure functions, safe for concurrent
// use. An Updater applies one update at a time; its methods must not be
// called concurrently for the same install directory.
package release
