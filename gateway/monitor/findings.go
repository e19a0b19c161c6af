package monitor

import (
	"maps"
	"strconv"
	"time"
)

// Finding kinds. docs/security-team.md describes each, its thresholds and
// what to do.
const (
	KindAuthBurst            = "monitor.auth_burst"            // failed handshakes from one source or for one claimed identity
	KindUnknownIssuer        = "monitor.unknown_issuer"        // a certificate from an issuer the gateway does not trust
	KindRefusedLifetime      = "monitor.refused_lifetime"      // a certificate valid for longer than the policy allows
	KindLockedRetry          = "monitor.locked_retry"          // a locked identity kept trying
	KindTwoSources           = "monitor.identity_two_sources"  // one vendor identity from two addresses at once
	KindNewClinicalID        = "monitor.new_clinical_identity" // a clinical identity a device has not seen before
	KindVendorOffHours       = "monitor.vendor_off_hours"      // a vendor request or session outside the device's service hours
	KindApproverOffHours     = "monitor.approver_off_hours"    // an approver acted outside the hours they usually act in
	KindTrafficAnomaly       = "monitor.traffic_anomaly"       // an hour of device traffic far from its baseline
	KindDeviceSilent         = "monitor.device_silent"         // no clinical traffic for longer than expect_traffic_every
	KindUnknownDevice        = "monitor.unknown_device"        // an address or MAC on the segment that is not in the inventory
	KindMACChanged           = "monitor.mac_changed"           // a known device's address answers with another MAC
	KindControlNotInForce    = "monitor.control_not_in_force"  // a compensating control of an exception is not in force
	KindControlRestored      = "monitor.control_restored"      // it is in force again
	KindNeighboursUnreadable = "monitor.neighbours_unreadable" // the segment's neighbour table cannot be read
)

// Severities, as in telemetry.
const (
	SevInfo    = "info"
	SevWarning = "warning"
	SevAlarm   = "alarm"
)

// whatToDo is the advice every finding of a kind carries.
var whatToDo = map[string]string{
	KindAuthBurst:            "find the client at the source address; if it is not a known clinical system or vendor, block it upstream and consider locking the claimed identity (wardgate lock add)",
	KindUnknownIssuer:        "a client presented a certificate from a CA this gateway does not trust: find who configured it; a stolen or self-made certificate is an attack, a new hospital CA needs the trust bundle updated",
	KindRefusedLifetime:      "the client's certificate lives longer than the policy allows: have its owner issue a short-lived one; repeated attempts with long-lived certificates suggest a copied credential",
	KindLockedRetry:          "a locked identity keeps trying: confirm the lock is meant, then find and stop the client (its address is in remote); if the person should work again, remove the lock deliberately",
	KindTwoSources:           "one vendor identity is used from two addresses at once: ask the vendor whether the credential is shared or stolen; end the sessions (wardgate grant revoke) and lock the identity if in doubt",
	KindNewClinicalID:        "a clinical identity reached this device for the first time: confirm with the device's owner that the system is expected; if not, narrow clinical.allow and lock the identity",
	KindVendorOffHours:       "a vendor asked for or used access outside the device's service hours: check with the device's owner that the work was planned",
	KindApproverOffHours:     "an approver acted at an hour they do not usually act: confirm with the approver that it was them (a stolen approver key would look like this)",
	KindTrafficAnomaly:       "the device's traffic is far from its usual level for this hour: ask the device's owner whether a change is planned (new system, study, failure); unexplained bulk transfers may be data theft",
	KindDeviceSilent:         "the device saw no clinical traffic for longer than expected: check the device, its link and the clinical system that should use it",
	KindUnknownDevice:        "an address or MAC that is not in the inventory is on the isolated segment: find and remove the device, or add it to the configuration with its owner",
	KindMACChanged:           "a device's address answers with another MAC: the device may have been swapped or impersonated (ARP spoofing); check the device's label and the switch port",
	KindControlNotInForce:    "a compensating control the exception relies on is not in force: the risk the approver accepted is no longer covered; restore the control or withdraw the exception",
	KindControlRestored:      "no action: the compensating control is in force again",
	KindNeighboursUnreadable: "the gateway cannot read the segment's neighbour table: check monitor.segment_interface names the right interface",
}

// WhatToDo returns the advice for a finding kind ("" for unknown kinds).
func WhatToDo(kind string) string { return whatToDo[kind] }

// Kinds lists every finding kind.
func Kinds() []string {
	out := make([]string, 0, len(whatToDo))
	for k := range whatToDo {
		out = append(out, k)
	}
	return out
}

// Finding is one judgement of the monitor: a typed event with its
// evidence. It never carries device payload bytes.
type Finding struct {
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
	// Key is what the finding is about (a source address, an identity, a
	// device, an exception's control): findings are rate limited per kind
	// and key.
	Key    string `json:"key"`
	Device string `json:"device,omitempty"`
	Owner  string `json:"owner,omitempty"` // the device's owner, or the exception's approver
	// Count is the occurrences this finding reports (those folded since
	// the previous one of the same key included); First and Last bound them.
	Count int       `json:"count"`
	First time.Time `json:"first_seen"`
	Last  time.Time `json:"last_seen"`
	// Sev overrides the kind's default severity when set; the monitor
	// sets it on every finding it raises.
	Sev string `json:"severity"`
	// Evidence are detector-specific attributes (counts, thresholds,
	// addresses, identities).
	Evidence map[string]string `json:"evidence,omitempty"`
}

// Severity is the telemetry severity of the finding.
func (f Finding) Severity() string {
	if f.Sev != "" {
		return f.Sev
	}
	switch f.Kind {
	case KindUnknownIssuer, KindLockedRetry, KindTwoSources, KindUnknownDevice, KindMACChanged, KindControlNotInForce:
		return SevAlarm
	case KindControlRestored:
		return SevInfo
	}
	return SevWarning
}

// Attrs returns the finding's telemetry attributes: the evidence, then
// key, device, owner, count, first_seen, last_seen (RFC 3339 UTC) and
// what_to_do, which win over evidence of the same name.
func (f Finding) Attrs() map[string]string {
	m := maps.Clone(f.Evidence)
	if m == nil {
		m = map[string]string{}
	}
	m["key"] = f.Key
	if f.Device != "" {
		m["device"] = f.Device
	}
	if f.Owner != "" {
		m["owner"] = f.Owner
	}
	m["count"] = strconv.Itoa(f.Count)
	if !f.First.IsZero() {
		m["first_seen"] = f.First.UTC().Format(time.RFC3339)
	}
	if !f.Last.IsZero() {
		m["last_seen"] = f.Last.UTC().Format(time.RFC3339)
	}
	m["what_to_do"] = whatToDo[f.Kind]
	return m
}

// limiter lets one finding per kind and key out per window; the others are
// counted and reported with the next one (or by flush when the window ends),
// so that a flood cannot amplify into events.
type limiter struct {
	window time.Duration
	keys   map[limitKey]*limitState
}

type limitKey struct{ kind, key string }

type limitState struct {
	start   time.Time // of the window
	held    int       // occurrences folded in this window
	first   time.Time // of the folded occurrences
	pending Finding   // the latest folded finding
}

// maxLimitKeys bounds the limiter's memory: beyond it, new keys share one
// overflow key per kind.
const maxLimitKeys = 4096

// admit returns whether f goes out now; f.Count then includes the folded
// occurrences of the previous window.
func (l *limiter) admit(f *Finding) bool {
	k := limitKey{f.Kind, f.Key}
	s := l.keys[k]
	if s == nil && len(l.keys) >= maxLimitKeys {
		k.key = "(many)"
		f.Key = k.key
		s = l.keys[k]
	}
	if s == nil {
		l.keys[k] = &limitState{start: f.Time}
		return true
	}
	if f.Time.Sub(s.start) >= l.window {
		if s.held > 0 {
			f.Count += s.held
			if s.first.Before(f.First) || f.First.IsZero() {
				f.First = s.first
			}
		}
		s.start, s.held, s.first = f.Time, 0, time.Time{}
		return true
	}
	if s.held == 0 {
		s.first = f.First
	}
	s.held += f.Count
	s.pending = *f
	return false
}

// flush returns, for every key whose window ended with occurrences folded,
// the latest one carrying their count, and forgets idle keys.
func (l *limiter) flush(now time.Time) []Finding {
	var out []Finding
	for k, s := range l.keys {
		if now.Sub(s.start) < l.window {
			continue
		}
		if s.held > 0 {
			f := s.pending
			f.Count, f.First, f.Time = s.held, s.first, now
			out = append(out, f)
			s.start, s.held, s.first = now, 0, time.Time{}
			continue
		}
		delete(l.keys, k)
	}
	return out
}
