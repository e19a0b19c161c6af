package config

import _ "embed"

// Example is the complete, commented example configuration printed by
// `wardgate-central config example`; a test keeps it valid.
//
//go:embed example.yaml
var Example string
