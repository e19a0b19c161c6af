package siem

import (
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wardgate/wardgate/wire"
)

// Level is the SIEM severity of a line, one of four steps. Each format
// maps it with its own table (docs/siem.md, "Severity").
type Level int

// Levels, lowest first.
const (
	LevelInfo     Level = iota // routine: births, metrics, grants that went as planned
	LevelWarning               // refusals, gaps, overdue rotations, a gateway's death
	LevelAlarm                 // the gateway raised an alarm (tamper, outbox full, link down)
	LevelCritical              // a message failed verification: possible forgery
)

// String names the level as in docs/siem.md.
func (l Level) String() string {
	switch l {
	case LevelInfo:
		return "info"
	case LevelWarning:
		return "warning"
	case LevelAlarm:
		return "alarm"
	}
	return "critical"
}

// Syslog severities (RFC 5424 section 6.2.1), CEF severities (0-10) and
// LEEF sev (1-10) per level.
var (
	syslogSeverity = [...]int{LevelInfo: 6, LevelWarning: 4, LevelAlarm: 2, LevelCritical: 1}
	cefSeverity    = [...]int{LevelInfo: 3, LevelWarning: 6, LevelAlarm: 9, LevelCritical: 10}
	leefSeverity   = [...]int{LevelInfo: 3, LevelWarning: 6, LevelAlarm: 9, LevelCritical: 10}
)

// Facility is the syslog facility of every record: 13, log audit.
const Facility = 13

// Alert line names (wire.Line.Alert).
const (
	AlertVerifyFailed  = "verify_failed"
	AlertGap           = "gap"
	AlertTopicMismatch = "topic_mismatch"
	AlertBodyInvalid   = "body_invalid"
)

// KV is one named value of a line.
type KV struct{ Key, Value string }

// Fields are the values of one line that every format carries: the
// envelope, the verification result, and the body flattened to short
// text (event attributes; the main values of births, deaths, status,
// replies and commands). Metrics and inventory bodies stay out of the
// non-JSON formats: they are bulk data, not security records.
type Fields struct {
	Time       time.Time // the message's own time, or the encoder's clock for alert lines
	Gateway    string
	Topic      string
	Kind       string // message kind: birth, death, status, metrics, event, inventory, reply, command
	Alert      string // "" for a verified message
	Event      string // event kind (kind event), or the alert name or message kind otherwise
	Session    uint64
	Seq        uint64
	Historical bool
	Verified   bool
	Signer     string
	Error      string
	GapFrom    uint64
	GapTo      uint64
	Level      Level
	// Attrs are sorted by key; event attributes keep their names, body
	// values of other kinds are named as in docs/siem.md.
	Attrs []KV
}

// Attr returns the value of attribute k, or "".
func (f Fields) Attr(k string) string {
	for _, a := range f.Attrs {
		if a.Key == k {
			return a.Value
		}
	}
	return ""
}

// Extract computes the fields of l; now stands in for the time of lines
// that carry none (alert lines).
func Extract(l wire.Line, now time.Time) Fields {
	f := Fields{Gateway: l.Gateway, Topic: l.Topic, Kind: l.Kind, Alert: l.Alert, Session: l.Session,
		Seq: l.Seq, Historical: l.Historical, Verified: l.Verified, Signer: l.Signer, Error: l.Error,
		GapFrom: l.GapFrom, GapTo: l.GapTo, Time: now.UTC()}
	if t, err := time.Parse(time.RFC3339Nano, l.Time); err == nil {
		f.Time = t.UTC()
	}
	body, _ := l.Body.(map[string]any)
	attrs := map[string]string{}
	put := func(k string, v any) {
		if s := text(v); s != "" {
			attrs[k] = s
		}
	}
	f.Event = l.Kind
	switch l.Kind {
	case "event":
		if k := text(body["kind"]); k != "" {
			f.Event = k
		}
		if a, ok := body["attrs"].(map[string]any); ok {
			for k, v := range a {
				put(k, v)
			}
		}
		if s, ok := body["attrs"].(map[string]string); ok {
			for k, v := range s {
				put(k, v)
			}
		}
	case "birth":
		put("site", body["site"])
		put("version", body["version"])
		put("config_hash", body["config_hash"])
	case "death":
		put("reason", body["reason"])
	case "status":
		put("state", body["state"])
		put("alarms", body["alarms"])
		put("message", body["message"])
	case "reply":
		put("command", body["command"])
		put("accepted", body["accepted"])
		put("reason", body["reason"])
		put("result", body["result"])
		put("approver", body["approver"])
	case "command":
		put("command", body["command"])
		put("args", body["args"])
		put("expires", body["exp"])
	case "inventory":
		if d, ok := body["devices"].([]any); ok {
			attrs["devices"] = strconv.Itoa(len(d))
		}
	}
	if l.Alert != "" {
		f.Event = l.Alert
	}
	for k, v := range attrs {
		f.Attrs = append(f.Attrs, KV{k, v})
	}
	sort.Slice(f.Attrs, func(i, j int) bool { return f.Attrs[i].Key < f.Attrs[j].Key })
	f.Level = level(l, body)
	return f
}

// text renders a body value as short text: lists comma-separated, bytes
// in base64, numbers in decimal.
func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			parts = append(parts, text(e))
		}
		return strings.Join(parts, ",")
	case []string:
		return strings.Join(x, ",")
	}
	return fmt.Sprint(v)
}

func level(l wire.Line, body map[string]any) Level {
	switch l.Alert {
	case "":
	case AlertVerifyFailed, AlertTopicMismatch:
		return LevelCritical
	default:
		return LevelWarning
	}
	switch l.Kind {
	case "event":
		switch text(body["severity"]) {
		case wire.SeverityInfo:
			return LevelInfo
		case wire.SeverityAlarm:
			return LevelAlarm
		}
		return LevelWarning // warning, and any severity this version does not know
	case "status":
		switch text(body["state"]) {
		case "alarm":
			return LevelAlarm
		case "degraded":
			return LevelWarning
		}
	case "death":
		return LevelWarning
	case "reply":
		if a, ok := body["accepted"].(bool); ok && !a {
			return LevelWarning
		}
	}
	return LevelInfo
}

// Bulk reports whether a line is bulk data (metrics, status) that a full
// queue drops before anything else.
func Bulk(l wire.Line) bool {
	return l.Alert == "" && (l.Kind == "metrics" || l.Kind == "status")
}

// Class is the stable identity of an event kind in SIEM rules: CEF's
// Device Event Class ID and a readable name.
type Class struct {
	ID   int
	Name string
}

// classes holds one stable class id per event kind, alert and message
// kind. Ids never change meaning; new kinds get new ids. docs/siem.md
// lists them.
var classes = map[string]Class{
	// message kinds (non-event messages)
	"birth":     {100, "Gateway online (birth)"},
	"death":     {101, "Gateway offline (death)"},
	"status":    {102, "Gateway status"},
	"metrics":   {103, "Gateway metrics"},
	"inventory": {104, "Gateway inventory"},
	"reply":     {105, "Command reply"},
	"command":   {106, "Signed command seen"},
	"event":     {107, "Event"},
	// alert lines
	AlertVerifyFailed:  {200, "Message failed verification"},
	AlertGap:           {201, "Sequence gap"},
	AlertTopicMismatch: {202, "Message on a foreign topic"},
	AlertBodyInvalid:   {203, "Message body invalid"},
	// clinical path
	"clinical.session_start":    {1001, "Clinical session started"},
	"clinical.session_end":      {1002, "Clinical session ended"},
	"clinical.refused":          {1003, "Clinical connection refused"},
	"clinical.handshake_failed": {1004, "Clinical TLS handshake failed"},
	"clinical.limit":            {1005, "Clinical connection limit reached"},
	"clinical.busy":             {1006, "Serial port busy"},
	"clinical.link_up":          {1007, "Device link up"},
	"clinical.link_down":        {1008, "Device link down"},
	"clinical.listener_error":   {1009, "Clinical listener error"},
	// vendor access
	"vendor.request":           {2001, "Vendor access requested"},
	"vendor.approve":           {2002, "Vendor access approved"},
	"vendor.deny":              {2003, "Vendor access denied"},
	"vendor.request_expired":   {2004, "Vendor request expired"},
	"vendor.grant_expired":     {2005, "Vendor grant expired"},
	"vendor.revoke":            {2006, "Vendor grant revoked"},
	"vendor.session_start":     {2007, "Vendor session started"},
	"vendor.session_end":       {2008, "Vendor session ended"},
	"vendor.refused":           {2009, "Vendor connection refused"},
	"vendor.recording_removed": {2010, "Session recording removed"},
	// authority
	"access.lock_add":     {3001, "Identity locked"},
	"access.lock_remove":  {3002, "Identity unlocked"},
	"access.tamper":       {3003, "Tamper latch set"},
	"access.tamper_clear": {3004, "Tamper latch cleared"},
	// identity (certs.Manager events)
	"identity.renewed":         {4001, "Gateway certificate renewed"},
	"identity.rekeyed":         {4002, "Gateway key rotated"},
	"identity.renewal_failed":  {4003, "Certificate renewal failed"},
	"identity.expiring":        {4004, "Gateway certificate expiring"},
	"identity.expired":         {4005, "Gateway certificate expired"},
	"identity.roots_changed":   {4006, "Trust bundle changed"},
	"identity.reenroll_needed": {4007, "Gateway needs re-enrolment"},
	"identity.clock_insane":    {4008, "Gateway clock implausible"},
	// accountability
	"account.rotation_overdue": {5001, "Account rotation overdue"},
	"exception.expiring":       {5002, "Risk exception expiring"},
	"exception.expired":        {5003, "Risk exception expired"},
	// gateway
	"gateway.started":         {6001, "Gateway started"},
	"config.reloaded":         {6002, "Configuration reloaded"},
	"alarm.raised":            {6003, "Alarm raised"},
	"alarm.cleared":           {6004, "Alarm cleared"},
	"command.executed":        {6005, "Central command executed"},
	"command.rejected":        {6006, "Central command rejected"},
	"hardware.tamper":         {6007, "Enclosure tamper loop changed"},
	"hardware.button_ignored": {6008, "Button press ignored"},
}

// FallbackBase is the lowest class id of kinds missing from the table:
// FallbackBase + FNV-1a(kind) mod 900000, deterministic across versions.
const FallbackBase = 100000

// ClassOf returns the class of an event kind, alert or message kind.
// Kinds missing from the table (telemetry.* alarms, kinds added by later
// gateway versions) get a deterministic id >= FallbackBase and their kind
// as name.
func ClassOf(kind string) Class {
	if c, ok := classes[kind]; ok {
		return c
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(kind))
	return Class{ID: FallbackBase + int(h.Sum32()%900000), Name: kind}
}

// KindClass is one row of the class table.
type KindClass struct {
	Kind string
	Class
}

// Classes returns the class table, sorted by id.
func Classes() []KindClass {
	out := make([]KindClass, 0, len(classes))
	for k, c := range classes {
		out = append(out, KindClass{k, c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Summary is a one-line human text for the line: the class name, the
// gateway, and the attributes an analyst reads first.
func (f Fields) Summary() string {
	var b strings.Builder
	b.WriteString(ClassOf(f.Event).Name)
	if f.Gateway != "" {
		b.WriteString(" on ")
		b.WriteString(f.Gateway)
	}
	for _, k := range []string{"device", "identity", "vendor", "account", "exception", "alarm", "reason", "state"} {
		if v := f.Attr(k); v != "" {
			fmt.Fprintf(&b, " %s=%s", k, v)
		}
	}
	switch {
	case f.Alert == AlertGap:
		fmt.Fprintf(&b, ": seq %d..%d missing", f.GapFrom, f.GapTo)
	case f.Error != "":
		b.WriteString(": ")
		b.WriteString(f.Error)
	}
	return b.String()
}
