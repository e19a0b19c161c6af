// Package relay is the clinical path: for every device an mTLS listener
// that admits only the identities the device allows and relays bytes to the
// device's link, a TCP address on the isolated segment or an RS-232 port.
//
// TLS is 1.3 preferred, 1.2 minimum with ECDHE and AEAD suites only; the
// client certificate is required and judged by the Authorize hook (chain,
// identity pattern, maximum lifetime, locks) during the handshake, so a
// refused client gets a TLS alert and never a byte of the device. Each
// connection is bounded by a handshake timeout, an idle timeout and a
// maximum lifetime, and each device by limits on concurrent connections in
// total and per source address. Payload bytes are copied through pooled
// buffers and never logged: events carry identities, addresses, counts and
// reasons only.
//
// Server is safe for concurrent use. Update starts, keeps, restarts or
// stops device listeners; Shutdown drains and stops everything and returns
// after every goroutine the Server started has exited.
package relay
