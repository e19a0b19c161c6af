// Package monitor judges what the gateway sees and raises findings: typed
// events of kind monitor.* with a severity, the evidence (counts, first and
// last seen) and what to do.
//
// It is fed, through Observe, with the events the other components already
// emit (clinical handshakes and sessions, vendor requests, refusals and
// sessions, approvals and locks), and, through Run, with periodic samples:
// the clinical relay's traffic counters (per-device baselines per hour of
// the week, silence), a TCP link probe (the clinical relay owns the link
// state), the isolated segment's neighbour table (unknown devices, changed
// MACs) and the run-time checks of every exception's compensating controls.
//
// Findings are rate limited per kind and key (one per finding window, the
// rest counted into the next), so a flood of refusals cannot amplify into a
// flood of findings. Learned state (clinical identities per device, MACs,
// baselines, approvers' hours) lives in the monitor's own bbolt file.
//
// Concurrency: a Monitor is safe for concurrent use. Observe is
// synchronous and cheap; Options.Emit is called outside the monitor's lock
// and may re-enter Observe (findings of kind monitor.* are ignored). Run
// owns the periodic goroutines and returns after they exited; Close is
// idempotent. Time comes from Options.Clock.
package monitor
