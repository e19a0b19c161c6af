// Package lockset holds the fleet's desired lock state: a versioned lock
// set signed by approvers, its wire format, Sign/Cosign for the people who
// sign it and Verify for gateways.
//
// A lock set names a scope (the whole fleet, one site or one gateway), a
// version that only grows, a validity of at most MaxValidity, and the locks
// every gateway in the scope must hold. A gateway keeps, per scope, the
// newest version it accepted and converges its lock-set managed locks to
// exactly that set; it refuses older or equal versions and expired sets.
//
// Wire format: a CBOR array of one to MaxSigners byte strings, each a
// tagged COSE_Sign1 (ES256, x5chain of an approver) over the same payload
// bytes. Two COSE_Sign1 rather than one COSE_Sign with two signers: every
// signature can be made on its own (the second approver countersigns what
// the first signed, with Cosign, on another machine) and each one is
// checked with the same verifier as commands and telemetry. The payload
// names its approvers; Verify requires exactly those to have signed, each
// once, and a fleet-wide set needs two distinct persons.
//
//	lockset-msg = [1*4 bstr .cbor COSE_Sign1_Tagged, ? endorsement]
//	endorsement = bstr .cbor COSE_Sign1_Tagged  ; by spiffe://TD/svc/central
//	payload = {1: trust-domain, 2: version, 3: iat-ms, 4: exp-ms,
//	           5: scope, 6: [* lock], 7: [1*4 approver-uri]}
//	lock = {1: target, ? 2: until-ms, ? 3: reason}
//	scope = "fleet" / "site/" SITE / "gateway/" GATEWAY-ID
//
//	endorsement payload = {1: "wardgate-lockset-endorsement",
//	                       2: SHA-256(payload), 3: endorsed-at-ms}
//
// Approver certificates live a day at most, a set up to MaxValidity. A
// gateway checks each approver's chain at its own clock; once one has
// expired, it checks the chain at the set's iat instead and then requires
// central's endorsement: central's signature, by a certificate valid now,
// over the set's digest, made at or after iat (VerifyWith). Central keeps
// re-endorsing the sets it publishes, so a gateway offline for a week
// still converges at its next connection; nobody holding only an expired
// approver key can make a set the gateways accept.
//
// Retained MQTT topics carry the newest set of each scope (see Topic), so
// a gateway that was offline gets it within seconds of connecting.
//
// Functions are pure and safe for concurrent use.
package lockset
