// Package demo runs `wardgate demo`: the whole product in one process on
// loopback, with no root and nothing installed. It starts a development CA,
// an embedded MQTT broker, simulated legacy devices (a TCP infusion pump and
// a serial patient monitor on a pseudo-terminal), simulated hardware and the
// agent, then plays a scenario with a clinical client, a vendor client and a
// central consumer, narrating each step and checking that it behaved.
//
// The simulated devices and the broker exist for the demo only; the agent
// under demonstration is the same code `wardgate run` uses.
package demo
