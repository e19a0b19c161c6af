package config

import "github.com/wardgate/wardgate/hal"

// Version is the only configuration file version this build reads.
const Version = 1

// Config is one wardgate configuration file, after defaults were applied.
type Config struct {
	Version  int      `yaml:"version"`
	Gateway  Gateway  `yaml:"gateway"`
	Identity Identity `yaml:"identity"`
	MQTT     MQTT     `yaml:"mqtt"`
	HAL      HAL      `yaml:"hal"`
	Vendors  []Vendor `yaml:"vendors"`
	Devices  []Device `yaml:"devices"`
	// Approvers scope central approver identities to actions and devices.
	// Nil (the key absent): every approver identity may run every command
	// (warned); an empty list refuses every command.
	Approvers *[]Approver `yaml:"approvers"`
	Monitor   Monitor     `yaml:"monitor"`
	// Update configures signed self-update (lifecycle.go).
	Update Update `yaml:"update"`

	// File is the path the configuration was loaded from ("" when parsed
	// from memory). Hash is the SHA-256 of the file's bytes, hex encoded,
	// reported in telemetry so central can tell which config runs.
	File string `yaml:"-"`
	Hash string `yaml:"-"`

	// Warnings are risky but valid choices found in the file (severity
	// Warning), ordered by line. They do not stop the agent;
	// `wardgate config check` prints them.
	Warnings Problems `yaml:"-"`
}

// Gateway names this gateway and where it keeps its state.
type Gateway struct {
	// ID is the gateway's name: its certificate's name and its MQTT topic
	// segment. A DNS label.
	ID   string `yaml:"id"`
	Site string `yaml:"site"`
	// TrustDomain is the SPIFFE trust domain of every identity
	// (spiffe://TRUST_DOMAIN/...).
	TrustDomain string `yaml:"trust_domain"`
	// StateDir holds keys, certificates, the outbox, grants and recordings.
	// Absolute. Default /var/lib/wardgate.
	StateDir string `yaml:"state_dir"`
	// VendorListen is the brokered vendor channel's address. Default ":8443".
	VendorListen string `yaml:"vendor_listen"`
	// AdminSocket is the UNIX socket of the admin API. Default
	// STATE_DIR/admin.sock.
	AdminSocket string `yaml:"admin_socket"`
	// DrainTimeout bounds how long SIGTERM waits for connections to end.
	// Default 10s.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// VendorLimits caps the vendor listener.
	VendorLimits VendorLimits `yaml:"vendor_limits"`
	// Recordings bounds the vendor session recordings kept in StateDir.
	Recordings Recordings `yaml:"recordings"`
}

// VendorLimits caps the brokered vendor listener. Zero (or absent) fields
// take the defaults; set values must be 1 or more.
type VendorLimits struct {
	// MaxConnections caps concurrent connections to the listener
	// (default DefaultVendorMaxConnections, 128).
	MaxConnections int `yaml:"max_connections"`
	// MaxPerSource caps the connections from one address
	// (default DefaultVendorMaxPerSource, 8).
	MaxPerSource int `yaml:"max_per_source"`
	// MaxPending caps TLS handshakes in progress
	// (default DefaultVendorMaxPending, 32).
	MaxPending int `yaml:"max_pending"`
	// HandshakeTimeout bounds one TLS handshake and CONNECT request, 1s to
	// 60s (default DefaultVendorHandshakeTimeout, 10s).
	HandshakeTimeout Duration `yaml:"handshake_timeout"`
	// HandshakeRate caps new vendor connections per second, with a burst
	// of the same size; a flood beyond it is refused before any TLS work
	// (default DefaultVendorHandshakeRate, 50).
	HandshakeRate int `yaml:"handshake_rate"`
}

// Recordings bounds the vendor session recordings on the state disk. The
// agent keeps the recordings under the smaller of MaxBytes and MaxFreeShare
// of the state disk's free space.
type Recordings struct {
	// MaxBytes is the absolute cap (default DefaultRecordingsMaxBytes,
	// 1GiB); at least 1MiB.
	MaxBytes Size `yaml:"max_bytes"`
	// MaxFreeShare is the cap as a share of the state disk's free space,
	// 1% to 90% (default DefaultRecordingsMaxFreeShare, 25%).
	MaxFreeShare Percent `yaml:"max_free_share"`
	// FsyncEvery is how often an open recording is flushed to disk, 100ms
	// to 30s (default DefaultRecordingsFsyncEvery, 2s).
	FsyncEvery Duration `yaml:"fsync_every"`
	// Upload sends ended recordings to central's archive (nil: kept on the
	// gateway only). See RecordingsUpload.
	Upload *RecordingsUpload `yaml:"upload"`
}

// Identity describes how the gateway gets its own certificate.
type Identity struct {
	// CA is "step" (the hospital's CA, step-ca API) or "dev" (the built-in
	// development CA, for demos and labs only). Default "step".
	CA string `yaml:"ca"`
	// CAURL is the CA's https URL. Required for ca: step.
	CAURL string `yaml:"ca_url"`
	// RootFingerprint is the SHA-256 of the CA root certificate (hex, as
	// printed by `step certificate fingerprint`). Required for ca: step.
	RootFingerprint string `yaml:"root_fingerprint"`
	// Lifetime is the certificate lifetime requested, 5m to 24h. Default 4h.
	Lifetime Duration `yaml:"lifetime"`
	// RekeyEvery makes every Nth renewal a re-key (new key pair).
	// Default 6.
	RekeyEvery int `yaml:"rekey_every"`
	// ExtraRoots are SHA-256 fingerprints (hex) of roots the operator
	// accepts when the CA's /roots serves them without a cross-signature
	// from a trusted root (a planned root change).
	ExtraRoots []string `yaml:"extra_roots"`
	// PinIntermediates optionally pins the issuing intermediate per
	// identity kind.
	PinIntermediates PinIntermediates `yaml:"pin_intermediates"`
}

// MQTT configures telemetry.
type MQTT struct {
	// Brokers are the brokers' URLs, mqtts://HOST:PORT (or ssl://, tls://):
	// the nodes of a broker cluster, or a primary and standbys. The gateway
	// uses one at a time and moves to the next when it fails; its outbox
	// guarantees nothing is lost on the way.
	Brokers []string `yaml:"brokers"`
	// Broker is the one-broker shorthand: broker: URL means brokers: [URL].
	// Set one of the two. After loading, Broker is Brokers[0].
	Broker string `yaml:"broker"`
	// MetricsInterval is how often a metrics message is produced.
	// Default 60s.
	MetricsInterval Duration `yaml:"metrics_interval"`
	// OutboxMax caps the durable outbox on disk. Default 256MiB.
	OutboxMax Size `yaml:"outbox_max"`
	// OutboxReserve is the part of OutboxMax kept for security events:
	// metrics and other routine messages may not fill it. Default
	// OutboxMax/4; less than OutboxMax.
	OutboxReserve Size `yaml:"outbox_reserve"`
}

// HAL selects and wires the gateway's hardware.
type HAL struct {
	// Driver is "periph" (real GPIO) or "sim" (simulated). Default "periph".
	Driver        string `yaml:"driver"`
	ApproveButton string `yaml:"approve_button"`
	LEDs          LEDs   `yaml:"leds"`
	// Tamper is the enclosure loop's pin. Empty or "none" means no tamper
	// input, which is valid but warned about (see Config.Warnings).
	Tamper string `yaml:"tamper"`
	// Watchdog is the watchdog device, or "none" (e.g. when systemd's
	// RuntimeWatchdogSec owns it). Default /dev/watchdog with the periph
	// driver, none with sim.
	Watchdog string `yaml:"watchdog"`
	// LongPress is how long the approve button must be held to approve.
	// Default 2s.
	LongPress Duration `yaml:"long_press"`
}

// LEDs names the pins of the three status LEDs.
type LEDs struct {
	OK     string `yaml:"ok"`
	Vendor string `yaml:"vendor"`
	Alarm  string `yaml:"alarm"`
}

// Vendor is a manufacturer whose technicians may ask for access.
type Vendor struct {
	// Org is the vendor's name, a DNS label, as in
	// spiffe://TD/vendor/ORG/PERSON.
	Org string `yaml:"org"`
	// Identities are the URI patterns of the vendor's technicians:
	// exact, `*` for one path segment, `**` for the rest.
	Identities []string `yaml:"identities"`
	// MaxCertLifetime refuses technician certificates valid for longer.
	// Default 12h.
	MaxCertLifetime Duration `yaml:"max_cert_lifetime"`
}

// Device is one legacy device behind the gateway.
type Device struct {
	ID           string `yaml:"id"`
	Kind         string `yaml:"kind"`
	Manufacturer string `yaml:"manufacturer"`
	Model        string `yaml:"model"`
	Serial       string `yaml:"serial"`
	Firmware     string `yaml:"firmware"`
	// Owner is the accountable operational owner, e.g.
	// clinical-engineering/icu.
	Owner      string      `yaml:"owner"`
	Location   string      `yaml:"location"`
	Link       Link        `yaml:"link"`
	Clinical   Clinical    `yaml:"clinical"`
	Vendor     *DeviceVend `yaml:"vendor"`
	Accounts   []Account   `yaml:"accounts"`
	Exceptions []Exception `yaml:"exceptions"`
	// MAC is the device's hardware address on the segment (optional); the
	// monitor alarms when the device's address answers with another.
	MAC string `yaml:"mac"`
	// ExpectTrafficEvery raises monitor.device_silent when the device saw
	// no clinical session for this long (optional).
	ExpectTrafficEvery Duration `yaml:"expect_traffic_every"`
	// Retired is the date the device was taken out of service; see
	// lifecycle.go (Device.IsRetired). ReplacedBy names the device that
	// took its place.
	Retired    Date   `yaml:"retired"`
	ReplacedBy string `yaml:"replaced_by"`
}

// Link is how the gateway reaches the device: exactly one of TCP or Serial.
type Link struct {
	// TCP is HOST:PORT on the isolated device segment.
	TCP    string  `yaml:"tcp"`
	Serial *Serial `yaml:"serial"`
}

// Serial describes an RS-232 link: the one serial settings type, owned by
// hal (its defaults and rules live there).
type Serial = hal.SerialConfig

// Clinical is the device's mTLS front for patient-care systems.
type Clinical struct {
	Listen string `yaml:"listen"`
	// Allow lists the identity URI patterns admitted, such as
	// spiffe://TD/svc/NAME (`*` one segment, `**` the rest). Patterns that
	// could admit vendor, approver or gateway identities are refused: those
	// reach devices only through the vendor channel.
	Allow []string `yaml:"allow"`
	// MaxCertLifetime refuses client certificates valid for longer.
	// Default 24h.
	MaxCertLifetime Duration `yaml:"max_cert_lifetime"`
	// MaxConnections caps concurrent connections to the device (default
	// 64), MaxPerSource those from one address (default 16).
	MaxConnections int `yaml:"max_connections"`
	MaxPerSource   int `yaml:"max_per_source"`
	// MaxPending caps the TLS handshakes in progress for the device. 0
	// (the default) leaves the clinical relay's own default.
	MaxPending int `yaml:"max_pending"`
	// HandshakeTimeout (default 10s), IdleTimeout (default 30m) and
	// MaxLifetime (default 24h) bound each connection.
	HandshakeTimeout Duration `yaml:"handshake_timeout"`
	IdleTimeout      Duration `yaml:"idle_timeout"`
	MaxLifetime      Duration `yaml:"max_lifetime"`
}

// DeviceVend is the device's vendor access policy.
type DeviceVend struct {
	// Org names a configured vendor.
	Org string `yaml:"org"`
	// Ports are the only service ports a vendor may reach.
	Ports []int `yaml:"ports"`
	// Approval is [local], [central] or [local, central] (dual control).
	Approval []string `yaml:"approval"`
	// MaxSession bounds a grant from its approval. Default 1h, at most 24h.
	MaxSession Duration `yaml:"max_session"`
	// RequestTimeout expires unanswered requests. Default 15m.
	RequestTimeout Duration `yaml:"request_timeout"`
	// Host is the device's address for service ports; default the host of
	// link.tcp. Required for serial devices with service ports; a
	// serial-only device with just a console has none.
	Host string `yaml:"host"`
	// Hours are the device's service hours (optional), e.g.
	// "Mon-Fri 07:00-19:00"; OffHours says what happens outside them:
	// refuse (default) or central (a central approval is required too).
	Hours    Hours  `yaml:"hours"`
	OffHours string `yaml:"off_hours"`
	// Console is the device's serial service console (DEVICE:console).
	Console *VendorConsole `yaml:"console"`
}

// Account is a supporting account or credential of a device. Never the
// secret itself.
type Account struct {
	ID          string   `yaml:"id"`
	Type        string   `yaml:"type"`
	Owner       string   `yaml:"owner"`
	RotateEvery Duration `yaml:"rotate_every"`
	LastRotated Date     `yaml:"last_rotated"`
	Vendor      string   `yaml:"vendor"`
	// Inject: the gateway performs this account's login for the vendor.
	Inject *Inject `yaml:"inject"`
}

// Exception is an accepted risk with its compensating controls.
type Exception struct {
	ID           string   `yaml:"id"`
	Control      string   `yaml:"control"`
	Reason       string   `yaml:"reason"`
	Compensating []string `yaml:"compensating"`
	ApprovedBy   string   `yaml:"approved_by"`
	Expires      Date     `yaml:"expires"`
}
