package config

import _ "embed"

// Example is a complete, commented configuration that passes validation;
// `wardgate config example` prints it.
//
//go:embed example.yaml
var Example string
