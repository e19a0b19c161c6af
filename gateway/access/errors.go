package access

import (
	"errors"

	"github.com/wardgate/wardgate/gateway/authority"
	"github.com/wardgate/wardgate/gateway/front"
)

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
	// ErrSamePerson: under dual control, the approving person already
	// approved the request in another role (authority.SamePerson); the
	// request stays pending until a second person approves.
	ErrSamePerson = errors.New("already approved by the same person; dual control needs a second person")
	// ErrBinding: a signed approval names a vendor, device or ports other
	// than the request's (the request changed since it was signed), or an
	// approval without a binding came for a request whose ports grew.
	ErrBinding = errors.New("approval does not match the request")
	// ErrClockBehind: the clock is behind trusted time; vendor access waits.
	ErrClockBehind = authority.ErrClockBehind
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
// snake_case like every refusal reason of front, clinical and certs (one
// spelling across the gateway; docs/architecture.md). Refusal events are folded per source address and code (see
// Options.EventWindow).
const (
	CodeNoGrant         = "no_grant"          // 403: a request was recorded now
	CodePending         = "pending"           // 403: waiting for approval
	CodeDenied          = "denied"            // 403: the request was denied
	CodeRevoked         = "revoked"           // 403: the grant was revoked
	CodeExpired         = "expired"           // 403: grant or request expired; a new request was recorded
	CodePortNotAllowed  = "port_not_allowed"  // 403: not one of the device's vendor ports
	CodeClinicalPort    = "clinical_port"     // 403: the device's clinical port
	CodeLocked          = "locked"            // 403: identity locked
	CodeOtherDevice     = "other_device"      // 403: device serviced by another vendor org
	CodeTamper          = "tamper"            // 403: gateway tamper switch tripped
	CodeClockBehind     = "clock_behind"      // 403: the gateway clock is behind trusted time
	CodeIPLiteral       = "ip_literal"        // 403: target named by address
	CodeRetired         = "retired"           // 403: the device is retired (out of service)
	CodeIdentity        = "identity"          // 403: certificate not accepted (Authorize)
	CodeBadCert         = "bad_certificate"   // 403 or handshake failure: chain does not verify
	CodeUnknownDevice   = "unknown_device"    // 404
	CodeMethod          = "method"            // 405
	CodeMalformed       = "malformed"         // 400
	CodeHeadersTooLarge = "headers_too_large" // 431
	CodeUnreachable     = "unreachable"       // 502: device did not answer
	CodeStorageFull     = "storage_full"      // 503: the recording store is full (new sessions only; live ones go on)
	CodeBusy            = "busy"              // 503: ConnLimits.MaxConns sessions established (the event is CodeConnLimit)
	CodeHandshake       = "handshake"         // TLS handshake or request head failed (no HTTP answer); Reason is one of the fixed Handshake* reasons

	// Connection caps (ConnLimits), refused before any TLS: the connection is
	// closed without an answer, except CodeConnLimit, answered with CodeBusy.
	CodePendingLimit = front.ReasonPendingLimit // MaxPending handshakes already in progress
	CodeSourceLimit  = front.ReasonSourceLimit  // MaxPerSource connections from this address
	CodeConnLimit    = front.ReasonConnLimit    // MaxConns sessions established
	CodeRateLimit    = front.ReasonRateLimit    // more than HandshakeRate new connections per second
)

// Reasons of CodeHandshake refusals. They are fixed: the TLS error text is
// never reported, as it can quote bytes the client chose.
const (
	HandshakeNoCertificate = "no client certificate"
	HandshakeTimeout       = "handshake timeout" // TLS handshake or request head not done within ConnLimits.HandshakeTimeout
	HandshakeClientGone    = "client went away"
	HandshakeProtocol      = "protocol error" // no common version, suite or protocol, or malformed TLS
)
