// Package access is wardgate's brokered vendor channel.
//
// A vendor technician reaches a device's service port only through the
// gateway's vendor listener, an HTTPS (mTLS) CONNECT proxy: the peer must be
// a vendor identity of the org that services the device, the target must be
// DEVICE:PORT with PORT among the device's vendor ports, and a grant must be
// active. A CONNECT without a grant records a pending request (a short
// typeable id) that expires if nobody acts; the device's approval policy
// (local: approve button or admin socket; central: signed command; both: dual
// control) turns it into a grant valid for the device's max_session. Every
// tunnel of a grant is cut at expiry, revoke, lock, tamper or a short button
// press, and every session is recorded (package recording) with a hash chain
// whose final hash is reported in the session-end event.
//
// Dual control needs two distinct persons (authority.SamePerson). A central
// approval may be bound (ApproveBound) to the request's vendor, device and
// ports; an unbound one is accepted only while the request never grew, and
// a request stops growing at its first approval. Pending requests and
// grants save the time they have left (Grant.Remaining) every
// CheckpointEvery and restart with it, so the clock at start neither
// extends nor shortens them. CONNECTs wait while authority.CheckClock
// reports the clock behind trusted time.
//
// Locks and the tamper latch belong to package authority: the broker asks
// it on every CONNECT and subscribes to its changes to cut sessions (a new
// lock also revokes the grants it covers). Recordings live in a
// recording.Store, whose cap refuses new sessions only; the publisher of a
// session-end event calls its Ended. Requests and grants persist in a bbolt
// Store (Legacy and DropLegacy migrate what older versions kept there).
//
// The vendor listener accepts through package front: one TLS policy (AEAD
// suites only), connection caps (ConnLimits) and an accept loop that no
// error ends. Refusals are reported as EvRefused events folded per source
// address and code: the first at once, the rest as one summary per
// EventWindow with a Count. Handshake failures carry fixed reasons, and text
// taken from a request is capped and made printable.
//
// All time comes from the injected clockwork.Clock, except wall-clock I/O
// deadlines (TLS handshake, request head, device dial).
//
// Concurrency: every exported method of Broker is safe for concurrent use.
// Events and the LED hook are called synchronously, outside the broker's
// locks, from the goroutine that caused the change (a connection, a timer, or
// the caller of a command, or the authority's subscriber call). Run owns
// the connection goroutines and returns after they exited; Close stops
// timers, Run and sessions.
//
// Client is the vendor-side library behind `wardgate connect`.
package access
