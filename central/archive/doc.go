// Package archive is central's recordings archive: an http.Handler for the
// resumable, chunked upload of vendor session recordings by gateways over
// mTLS, a filesystem store (a directory per gateway), the check of each
// completed recording's hash chain against the hash of its signed
// session-end event, signed receipts, and retention with legal hold.
//
// Protocol (paths under /api/v1/recordings/GATEWAY/SESSION; the client
// certificate must be spiffe://TD/gateway/GATEWAY):
//
//	HEAD  -> 200, Upload-Offset: bytes stored so far (0 when none),
//	         Upload-Complete: 1 once archived
//	PUT   Content-Range: bytes START-END/TOTAL, body = bytes START..END
//	      -> 409 + Upload-Offset when START is not the stored offset;
//	         204 + Upload-Offset for a chunk that is not the last;
//	         201 + the receipt (application/cose) for the last chunk once
//	         the chain verified against the session-end event's hash;
//	         422 (and a finding) when it does not: tampered or truncated;
//	         503 + Retry-After when the session-end event is not known yet
//	GET   .../receipt -> 200 + the receipt of an archived recording
//
// Every chunk is appended and synced before it is acknowledged, so the
// stored offset survives a crash of either side and the client resumes
// from it. Concurrent uploads of one recording are serialized.
//
// Archive is safe for concurrent use.
package archive
