// Package testnet hands out loopback ports to the real components that tests
// and benchmarks start as processes: mosquitto, RabbitMQ, step-ca, the agent,
// central.
//
// A port taken with net.Listen("127.0.0.1:0") and closed again comes from
// the kernel's ephemeral range, the range from which it also picks the local
// port of every outgoing connection and of every other Listen(":0"). A broker
// that takes seconds to bind it (RabbitMQ takes 10-30 s) races every test
// running beside it for that port. Ports from this package are picked at
// random below the ephemeral range, where the kernel never picks, so only
// another caller of this package could pick the same one.
//
// Safe for concurrent use; it keeps no state.
package testnet
