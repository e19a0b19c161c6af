package siem

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/wire"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var testNow = time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)

const signer = "spiffe://hospital.example/gateway/gw-icu3-12"

func event(seq uint64, kind, sev string, attrs map[string]any) wire.Line {
	return wire.Line{Topic: "wardgate/v1/gw-icu3-12/event", Gateway: "gw-icu3-12", Session: 3, Seq: seq,
		Kind: "event", Time: "2026-12-01T19:59:58.123Z", Verified: true, Signer: signer,
		Body: map[string]any{"kind": kind, "severity": sev, "attrs": attrs}}
}

// lineCases is shared by every format's golden test and the field checks.
var lineCases = []struct {
	name  string
	line  wire.Line
	level Level
	class int
}{
	{"vendor_request", event(17, "vendor.request", "info", map[string]any{"grant": "G-0042",
		"vendor": "spiffe://hospital.example/vendor/acme/jdoe", "device": "pump-07", "port": "23",
		"reason": "firmware update", "remote": "10.0.0.8:51234", "until": "2026-12-01T20:15:00Z"}), LevelInfo, 2001},
	{"clinical_refused", event(18, "clinical.refused", "warning", map[string]any{"device": "pump-07",
		"identity": "spiffe://hospital.example/app/emr", "remote": "[2001:db8::1]:443", "reason": "not_allowed",
		"claimed": "spiffe://other/x", "suppressed": "2"}), LevelWarning, 1003},
	{"tamper_alarm", event(19, "hardware.tamper", "alarm", map[string]any{"open": "true"}), LevelAlarm, 6007},
	{"session_attr_clash", event(20, "vendor.session_end", "info", map[string]any{"session": "S-9",
		"grant": "G-0042", "to_device": "1024", "from_device": "2048", "duration": "1m2s", "hash": "ab12"}), LevelInfo, 2008},
	{"nasty_values", event(21, "access.lock_add", "warning", map[string]any{
		"reason":   "a \"quoted\" ] back\\slash | pipe = equals\nnew line\ttab\r\x00nul é",
		"identity": "spiffe://x/y=z|w", "actor": "central:spiffe://hospital.example/approver/sec/ann",
		"we ird=key]": "v"}), LevelWarning, 3001},
	{"unknown_kind", event(22, "telemetry.publish_refused", "alarm", map[string]any{"topic": "wardgate/v1/x/event"}), LevelAlarm, 0},
	{"unknown_severity", event(23, "future.thing", "emergency", nil), LevelWarning, 0},
	{"birth", wire.Line{Topic: "wardgate/v1/gw-icu3-12/birth", Gateway: "gw-icu3-12", Session: 3, Seq: 1,
		Kind: "birth", Time: "2026-12-01T19:00:00Z", Verified: true, Signer: signer,
		Body: map[string]any{"site": "icu3", "version": "1.4.0", "config_hash": "c0ffee", "chain": []any{[]byte{1, 2}},
			"inventory": map[string]any{"devices": uint64(2)}, "death_seq": uint64(2)}}, LevelInfo, 100},
	{"death_historical", wire.Line{Topic: "wardgate/v1/gw-icu3-12/death", Gateway: "gw-icu3-12", Session: 3, Seq: 2,
		Kind: "death", Time: "2026-12-01T19:00:00Z", Historical: true, Verified: true, Signer: signer,
		Body: map[string]any{"reason": "connection lost"}}, LevelWarning, 101},
	{"status_alarm", wire.Line{Topic: "wardgate/v1/gw-icu3-12/status", Gateway: "gw-icu3-12", Session: 3, Seq: 5,
		Kind: "status", Time: "2026-12-01T19:30:00Z", Verified: true, Signer: signer,
		Body: map[string]any{"state": "alarm", "uptime_s": uint64(60), "alarms": []any{"tamper", "outbox_full"}}}, LevelAlarm, 102},
	{"metrics", wire.Line{Topic: "wardgate/v1/gw-icu3-12/metrics", Gateway: "gw-icu3-12", Session: 3, Seq: 6,
		Kind: "metrics", Time: "2026-12-01T19:31:00Z", Verified: true, Signer: signer,
		Body: []map[string]any{{"n": "cpu", "v": 3.5, "t": 1.0}}}, LevelInfo, 103},
	{"reply_rejected", wire.Line{Topic: "wardgate/v1/gw-icu3-12/cmd/reply", Gateway: "gw-icu3-12", Session: 3, Seq: 7,
		Kind: "reply", Time: "2026-12-01T19:32:00Z", Verified: true, Signer: signer,
		Body: map[string]any{"nonce": []byte{9}, "command": "approve", "accepted": false, "reason": "expired"}}, LevelWarning, 105},
	{"command", wire.Line{Topic: "wardgate/v1/gw-icu3-12/cmd", Gateway: "gw-icu3-12", Kind: "command",
		Time: "2026-12-01T19:33:00Z", Verified: true, Signer: "spiffe://hospital.example/approver/sec/ann",
		Body: map[string]any{"gateway": "gw-icu3-12", "command": "lock", "args": []string{"spiffe://x", "1h"},
			"nonce": []byte{1}, "exp": "2026-12-01T19:38:00Z"}}, LevelInfo, 106},
	{"verify_failed", wire.Line{Alert: "verify_failed", Topic: "wardgate/v1/gw-icu3-12/event", Gateway: "gw-icu3-12",
		Error: "envelope: untrusted signer chain: x509: certificate signed by unknown authority"}, LevelCritical, 200},
	{"gap", wire.Line{Alert: "gap", Gateway: "gw-icu3-12", GapFrom: 30, GapTo: 34}, LevelWarning, 201},
	{"topic_mismatch", wire.Line{Alert: "topic_mismatch", Topic: "wardgate/v1/gw-other/event", Gateway: "gw-icu3-12",
		Session: 3, Seq: 40, Kind: "event", Time: "2026-12-01T19:40:00Z", Signer: signer,
		Error: `message of gateway "gw-icu3-12" kind event on topic wardgate/v1/gw-other/event`}, LevelCritical, 202},
	{"body_invalid", wire.Line{Alert: "body_invalid", Topic: "wardgate/v1/gw-icu3-12/event", Gateway: "gw-icu3-12",
		Session: 3, Seq: 41, Kind: "event", Time: "2026-12-01T19:41:00Z", Verified: true, Signer: signer,
		Error: "cbor: unexpected end"}, LevelWarning, 203},
}

func newTestEncoder(t testing.TB, f Format) *Encoder {
	t.Helper()
	e, err := NewEncoder(f, EncoderOptions{Version: "1.4.0", Clock: clockwork.NewFakeClockAt(testNow)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestGolden encodes every case in every format and compares with
// testdata/lines.FORMAT (go test -run TestGolden -update rewrites them).
func TestGolden(t *testing.T) {
	for _, f := range Formats {
		t.Run(string(f), func(t *testing.T) {
			e := newTestEncoder(t, f)
			var out bytes.Buffer
			for _, c := range lineCases {
				rec, err := e.Encode(c.line)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if bytes.ContainsAny(rec, "\r\n") {
					t.Fatalf("%s: record has a line break: %q", c.name, rec)
				}
				fmt.Fprintf(&out, "%s\n", rec)
			}
			path := filepath.Join("testdata", "lines."+string(f))
			if *update {
				if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				got := strings.Split(out.String(), "\n")
				w := strings.Split(string(want), "\n")
				for i := range min(len(got), len(w)) {
					if got[i] != w[i] {
						t.Fatalf("line %d differs from %s:\ngot  %s\nwant %s", i+1, path, got[i], w[i])
					}
				}
				t.Fatalf("%s: %d lines, want %d", path, len(got), len(w))
			}
		})
	}
}

// TestJSONUnchanged: the json format is exactly the JSON line tail has
// always printed.
func TestJSONUnchanged(t *testing.T) {
	e := newTestEncoder(t, FormatJSON)
	for _, c := range lineCases {
		want, _ := json.Marshal(c.line)
		got, err := e.Encode(c.line)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: got %s, %v; want %s", c.name, got, err, want)
		}
	}
}

func classWant(t *testing.T, name string, c int, event string) int {
	if c != 0 {
		return c
	}
	id := ClassOf(event).ID
	if id < FallbackBase || id >= FallbackBase+900000 {
		t.Errorf("%s: fallback class %d out of range", name, id)
	}
	return id
}

// TestSyslogFields parses every syslog record with a strict RFC 5424
// parser and checks each header field, SD parameter and the sequenceId.
func TestSyslogFields(t *testing.T) {
	e := newTestEncoder(t, FormatSyslog)
	for i, c := range lineCases {
		rec, _ := e.Encode(c.line)
		m, err := parseRFC5424(string(rec))
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.name, err, rec)
		}
		f := Extract(c.line, testNow)
		if want := Facility*8 + syslogSeverity[c.level]; m.Pri != want {
			t.Errorf("%s: PRI %d, want %d", c.name, m.Pri, want)
		}
		if !m.Time.Equal(f.Time) {
			t.Errorf("%s: time %v, want %v", c.name, m.Time, f.Time)
		}
		if m.Host != c.line.Gateway || m.App != "wardgate" || m.ProcID != "-" || m.MsgID != headerField(f.Event, 32) {
			t.Errorf("%s: header %q %q %q %q", c.name, m.Host, m.App, m.ProcID, m.MsgID)
		}
		if len(m.SD) != 2 || m.SD[0].ID != "wardgate@32473" || m.SD[1].ID != "meta" {
			t.Fatalf("%s: SD elements %+v", c.name, m.SD)
		}
		if v, _ := m.param("meta", "sequenceId"); v != strconv.Itoa(i+1) {
			t.Errorf("%s: sequenceId %q, want %d", c.name, v, i+1)
		}
		want := map[string]string{"gateway": c.line.Gateway, "severity": c.level.String(),
			"verified": strconv.FormatBool(c.line.Verified), "event": f.Event}
		if c.line.Seq != 0 {
			want["seq"] = strconv.FormatUint(c.line.Seq, 10)
		}
		if c.line.Session != 0 {
			want["session"] = strconv.FormatUint(c.line.Session, 10)
		}
		for _, kv := range []struct{ k, v string }{{"kind", c.line.Kind}, {"signer", c.line.Signer},
			{"topic", c.line.Topic}, {"alert", c.line.Alert}, {"error", c.line.Error}} {
			if kv.v != "" {
				want[kv.k] = kv.v
			}
		}
		for _, a := range f.Attrs {
			k := SDName(a.Key)
			if coreParams[k] {
				k = SDName("attr_" + a.Key)
			}
			want[k] = unbreak(a.Value)
		}
		got := map[string]string{}
		for _, p := range m.SD[0].Params {
			if _, dup := got[p[0]]; dup {
				t.Errorf("%s: duplicate SD-PARAM %s", c.name, p[0])
			}
			got[p[0]] = p[1]
		}
		if c.line.Historical {
			want["historical"] = "true"
		}
		if c.line.GapFrom != 0 {
			want["gap_from"], want["gap_to"] = "30", "34"
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: SD-PARAM %s = %q, want %q", c.name, k, got[k], v)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d SD-PARAMs, want %d: %v", c.name, len(got), len(want), got)
		}
		if !strings.HasPrefix(m.Msg, ClassOf(f.Event).Name) {
			t.Errorf("%s: MSG %q", c.name, m.Msg)
		}
	}
}

// unbreak is what EscapeSDValue does to control characters, undone by no
// parser: \uXXXX text.
func unbreak(s string) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if isControl(r) {
			fmt.Fprintf(&b, `\u%04x`, r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// TestCEFFields parses every CEF record back and checks header and keys.
func TestCEFFields(t *testing.T) {
	e := newTestEncoder(t, FormatCEF)
	for _, c := range lineCases {
		rec, _ := e.Encode(c.line)
		m, err := parseCEF(string(rec))
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.name, err, rec)
		}
		f := Extract(c.line, testNow)
		cls := classWant(t, c.name, c.class, f.Event)
		if m.Header[1] != "wardgate" || m.Header[2] != "wardgate" || m.Header[3] != "1.4.0" ||
			m.Header[4] != strconv.Itoa(cls) || m.Header[5] != ClassOf(f.Event).Name ||
			m.Header[6] != strconv.Itoa(cefSeverity[c.level]) {
			t.Errorf("%s: header %q", c.name, m.Header)
		}
		if m.Ext["rt"] != strconv.FormatInt(f.Time.UnixMilli(), 10) || m.Ext["dvchost"] != c.line.Gateway {
			t.Errorf("%s: rt %q dvchost %q", c.name, m.Ext["rt"], m.Ext["dvchost"])
		}
		if m.Ext["cs5"] != f.Event || m.Ext["cs5Label"] != "event" {
			t.Errorf("%s: cs5 %q", c.name, m.Ext["cs5"])
		}
		for _, a := range f.Attrs {
			k, ok := cefKeys[a.Key]
			if !ok {
				k = "wardgate" + camel(a.Key)
			}
			if a.Key == "vendor" && f.Attr("identity") == "" {
				k = "suser"
			}
			if a.Key == "remote" && validRemote(a.Value) {
				continue
			}
			if got := m.Ext[k]; got != cefClean(a.Value) {
				t.Errorf("%s: %s = %q, want %q", c.name, k, got, cefClean(a.Value))
			}
		}
		if r := f.Attr("remote"); validRemote(r) {
			h, p := splitRemote(r)
			if m.Ext["src"] != h || m.Ext["spt"] != p {
				t.Errorf("%s: src %q spt %q", c.name, m.Ext["src"], m.Ext["spt"])
			}
		}
	}
}

// cefClean is a value after a CEF round trip: control characters other
// than CR and LF become spaces.
func cefClean(s string) string {
	return strings.Map(func(r rune) rune {
		if isControl(r) && r != '\n' && r != '\r' {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// TestLEEFFields parses every LEEF record back.
func TestLEEFFields(t *testing.T) {
	e := newTestEncoder(t, FormatLEEF)
	for _, c := range lineCases {
		rec, _ := e.Encode(c.line)
		m, err := parseLEEF(string(rec))
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.name, err, rec)
		}
		f := Extract(c.line, testNow)
		if m.Header != [5]string{"2.0", "wardgate", "wardgate", "1.4.0", f.Event} {
			t.Errorf("%s: header %q", c.name, m.Header)
		}
		tm, err := time.Parse("2006-01-02T15:04:05.000Z07:00", m.Attrs["devTime"])
		if err != nil || !tm.Equal(f.Time) || m.Attrs["devTimeFormat"] != leefTimeFormat {
			t.Errorf("%s: devTime %q %v", c.name, m.Attrs["devTime"], err)
		}
		if m.Attrs["sev"] != strconv.Itoa(leefSeverity[c.level]) || m.Attrs["identHostName"] != c.line.Gateway {
			t.Errorf("%s: sev %q host %q", c.name, m.Attrs["sev"], m.Attrs["identHostName"])
		}
		if m.Attrs["classId"] != strconv.Itoa(classWant(t, c.name, c.class, f.Event)) {
			t.Errorf("%s: classId %q", c.name, m.Attrs["classId"])
		}
		if v := f.Attr("identity"); v != "" && m.Attrs["usrName"] != cefClean(v) {
			t.Errorf("%s: usrName %q", c.name, m.Attrs["usrName"])
		}
		if v := f.Attr("device"); v != "" && m.Attrs["resource"] != v {
			t.Errorf("%s: resource %q", c.name, m.Attrs["resource"])
		}
		if v := f.Attr("reason"); v != "" && m.Attrs["reason"] != leefClean(v) {
			t.Errorf("%s: reason %q, want %q", c.name, m.Attrs["reason"], leefClean(v))
		}
	}
}

func leefClean(s string) string {
	return strings.Map(func(r rune) rune {
		if isControl(r) && r != '\n' && r != '\r' && r != '\t' {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// TestClassTable: ids are unique, fallbacks are deterministic and never
// collide with the table.
func TestClassTable(t *testing.T) {
	seen := map[int]string{}
	for _, c := range Classes() {
		if o, dup := seen[c.ID]; dup {
			t.Errorf("class id %d used by %s and %s", c.ID, o, c.Kind)
		}
		seen[c.ID] = c.Kind
		if c.ID >= FallbackBase {
			t.Errorf("%s: table id %d in the fallback range", c.Kind, c.ID)
		}
	}
	a, b := ClassOf("some.new_kind"), ClassOf("some.new_kind")
	if a != b || a.ID < FallbackBase || a.Name != "some.new_kind" {
		t.Errorf("fallback %+v %+v", a, b)
	}
}

func TestParseFormat(t *testing.T) {
	for _, f := range Formats {
		if got, err := ParseFormat(string(f)); err != nil || got != f {
			t.Errorf("%s: %v", f, err)
		}
	}
	_, err := ParseFormat("xml")
	if err == nil || !strings.Contains(err.Error(), "json, syslog, cef, leef") {
		t.Errorf("bad format error: %v", err)
	}
	if _, err := NewEncoder("xml", EncoderOptions{}); err == nil {
		t.Error("NewEncoder accepted xml")
	}
}

// TestSequenceIdWraps: after 2147483647 the sequenceId starts at 1.
func TestSequenceIdWraps(t *testing.T) {
	e := newTestEncoder(t, FormatSyslog)
	e.seq = 2147483646
	for _, want := range []string{"2147483647", "1"} {
		rec, _ := e.Encode(lineCases[0].line)
		m, err := parseRFC5424(string(rec))
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := m.param("meta", "sequenceId"); v != want {
			t.Errorf("sequenceId %s, want %s", v, want)
		}
	}
}

// TestWrap: CEF inside an RFC 5424 message for syslog transports.
func TestWrap(t *testing.T) {
	e := newTestEncoder(t, FormatCEF)
	l := lineCases[0].line
	rec, _ := e.Encode(l)
	m, err := parseRFC5424(string(e.Wrap(l, rec)))
	if err != nil {
		t.Fatal(err)
	}
	if m.Msg != string(rec) || len(m.SD) != 1 || m.SD[0].ID != "meta" || m.MsgID != "vendor.request" {
		t.Errorf("wrapped: %+v", m)
	}
	s := newTestEncoder(t, FormatSyslog)
	rec, _ = s.Encode(l)
	if !bytes.Equal(s.Wrap(l, rec), rec) {
		t.Error("Wrap changed a syslog record")
	}
}

func TestFrame(t *testing.T) {
	msg, rest, err := parseOctetCounted(Frame([]byte("héllo")))
	if err != nil || string(msg) != "héllo" || len(rest) != 0 {
		t.Errorf("%q %q %v", msg, rest, err)
	}
}
