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
// The same listener answers a small status API for the calling vendor
// identity only (same mTLS checks, locks included): GET /v1/me lists the
// caller's requests, grants and sessions, each ended session with its typed
// EndReason (recorded where the session is cut, before the vendor's
// connection closes); POST /v1/request records a request without a tunnel;
// POST /v1/extend asks for more time on an active grant. An extension is a
// request of its own (Grant.Extends) approved under the grant's policy; once
// approved it moves the grant's expiry, never beyond max_session from then.
//
// A device may have a serial service console, reached as DEVICE:console
// (ConsolePort): one session at a time, never the clinical link's port. A
// device's Injection makes the gateway perform a service account's login
// dialogue (login matcher, bounded buffer) before the tunnel is handed to
// the vendor: the secret is read per use (ReadSecret: 0600 file or systemd
// credential), scrubbed from what is recorded and forwarded, and never
// logged; each use is an EvInject event. The first bytes a vendor sends are
// checked for a TLS ClientHello or an SSH banner, noted in the recording.
//
// Client is the vendor-side library behind `wardgate connect`: tunnels,
// the status API, AwaitGrant (countdown to the request's expiry), Watch
// (warnings before the grant ends), Extend and ServeStdio. A Client is
// used from one goroutine per call; Serve and ServeStdio run their own.
package access
