package siem

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzEscapers puts arbitrary text into an event kind, an attribute name
// and attribute values, encodes the line in every format and parses it
// back strictly: the record must parse, stay on one line, and return the
// value as documented (control characters aside).
func FuzzEscapers(f *testing.F) {
	for _, s := range []string{"", "plain", `a"b\c]d`, "x|y=z\\", "new\nline\r\t", "\xff\xfe", "é]\"\\", "=", "|", "\\", "]"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, kind, val string) {
		l := event(1, kind, "warning", map[string]any{"reason": val, "k" + val: "x", "identity": val + "|" + kind})
		for _, fm := range []Format{FormatSyslog, FormatCEF, FormatLEEF} {
			e := newTestEncoder(t, fm)
			rec, err := e.Encode(l)
			if err != nil {
				t.Fatal(err)
			}
			if strings.ContainsAny(string(rec), "\r\n") {
				t.Fatalf("%s: line break in %q", fm, rec)
			}
			switch fm {
			case FormatSyslog:
				m, err := parseRFC5424(string(rec))
				if err != nil {
					t.Fatalf("syslog: %v\n%q", err, rec)
				}
				if got, _ := m.param("wardgate@32473", "reason"); got != unbreak(val) {
					t.Fatalf("syslog reason %q, want %q", got, unbreak(val))
				}
			case FormatCEF:
				m, err := parseCEF(string(rec))
				if err != nil {
					t.Fatalf("cef: %v\n%q", err, rec)
				}
				if m.Ext["reason"] != cefClean(val) {
					t.Fatalf("cef reason %q, want %q", m.Ext["reason"], cefClean(val))
				}
				if m.Ext["suser"] != cefClean(val+"|"+kind) {
					t.Fatalf("cef suser %q", m.Ext["suser"])
				}
				if kind != "" && m.Header[5] != headerClean(ClassOf(kind).Name) {
					t.Fatalf("cef name %q, want %q", m.Header[5], headerClean(ClassOf(kind).Name))
				}
			case FormatLEEF:
				m, err := parseLEEF(string(rec))
				if err != nil {
					t.Fatalf("leef: %v\n%q", err, rec)
				}
				if m.Attrs["reason"] != leefClean(val) {
					t.Fatalf("leef reason %q, want %q", m.Attrs["reason"], leefClean(val))
				}
				if kind != "" && m.Header[4] != headerClean(kind) {
					t.Fatalf("leef event id %q, want %q", m.Header[4], headerClean(kind))
				}
			}
		}
	})
}

func headerClean(s string) string {
	return strings.Map(func(r rune) rune {
		if isControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// FuzzOctetCounting: a framed record always reads back whole.
func FuzzOctetCounting(f *testing.F) {
	f.Add([]byte("<110>1 - - - - - -"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		msg, rest, err := parseOctetCounted(append(Frame(b), Frame(b)...))
		if err != nil || string(msg) != string(b) {
			t.Fatalf("%v %q", err, msg)
		}
		if msg, rest, err = parseOctetCounted(rest); err != nil || string(msg) != string(b) || len(rest) != 0 {
			t.Fatalf("second frame: %v", err)
		}
	})
}

// FuzzVerify feeds arbitrary headers and bodies to Verify: it never
// panics and accepts only a signature made with the secret over exactly
// that timestamp and body.
func FuzzVerify(f *testing.F) {
	now := time.Unix(1796155200, 0)
	body := []byte(`{"type":"finding"}`)
	f.Add("1796155200", Sign(testSecret, now, body), body)
	f.Add("", "v1=", []byte{})
	f.Add("-1", "v1=zz", []byte("x"))
	f.Add("99999999999999999999", "sha256=00", []byte("x"))
	f.Fuzz(func(t *testing.T, ts, sig string, b []byte) {
		err := Verify(testSecret, ts, sig, b, now, 0)
		if err != nil {
			return
		}
		sec, perr := strconv.ParseInt(ts, 10, 64)
		if perr != nil || Sign(testSecret, time.Unix(sec, 0), b) != strings.ToLower(sig) && sig != Sign(testSecret, time.Unix(sec, 0), b) {
			t.Fatalf("accepted ts %q sig %q", ts, sig)
		}
	})
}
