// Package receipt holds the archive receipt central returns when it has
// stored a session recording whose hash chain ends in the hash of the
// signed session-end event: a COSE_Sign1 (ES256, x5chain) by central's
// identity spiffe://TD/svc/NAME over
//
//	receipt = {1: gateway, 2: session, 3: head (bstr, 32), 4: size, 5: stored-ms}
//
// The gateway deletes its copy of a recording only after Verify accepted a
// receipt binding its gateway id, the session, the last hash it computed
// itself and the file size.
//
// Functions are safe for concurrent use.
package receipt
