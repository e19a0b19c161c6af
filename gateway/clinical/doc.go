// Package clinical is wardgate's clinical path: for every configured device
// an mTLS listener that admits only authorized identities and relays bytes,
// full duplex, to the device's link (a TCP address on the isolated segment or
// an RS-232 port).
//
// TLS is 1.3 preferred, 1.2 minimum with ECDHE + AEAD suites only, on the
// X25519 and P-256 curves. A client certificate is required; the trust
// bundle (ClientCAs) is read at every handshake and Authorize (chain, URI
// pattern, lifetime, locks) decides inside the handshake, so a refused client
// gets an alert and the refusal is an event with its reason. Session tickets
// allow resumption; Authorize runs on resumed handshakes too.
//
// The relay holds no buffer while a connection is idle: reads wait for
// readiness first and take a 32 KiB buffer from a pool only when bytes are
// there. Device payload bytes never reach logs or events; events carry
// identities, addresses, reasons and byte counts. Refusals and failures are
// rate-limited per device, kind and reason (EventWindow) with a count of the
// events folded in.
//
// A serial link is held open by one goroutine per device that reopens the
// port with capped backoff when it disappears (a USB adapter unplugged); one
// session at a time owns the port and bytes the device sends while no session
// owns it are discarded, so one client never reads another's data.
//
// Concurrency: every exported method of Server is safe for concurrent use.
// Run owns the listener, connection, serial and sweeper goroutines and
// returns after they exited; Close is idempotent. Events are called
// synchronously, outside the server's locks, from the goroutine that caused
// them. Wall-clock I/O deadlines (handshake, dial, close_notify) use the real
// time; idle and lifetime limits, backoff and event windows use the injected
// clock.
package clinical
