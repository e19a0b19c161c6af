// Package app wires wardgate-central from its configuration: it loads
// central's identity (certificate, key, trust bundle), opens the store,
// starts the ingest (MQTT) and the HTTPS server (web UI, API, /metrics),
// and runs them until the context ends. cmd/wardgate-central only parses
// flags and calls Run.
//
// Run owns every goroutine it starts and returns after they exit.
package app
