package clinical

import "errors"

// Sentinel errors (match with errors.Is).
var (
	// ErrInvalidOptions: the options are incomplete or inconsistent; the
	// joined errors name each field.
	ErrInvalidOptions = errors.New("invalid clinical options")
	// ErrClosed: the server was closed.
	ErrClosed = errors.New("clinical server closed")
	// ErrUnknownDevice: no device with that id.
	ErrUnknownDevice = errors.New("unknown device")
)

// Event kinds.
const (
	EvSessionStart    = "clinical.session_start"    // an authorized session reached the device
	EvSessionEnd      = "clinical.session_end"      // with Reason, byte counts and Duration
	EvRefused         = "clinical.refused"          // Authorize refused the peer (Reason from Authorize)
	EvHandshakeFailed = "clinical.handshake_failed" // TLS failed before authorization
	EvLimit           = "clinical.limit"            // a connection limit refused a client
	EvBusy            = "clinical.busy"             // the serial port is owned by another session
	EvLinkUp          = "clinical.link_up"          // the device link answered (again)
	EvLinkDown        = "clinical.link_down"        // the device link failed
	EvListenerError   = "clinical.listener_error"   // Accept failed; retried with backoff
)

// Reason codes of events and counters (besides those Authorize returns, e.g.
// the certs package's not_allowed, expired, untrusted, lifetime_too_long,
// locked).
const (
	ReasonNoCertificate    = "no_certificate"    // the client sent no certificate
	ReasonHandshakeTimeout = "handshake_timeout" // the handshake did not finish in time
	ReasonProtocol         = "tls_protocol"      // TLS version, suite or message error
	ReasonClientGone       = "client_gone"       // the client closed during the handshake
	ReasonRefused          = "refused"           // Authorize refused without a reason
	ReasonDeviceLimit      = "device_limit"      // MaxConns sessions already live
	ReasonSourceLimit      = "source_limit"      // MaxPerSource connections from that address
	ReasonPendingLimit     = "pending_limit"     // MaxPending handshakes in progress
	ReasonBusy             = "busy"              // serial port owned by another session
	ReasonLinkDown         = "link_down"         // the device link is down or failed
	ReasonClosed           = "closed"            // the session ended normally
	ReasonIdle             = "idle_timeout"      // no bytes either way for IdleTimeout
	ReasonMaxLifetime      = "max_lifetime"      // the session lived MaxLifetime
	ReasonLocked           = "locked"            // CutIdentity (a lock was added)
	ReasonReconfigured     = "reconfigured"      // the device's settings changed or it was removed
	ReasonShutdown         = "shutdown"          // the gateway is stopping
	ReasonClientError      = "client_error"      // the client's connection failed
)
