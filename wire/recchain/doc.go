// Package recchain checks the hash chain of a vendor session recording
// without interpreting its frames, for central's archive: a recording is a
// CBOR sequence of [body bstr, hash bstr] pairs with hash = SHA-256(previous
// hash || body) (32 zero bytes before the first frame); the first body is
// the header, the last the trailer (frame type 1 and 3 under key 1). The
// gateway's writer and its full verifier (with the frame contents) live
// with the recorder; the session-end event carries the last hash.
//
// Check is safe for concurrent use.
package recchain
