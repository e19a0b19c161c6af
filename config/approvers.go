package config

import (
	"fmt"
	"slices"
	"strings"
)

// Approver actions: what a central approver identity may do with a signed
// command. They are the command names of the gateway-central contract.
const (
	ActionApprove     = "approve"
	ActionDeny        = "deny"
	ActionRevoke      = "revoke"
	ActionLock        = "lock"
	ActionUnlock      = "unlock"
	ActionClearTamper = "clear-tamper"
	ActionEndSession  = "end-session"
	ActionRebirth     = "rebirth"
	ActionInventory   = "inventory"
)

// ApproverActions lists every action an approvers entry may name.
var ApproverActions = []string{ActionApprove, ActionDeny, ActionRevoke, ActionLock, ActionUnlock,
	ActionClearTamper, ActionEndSession, ActionRebirth, ActionInventory}

// Approver scopes central approver identities: the identities matching
// Identities may run Actions on Devices. A command is accepted when at least
// one entry covers its identity, action and device.
type Approver struct {
	// Identities are URI patterns under spiffe://TD/approver/ (`*` one
	// segment, `**` the rest), e.g. spiffe://TD/approver/biomed/*.
	Identities []string `yaml:"identities"`
	// Actions are the commands allowed (ApproverActions).
	Actions []string `yaml:"actions"`
	// Devices are configured device ids, kind:KIND (every device of that
	// kind) or "*" (every device and the gateway itself). Lock, unlock and
	// clear-tamper act on the whole gateway and need "*".
	Devices []string `yaml:"devices"`
}

// Trust continuity and intermediate pinning (identity section).

// PinIntermediates pins the issuing intermediate CA per identity kind: when
// a list is set, a peer of that kind is accepted only if its chain holds an
// intermediate with one of the SHA-256 fingerprints (hex) listed.
type PinIntermediates struct {
	Clinical []string `yaml:"clinical"`
	Vendor   []string `yaml:"vendor"`
	Approver []string `yaml:"approver"`
}

// approvers validates the approvers section.
func (v *validator) approvers(c *Config) {
	if c.Approvers == nil {
		return
	}
	ids, kinds := map[string]bool{}, map[string]bool{}
	for _, d := range c.Devices {
		ids[d.ID] = true
		if d.Kind != "" {
			kinds[d.Kind] = true
		}
	}
	devicesKnown := v.decoded("devices")
	for i, a := range *c.Approvers {
		p := fmt.Sprintf("approvers[%d]", i)
		if len(a.Identities) == 0 {
			v.add(p+".identities", "missing; list the approver identities this entry scopes, e.g. spiffe://%s/approver/biomed/*", c.Gateway.TrustDomain)
		}
		prefix := "spiffe://" + v.td + "/approver/"
		for j, pat := range a.Identities {
			jp := fmt.Sprintf("%s.identities[%d]", p, j)
			if v.td == "" {
				break // reported at gateway.trust_domain
			}
			if !strings.HasPrefix(pat, prefix) || len(pat) == len(prefix) {
				v.add(jp, "%q must name approver identities: start it with %s", pat, prefix)
				continue
			}
			if msg := globProblem(pat[len(prefix):]); msg != "" {
				v.add(jp, "%q: %s", pat, msg)
			}
		}
		if len(a.Actions) == 0 {
			v.add(p+".actions", "missing; list what these approvers may do: %s", strings.Join(ApproverActions, ", "))
		}
		for j, act := range a.Actions {
			if !slices.Contains(ApproverActions, act) {
				v.add(fmt.Sprintf("%s.actions[%d]", p, j), "%q is not an action; use %s", act, strings.Join(ApproverActions, ", "))
			}
		}
		if len(a.Devices) == 0 {
			v.add(p+".devices", `missing; list device ids, kind:KIND, or "*" for every device and the gateway itself`)
		}
		for j, d := range a.Devices {
			jp := fmt.Sprintf("%s.devices[%d]", p, j)
			switch k, isKind := strings.CutPrefix(d, "kind:"); {
			case d == "*":
			case !devicesKnown:
			case isKind && !kinds[k]:
				v.add(jp, "no configured device has kind %q; use the kind of a device under devices", k)
			case !isKind && !ids[d]:
				v.add(jp, `%q is not a configured device id; use a device id, kind:KIND or "*"`, d)
			}
		}
	}
}

// globProblem checks the path of an identity pattern after the approver
// prefix: segments are non-empty, "*" stands alone, "**" only last.
func globProblem(path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		switch {
		case s == "":
			return "empty path segment"
		case s == "**" && i != len(segs)-1:
			return "** is allowed only as the last segment"
		case s != "*" && s != "**" && strings.Contains(s, "*"):
			return "* must be a whole segment (approver/ROLE/* or approver/**)"
		}
	}
	return ""
}

// identityTrust validates identity.extra_roots and identity.pin_intermediates.
func (v *validator) identityTrust(c *Config) {
	check := func(path string, fps []string) {
		for j, fp := range fps {
			if !hexSHA256.MatchString(strings.ReplaceAll(fp, ":", "")) {
				v.add(fmt.Sprintf("%s[%d]", path, j), "%q is not a SHA-256 fingerprint; it must be 64 hexadecimal characters (`step certificate fingerprint root.crt`)", fp)
			}
		}
	}
	check("identity.extra_roots", c.Identity.ExtraRoots)
	check("identity.pin_intermediates.clinical", c.Identity.PinIntermediates.Clinical)
	check("identity.pin_intermediates.vendor", c.Identity.PinIntermediates.Vendor)
	check("identity.pin_intermediates.approver", c.Identity.PinIntermediates.Approver)
}

// NormFingerprint returns fp without colons, lowercase, as certificates'
// fingerprints are compared.
func NormFingerprint(fp string) string { return normFingerprint(fp) }
