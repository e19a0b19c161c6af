// Package agent wires wardgate's components into the running agent that
// `wardgate run` and `wardgate demo` start: the gateway identity (certs),
// the hardware (hal), the clinical relay, the vendor broker, telemetry, the
// monitor and the admin API. It maps the configuration onto each component's
// options, routes events to telemetry, the log and the monitor (which judges
// them and answers with findings through the same sink), drives the LEDs and the
// watchdog, and applies configuration reloads.
//
// An Agent is created by New and run once by Run, which returns after every
// goroutine it started has exited. Reload and Status are safe to call
// concurrently with Run.
package agent
