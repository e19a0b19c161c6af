package certs

import "errors"

// Sentinel errors, matched with errors.Is. Wrapping errors add the details
// an operator needs (paths, URLs, what to run).
var (
	// ErrKeyPermissions: the key file is readable by group or others.
	ErrKeyPermissions = errors.New("key file is readable by group or others")
	// ErrNoIdentity: the store holds no key and certificate yet (not enrolled).
	ErrNoIdentity = errors.New("no identity stored: enroll first (wardgate enroll --config FILE --token TOKEN)")
	// ErrFingerprintMismatch: the CA's root does not have the configured fingerprint.
	ErrFingerprintMismatch = errors.New("CA root certificate does not match the configured root_fingerprint")
	// ErrTokenUsed: the CA refused a one-time token that was already used.
	ErrTokenUsed = errors.New("enrollment token was already used: ask the CA operator for a new one")
	// ErrTokenRefused: the CA refused the token (step-ca does not say why:
	// reuse, expiry and a wrong provisioner all answer 401).
	ErrTokenRefused = errors.New("the CA refused the enrollment token: it was already used, has expired, or was not made by this CA's provisioner; ask the CA operator for a new token")
	// ErrTokenInvalid: the token cannot be read (not a JWT, no subject, expired).
	ErrTokenInvalid = errors.New("enrollment token is invalid")
	// ErrCAUnreachable: the CA could not be reached at all.
	ErrCAUnreachable = errors.New("CA unreachable")
	// ErrCABadResponse: the CA answered something that is not a valid step-ca answer.
	ErrCABadResponse = errors.New("CA answered with an invalid response")
	// ErrCARefused: the CA answered with an error status.
	ErrCARefused = errors.New("CA refused the request")
	// ErrRenewAfterExpiryNotAllowed: the certificate expired and the CA does
	// not renew expired certificates; the gateway must be re-enrolled.
	ErrRenewAfterExpiryNotAllowed = errors.New("certificate expired and the CA does not allow renewal after expiry: re-enrollment needed (wardgate enroll --config FILE --token NEW_TOKEN)")
	// ErrClockInsane: the system clock is earlier than the binary's build time.
	ErrClockInsane = errors.New("system clock is earlier than the build time: fix the clock (NTP) before enrolling or renewing")
	// ErrBadIdentity: a URI is not a SPIFFE identity of a known kind under the trust domain.
	ErrBadIdentity = errors.New("not a valid identity")
	// ErrBadPattern: an identity pattern cannot be compiled.
	ErrBadPattern = errors.New("not a valid identity pattern")
)

func joinErrors(errs []error) error { return errors.Join(errs...) }
