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
// Requests, grants, locks, the tamper latch and the recording index persist
// in a bbolt Store. All time comes from the injected clockwork.Clock, except
// wall-clock I/O deadlines (TLS handshake, request head, device dial).
//
// Concurrency: every exported method of Broker is safe for concurrent use.
// Events and the LED hook are called synchronously, outside the broker's
// locks, from the goroutine that caused the change (a connection, a timer, or
// the caller of a command). Run owns the connection goroutines and returns
// after they exited; Close stops timers and cuts sessions.
//
// Client is the vendor-side library behind `wardgate connect`.
package access
