// Package brokertest runs real MQTT brokers (mosquitto, RabbitMQ) on
// loopback ports for telemetry tests, configured as docs/security-team.md
// describes: mutual TLS, the certificate's common name as the user name,
// per-gateway ACLs. A missing broker fails the test under CI (env CI set)
// and skips it otherwise. Start, Stop and restart are safe for concurrent
// use; each broker is stopped by t.Cleanup.
package brokertest
