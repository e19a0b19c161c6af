package config

import (
	"regexp"
	"strings"
	"sync"
)

// exampleFingerprint is the placeholder root fingerprint Example ships,
// normalised (no colons, lowercase).
var exampleFingerprint = sync.OnceValue(func() string {
	m := regexp.MustCompile(`(?m)^\s*root_fingerprint:\s*"?([0-9A-Fa-f:]+)`).FindStringSubmatch(Example)
	if m == nil {
		return ""
	}
	return normFingerprint(m[1])
})

func normFingerprint(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, ":", ""))
}

// warnings returns the risky but valid choices of a valid, defaulted c, with
// the lines d recorded, ordered by line.
func warnings(c *Config, d *decoder) Problems {
	var ws Problems
	add := func(path, msg string) {
		ws = append(ws, Problem{File: d.file, Line: d.lineOf(path), Path: path, Msg: msg, Severity: SeverityWarning})
	}
	if c.HAL.Driver == "periph" && (c.HAL.Tamper == "" || c.HAL.Tamper == "none") {
		add("hal.tamper", "no tamper input: opening the enclosure raises no alarm and does not cut vendor access; wire the enclosure loop and name its pin, e.g. tamper: GPIO27")
	}
	switch c.Identity.CA {
	case "dev":
		add("identity.ca", "the built-in development CA issues this gateway's identity; it is for demos and labs only, use ca: step with the hospital's CA on a gateway in service")
	case "step":
		if fp := exampleFingerprint(); fp != "" && normFingerprint(c.Identity.RootFingerprint) == fp {
			add("identity.root_fingerprint", "this is the placeholder from `wardgate config example`, not your CA's root; enrollment will fail, ask the CA operator for the real fingerprint (`step certificate fingerprint root_ca.crt`)")
		}
	}
	if c.Approvers == nil {
		add("approvers", "no approvers section: every approver certificate of the trust domain may run every central command on every device; scope them with approvers: (see `wardgate config example`)")
	}
	if len(c.Devices) == 0 {
		add("devices", "no devices are configured; the gateway protects nothing until you add one under devices")
	}
	monitorWarnings(c, add)
	return ws.sorted()
}
