package recording

import (
	"errors"

	"github.com/wardgate/wardgate/wire/recchain"
)

// Sentinel errors of this package, matched with errors.Is. Returned errors
// wrap them with the session or file concerned.
var (
	// ErrBroken is matched by every *ChainError: the recording's hash chain
	// does not verify.
	ErrBroken = recchain.ErrBroken

	// ErrFull is returned by Store.Create when the recordings already use the
	// store's cap (after pruning). The message is shown to vendors and
	// operators as is.
	ErrFull = errors.New("recording store is full: recordings are deleted only after central has received their session-end events, " +
		"so new sessions are refused until central catches up (check the gateway's connection to central); " +
		"to allow more, raise gateway.recordings.max_bytes or free disk space")

	// ErrInvalidSession is returned for a session id that cannot name a
	// recording file: it must be 1 to 128 ASCII letters, digits, '.', '_' or
	// '-', and not start with '.'.
	ErrInvalidSession = errors.New("invalid session id for a recording: use 1 to 128 ASCII letters, digits, '.', '_' or '-', not starting with '.'")

	// ErrUnknownSession is returned by Store.Ended for a session that has no
	// recording in the store (never created, or its file was deleted).
	ErrUnknownSession = errors.New("no recording for this session in the recording store")

	// ErrClosed is returned by a Writer's Write and Note after Close.
	ErrClosed = errors.New("recording closed")

	// ErrHashMismatch: the recording verifies but its final hash is not the
	// one expected (the hash the session-end event carried).
	ErrHashMismatch = recchain.ErrHashMismatch
)
