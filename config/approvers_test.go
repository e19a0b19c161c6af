package config

import (
	"strings"
	"testing"
)

// withApprovers is base with an approvers section before vendors.
func withApprovers(section string) string {
	return strings.Replace(base, "vendors:\n", section+"vendors:\n", 1)
}

const goodApprovers = `approvers:
  - identities: ["spiffe://hospital.example/approver/biomed/*"]
    actions: [approve, deny]
    devices: [pump-07]
  - identities: ["spiffe://hospital.example/approver/**"]
    actions: [lock, unlock, clear-tamper, rebirth, inventory, end-session, revoke]
    devices: ["*"]
`

func TestApproversValid(t *testing.T) {
	text := withApprovers(goodApprovers)
	cfg, err := Parse("a.yaml", []byte(text), now)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Approvers == nil || len(*cfg.Approvers) != 2 || (*cfg.Approvers)[0].Devices[0] != "pump-07" {
		t.Fatalf("approvers = %+v", cfg.Approvers)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
	// An empty list is valid: every central command is refused.
	cfg, err = Parse("a.yaml", []byte(withApprovers("approvers: []\n")), now)
	if err != nil || cfg.Approvers == nil || len(*cfg.Approvers) != 0 {
		t.Fatalf("empty approvers: %v %v", err, cfg)
	}
	// A kind that a device has.
	text = strings.Replace(withApprovers(strings.Replace(goodApprovers, "[pump-07]", "[\"kind:infusion-pump\"]", 1)),
		"  - id: pump-07\n", "  - id: pump-07\n    kind: infusion-pump\n", 1)
	if _, err := Parse("a.yaml", []byte(text), now); err != nil {
		t.Fatal(err)
	}
}

func TestApproversWarnWhenAbsent(t *testing.T) {
	cfg, err := Parse("a.yaml", []byte(base), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || cfg.Warnings[0].Path != "approvers" || !strings.Contains(cfg.Warnings[0].Msg, "every central command") {
		t.Errorf("warnings = %v", cfg.Warnings)
	}
}

func TestApproversRules(t *testing.T) {
	cases := []struct {
		name, old, new string
		want           problemWant
	}{
		{"unknown action", "actions: [approve, deny]", "actions: [approve, reboot]",
			problemWant{"approvers[0].actions[1]", "actions: [approve, reboot]", `"reboot" is not an action`}},
		{"no actions", "    actions: [approve, deny]\n", "",
			problemWant{"approvers[0].actions", "  - identities: [\"spiffe://hospital.example/approver/biomed/*\"]", "missing"}},
		{"unknown device", "devices: [pump-07]", "devices: [pump-99]",
			problemWant{"approvers[0].devices[0]", "devices: [pump-99]", "not a configured device id"}},
		{"unknown kind", "devices: [pump-07]", `devices: ["kind:ventilator"]`,
			problemWant{"approvers[0].devices[0]", "kind:ventilator", `no configured device has kind "ventilator"`}},
		{"no devices", "    devices: [pump-07]\n", "",
			problemWant{"approvers[0].devices", "  - identities: [\"spiffe://hospital.example/approver/biomed/*\"]", "missing"}},
		{"not an approver identity", "approver/biomed/*", "vendor/acme/*",
			problemWant{"approvers[0].identities[0]", "vendor/acme/*", "must name approver identities"}},
		{"other trust domain", "spiffe://hospital.example/approver/biomed/*", "spiffe://other.example/approver/biomed/*",
			problemWant{"approvers[0].identities[0]", "other.example", "must name approver identities"}},
		{"bad glob", "approver/biomed/*", "approver/bio*",
			problemWant{"approvers[0].identities[0]", "approver/bio*", "whole segment"}},
		{"double star not last", "approver/biomed/*", "approver/**/x",
			problemWant{"approvers[0].identities[0]", "approver/**/x", "last segment"}},
		{"no identities", "  - identities: [\"spiffe://hospital.example/approver/biomed/*\"]\n    actions: [approve, deny]", "  - actions: [approve, deny]",
			problemWant{"approvers[0].identities", "  - actions: [approve, deny]", "missing"}},
		{"unknown key", "    devices: [pump-07]\n", "    devices: [pump-07]\n    device: [x]\n",
			problemWant{"approvers[0].device", "device: [x]", "unknown key"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			good := withApprovers(goodApprovers)
			if !strings.Contains(good, tc.old) {
				t.Fatalf("case does not apply: %q", tc.old)
			}
			text := strings.Replace(good, tc.old, tc.new, 1)
			_, err := Parse("a.yaml", []byte(text), now)
			if err == nil {
				t.Fatal("accepted")
			}
			probs := err.(Problems)
			line := lineOf(t, text, tc.want.lineAt)
			for _, p := range probs {
				if p.Path == tc.want.path && p.Line == line && strings.Contains(p.Msg, tc.want.msg) {
					return
				}
			}
			t.Errorf("want a.yaml:%d: %s: ...%s..., got:\n%v", line, tc.want.path, tc.want.msg, err)
		})
	}
}

func TestIdentityTrustRules(t *testing.T) {
	fp := strings.Repeat("ab", 32)
	ok := strings.Replace(base, "  lifetime: 4h\n", "  lifetime: 4h\n  extra_roots: [\""+fp+"\"]\n  pin_intermediates: {vendor: [\""+fp+"\"]}\n", 1)
	cfg, err := Parse("t.yaml", []byte(ok), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Identity.ExtraRoots) != 1 || len(cfg.Identity.PinIntermediates.Vendor) != 1 {
		t.Fatalf("identity = %+v", cfg.Identity)
	}
	for _, tc := range []struct{ name, old, new, path string }{
		{"extra root", `extra_roots: ["` + fp + `"]`, `extra_roots: ["abc"]`, "identity.extra_roots[0]"},
		{"pin", `{vendor: ["` + fp + `"]}`, `{approver: ["zz"]}`, "identity.pin_intermediates.approver[0]"},
		{"pin unknown kind", `{vendor: ["` + fp + `"]}`, `{gateway: ["` + fp + `"]}`, "identity.pin_intermediates.gateway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(strings.Replace(ok, tc.old, tc.new, 1)), now)
			if err == nil || !strings.Contains(err.Error(), tc.path+":") {
				t.Errorf("want a problem at %s, got %v", tc.path, err)
			}
		})
	}
}
