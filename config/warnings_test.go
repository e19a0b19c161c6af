package config

import (
	"fmt"
	"strings"
	"testing"
)

func TestWarnings(t *testing.T) {
	cases := []struct {
		name, old, new string
		want           problemWant
	}{
		{"no tamper input", "  driver: sim", "  driver: periph\n  approve_button: GPIO17\n  leds: {ok: GPIO22, vendor: GPIO23, alarm: GPIO24}",
			problemWant{"hal.tamper", "hal:\n", "no tamper input"}},
		{"tamper none", "  driver: sim", "  driver: periph\n  approve_button: GPIO17\n  leds: {ok: GPIO22, vendor: GPIO23, alarm: GPIO24}\n  tamper: none",
			problemWant{"hal.tamper", "tamper: none", "no tamper input"}},
		{"development CA", "  ca: step\n  ca_url: https://ca.hospital.example:9000\n", "  ca: dev\n",
			problemWant{"identity.ca", "ca: dev", "demos and labs only"}},
		{"placeholder fingerprint", "5d0b6c2f3e4051829304b5c6d7e8f90a1223344556677889900aabbccddeeff1", "4C:9A:5B:1E:2D:3F:40:71:82:93:A4:B5:C6:D7:E8:F9:01:12:23:34:45:56:67:78:89:9A:AB:BC:CD:DE:EF:F0",
			problemWant{"identity.root_fingerprint", "root_fingerprint:", "placeholder"}},
		{"no devices", base[strings.Index(base, "devices:"):], "",
			problemWant{"devices", "version: 1", "protects nothing"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(base, tc.old) {
				t.Fatalf("case does not apply: %q not in base", tc.old)
			}
			text := strings.Replace(base, tc.old, tc.new, 1)
			cfg, err := Parse("w.yaml", []byte(text), now)
			if err != nil {
				t.Fatalf("a warning must not make the file invalid:\n%v", err)
			}
			cfg.Warnings = withoutApprovers(cfg.Warnings)
			if len(cfg.Warnings) != 1 {
				t.Fatalf("want one warning, got %v", cfg.Warnings)
			}
			w, line := cfg.Warnings[0], lineOf(t, text, tc.want.lineAt)
			if w.Path != tc.want.path || w.Line != line || !strings.Contains(w.Msg, tc.want.msg) || w.Severity != SeverityWarning {
				t.Errorf("want w.yaml:%d: %s: warning: ...%s..., got %v", line, tc.want.path, tc.want.msg, w)
			}
			if s, prefix := w.String(), fmt.Sprintf("w.yaml:%d: %s: warning: ", line, tc.want.path); !strings.HasPrefix(s, prefix) {
				t.Errorf("String() = %q, want prefix %q", s, prefix)
			}
		})
	}
	// Simulated hardware always has a (simulated) tamper loop.
	if cfg, err := Parse("w.yaml", []byte(base), now); err != nil || len(withoutApprovers(cfg.Warnings)) != 0 {
		t.Errorf("sim without hal.tamper: %v %v", err, cfg.Warnings)
	}
}

func TestExampleWarnsOnlyAboutItsPlaceholder(t *testing.T) {
	cfg, err := Parse("example.yaml", []byte(Example), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || cfg.Warnings[0].Path != "identity.root_fingerprint" {
		t.Errorf("example warnings: %v", cfg.Warnings)
	}
}

// withoutApprovers drops the warning about a missing approvers section,
// which base (written before approvers existed) always draws.
func withoutApprovers(ws Problems) Problems {
	var out Problems
	for _, w := range ws {
		if w.Path != "approvers" {
			out = append(out, w)
		}
	}
	return out
}
