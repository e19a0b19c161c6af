// Package config loads, checks and defaults wardgate's configuration file.
//
// The file is YAML with a required `version: 1`. Loading is strict: unknown
// keys, wrong types, duplicate keys, anchors that expand too far, files over
// 1 MiB and tabs used for indentation are all errors. Every problem found is
// reported at once as a Problem carrying the file, the line and the field path,
// printed as
//
//	FILE:LINE: path.to.field: what is wrong and what to do
//
// Defaults are applied in one place (applyDefaults) before validation, so the
// values a caller reads from a loaded Config are the ones the agent uses.
//
// The package is pure: it never touches the network and reads only the file it
// is asked to load. Loaded Config values are plain data and safe to share
// between goroutines as long as nobody mutates them.
package config
