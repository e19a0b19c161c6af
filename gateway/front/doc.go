// Package front is the one mutual-TLS front of the gateway: every clinical
// listener and the vendor listener accept through it, so they share one TLS
// policy, one accept loop and one set of connection caps.
//
//   - TLS policy (ServerConfig): TLS 1.2 or later, ECDHE key exchange with
//     AEAD suites only, X25519/P-256, a client certificate required. Chain
//     and identity checks stay with the caller (clinical authorizes inside
//     the handshake, the vendor broker after it so it can answer 403).
//   - Accept loop (Front.Serve): temporary errors (EMFILE, ENFILE, ENOMEM,
//     ENOBUFS, ECONNABORTED) are retried with backoff from 5 ms to 1 s and
//     never end the loop; neither does any other error, which is retried
//     each second and reported. Only closing the listener ends it.
//   - Caps (Limits): handshakes in progress (MaxPending), established
//     sessions (MaxConns), and connections from one source address
//     (MaxPerSource), plus one handshake deadline. A refused connection is
//     closed at once and reported to OnRefused with a fixed reason code.
//   - Descriptor budget (Budget): how many vendor connections fit in the
//     process's descriptor limit after the clinical side's share is set
//     aside, so a vendor flood can never take descriptors the clinical
//     path needs.
//   - Bounded reporting (Folder): refusals are folded per source and
//     reason, one report per window with a count, in bounded memory.
//
// Front and Folder are safe for concurrent use.
package front
