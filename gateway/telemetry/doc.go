// Package telemetry sends the gateway's health, inventory and security
// events to central security over MQTT, and receives signed commands.
//
// Every message is produced as a record in a durable outbox
// (gateway/telemetry/outbox), then signed as a COSE_Sign1 envelope
// (wire/envelope) when it is sent, and deleted only after the
// broker's PUBACK on a connection that stayed up. The Publisher owns one
// paho client per connection (MQTT 3.1.1, QoS 1, CleanSession, no
// automatic reconnect, a signed death Will) and reconnects with capped,
// jittered backoff on the injected clock.
//
// Content builders (Birth, Status, Metrics, Event, Inventory) turn plain
// structs into message bodies; Accountability derives overdue-rotation and
// exception-expiry events from an inventory. Commands (gateway/telemetry/
// command) arrive on .../cmd and are answered on .../cmd/reply. Tail is the
// consumer side used by `wardgate tail`.
//
// Publisher methods are safe for concurrent use. Run owns every goroutine
// it starts and returns after they exited.
package telemetry
