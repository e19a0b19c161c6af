// Package wire is the contract between a gateway and central security:
// topics (wardgate/v1/GATEWAY/KIND), the verification of one received
// message (Inspect: COSE signature, signer chain, topic, strict body
// decoding, late death Wills) and per-gateway sequence tracking (Tracker).
// Its subpackages hold the envelope and SenML encoding (envelope), signed
// central commands (command), SIEM formats and delivery (siem) and
// real-broker test harnesses (brokertest).
//
// Both sides import it: gateway/telemetry (publishing and `wardgate tail`)
// and central (ingest). It never imports gateway or central. Everything
// here is safe for concurrent use except Tracker, which its owner guards.
package wire
