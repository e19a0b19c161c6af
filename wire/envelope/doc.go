// Package envelope holds the wire format of wardgate telemetry: the CBOR
// envelope (integer keys 1..8), its COSE_Sign1 wrapping (RFC 9052, tag 18,
// ES256, attached payload, signer chain in the unprotected x5chain header)
// and SenML-CBOR metric packs (RFC 8428 integer labels). It also holds
// central's endorsement (Endorse, Endorsed.Verify): central's COSE_Sign1
// over the digest of a signed message whose signers' short-lived
// certificates may expire before it does (lock sets, restrictive
// commands).
//
// Encoding is deterministic (RFC 8949 core deterministic encoding).
// Decoding of received bytes is strict: size, nesting, array and map limits,
// indefinite lengths and unknown tags are rejected before anything is
// decoded; duplicate map keys and unknown fields fail the decode itself,
// and nothing decoded is used unless the whole decode succeeded. docs/telemetry.cddl is the normative schema.
//
// Every function in this package is safe for concurrent use; values
// returned are owned by the caller.
package envelope
