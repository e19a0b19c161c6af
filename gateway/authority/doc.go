// Package authority owns who may do what on the gateway right now: the lock
// list (identities and identity prefixes refused on every path), the tamper
// latch (vendor access off until a person clears it) and the actors that
// change them.
//
// It is the single owner of that state. The clinical relay and the vendor
// broker consult it (Locked, Tampered) on every handshake and subscribe to
// its changes (Subscribe) to cut live sessions; nobody relays lock events
// between components.
//
// Lock targets are validated by ParseTarget: an exact SPIFFE ID under the
// gateway's trust domain, or a prefix pattern ending in "/*" that names at
// least one path segment and does not cover every approver. The same Target
// value matches new handshakes and live sessions, so both paths agree.
//
// Scopes (compiled from the configuration's approvers section) decide
// whether a central approver identity may run a command on a device;
// Permit reports refusals as EvRefused events naming the missing scope.
// SamePerson tells whether two actors are one person, for dual control.
//
// The trusted-time guard keeps a high-water mark of the clock (the build
// time as floor), saved at most every minute and at Close. While the clock
// is earlier, CheckClock fails with ErrClockBehind (vendor access and
// central commands call it) and lock expiry waits. Locks end by their
// timer only, never because the clock jumped ahead; at Open a lock whose
// end passed while the gateway was off stays for the time it had left at
// the mark (EvLockDeferred records both times).
//
// State lives in its own bbolt file (authority.db in the state directory).
// A lock is in force in memory even when it cannot be saved (a full disk):
// AddLock then returns the lock and an error wrapping ErrNotSaved, and the
// caller raises an alarm. Expiry runs on the injected clock.
//
// An Authority is safe for concurrent use. Subscribers are called
// synchronously after the state changed, outside the Authority's locks; they
// must not block for long.
package authority
