package access

import "errors"

// Sentinel errors of the broker's command entry points (match with errors.Is).
var (
	// ErrNotFound: no request, grant or session with that id.
	ErrNotFound = errors.New("not found")
	// ErrNotPending: the request was already approved, denied, expired or revoked.
	ErrNotPending = errors.New("request is not pending")
	// ErrNotActive: the grant is not active (pending or already closed).
	ErrNotActive = errors.New("grant is not active")
	// ErrPolicy: the device's approval policy does not accept this kind of approver.
	ErrPolicy = errors.New("approval kind not allowed by the device's policy")
	// ErrAlreadyApproved: this approval kind already approved the request.
	ErrAlreadyApproved = errors.New("already approved by this kind of approver")
	// ErrNoneOrMany: the button approves only when exactly one request is pending.
	ErrNoneOrMany = errors.New("button approval needs exactly one pending request")
	// ErrNoSession: a short press found no live session.
	ErrNoSession = errors.New("no live vendor session")
	// ErrBadActor: the actor lacks a kind or, for central, an approver identity.
	ErrBadActor = errors.New("invalid actor")
	// ErrClosed: the broker was closed.
	ErrClosed = errors.New("broker closed")
)

// Parse errors. ErrMalformed answers 400, ErrHeadersTooLarge 431. A request
// whose method is not CONNECT parses without error (Method tells).
var (
	ErrMalformed       = errors.New("malformed request")
	ErrHeadersTooLarge = errors.New("request headers too large")
)

// Refusal codes: the X-Wardgate-Refusal header of a refused CONNECT and the
// Code of an EvRefused event. docs/vendor.md explains each. Codes are
// kebab-case. Refusal events are folded per source address and code (see
// Options.EventWindow).
const (
	CodeNoGrant         = "no-grant"          // 403: a request was recorded now
	CodePending         = "pending"           // 403: waiting for approval
	CodeDenied          = "denied"            // 403: the request was denied
	CodeRevoked         = "revoked"           // 403: the grant was revoked
	CodeExpired         = "expired"           // 403: grant or request expired; a new request was recorded
	CodePortNotAllowed  = "port-not-allowed"  // 403: not one of the device's vendor ports
	CodeClinicalPort    = "clinical-port"     // 403: the device's clinical port
	CodeLocked          = "locked"            // 403: identity locked
	CodeOtherDevice     = "other-device"      // 403: device serviced by another vendor org
	CodeTamper          = "tamper"            // 403: gateway tamper switch tripped
	CodeRetired         = "retired"           // 403: the device is retired (out of service)
	CodeIPLiteral       = "ip-literal"        // 403: target named by address
	CodeIdentity        = "identity"          // 403: certificate not accepted (Authorize)
	CodeBadCert         = "bad-certificate"   // 403 or handshake failure: chain does not verify
	CodeUnknownDevice   = "unknown-device"    // 404
	CodeMethod          = "method"            // 405
	CodeMalformed       = "malformed"         // 400
	CodeHeadersTooLarge = "headers-too-large" // 431
	CodeUnreachable     = "unreachable"       // 502: device did not answer
	CodeStorageFull     = "storage-full"      // 503: the recording store is full (new sessions only; live ones go on)
	CodeBusy            = "busy"              // 503: ConnLimits.MaxConns sessions established (the event is CodeConnLimit)
	CodeHandshake       = "handshake"         // TLS handshake or request head failed (no HTTP answer); Reason is one of the fixed Handshake* reasons

	// Connection caps (ConnLimits), refused before any TLS: the connection is
	// closed without an answer, except CodeConnLimit, answered with CodeBusy.
	CodePendingLimit = "pending-limit" // MaxPending handshakes already in progress
	CodeSourceLimit  = "source-limit"  // MaxPerSource connections from this address
	CodeConnLimit    = "conn-limit"    // MaxConns sessions established
	CodeRateLimit    = "rate-limit"    // more than HandshakeRate new connections per second
)

// Reasons of CodeHandshake refusals. They are fixed: the TLS error text is
// never reported, as it can quote bytes the client chose.
const (
	HandshakeNoCertificate = "no client certificate"
	HandshakeTimeout       = "handshake timeout" // TLS handshake or request head not done within ConnLimits.HandshakeTimeout
	HandshakeClientGone    = "client went away"
	HandshakeProtocol      = "protocol error" // no common version, suite or protocol, or malformed TLS
)
