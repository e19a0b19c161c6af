// Package recording writes and verifies vendor session recordings.
//
// A recording is a CBOR sequence (RFC 8742) of frames. Each frame on disk is a
// two-element CBOR array [body, hash]: body is a CBOR-encoded map with integer
// keys (frame type, time, direction, bytes, header or trailer) and hash is
// SHA-256(previous hash || body), the previous hash of the first frame being 32
// zero bytes. The first frame is a header (session, grant, vendor, device, port,
// start time; port -1 is a serial console), then data frames (time, direction,
// bytes) and note frames (the gateway's remarks: a service-account login,
// never its secret; a tunnel carrying TLS or SSH, whose data is then
// ciphertext), then a trailer whose
// hash is the recording's final hash. Any changed, removed or reordered byte
// makes the chain fail at the first affected frame.
//
// A Store owns the recordings directory: it caps disk use (absolute and as a
// share of free space), refuses new recordings with ErrFull when full, keeps
// every recording until central has received its session-end event and then
// prunes oldest first, and fsyncs live recordings periodically. Its
// accounting is rebuilt from the files, so recordings deleted by hand simply
// drop out of it. The sentinel errors are listed in errors.go.
//
// A Writer is safe for concurrent use by the two relay directions of a tunnel.
// Replay, ReplayText and Verify read untrusted bytes and never panic on any
// input. ReplayText prints a whole transcript; CheckHash compares a verified
// recording with the final hash its session-end event carried.
package recording
