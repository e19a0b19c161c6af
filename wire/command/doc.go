// Package command holds signed commands from central security to one
// gateway: their wire format (a COSE_Sign1 over a CBOR map, signed by an
// approver identity whose chain travels in the x5chain header), Sign for
// the `wardgate sign-command` helper, and Verify with a persistent replay
// store.
//
// A command is accepted only when: the signature verifies with the leaf of
// the carried chain; the chain is an approver's (VerifyApprover hook); it
// names this gateway (VerifyAt: or its site, or the fleet); it has not
// expired and expires no more than MaxTTLOf(name) after now (5 minutes; 7
// days for the restrictive lock, end-session, revoke and deny, which
// central re-publishes on each birth until answered); a permissive command
// (approve, unlock, clear-tamper) names exactly one gateway; a lock is not
// addressed to the fleet (that needs two approvers: wire/lockset); its
// nonce (at least 16 bytes) was never seen before. Nonces are remembered
// in bbolt until their command's expiry (up to 7 days), so a replay is
// refused across restarts too.
//
// Approver certificates live a day at most. A restrictive command that
// central delivers after its signer's certificate expired travels as the
// pair [command, endorsement] (Endorse): central's COSE_Sign1 over the
// command payload's digest, made at delivery. VerifyWith then accepts it
// when the signer's chain was valid at the command's issue time and the
// endorsement is central's, valid now, and made after that time. A
// permissive command is never accepted on an endorsement.
//
// Functions are safe for concurrent use; NonceStore is safe for concurrent
// use.
package command
