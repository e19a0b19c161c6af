package access

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wardgate/wardgate/gateway/authority"
	"github.com/wardgate/wardgate/hal"
)

// Approval kinds (a device's approval policy lists one or both). They are
// the authority's actor kinds.
const (
	KindLocal   = authority.KindLocal   // approve button or the admin socket on the gateway
	KindCentral = authority.KindCentral // a signed command from an approver identity
	KindSystem  = authority.KindSystem  // the gateway itself (expiry, tamper, lock)
)

// Actor is who made a change: the authority's actor type, so grants and
// locks name people the same way.
type Actor = authority.Actor

// Device is the vendor-access policy of one device.
type Device struct {
	ID           string
	Org          string        // the vendor org that services it
	Ports        []int         // the only service ports a vendor may reach
	Approval     []string      // KindLocal and/or KindCentral; both means dual control
	MaxSession   time.Duration // grant lifetime from approval
	Host         string        // host (name or address) the gateway dials on the device segment
	ClinicalPort int           // the device's own clinical service port (the port of its link): never reachable by vendors, even if listed in Ports
	// OffHours, when set, is asked with the broker's clock at every request
	// without an active grant: InHours, OffHoursRefuse (refused with
	// CodeOffHours) or OffHoursCentral (a new request needs a central
	// approval besides Approval). Active grants are not affected.
	OffHours func(now time.Time) string
	// Retired devices refuse every vendor with CodeRetired; ReplacedBy
	// names the device that took its place (in the refusal).
	Retired    bool
	ReplacedBy string

	// RequestTTL expires this device's unanswered requests (and extension
	// requests); zero takes Options.RequestTTL.
	RequestTTL time.Duration
	// Console is the device's serial service console, reached as
	// DEVICE:console (ConsolePort); nil: none. Never the clinical link's port.
	Console *hal.SerialConfig
	// ClinicalSerial is the serial port of the device's clinical link (if
	// any): a console on it is refused.
	ClinicalSerial string
	// Inject lists the service accounts whose login the gateway performs
	// itself when a tunnel to their port opens (at most one per port).
	Inject []Injection
}

// VendorIdentity is an authorized vendor peer.
type VendorIdentity struct {
	URI    string // spiffe://TD/vendor/ORG/PERSON
	Org    string
	Person string
}

// State of a request/grant.
type State string

// States. A request starts pending; it becomes active when its device's
// approval policy is satisfied, or ends denied, expired (nobody acted, or
// max_session ran out) or revoked.
const (
	StatePending State = "pending"
	StateActive  State = "active"
	StateDenied  State = "denied"
	StateExpired State = "expired"
	StateRevoked State = "revoked"
	// StateApplied ends an extension request once its grant was extended.
	StateApplied State = "applied"
)

// Approval records one approving actor.
type Approval struct {
	Actor Actor     `json:"actor"`
	At    time.Time `json:"at"`
}

// Grant is a vendor's request for access and, once approved, the grant.
type Grant struct {
	ID        string     `json:"id"`
	Vendor    string     `json:"vendor"` // identity URI
	Org       string     `json:"org"`
	Person    string     `json:"person"`
	Device    string     `json:"device"`
	Ports     []int      `json:"ports"`
	Reason    string     `json:"reason,omitempty"`
	Policy    []string   `json:"policy"`
	State     State      `json:"state"`
	Requested time.Time  `json:"requested"`
	Deadline  time.Time  `json:"deadline"` // pending: request expiry; active: grant expiry
	Approvals []Approval `json:"approvals,omitempty"`
	Approved  time.Time  `json:"approved,omitzero"`
	Closed    time.Time  `json:"closed,omitzero"`
	ClosedBy  *Actor     `json:"closed_by,omitempty"`
	Sessions  int        `json:"sessions"` // sessions started so far
	// Rev counts how often a pending request's ports grew (only before
	// its first approval). A signed approval without a binding is accepted
	// only while Rev is 0.
	Rev int `json:"rev,omitempty"`
	// Remaining is the time left until Deadline at the last checkpoint
	// (every minute and at every change), counted in the gateway's running
	// time: at start the deadline is now + Remaining, so a restart with a
	// different clock neither extends nor shortens the grant.
	Remaining time.Duration `json:"remaining,omitempty"`
	// Extends names the active grant this request would extend (an
	// extension request); Extend is the time asked for. Extension
	// requests are approved like grants and then end in StateApplied.
	Extends string        `json:"extends,omitempty"`
	Extend  time.Duration `json:"extend,omitempty"`
	// End is why the grant ended (closed grants only).
	End EndReason `json:"end,omitempty"`
}

// Binding is what a signed approval approves: the request's vendor
// identity, device and ports, exactly (ports in any order).
type Binding struct {
	Vendor string
	Device string
	Ports  []int
}

// match says what differs between b and g ("" when nothing).
func (b Binding) match(g *Grant) string {
	switch {
	case b.Vendor != g.Vendor:
		return fmt.Sprintf("vendor %s, the request's is %s", b.Vendor, g.Vendor)
	case b.Device != g.Device:
		return fmt.Sprintf("device %s, the request's is %s", b.Device, g.Device)
	}
	want, got := slices.Clone(b.Ports), slices.Clone(g.Ports)
	slices.Sort(want)
	want = slices.Compact(want)
	if !slices.Equal(want, got) {
		return fmt.Sprintf("ports %s, the request's are %s", portList(want), portList(got))
	}
	return ""
}

// missing returns the approval kinds still needed.
func (g *Grant) missing() []string {
	var out []string
	for _, k := range g.Policy {
		if !slices.ContainsFunc(g.Approvals, func(a Approval) bool { return a.Actor.Kind == k }) {
			out = append(out, k)
		}
	}
	return out
}

// SessionInfo describes a live tunnel.
type SessionInfo struct {
	ID        string    `json:"id"`
	Grant     string    `json:"grant"`
	Vendor    string    `json:"vendor"`
	Device    string    `json:"device"`
	Port      int       `json:"port"`
	Remote    string    `json:"remote"`
	Start     time.Time `json:"start"`
	ToDevice  int64     `json:"to_device"`
	FromDev   int64     `json:"from_device"`
	Recording string    `json:"recording"` // path of the recording file

	// Ended sessions only (Broker.Status): when and why.
	End       time.Time `json:"end,omitzero"`
	EndReason EndReason `json:"end_reason,omitempty"`
	EndDetail string    `json:"end_detail,omitempty"`
}

// Snapshot is the broker's state for `wardgate status` and `grant list --json`.
type Snapshot struct {
	Time     time.Time        `json:"time"`
	Requests []Grant          `json:"requests"` // pending
	Grants   []Grant          `json:"grants"`   // active
	Recent   []Grant          `json:"recent"`   // denied, expired or revoked, newest first (bounded)
	Sessions []SessionInfo    `json:"sessions"`
	Locks    []authority.Lock `json:"locks"`  // the authority's locks in force
	Tamper   bool             `json:"tamper"` // the authority's tamper latch
	LED      LEDState         `json:"led"`
}

// LEDState is what the amber vendor LED shows.
type LEDState struct {
	Pending bool `json:"pending"`           // blinking
	Live    bool `json:"live"`              // steady (pending wins)
	Several bool `json:"several,omitempty"` // more than one request pending: double blink, the button approves none
}

// Event kinds.
const (
	EvRequest        = "vendor.request"
	EvApprove        = "vendor.approve" // Complete tells whether the grant became active
	EvDeny           = "vendor.deny"
	EvRequestExpired = "vendor.request_expired"
	EvGrantExpired   = "vendor.grant_expired"
	EvRevoke         = "vendor.revoke"
	EvSessionStart   = "vendor.session_start"
	EvSessionEnd     = "vendor.session_end"
	EvRefused        = "vendor.refused"           // Count tells how many refusals the event stands for
	EvRecordingPrune = "vendor.recording_removed" // not emitted by the broker: the recording store's owner reports removals under this kind
	EvExtendRequest  = "vendor.extend_request"    // a vendor asked for more time on an active grant
	EvExtended       = "vendor.grant_extended"    // an approved extension moved a grant's expiry
	EvInject         = "vendor.credential_injected"
	EvInjectFailed   = "vendor.credential_injection_failed"
)

// Event is an audit event. Empty fields are omitted in JSON.
type Event struct {
	Time      time.Time     `json:"time"`
	Kind      string        `json:"kind"`
	Grant     string        `json:"grant,omitempty"` // request/grant id
	Session   string        `json:"session,omitempty"`
	Vendor    string        `json:"vendor,omitempty"`
	Device    string        `json:"device,omitempty"`
	Port      int           `json:"port,omitempty"`
	Ports     []int         `json:"ports,omitempty"`
	Actor     *Actor        `json:"actor,omitempty"`
	Complete  bool          `json:"complete,omitempty"`  // EvApprove: grant now active
	Waiting   []string      `json:"waiting,omitempty"`   // approval kinds still needed
	Code      string        `json:"code,omitempty"`      // EvRefused: refusal code
	Count     int           `json:"count,omitempty"`     // EvRefused: refusals this event reports (1, or a summary's folded count)
	Reason    string        `json:"reason,omitempty"`    // human-readable
	Remote    string        `json:"remote,omitempty"`    // peer address
	Until     time.Time     `json:"until,omitzero"`      // grant or request expiry
	ToDevice  int64         `json:"to_device,omitempty"` // EvSessionEnd
	FromDev   int64         `json:"from_device,omitempty"`
	Duration  time.Duration `json:"duration,omitempty"`
	Hash      string        `json:"hash,omitempty"` // EvSessionEnd: recording final hash (hex)
	Recording string        `json:"recording,omitempty"`
	End       EndReason     `json:"end,omitempty"`        // EvSessionEnd, EvGrantExpired, EvRevoke: typed end reason
	Account   string        `json:"account,omitempty"`    // EvInject*: the service account used
	Owner     string        `json:"owner,omitempty"`      // EvInject*: the account's accountable owner
	Extend    time.Duration `json:"extend_for,omitempty"` // extension requests: the time asked for
	Extends   string        `json:"extends,omitempty"`    // extension requests: the grant extended
}

// Severity is the telemetry severity of the event: refusals, locks and
// revocations warn; the rest is information.
func (e Event) Severity() string {
	switch e.Kind {
	case EvRefused, EvRevoke, EvInjectFailed:
		return "warning"
	}
	return "info"
}

// Attrs returns the event's telemetry attributes: empty fields are left
// out, numbers stay decimal integers, times are RFC 3339 UTC, ports and
// approval kinds are comma-separated, the actor is Actor.String.
func (e Event) Attrs() map[string]string {
	m := map[string]string{}
	add := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	add("grant", e.Grant)
	add("session", e.Session)
	add("vendor", e.Vendor)
	add("device", e.Device)
	if e.Port != 0 {
		m["port"] = PortName(e.Port)
	}
	if len(e.Ports) > 0 {
		ps := make([]string, len(e.Ports))
		for i, p := range e.Ports {
			ps[i] = PortName(p)
		}
		m["ports"] = strings.Join(ps, ",")
	}
	if e.Actor != nil {
		m["actor"] = e.Actor.String()
	}
	if e.Complete {
		m["complete"] = "true"
	}
	add("waiting", strings.Join(e.Waiting, ","))
	add("code", e.Code)
	if e.Count > 0 {
		m["count"] = strconv.Itoa(e.Count)
	}
	add("reason", e.Reason)
	add("remote", e.Remote)
	if !e.Until.IsZero() {
		m["until"] = e.Until.UTC().Format(time.RFC3339)
	}
	if e.Kind == EvSessionEnd {
		m["to_device"] = strconv.FormatInt(e.ToDevice, 10)
		m["from_device"] = strconv.FormatInt(e.FromDev, 10)
	}
	if e.Duration > 0 {
		m["duration"] = e.Duration.Round(time.Millisecond).String()
	}
	add("hash", e.Hash)
	add("recording", e.Recording)
	add("end", string(e.End))
	add("account", e.Account)
	add("owner", e.Owner)
	if e.Extend > 0 {
		m["extend_for"] = e.Extend.String()
	}
	add("extends", e.Extends)
	return m
}
