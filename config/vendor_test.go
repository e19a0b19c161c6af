package config

import (
	"errors"
	"strings"
	"testing"
)

// vendorBase is base with a console-only serial device and an injected
// account; cases edit it with replacements.
const vendorBase = base + `  - id: mon-03
    owner: clinical-engineering/icu
    link: {serial: {port: /dev/ttyUSB0}}
    clinical:
      listen: ":7002"
      allow: ["spiffe://hospital.example/svc/central"]
    vendor:
      org: acme
      approval: [local]
      console:
        serial: {port: /dev/ttyUSB1, baud: 115200}
    accounts:
      - id: mon-svc
        type: shared-password
        owner: ce/icu
        rotate_every: 90d
        inject:
          user: service
          secret_file: /etc/wardgate/secrets/mon-svc
          login:
            - {expect: 'login: ?$', send: user}
            - {expect: 'Password: ?$', send: secret}
            - {expect: '# ?$'}
`

func TestVendorBaseIsValid(t *testing.T) {
	cfg, err := Parse("v.yaml", []byte(vendorBase), now)
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Devices[1]
	if d.Vendor.Host != "" || d.Vendor.Console.Serial.Baud != 115200 || d.Vendor.Console.Serial.Parity != "none" {
		t.Errorf("console device: %+v %+v", d.Vendor, d.Vendor.Console.Serial)
	}
	in := d.Accounts[0].Inject
	if in.Timeout.D() != DefaultInjectTimeout || in.Newline != "crlf" {
		t.Errorf("inject defaults: %+v", in)
	}
	if p, ok := InjectPort(&d, in); !ok || p != -1 {
		t.Errorf("InjectPort = %d %v, want the console", p, ok)
	}
	// A number for inject.port decodes as text.
	text := strings.Replace(vendorBase, "      - {id: acme-svc, type: shared-password, owner: ce/icu, rotate_every: 90d, last_rotated: 2026-09-01}",
		"      - {id: acme-svc, type: shared-password, owner: ce/icu, rotate_every: 90d, inject: {port: 23, user: u, credential: acme, login: [{expect: x, send: user}]}}", 1)
	cfg, err = Parse("v.yaml", []byte(text), now)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := InjectPort(&cfg.Devices[0], cfg.Devices[0].Accounts[0].Inject); !ok || p != 23 {
		t.Errorf("InjectPort = %d %v, want 23", p, ok)
	}
}

func TestVendorValidationRules(t *testing.T) {
	const acme = "      - {id: acme-svc, type: shared-password, owner: ce/icu, rotate_every: 90d, last_rotated: 2026-09-01}"
	cases := []struct {
		name     string
		old, new string
		want     problemWant
	}{
		{"console on the clinical link", "serial: {port: /dev/ttyUSB1, baud: 115200}", "serial: {port: /dev/ttyUSB0}", problemWant{"devices[1].vendor.console.serial.port", "serial: {port: /dev/ttyUSB0}\n    acc", "clinical serial link of mon-03"}},
		{"console on another device's clinical link", "link: {tcp: 10.20.0.7:4001}", "link: {serial: {port: /dev/ttyUSB1}}", problemWant{"devices[1].vendor.console.serial.port", "serial: {port: /dev/ttyUSB1, baud", "clinical serial link of pump-07"}},
		{"console shared by two devices", "      approval: [local]\n    accounts:\n      - {id: acme-svc", "      approval: [local]\n      console: {serial: {port: /dev/ttyUSB1}}\n    accounts:\n      - {id: acme-svc", problemWant{"devices[1].vendor.console.serial.port", "serial: {port: /dev/ttyUSB1, baud", "already the console of pump-07"}},
		{"console without serial", "      console:\n        serial: {port: /dev/ttyUSB1, baud: 115200}\n", "      console: {}\n", problemWant{"devices[1].vendor.console.serial", "console: {}", "serial settings"}},
		{"console port relative", "serial: {port: /dev/ttyUSB1, baud: 115200}", "serial: {port: ttyUSB1}", problemWant{"devices[1].vendor.console.serial.port", "serial: {port: ttyUSB1}", "not a device path"}},
		{"console bad baud", "serial: {port: /dev/ttyUSB1, baud: 115200}", "serial: {port: /dev/ttyUSB1, baud: 7}", problemWant{"devices[1].vendor.console.serial.baud", "serial: {port: /dev/ttyUSB1, baud: 7}", "baud rate"}},
		{"no ports and no console", "      console:\n        serial: {port: /dev/ttyUSB1, baud: 115200}\n", "", problemWant{"devices[1].vendor.ports", "    vendor:\n      org: acme\n      approval: [local]\n    accounts:\n      - id: mon", "or a console"}},
		{"serial device ports need host", "      approval: [local]\n      console:", "      approval: [local]\n      ports: [23]\n      console:", problemWant{"devices[1].vendor.host", "    vendor:\n      org: acme\n      approval: [local]\n      ports: [23]", "network address"}},
		{"inject without vendor access", "    vendor:\n      org: acme\n      approval: [local]\n      console:\n        serial: {port: /dev/ttyUSB1, baud: 115200}\n", "", problemWant{"devices[1].accounts[0].inject", "        inject:", "no vendor access"}},
		{"inject port ambiguous", acme, "      - {id: acme-svc, type: t, owner: o, rotate_every: 90d, inject: {user: u, credential: c, login: [{expect: x, send: user}]}}", problemWant{"devices[0].accounts[0].inject.port", "inject: {user", "several service ports"}},
		{"inject port unknown", acme, "      - {id: acme-svc, type: t, owner: o, rotate_every: 90d, inject: {port: \"22\", user: u, credential: c, login: [{expect: x, send: user}]}}", problemWant{"devices[0].accounts[0].inject.port", "inject: {port", "not one of this device's vendor ports"}},
		{"inject port twice", acme, acme[:len(acme)-1] + ", inject: {port: \"23\", user: u, credential: c, login: [{expect: x}]}}\n      - {id: acme-2, type: t, owner: o, rotate_every: 90d, inject: {port: \"23\", user: u, credential: c, login: [{expect: x}]}}", problemWant{"devices[0].accounts[1].inject.port", "{id: acme-2", "already has an injected account (acme-svc)"}},
		{"inject no secret", "          secret_file: /etc/wardgate/secrets/mon-svc\n", "", problemWant{"devices[1].accounts[0].inject", "        inject:", "no secret"}},
		{"inject two secrets", "          secret_file: /etc/wardgate/secrets/mon-svc\n", "          secret_file: /etc/wardgate/secrets/mon-svc\n          credential: mon\n", problemWant{"devices[1].accounts[0].inject", "        inject:", "keep one"}},
		{"inject secret file relative", "secret_file: /etc/wardgate/secrets/mon-svc", "secret_file: secrets/mon-svc", problemWant{"devices[1].accounts[0].inject.secret_file", "secret_file: secrets", "absolute path"}},
		{"inject credential path", "secret_file: /etc/wardgate/secrets/mon-svc", "credential: ../x", problemWant{"devices[1].accounts[0].inject.credential", "credential: ../x", "not a credential name"}},
		{"inject login missing", "          login:\n            - {expect: 'login: ?$', send: user}\n            - {expect: 'Password: ?$', send: secret}\n            - {expect: '# ?$'}\n", "", problemWant{"devices[1].accounts[0].inject.login", "        inject:", "describe the login dialogue"}},
		{"inject expect missing", "{expect: '# ?$'}", "{send: x}", problemWant{"devices[1].accounts[0].inject.login[2].expect", "{send: x}", "regular expression"}},
		{"inject expect bad", "{expect: '# ?$'}", "{expect: '(#'}", problemWant{"devices[1].accounts[0].inject.login[2].expect", "{expect: '(#'}", "not a regular expression"}},
		{"inject user missing", "          user: service\n", "", problemWant{"devices[1].accounts[0].inject.login[0].send", "{expect: 'login: ?$', send: user}", "inject.user is not set"}},
		{"inject secret last", "            - {expect: '# ?$'}\n", "", problemWant{"devices[1].accounts[0].inject.login[1].send", "{expect: 'Password: ?$', send: secret}", "prompt after it"}},
		{"inject timeout", "          user: service\n", "          user: service\n          timeout: 10m\n", problemWant{"devices[1].accounts[0].inject.timeout", "timeout: 10m", "between 1s and 5m"}},
		{"inject newline", "          user: service\n", "          user: service\n          newline: crcr\n", problemWant{"devices[1].accounts[0].inject.newline", "newline: crcr", "crlf, cr or lf"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(vendorBase, tc.old) {
				t.Fatalf("case does not apply: %q not in base", tc.old)
			}
			text := strings.Replace(vendorBase, tc.old, tc.new, 1)
			_, err := Parse("w.yaml", []byte(text), now)
			var ps Problems
			if !errors.As(err, &ps) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("want Problems, got %v", err)
			}
			wantLine := lineOf(t, text, tc.want.lineAt)
			for _, p := range ps {
				if p.Path == tc.want.path && p.Line == wantLine && strings.Contains(p.Msg, tc.want.msg) {
					return
				}
			}
			t.Errorf("want w.yaml:%d: %s: ...%s..., got:\n%v", wantLine, tc.want.path, tc.want.msg, err)
		})
	}
}

// TestExampleShowsVendorKeys: the example shows a console and an injected
// account with every key.
func TestExampleShowsVendorKeys(t *testing.T) {
	for _, key := range []string{"console", "inject", "user", "secret_file", "login", "expect", "send", "newline"} {
		if !strings.Contains(Example, key+":") {
			t.Errorf("example does not show %s", key)
		}
	}
	cfg, err := Parse("example.yaml", []byte(Example), now)
	if err != nil {
		t.Fatal(err)
	}
	var console, inject bool
	for i := range cfg.Devices {
		d := &cfg.Devices[i]
		if d.Vendor != nil && d.Vendor.Console != nil {
			console = true
		}
		for _, a := range d.Accounts {
			if a.Inject != nil {
				if _, ok := InjectPort(d, a.Inject); ok {
					inject = true
				}
			}
		}
	}
	if !console || !inject {
		t.Errorf("example: console %v, inject %v", console, inject)
	}
}
