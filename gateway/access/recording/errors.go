package recording

import "errors"

// Sentinel errors of this package, matched with errors.Is. Returned errors
// wrap them with the session or file concerned.
var (
	// ErrBroken is matched by every *ChainError: the recording's hash chain
	// does not verify.
	ErrBroken = errors.New("recording chain broken")
)
