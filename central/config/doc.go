// Package config holds wardgate-central's configuration: the YAML schema
// (version 1), strict loading (unknown keys are errors with their line),
// defaults (defaults.go, applied in one place), validation that reports
// every problem at once as config.Problems of the gateway's config package,
// and the complete example printed by `wardgate-central config example`.
//
// A loaded *Config is read-only and safe for concurrent use.
package config
