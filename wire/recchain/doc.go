// Package recchain is the format of vendor session recordings and its
// read side, shared by the gateway's recorder and central's archive: a
// recording is a CBOR sequence of [body bstr, hash bstr] pairs with hash =
// SHA-256(previous hash || body) (32 zero bytes before the first frame);
// the first body is the header, the last the trailer (frame type 1 and 3
// under key 1), with data and note frames between. The session-end event
// carries the last hash.
//
// Check verifies the chain without interpreting the frames (central's
// upload check). Verify also decodes every frame (strictly: unknown fields
// are errors) and hands it to a callback; Replay and ReplayText print a
// timeline or a whole transcript; CheckHash compares a verified recording
// with the session-end event's hash. EncodeFrame is the one encoder, used by
// the gateway's recorder (gateway/access/recording).
//
// All functions are safe for concurrent use and never panic on any input.
package recchain
