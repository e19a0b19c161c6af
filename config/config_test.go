package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// base is a small valid configuration; cases edit it with replacements.
const base = `version: 1
gateway:
  id: gw-1
  site: site-a
  trust_domain: hospital.example
  state_dir: /var/lib/wardgate
identity:
  ca: step
  ca_url: https://ca.hospital.example:9000
  root_fingerprint: 5d0b6c2f3e4051829304b5c6d7e8f90a1223344556677889900aabbccddeeff1
  lifetime: 4h
mqtt:
  broker: mqtts://broker.hospital.example:8883
hal:
  driver: sim
monitor:
  segment_interface: eth1
vendors:
  - org: acme
    identities: ["spiffe://hospital.example/vendor/acme/*"]
devices:
  - id: pump-07
    owner: clinical-engineering/icu
    link: {tcp: 10.20.0.7:4001}
    clinical:
      listen: ":7001"
      allow: ["spiffe://hospital.example/svc/pump-server"]
    vendor:
      org: acme
      ports: [23, 8080]
      approval: [local]
    accounts:
      - {id: acme-svc, type: shared-password, owner: ce/icu, rotate_every: 90d, last_rotated: 2026-09-01}
    exceptions:
      - {id: EX-1, control: PR.PS-02, reason: no patches, compensating: [segmentation], approved_by: ciso/j, expires: 2027-03-31}
`

func TestBaseIsValid(t *testing.T) {
	cfg, err := Parse("base.yaml", []byte(base), now)
	if err != nil {
		t.Fatalf("base config refused:\n%v", err)
	}
	// Defaults applied in one place.
	if cfg.Gateway.VendorListen != ":8443" || cfg.Gateway.AdminSocket != "/var/lib/wardgate/admin.sock" {
		t.Errorf("gateway defaults not applied: %+v", cfg.Gateway)
	}
	if cfg.Identity.RekeyEvery != DefaultRekeyEvery || cfg.MQTT.OutboxMax != DefaultOutboxMax || cfg.MQTT.MetricsInterval.D() != time.Minute {
		t.Errorf("defaults not applied: %+v %+v", cfg.Identity, cfg.MQTT)
	}
	v := cfg.Devices[0].Vendor
	if v.MaxSession.D() != time.Hour || v.RequestTimeout.D() != 15*time.Minute || v.Host != "10.20.0.7" {
		t.Errorf("vendor defaults not applied: %+v", v)
	}
	if got := cfg.Devices[0].Accounts[0].RotateEvery.D(); got != 90*24*time.Hour {
		t.Errorf("rotate_every = %v", got)
	}
	if cfg.Hash == "" || cfg.File != "base.yaml" {
		t.Errorf("file and hash not set")
	}
	want := VendorLimits{MaxConnections: DefaultVendorMaxConnections, MaxPerSource: DefaultVendorMaxPerSource,
		MaxPending: DefaultVendorMaxPending, HandshakeTimeout: Duration(DefaultVendorHandshakeTimeout), HandshakeRate: DefaultVendorHandshakeRate}
	if cfg.Gateway.VendorLimits != want || want.MaxConnections != 128 || want.MaxPerSource != 8 || want.MaxPending != 32 || want.HandshakeRate != 50 || want.HandshakeTimeout.D() != 10*time.Second {
		t.Errorf("vendor_limits = %+v, want %+v", cfg.Gateway.VendorLimits, want)
	}
	if r := cfg.Gateway.Recordings; r.MaxBytes != 1<<30 || r.MaxFreeShare != 25 || r.FsyncEvery.D() != 2*time.Second {
		t.Errorf("recordings = %+v", r)
	}
	if cfg.MQTT.OutboxReserve != 64<<20 {
		t.Errorf("outbox_reserve = %s, want outbox_max/4 = 64MiB", cfg.MQTT.OutboxReserve)
	}
	if cfg.Devices[0].Clinical.MaxPending != 0 {
		t.Errorf("clinical max_pending = %d, want 0 (the relay's default)", cfg.Devices[0].Clinical.MaxPending)
	}
	if len(withoutApprovers(cfg.Warnings)) != 0 {
		t.Errorf("base config has warnings:\n%v", cfg.Warnings)
	}
}

func TestOutboxReserveFollowsOutboxMax(t *testing.T) {
	cfg, err := Parse("w.yaml", []byte(strings.Replace(base, "mqtt:\n", "mqtt:\n  outbox_max: 1GiB\n", 1)), now)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.OutboxReserve != 256<<20 {
		t.Errorf("outbox_reserve = %s, want 256MiB", cfg.MQTT.OutboxReserve)
	}
}

func TestExampleIsValidAndComplete(t *testing.T) {
	onDisk, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(onDisk) != Example {
		t.Fatal("config/example.yaml and the embedded Example differ")
	}
	cfg, err := Parse("example.yaml", []byte(Example), now)
	if err != nil {
		t.Fatalf("example refused:\n%v", err)
	}
	if len(cfg.Devices) < 2 || cfg.Devices[1].Link.Serial == nil || cfg.Devices[0].Vendor == nil {
		t.Errorf("example should show a TCP device with vendor access and a serial device")
	}
	// Every key of every section appears in the example.
	for _, key := range []string{"drain_timeout", "rekey_every", "outbox_max", "long_press", "max_cert_lifetime",
		"max_per_source", "handshake_timeout", "idle_timeout", "max_lifetime", "request_timeout", "data_bits", "stop_bits", "flow",
		"vendor_limits", "max_connections", "max_pending", "handshake_rate", "recordings", "max_bytes", "max_free_share", "fsync_every", "outbox_reserve",
		"approvers", "actions", "extra_roots", "pin_intermediates", "retired", "replaced_by", "release_keys", "install_dir", "health_timeout"} {
		if !strings.Contains(Example, key+":") {
			t.Errorf("example does not show %s", key)
		}
	}
}

type problemWant struct {
	path   string
	lineAt string // a substring of the line the problem must point at
	msg    string // a substring of the message
}

func TestValidationRules(t *testing.T) {
	cases := []struct {
		name string
		old  string // replaced in base; "" appends new at the end
		new  string
		want problemWant
	}{
		{"missing version", "version: 1\n", "", problemWant{"version", "gateway:", "add `version: 1`"}},
		{"wrong version", "version: 1", "version: 2", problemWant{"version", "version: 2", "not supported"}},
		{"unknown key", "  site: site-a", "  site: site-a\n  sitte: x", problemWant{"gateway.sitte", "sitte:", `did you mean "site"`}},
		{"unknown top key", "hal:", "hall: {}\nhal:", problemWant{"hall", "hall:", `unknown key "hall"`}},
		{"duplicate key", "  site: site-a", "  site: site-a\n  site: site-b", problemWant{"gateway.site", "site: site-b", "already set at line 4"}},
		{"wrong type int", "ports: [23, 8080]", "ports: [23, telnet]", problemWant{"devices[0].vendor.ports[1]", "ports: [23, telnet]", "expected a whole number"}},
		{"wrong type list", "approval: [local]", "approval: local", problemWant{"devices[0].vendor.approval", "approval: local", "expected a list"}},
		{"wrong type section", "  driver: sim", "  driver: [sim]", problemWant{"hal.driver", "driver: [sim]", "expected text"}},
		{"bad duration", "lifetime: 4h", "lifetime: 4 hours", problemWant{"identity.lifetime", "lifetime: 4 hours", "not a duration"}},
		{"bad size", "mqtt:\n", "mqtt:\n  outbox_max: lots\n", problemWant{"mqtt.outbox_max", "outbox_max: lots", "not a size"}},
		{"bad date", "expires: 2027-03-31", "expires: 31/03/2027", problemWant{"devices[0].exceptions[0].expires", "expires: 31/03/2027", "YYYY-MM-DD"}},
		{"gateway id not a label", "id: gw-1", "id: GW_1", problemWant{"gateway.id", "id: GW_1", "not a valid name"}},
		{"gateway id reserved", "id: gw-1", "id: fleet", problemWant{"gateway.id", "id: fleet", "reserved"}},
		{"gateway id missing", "  id: gw-1\n", "", problemWant{"gateway.id", "gateway:", "missing"}},
		{"trust domain bad", "trust_domain: hospital.example", "trust_domain: Hospital Example", problemWant{"gateway.trust_domain", "trust_domain:", "not a trust domain"}},
		{"state_dir relative", "state_dir: /var/lib/wardgate", "state_dir: var/lib/wardgate", problemWant{"gateway.state_dir", "state_dir:", "absolute"}},
		{"admin socket relative", "  state_dir: /var/lib/wardgate", "  state_dir: /var/lib/wardgate\n  admin_socket: admin.sock", problemWant{"gateway.admin_socket", "admin_socket:", "absolute"}},
		{"device id not a label", "id: pump-07", "id: pump_07", problemWant{"devices[0].id", "id: pump_07", "not a valid name"}},
		{"duplicate device id", "", "  - id: pump-07\n    owner: x\n    link: {tcp: 10.0.0.1:1}\n    clinical: {listen: \":7009\", allow: [\"spiffe://hospital.example/svc/a\"]}\n", problemWant{"devices[1].id", "  - id: pump-07\n    owner: x", "already used by devices[0]"}},
		{"device without owner", "    owner: clinical-engineering/icu\n", "", problemWant{"devices[0].owner", "  - id: pump-07", "accountable owner"}},
		{"account without owner", "owner: ce/icu, ", "", problemWant{"devices[0].accounts[0].owner", "{id: acme-svc", "accountable owner"}},
		{"account without type", "type: shared-password, ", "", problemWant{"devices[0].accounts[0].type", "{id: acme-svc", "kind of credential"}},
		{"account without rotation", "rotate_every: 90d, ", "", problemWant{"devices[0].accounts[0].rotate_every", "{id: acme-svc", "how often"}},
		{"account id bad", "id: acme-svc", "id: acme svc", problemWant{"devices[0].accounts[0].id", "{id: acme svc", "not a valid id"}},
		{"account vendor unknown", "last_rotated: 2026-09-01}", "last_rotated: 2026-09-01, vendor: globex}", problemWant{"devices[0].accounts[0].vendor", "vendor: globex", "not a configured vendor"}},
		{"account rotated in future", "last_rotated: 2026-09-01", "last_rotated: 2027-09-01", problemWant{"devices[0].accounts[0].last_rotated", "{id: acme-svc", "in the future"}},
		{"exception without control", "control: PR.PS-02, ", "", problemWant{"devices[0].exceptions[0].control", "{id: EX-1", "missing"}},
		{"exception without reason", "reason: no patches, ", "", problemWant{"devices[0].exceptions[0].reason", "{id: EX-1", "missing"}},
		{"exception without compensating", "compensating: [segmentation], ", "", problemWant{"devices[0].exceptions[0].compensating", "{id: EX-1", "compensating controls"}},
		{"exception without approver", "approved_by: ciso/j, ", "", problemWant{"devices[0].exceptions[0].approved_by", "{id: EX-1", "accepted the risk"}},
		{"exception without expiry", ", expires: 2027-03-31", "", problemWant{"devices[0].exceptions[0].expires", "{id: EX-1", "needs an expiry"}},
		{"exception too far", "expires: 2027-03-31", "expires: 2028-01-31", problemWant{"devices[0].exceptions[0].expires", "{id: EX-1", "366 days"}},
		{"exception id missing", "id: EX-1, ", "", problemWant{"devices[0].exceptions[0].id", "control: PR.PS-02", "missing"}},
		{"vendor port out of range", "ports: [23, 8080]", "ports: [23, 70000]", problemWant{"devices[0].vendor.ports[1]", "ports: [23, 70000]", "out of range"}},
		{"vendor port zero", "ports: [23, 8080]", "ports: [0]", problemWant{"devices[0].vendor.ports[0]", "ports: [0]", "out of range"}},
		{"vendor ports missing", "      ports: [23, 8080]\n", "", problemWant{"devices[0].vendor.ports", "    vendor:", "declare the service ports"}},
		{"vendor port twice", "ports: [23, 8080]", "ports: [23, 23]", problemWant{"devices[0].vendor.ports[1]", "ports: [23, 23]", "twice"}},
		{"vendor org unknown", "      org: acme\n", "      org: globex\n", problemWant{"devices[0].vendor.org", "org: globex", "not a configured vendor"}},
		{"approval kind bad", "approval: [local]", "approval: [button]", problemWant{"devices[0].vendor.approval[0]", "approval: [button]", "not an approval kind"}},
		{"approval empty", "approval: [local]", "approval: []", problemWant{"devices[0].vendor.approval", "approval: []", "who approves"}},
		{"max session too long", "approval: [local]", "approval: [local]\n      max_session: 2d", problemWant{"devices[0].vendor.max_session", "max_session: 2d", "between 10s and 24h"}},
		{"listener collision", "listen: \":7001\"", "listen: \":8443\"", problemWant{"devices[0].clinical.listen", `listen: ":8443"`, "collides with gateway.vendor_listen"}},
		{"listener collision wildcard", "listen: \":7001\"", "listen: \"127.0.0.1:8443\"", problemWant{"devices[0].clinical.listen", `listen: "127.0.0.1:8443"`, "collides"}},
		{"listener bad", "listen: \":7001\"", "listen: \"7001\"", problemWant{"devices[0].clinical.listen", `listen: "7001"`, "not a listen address"}},
		{"link missing", "    link: {tcp: 10.20.0.7:4001}\n", "", problemWant{"devices[0].link", "  - id: pump-07", "exactly one of"}},
		{"link both", "link: {tcp: 10.20.0.7:4001}", "link: {tcp: 10.20.0.7:4001, serial: {port: /dev/ttyUSB0}}", problemWant{"devices[0].link", "link: {tcp", "both tcp and serial"}},
		{"link tcp bad", "link: {tcp: 10.20.0.7:4001}", "link: {tcp: 10.20.0.7}", problemWant{"devices[0].link.tcp", "link: {tcp", "HOST:PORT"}},
		{"serial parity bad", "link: {tcp: 10.20.0.7:4001}", "link: {serial: {port: /dev/ttyUSB0, parity: maybe}}", problemWant{"devices[0].link.serial.parity", "link: {serial", "not a parity"}},
		{"serial data bits", "link: {tcp: 10.20.0.7:4001}", "link: {serial: {port: /dev/ttyUSB0, data_bits: 9}}", problemWant{"devices[0].link.serial.data_bits", "link: {serial", "5, 6, 7 or 8"}},
		{"serial stop bits 1.5", "link: {tcp: 10.20.0.7:4001}", "link: {serial: {port: /dev/ttyUSB0, stop_bits: \"1.5\"}}", problemWant{"devices[0].link.serial.stop_bits", "link: {serial", "not supported"}},
		{"serial port relative", "link: {tcp: 10.20.0.7:4001}", "link: {serial: {port: ttyUSB0}}", problemWant{"devices[0].link.serial.port", "link: {serial", "not a device path"}},
		{"serial vendor needs host", "link: {tcp: 10.20.0.7:4001}", "link: {serial: {port: /dev/ttyUSB0}}", problemWant{"devices[0].vendor.host", "    vendor:", "network address"}},
		{"lifetime too short", "lifetime: 4h", "lifetime: 1m", problemWant{"identity.lifetime", "lifetime: 1m", "between 5m and 24h"}},
		{"lifetime too long", "lifetime: 4h", "lifetime: 2d", problemWant{"identity.lifetime", "lifetime: 2d", "between 5m and 24h"}},
		{"ca kind bad", "ca: step", "ca: vault", problemWant{"identity.ca", "ca: vault", "not a CA kind"}},
		{"ca url not https", "ca_url: https://", "ca_url: http://", problemWant{"identity.ca_url", "ca_url: http://", "https"}},
		{"fingerprint bad", "root_fingerprint: 5d0b", "root_fingerprint: zz0b", problemWant{"identity.root_fingerprint", "root_fingerprint:", "64 hexadecimal"}},
		{"broker not tls", "broker: mqtts://", "broker: tcp://", problemWant{"mqtt.broker", "broker: tcp://", "TLS only"}},
		{"brokers one not tls", "  broker: mqtts://broker.hospital.example:8883", "  brokers: [\"mqtts://a.example:8883\", \"tcp://b.example:1883\"]", problemWant{"mqtt.brokers[1]", "brokers: [", "TLS only"}},
		{"brokers twice", "  broker: mqtts://broker.hospital.example:8883", "  brokers: [\"mqtts://a.example:8883\", \"mqtts://a.example:8883\"]", problemWant{"mqtt.brokers[1]", "brokers: [", "listed twice"}},
		{"broker and brokers differ", "  broker: mqtts://broker.hospital.example:8883", "  broker: mqtts://c.example:8883\n  brokers: [\"mqtts://a.example:8883\"]", problemWant{"mqtt.broker", "broker: mqtts://c", "both broker and brokers"}},
		{"no broker", "  broker: mqtts://broker.hospital.example:8883", "  metrics_interval: 60s", problemWant{"mqtt.broker", "mqtt:", "missing"}},
		{"hal driver bad", "driver: sim", "driver: gpio", problemWant{"hal.driver", "driver: gpio", "not a driver"}},
		{"hal periph needs pins", "driver: sim", "driver: periph\n  approve_button: GPIO17\n  leds: {ok: GPIO22, vendor: GPIO23}", problemWant{"hal.leds.alarm", "leds: {ok", "name the GPIO pin"}},
		{"hal pin reused", "driver: sim", "driver: sim\n  approve_button: GPIO17\n  tamper: GPIO17", problemWant{"hal.tamper", "tamper: GPIO17", "already used by hal.approve_button"}},
		{"watchdog relative", "driver: sim", "driver: sim\n  watchdog: watchdog0", problemWant{"hal.watchdog", "watchdog: watchdog0", "or none"}},
		{"vendor org bad", "  - org: acme\n", "  - org: Acme Inc\n", problemWant{"vendors[0].org", "org: Acme Inc", "not a valid name"}},
		{"vendor identity other org", `identities: ["spiffe://hospital.example/vendor/acme/*"]`, `identities: ["spiffe://hospital.example/vendor/globex/*"]`, problemWant{"vendors[0].identities[0]", "identities:", "must name this vendor"}},
		{"vendor twice", "devices:\n", "  - org: acme\n    identities: [\"spiffe://hospital.example/vendor/acme/*\"]\ndevices:\n", problemWant{"vendors[1].org", "  - org: acme\n    identities: [\"spiffe://hospital.example/vendor/acme/*\"]\ndevices:", "listed twice"}},
		{"clinical allow empty", `allow: ["spiffe://hospital.example/svc/pump-server"]`, "allow: []", problemWant{"devices[0].clinical.allow", "allow: []", "identities allowed"}},
		{"clinical allow other domain", `allow: ["spiffe://hospital.example/svc/pump-server"]`, `allow: ["spiffe://evil.example/svc/x"]`, problemWant{"devices[0].clinical.allow[0]", "allow:", "not an identity of this trust domain"}},
		// gateway.vendor_limits
		{"vendor max_connections negative", "  state_dir: /var/lib/wardgate", "  state_dir: /var/lib/wardgate\n  vendor_limits: {max_connections: -1}", problemWant{"gateway.vendor_limits.max_connections", "vendor_limits:", "1 or more"}},
		{"vendor max_per_source negative", "  state_dir: /var/lib/wardgate", "  state_dir: /var/lib/wardgate\n  vendor_limits:\n    max_per_source: -2", problemWant{"gateway.vendor_limits.max_per_source", "max_per_source: -2", "1 or more"}},
		{"vendor max_per_source over max_connections", "  state_dir: /var/lib/wardgate", "  state_dir: /var/lib/wardgate\n  vendor_limits:\n    max_connections: 4\n    max_per_source: 5", problemWant{"gateway.vendor_limits.max_per_source", "max_per_source: 5", "more than max_connections"}},
		{"vendor handshake_rate zero", "  state_dir: /var/lib/wardgate", "  state_dir: /var/lib/wardgate\n  vendor_limits:\n    handshake_rate: -5", problemWant{"gateway.vendor_limits.handshake_rate", "handshake_rate: -5", "1 or more"}},
		{"vendor max_pending negative", "  state_dir: /var/lib/wardgate", "  state_dir: /var/lib/wardgate\n  vendor_limits:\n    max_pending: -1", problemWant{"gateway.vendor_limits.max_pending", "max_pending: -1", "1 or more"}},
		{"vendor handshake too short", "  state_dir: /var/lib/wardgate", "  state_dir: /var/lib/wardgate\n  vendor_limits:\n    handshake_timeout: 500ms", problemWant{"gateway.vendor_limits.handshake_timeout", "handshake_timeout: 500ms", "between 1s and 60s"}},
		{"vendor handshake too long", "  state_dir: /var/lib/wardgate", "  state_dir: /var/lib/wardgate\n  vendor_limits:\n    handshake_timeout: 2m", problemWant{"gateway.vendor_limits.handshake_timeout", "handshake_timeout: 2m", "between 1s and 60s"}},
		// gateway.recordings
		{"recordings max_bytes too small", "  state_dir: /var/lib/wardgate", "  state_dir: /var/lib/wardgate\n  recordings:\n    max_bytes: 64KiB", problemWant{"gateway.recordings.max_bytes", "max_bytes: 64KiB", "at least 1MiB"}},
		{"recordings share too large", "  state_dir: /var/lib/wardgate", "  state_dir: /var/lib/wardgate\n  recordings:\n    max_free_share: 95%", problemWant{"gateway.recordings.max_free_share", "max_free_share: 95%", "between 1% and 90%"}},
		{"recordings share too small", "  state_dir: /var/lib/wardgate", "  state_dir: /var/lib/wardgate\n  recordings:\n    max_free_share: 0.5%", problemWant{"gateway.recordings.max_free_share", "max_free_share: 0.5%", "between 1% and 90%"}},
		{"recordings share without percent sign", "  state_dir: /var/lib/wardgate", "  state_dir: /var/lib/wardgate\n  recordings:\n    max_free_share: 25", problemWant{"gateway.recordings.max_free_share", "max_free_share: 25", "percent sign"}},
		{"recordings fsync too often", "  state_dir: /var/lib/wardgate", "  state_dir: /var/lib/wardgate\n  recordings:\n    fsync_every: 10ms", problemWant{"gateway.recordings.fsync_every", "fsync_every: 10ms", "between 100ms and 30s"}},
		{"recordings fsync too rare", "  state_dir: /var/lib/wardgate", "  state_dir: /var/lib/wardgate\n  recordings:\n    fsync_every: 1m", problemWant{"gateway.recordings.fsync_every", "fsync_every: 1m", "between 100ms and 30s"}},
		// mqtt.outbox_reserve
		{"outbox reserve not below outbox max", "mqtt:\n", "mqtt:\n  outbox_max: 64MiB\n  outbox_reserve: 64MiB\n", problemWant{"mqtt.outbox_reserve", "outbox_reserve: 64MiB", "not less than outbox_max"}},
		// clinical.max_pending
		{"clinical max_pending negative", `allow: ["spiffe://hospital.example/svc/pump-server"]`, "allow: [\"spiffe://hospital.example/svc/pump-server\"]\n      max_pending: -1", problemWant{"devices[0].clinical.max_pending", "max_pending: -1", "relay's default"}},
		// No bypass of the clinical path.
		{"vendor port is the clinical port", "ports: [23, 8080]", "ports: [23, 4001]", problemWant{"devices[0].vendor.ports[1]", "ports: [23, 4001]", "raw clinical port without approval or recording"}},
		{"clinical allow first segment wildcard", `allow: ["spiffe://hospital.example/svc/pump-server"]`, `allow: ["spiffe://hospital.example/*/pump-server"]`, problemWant{"devices[0].clinical.allow[0]", "allow:", "spiffe://hospital.example/svc/NAME"}},
		{"clinical allow everything", `allow: ["spiffe://hospital.example/svc/pump-server"]`, `allow: ["spiffe://hospital.example/svc/a", "spiffe://hospital.example/**"]`, problemWant{"devices[0].clinical.allow[1]", "allow:", "wildcard"}},
		{"clinical allow vendors", `allow: ["spiffe://hospital.example/svc/pump-server"]`, `allow: ["spiffe://hospital.example/vendor/acme/*"]`, problemWant{"devices[0].clinical.allow[0]", "allow:", "admits vendor identities"}},
		{"clinical allow approvers", `allow: ["spiffe://hospital.example/svc/pump-server"]`, `allow: ["spiffe://hospital.example/approver/**"]`, problemWant{"devices[0].clinical.allow[0]", "allow:", "admits approver identities"}},
		{"clinical allow gateways", `allow: ["spiffe://hospital.example/svc/pump-server"]`, `allow: ["spiffe://hospital.example/gateway/gw-1"]`, problemWant{"devices[0].clinical.allow[0]", "allow:", "admits gateway identities"}},
		{"clinical allow wildcard trust domain", `allow: ["spiffe://hospital.example/svc/pump-server"]`, `allow: ["spiffe://*/svc/pump-server"]`, problemWant{"devices[0].clinical.allow[0]", "allow:", "wildcard trust domain"}},
		{"clinical allow not spiffe", `allow: ["spiffe://hospital.example/svc/pump-server"]`, `allow: ["https://hospital.example/svc/pump-server"]`, problemWant{"devices[0].clinical.allow[0]", "allow:", "not a SPIFFE identity pattern"}},
		{"bool as text", "site: site-a", "site: true", problemWant{"gateway.site", "site: true", "put it in quotes"}},
		{"merge key", "hal:\n  driver: sim", "hal:\n  <<: {driver: sim}", problemWant{"hal", "<<:", "merge keys"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := base + tc.new
			if tc.old != "" {
				if !strings.Contains(base, tc.old) {
					t.Fatalf("case does not apply: %q not in base", tc.old)
				}
				text = strings.Replace(base, tc.old, tc.new, 1)
			}
			_, err := Parse("w.yaml", []byte(text), now)
			var ps Problems
			if !errors.As(err, &ps) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("want Problems, got %v", err)
			}
			wantLine := lineOf(t, text, tc.want.lineAt)
			for _, p := range ps {
				if p.Path == tc.want.path && p.Line == wantLine && strings.Contains(p.Msg, tc.want.msg) && p.File == "w.yaml" {
					return
				}
			}
			t.Errorf("want w.yaml:%d: %s: ...%s..., got:\n%v", wantLine, tc.want.path, tc.want.msg, err)
		})
	}
}

// lineOf returns the 1-based line on which the first occurrence of sub
// starts.
func lineOf(t *testing.T, text, sub string) int {
	t.Helper()
	i := strings.Index(text, sub)
	if i < 0 {
		t.Fatalf("%q not in text", sub)
	}
	return strings.Count(text[:i], "\n") + 1
}

func TestWatchdogNone(t *testing.T) {
	cfg, err := Parse("w.yaml", []byte(strings.Replace(base, "driver: sim", "driver: sim\n  watchdog: none", 1)), now)
	if err != nil || cfg.HAL.Watchdog != "none" {
		t.Fatalf("watchdog none: %v %+v", err, cfg)
	}
	if cfg, _ := Parse("w.yaml", []byte(base), now); cfg.HAL.Watchdog != "none" {
		t.Errorf("sim default watchdog %q, want none", cfg.HAL.Watchdog)
	}
}

func TestAllProblemsAtOnce(t *testing.T) {
	text := strings.NewReplacer("id: gw-1", "id: GW", "state_dir: /var", "state_dir: var", "ports: [23, 8080]", "ports: [99999]").Replace(base)
	_, err := Parse("w.yaml", []byte(text), now)
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
	for i := 1; i < len(ps); i++ {
		if ps[i].Line < ps[i-1].Line {
			t.Errorf("problems not ordered by line: %v", ps)
		}
	}
	if s := ps[0].String(); !strings.HasPrefix(s, "w.yaml:3: gateway.id: ") {
		t.Errorf("format: %q", s)
	}
}

func TestFileProblems(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unreadable := write("unreadable.yaml", base)
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	bomb := "version: 1\na: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
	big := "version: 1\n# " + strings.Repeat("x", 2<<20) + "\n"
	cases := []struct {
		name, path, want string
		line             int
	}{
		{"missing", filepath.Join(dir, "nope.yaml"), "no such file", 0},
		{"directory", dir, "is a directory", 0},
		{"empty", write("empty.yaml", "  \n"), "the file is empty", 0},
		{"too big", write("big.yaml", big), "larger than 1 MiB", 0},
		{"tabs", write("tabs.yaml", "version: 1\ngateway:\n\tid: gw-1\n"), "tab character", 3},
		{"not yaml", write("bad.yaml", "version: 1\ngateway: [\n"), "not valid YAML", 0},
		{"not a map", write("list.yaml", "- a\n- b\n"), "key: value pairs", 1},
		{"two documents", write("two.yaml", base+"---\nversion: 1\n"), "more than one YAML document", 0},
		{"alias bomb", write("bomb.yaml", bomb), "alias bomb", 0},
		{"alias bomb in a field", write("bomb2.yaml", bomb+"vendors: [*e, *e, *e]\n"), "alias bomb", 0},
	}
	if os.Getuid() != 0 { // root reads anything
		cases = append(cases, struct {
			name, path, want string
			line             int
		}{"unreadable", unreadable, "permission denied", 0})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.path, now)
			var ps Problems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("want Problems, got %v", err)
			}
			if !strings.Contains(ps[0].Msg, tc.want) || !strings.HasPrefix(ps[0].String(), tc.path) {
				t.Errorf("got %q, want it to contain %q", ps[0].String(), tc.want)
			}
			if tc.line != 0 && ps[0].Line != tc.line {
				t.Errorf("line %d, want %d", ps[0].Line, tc.line)
			}
		})
	}
}

func TestUnits(t *testing.T) {
	durations := map[string]time.Duration{"90d": 90 * 24 * time.Hour, "12h": 12 * time.Hour, "30m": 30 * time.Minute, "1h30m": 90 * time.Minute, "45s": 45 * time.Second}
	for in, want := range durations {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "d", "-5m", "1.5d", "5 minutes", "90dd"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
	sizes := map[string]int64{"256MiB": 256 << 20, "1GiB": 1 << 30, "500MB": 500e6, "4096": 4096, "10KiB": 10240, "7B": 7}
	for in, want := range sizes {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "MiB", "-1MiB", "1.5GiB", "lots", "99999999999GiB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
	if s := Duration(90 * 24 * time.Hour).String(); s != "90d" {
		t.Errorf("Duration.String = %q", s)
	}
	if s := Size(256 << 20).String(); s != "256MiB" {
		t.Errorf("Size.String = %q", s)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte(Example))
	f.Add([]byte("version: 1\n"))
	f.Add([]byte("version: 1\na: &a [x, x]\nb: [*a, *a]\n"))
	f.Add([]byte("\tversion: 1"))
	// Decode problems next to values validation reads.
	f.Add([]byte(strings.NewReplacer("driver: sim", "driver: [sim]", "vendor:\n", "vendor: x\n  x:\n", "link: {tcp", "link: {serial: 1, tcp").Replace(base)))
	f.Add([]byte("version: 1\ngateway: {vendor_limits: 3, recordings: {max_free_share: 5}}\ndevices: [{clinical: 1, vendor: {}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data, now)
		if (cfg == nil) == (err == nil) {
			t.Fatalf("want exactly one of config and error: %v %v", cfg, err)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("error is not ErrInvalid: %v", err)
		}
	})
}

// TestDecodeAndValidationProblemsTogether checks that decode problems do not
// hide validation problems elsewhere in the file.
func TestDecodeAndValidationProblemsTogether(t *testing.T) {
	text := strings.NewReplacer(
		"  site: site-a", "  site: site-a\n  colour: blue", // unknown key (decode)
		"ports: [23, 8080]", "ports: [23, telnet]", // wrong type (decode)
		"id: pump-07", "id: pump_07", // bad name (validation)
		"lifetime: 4h", "lifetime: 2d", // out of range (validation)
	).Replace(base)
	_, err := Parse("w.yaml", []byte(text), now)
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("want Problems, got %v", err)
	}
	got := map[string]bool{}
	for _, p := range ps {
		got[p.Path] = true
	}
	for _, path := range []string{"gateway.colour", "devices[0].vendor.ports[1]", "devices[0].id", "identity.lifetime"} {
		if !got[path] {
			t.Errorf("no problem at %s; got:\n%v", path, err)
		}
	}
	if len(ps) != 4 {
		t.Errorf("want 4 problems, got %d:\n%v", len(ps), err)
	}
}

// TestNoFollowOnProblems: a field that did not decode gives exactly its own
// problem, never a second, misleading one from validation.
func TestNoFollowOnProblems(t *testing.T) {
	cases := []struct {
		name, old, new string
		path           string // the only problem expected
	}{
		{"wrong type in a list", "ports: [23, 8080]", "ports: [23, telnet]", "devices[0].vendor.ports[1]"},
		{"list written as text", "approval: [local]", "approval: local", "devices[0].vendor.approval"},
		{"hal driver not text", "  driver: sim", "  driver: [sim]", "hal.driver"},
		{"ca not text", "  ca: step\n  ca_url: https://ca.hospital.example:9000\n", "  ca: [dev]\n", "identity.ca"},
		{"misspelt key", "  site: site-a", "  stie: site-a", "gateway.stie"},
		{"link tcp not text", "link: {tcp: 10.20.0.7:4001}", "link: {tcp: [10.20.0.7]}", "devices[0].link.tcp"},
		{"trust domain not text", "trust_domain: hospital.example", "trust_domain: [hospital.example]", "gateway.trust_domain"},
		{"vendor org not text", "  - org: acme\n", "  - org: [acme]\n", "vendors[0].org"},
		{"outbox max bad", "mqtt:\n", "mqtt:\n  outbox_max: lots\n  outbox_reserve: 300MiB\n", "mqtt.outbox_max"},
		{"vendor section not a section", "    vendor:\n      org: acme\n      ports: [23, 8080]\n      approval: [local]\n", "    vendor: acme\n", "devices[0].vendor"},
		{"date bad", "expires: 2027-03-31", "expires: soon", "devices[0].exceptions[0].expires"},
		{"devices not a list", base[strings.Index(base, "devices:"):], "devices: pump-07\n", "devices"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(base, tc.old) {
				t.Fatalf("case does not apply: %q not in base", tc.old)
			}
			_, err := Parse("w.yaml", []byte(strings.Replace(base, tc.old, tc.new, 1)), now)
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("want Problems, got %v", err)
			}
			if len(ps) != 1 || ps[0].Path != tc.path {
				t.Errorf("want one problem at %s, got:\n%v", tc.path, err)
			}
		})
	}
}

// TestBrokersShorthand: broker: URL is brokers: [URL]; a list keeps its
// order and Broker names the first.
func TestBrokersShorthand(t *testing.T) {
	cfg, err := Parse("x.yaml", []byte(base), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.MQTT.Brokers) != 1 || cfg.MQTT.Brokers[0] != cfg.MQTT.Broker {
		t.Errorf("shorthand: brokers %v, broker %q", cfg.MQTT.Brokers, cfg.MQTT.Broker)
	}
	list := strings.Replace(base, "  broker: mqtts://broker.hospital.example:8883", "  brokers: [\"mqtts://a.example:8883\", \"mqtts://b.example:8883\"]", 1)
	cfg, err = Parse("x.yaml", []byte(list), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.MQTT.Brokers) != 2 || cfg.MQTT.Brokers[1] != "mqtts://b.example:8883" || cfg.MQTT.Broker != "mqtts://a.example:8883" {
		t.Errorf("list: brokers %v, broker %q", cfg.MQTT.Brokers, cfg.MQTT.Broker)
	}
}
