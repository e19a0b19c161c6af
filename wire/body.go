package wire

import (
	"crypto/x509"
	"fmt"
	"sort"
	"time"

	"github.com/wardgate/wardgate/wire/envelope"
)

// Birth is the body of a birth message, sent first on every connection.
type Birth struct {
	Gateway    string   `cbor:"gateway" json:"gateway"`
	Site       string   `cbor:"site" json:"site"`
	Version    string   `cbor:"version" json:"version"`
	Chain      [][]byte `cbor:"chain" json:"chain"` // DER, leaf first
	ConfigHash string   `cbor:"config_hash" json:"config_hash"`
	Inventory  Summary  `cbor:"inventory" json:"inventory"`
	// SBOM is the SHA-256 (hex) of the agent binary's CycloneDX SBOM
	// (`wardgate sbom`); empty when unknown.
	SBOM string `cbor:"sbom_sha256,omitempty" json:"sbom_sha256,omitempty"`
	// DeathSeq is the sequence number of this session's death Will. It is
	// only delivered if the connection breaks; consumers do not count it as
	// a gap.
	DeathSeq uint64 `cbor:"death_seq" json:"death_seq"`
}

// Summary counts what the inventory holds.
type Summary struct {
	Devices    int `cbor:"devices" json:"devices"`
	Accounts   int `cbor:"accounts" json:"accounts"`
	Exceptions int `cbor:"exceptions" json:"exceptions"`
}

// Death is the body of the death Will.
type Death struct {
	Reason string `cbor:"reason" json:"reason"`
}

// Status is the body of a status message; the agent fills it.
type Status struct {
	// State is ok, degraded or alarm.
	State   string   `cbor:"state" json:"state"`
	UptimeS int64    `cbor:"uptime_s" json:"uptime_s"`
	Alarms  []string `cbor:"alarms" json:"alarms"`
	Message string   `cbor:"message,omitempty" json:"message,omitempty"`
}

// Event severities.
const (
	SeverityInfo    = "info"
	SeverityWarning = "warning"
	SeverityAlarm   = "alarm"
)

// Event is a security or accountability event. Attributes are short text
// (identities, ids, reasons, hashes); never device payload bytes.
type Event struct {
	Kind     string            `cbor:"kind" json:"kind"`
	Severity string            `cbor:"severity" json:"severity"`
	Attrs    map[string]string `cbor:"attrs" json:"attrs"`
}

// MaxAttrLen bounds an event attribute value; longer values are cut.
const MaxAttrLen = 512

func (e Event) clean() (Event, error) {
	if e.Kind == "" {
		return e, fmt.Errorf("telemetry event without a kind")
	}
	if e.Severity == "" {
		e.Severity = SeverityInfo
	}
	attrs := make(map[string]string, len(e.Attrs))
	for k, v := range e.Attrs {
		if len(v) > MaxAttrLen {
			v = v[:MaxAttrLen]
		}
		attrs[k] = v
	}
	e.Attrs = attrs
	return e, nil
}

// Reply answers a command on .../cmd/reply.
type Reply struct {
	Nonce    []byte `cbor:"nonce" json:"nonce"`
	Command  string `cbor:"command" json:"command"`
	Accepted bool   `cbor:"accepted" json:"accepted"`
	Reason   string `cbor:"reason,omitempty" json:"reason,omitempty"`
	Result   string `cbor:"result,omitempty" json:"result,omitempty"`
	Approver string `cbor:"approver,omitempty" json:"approver,omitempty"`
}

// Inventory is what the gateway guards, without any secret. The agent
// maps it from the configuration.
type Inventory struct {
	Devices []Device
	// SBOM is the SHA-256 (hex) of the agent binary's CycloneDX SBOM
	// (`wardgate sbom`), so central knows what each gateway runs.
	SBOM string
}

// Device is one protected device.
type Device struct {
	ID, Kind, Manufacturer, Model, Serial, Firmware string
	Owner, Location                                 string
	Link                                            string // "tcp" or "serial"
	VendorOrg                                       string
	VendorPorts                                     []int
	Approval                                        []string
	Accounts                                        []Account
	Exceptions                                      []Exception
	// Retired is the day the device left service (zero: in service);
	// ReplacedBy names the device that took its place.
	Retired    time.Time
	ReplacedBy string
}

// Account is a supporting account or credential (never the secret).
type Account struct {
	ID, Type, Owner, Vendor string
	RotateEvery             time.Duration
	LastRotated             time.Time
}

// Exception is a risk exception with its accountable approver.
type Exception struct {
	ID, Control, Reason string
	Compensating        []string
	ApprovedBy          string
	Expires             time.Time
	// Controls is the live state of each compensating control, as the
	// gateway last checked it (nil before the first check).
	Controls []Control
}

// Control is the live state of one compensating control of an exception.
type Control struct {
	Name    string
	InForce bool
	Detail  string
	Checked time.Time
}

// Summary counts inv.
func (inv Inventory) Summary() Summary {
	s := Summary{Devices: len(inv.Devices)}
	for _, d := range inv.Devices {
		s.Accounts += len(d.Accounts)
		s.Exceptions += len(d.Exceptions)
	}
	return s
}

const dateFmt = "2006-01-02"

type wireInventory struct {
	Devices []wireDevice `cbor:"devices"`
	SBOM    string       `cbor:"sbom_sha256,omitempty"`
}

type wireDevice struct {
	ID           string          `cbor:"id"`
	Kind         string          `cbor:"kind,omitempty"`
	Manufacturer string          `cbor:"manufacturer,omitempty"`
	Model        string          `cbor:"model,omitempty"`
	Serial       string          `cbor:"serial,omitempty"`
	Firmware     string          `cbor:"firmware,omitempty"`
	Owner        string          `cbor:"owner"`
	Location     string          `cbor:"location,omitempty"`
	Link         string          `cbor:"link,omitempty"`
	VendorOrg    string          `cbor:"vendor,omitempty"`
	VendorPorts  []int           `cbor:"vendor_ports,omitempty"`
	Approval     []string        `cbor:"approval,omitempty"`
	Accounts     []wireAccount   `cbor:"accounts"`
	Exceptions   []wireException `cbor:"exceptions"`
	Retired      string          `cbor:"retired,omitempty"` // YYYY-MM-DD
	ReplacedBy   string          `cbor:"replaced_by,omitempty"`
}

type wireAccount struct {
	ID          string `cbor:"id"`
	Type        string `cbor:"type"`
	Owner       string `cbor:"owner"`
	Vendor      string `cbor:"vendor,omitempty"`
	RotateEvery int64  `cbor:"rotate_every_s"`
	LastRotated string `cbor:"last_rotated"`
}

type wireException struct {
	ID           string        `cbor:"id"`
	Control      string        `cbor:"control"`
	Reason       string        `cbor:"reason"`
	Compensating []string      `cbor:"compensating"`
	ApprovedBy   string        `cbor:"approved_by"`
	Expires      string        `cbor:"expires"`
	Controls     []wireControl `cbor:"controls,omitempty"`
}

type wireControl struct {
	Name    string `cbor:"name"`
	InForce bool   `cbor:"in_force"`
	Detail  string `cbor:"detail"`
	Checked string `cbor:"checked"`
}

func (inv Inventory) wire() wireInventory {
	w := wireInventory{Devices: []wireDevice{}, SBOM: inv.SBOM}
	for _, d := range inv.Devices {
		wd := wireDevice{ID: d.ID, Kind: d.Kind, Manufacturer: d.Manufacturer, Model: d.Model,
			Serial: d.Serial, Firmware: d.Firmware, Owner: d.Owner, Location: d.Location, Link: d.Link,
			VendorOrg: d.VendorOrg, VendorPorts: d.VendorPorts, Approval: d.Approval,
			Accounts: []wireAccount{}, Exceptions: []wireException{}, ReplacedBy: d.ReplacedBy}
		if !d.Retired.IsZero() {
			wd.Retired = d.Retired.UTC().Format(dateFmt)
		}
		for _, a := range d.Accounts {
			wd.Accounts = append(wd.Accounts, wireAccount{ID: a.ID, Type: a.Type, Owner: a.Owner, Vendor: a.Vendor,
				RotateEvery: int64(a.RotateEvery / time.Second), LastRotated: a.LastRotated.UTC().Format(dateFmt)})
		}
		for _, e := range d.Exceptions {
			comp := e.Compensating
			if comp == nil {
				comp = []string{}
			}
			we := wireException{ID: e.ID, Control: e.Control, Reason: e.Reason,
				Compensating: comp, ApprovedBy: e.ApprovedBy, Expires: e.Expires.UTC().Format(dateFmt)}
			for _, c := range e.Controls {
				we.Controls = append(we.Controls, wireControl{Name: c.Name, InForce: c.InForce, Detail: c.Detail,
					Checked: c.Checked.UTC().Format(time.RFC3339)})
			}
			wd.Exceptions = append(wd.Exceptions, we)
		}
		w.Devices = append(w.Devices, wd)
	}
	return w
}

// BirthBody encodes a birth body.
func BirthBody(b Birth) ([]byte, error) { return envelope.Marshal(b) }

// ChainDER returns the DER of each certificate, for Birth.Chain.
func ChainDER(chain []*x509.Certificate) [][]byte {
	out := make([][]byte, len(chain))
	for i, c := range chain {
		out[i] = c.Raw
	}
	return out
}

// InventoryBody encodes an inventory body.
func InventoryBody(inv Inventory) ([]byte, error) { return envelope.Marshal(inv.wire()) }

// EventBody encodes an event body.
func EventBody(e Event) ([]byte, error) {
	e, err := e.clean()
	if err != nil {
		return nil, err
	}
	return envelope.Marshal(e)
}

// Metrics is a snapshot the agent fills every metrics interval. Outbox
// figures are filled by the Publisher.
type Metrics struct {
	Devices          []DeviceMetrics `json:"devices"`
	CPUPercent       float64         `json:"cpu_percent"`
	MemoryUsedBytes  uint64          `json:"memory_used_bytes"`
	MemoryTotalBytes uint64          `json:"memory_total_bytes"`
	DiskUsedBytes    uint64          `json:"disk_used_bytes"`
	DiskTotalBytes   uint64          `json:"disk_total_bytes"`
	// TemperatureC is nil when the board has no sensor.
	TemperatureC   *float64      `json:"temperature_c,omitempty"`
	CertExpiresIn  time.Duration `json:"cert_expires_in_s"`
	OutboxDepth    int           `json:"outbox_depth"`
	OutboxAge      time.Duration `json:"outbox_age_s"`
	OutboxLost     uint64        `json:"outbox_lost"`
	ListeningPorts []int         `json:"listening_ports"`
}

// DeviceMetrics are counters for one device since the agent started.
type DeviceMetrics struct {
	ID                string `json:"id"`
	BytesIn           uint64 `json:"bytes_in"`
	BytesOut          uint64 `json:"bytes_out"`
	Connections       uint64 `json:"connections"`
	HandshakeFailures uint64 `json:"handshake_failures"`
	AuthFailures      uint64 `json:"auth_failures"`
	LinkUp            bool   `json:"link_up"`
}

// SenML record names used in metrics packs. Units are fixed per name (see
// docs/telemetry.cddl) and not repeated in every record, which keeps a
// metrics body under half the size of the same pack in SenML-JSON or the
// snapshot in JSON.
const (
	MetricCPU        = "cpu"  // percent
	MetricMemUsed    = "mem"  // bytes
	MetricMemTotal   = "memt" // bytes
	MetricDiskUsed   = "dsk"  // bytes
	MetricDiskTotal  = "dskt" // bytes
	MetricTemp       = "tmp"  // degrees Celsius
	MetricCertTTL    = "cttl" // seconds until the gateway certificate expires
	MetricOutboxLen  = "obq"  // messages in the outbox
	MetricOutboxAge  = "oba"  // seconds, age of the oldest outbox message
	MetricOutboxLost = "obl"  // metrics dropped because the outbox was full
	MetricListen     = "port" // one record per listening TCP port
	MetricRx         = "rx"   // bytes, device -> gateway (bn "DEVICE/")
	MetricTx         = "tx"   // bytes, gateway -> device
	MetricConns      = "con"  // connections accepted
	MetricHSFail     = "hsf"  // TLS handshake failures
	MetricAuthFail   = "auf"  // authorisation failures
	MetricLink       = "lnk"  // vb: device link up
)

// MetricsPack turns a snapshot taken at now into a SenML pack: gateway
// records first (the first one carries bt, the time in seconds), then for
// each device a record with bn "DEVICE/" followed by its counters.
func MetricsPack(m Metrics, now time.Time) envelope.Pack {
	f := func(v float64) *float64 { return &v }
	p := envelope.Pack{
		{BaseTime: float64(now.Unix()), Name: MetricCPU, Value: f(m.CPUPercent)},
		{Name: MetricMemUsed, Value: f(float64(m.MemoryUsedBytes))},
		{Name: MetricMemTotal, Value: f(float64(m.MemoryTotalBytes))},
		{Name: MetricDiskUsed, Value: f(float64(m.DiskUsedBytes))},
		{Name: MetricDiskTotal, Value: f(float64(m.DiskTotalBytes))},
	}
	if m.TemperatureC != nil {
		p = append(p, envelope.Record{Name: MetricTemp, Value: f(*m.TemperatureC)})
	}
	p = append(p,
		envelope.Record{Name: MetricCertTTL, Value: f(float64(m.CertExpiresIn / time.Second))},
		envelope.Record{Name: MetricOutboxLen, Value: f(float64(m.OutboxDepth))},
		envelope.Record{Name: MetricOutboxAge, Value: f(float64(m.OutboxAge / time.Second))},
		envelope.Record{Name: MetricOutboxLost, Value: f(float64(m.OutboxLost))},
	)
	ports := append([]int(nil), m.ListeningPorts...)
	sort.Ints(ports)
	for _, port := range ports {
		p = append(p, envelope.Record{Name: MetricListen, Value: f(float64(port))})
	}
	for _, d := range m.Devices {
		p = append(p,
			envelope.Record{BaseName: d.ID + "/", Name: MetricRx, Value: f(float64(d.BytesIn))},
			envelope.Record{Name: MetricTx, Value: f(float64(d.BytesOut))},
			envelope.Record{Name: MetricConns, Value: f(float64(d.Connections))},
			envelope.Record{Name: MetricHSFail, Value: f(float64(d.HandshakeFailures))},
			envelope.Record{Name: MetricAuthFail, Value: f(float64(d.AuthFailures))},
			envelope.Record{Name: MetricLink, Bool: &d.LinkUp},
		)
	}
	return p
}

// Accountability event kinds.
const (
	EventRotationOverdue   = "account.rotation_overdue"
	EventExceptionExpiring = "exception.expiring"
	EventExceptionExpired  = "exception.expired"
	// EventAccountRetire: an account of a retired device is still on
	// record; its owner rotates the credential or removes the account.
	EventAccountRetire = "account.retire_pending"
)

// ExpiryWarning is how long before an exception's expiry it is reported.
const ExpiryWarning = 30 * 24 * time.Hour

// Accountability returns the accountability events of inv at now: every
// account whose rotation is overdue (last_rotated + rotate_every < now),
// every exception expiring within 30 days, and every expired exception.
// Each event names the accountable owner.
func Accountability(inv Inventory, now time.Time) []Event {
	var out []Event
	for _, d := range inv.Devices {
		if !d.Retired.IsZero() {
			// A retired device's credentials outlive it: each account is
			// flagged for rotation or removal; its exceptions no longer
			// apply.
			for _, a := range d.Accounts {
				out = append(out, Event{Kind: EventAccountRetire, Severity: SeverityWarning, Attrs: map[string]string{
					"device": d.ID, "account": a.ID, "owner": a.Owner, "type": a.Type,
					"retired": d.Retired.UTC().Format(dateFmt), "replaced_by": d.ReplacedBy,
					"action": "rotate the credential or remove the account: the device is retired",
				}})
			}
			continue
		}
		for _, a := range d.Accounts {
			if a.RotateEvery <= 0 {
				continue
			}
			due := a.LastRotated.Add(a.RotateEvery)
			if due.Before(now) {
				out = append(out, Event{Kind: EventRotationOverdue, Severity: SeverityWarning, Attrs: map[string]string{
					"device": d.ID, "account": a.ID, "owner": a.Owner, "type": a.Type,
					"last_rotated": a.LastRotated.UTC().Format(dateFmt), "due": due.UTC().Format(dateFmt),
					"overdue_days": fmt.Sprint(int(now.Sub(due).Hours() / 24)),
				}})
			}
		}
		for _, e := range d.Exceptions {
			attrs := map[string]string{"device": d.ID, "exception": e.ID, "control": e.Control,
				"owner": d.Owner, "approved_by": e.ApprovedBy, "expires": e.Expires.UTC().Format(dateFmt)}
			switch {
			case !e.Expires.After(now):
				out = append(out, Event{Kind: EventExceptionExpired, Severity: SeverityAlarm, Attrs: attrs})
			case e.Expires.Sub(now) <= ExpiryWarning:
				attrs["days_left"] = fmt.Sprint(int(e.Expires.Sub(now).Hours() / 24))
				out = append(out, Event{Kind: EventExceptionExpiring, Severity: SeverityWarning, Attrs: attrs})
			}
		}
	}
	return out
}

// DecodeInventory strictly decodes an inventory body (the inverse of
// InventoryBody).
func DecodeInventory(body []byte) (Inventory, error) {
	var w wireInventory
	if err := envelope.Unmarshal(body, &w); err != nil {
		return Inventory{}, fmt.Errorf("inventory body: %w", err)
	}
	inv := Inventory{Devices: make([]Device, 0, len(w.Devices)), SBOM: w.SBOM}
	for _, wd := range w.Devices {
		d := Device{ID: wd.ID, Kind: wd.Kind, Manufacturer: wd.Manufacturer, Model: wd.Model, Serial: wd.Serial,
			Firmware: wd.Firmware, Owner: wd.Owner, Location: wd.Location, Link: wd.Link, VendorOrg: wd.VendorOrg,
			VendorPorts: wd.VendorPorts, Approval: wd.Approval, ReplacedBy: wd.ReplacedBy}
		if wd.Retired != "" {
			r, err := time.Parse(dateFmt, wd.Retired)
			if err != nil {
				return Inventory{}, fmt.Errorf("inventory body: device %s retired: %w", wd.ID, err)
			}
			d.Retired = r
		}
		for _, a := range wd.Accounts {
			lr, err := time.Parse(dateFmt, a.LastRotated)
			if err != nil {
				return Inventory{}, fmt.Errorf("inventory body: account %s last_rotated: %w", a.ID, err)
			}
			d.Accounts = append(d.Accounts, Account{ID: a.ID, Type: a.Type, Owner: a.Owner, Vendor: a.Vendor,
				RotateEvery: time.Duration(a.RotateEvery) * time.Second, LastRotated: lr})
		}
		for _, e := range wd.Exceptions {
			ex, err := time.Parse(dateFmt, e.Expires)
			if err != nil {
				return Inventory{}, fmt.Errorf("inventory body: exception %s expires: %w", e.ID, err)
			}
			x := Exception{ID: e.ID, Control: e.Control, Reason: e.Reason,
				Compensating: e.Compensating, ApprovedBy: e.ApprovedBy, Expires: ex}
			for _, c := range e.Controls {
				checked, err := time.Parse(time.RFC3339, c.Checked)
				if err != nil {
					return Inventory{}, fmt.Errorf("inventory body: exception %s control %s checked: %w", e.ID, c.Name, err)
				}
				x.Controls = append(x.Controls, Control{Name: c.Name, InForce: c.InForce, Detail: c.Detail, Checked: checked})
			}
			d.Exceptions = append(d.Exceptions, x)
		}
		inv.Devices = append(inv.Devices, d)
	}
	return inv, nil
}
