package siem

import (
	"strconv"
	"strings"
)

// leefKeys maps attribute names to predefined LEEF 2.0 keys. Attributes
// not listed keep their own name.
var leefKeys = map[string]string{
	"identity":    "usrName",
	"device":      "resource",
	"from_device": "srcBytes",
	"to_device":   "dstBytes",
}

// leefTimeFormat is the devTimeFormat (Java SimpleDateFormat) of devTime.
const leefTimeFormat = "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"

func (e *Encoder) leef(f Fields) []byte {
	var b strings.Builder
	b.WriteString("LEEF:2.0|")
	for _, h := range []string{Vendor, Product, e.o.Version, f.Event} {
		b.WriteString(EscapeLEEFHeader(h))
		b.WriteByte('|')
	}
	b.WriteString("x09|")
	kv := (&extWriter{b: &b, sep: '\t', esc: EscapeLEEFValue}).add
	kv("devTime", rfc3339ms(f.Time))
	kv("devTimeFormat", leefTimeFormat)
	kv("sev", strconv.Itoa(leefSeverity[f.Level]))
	kv("cat", category(f))
	kv("identHostName", f.Gateway)
	kv("gateway", f.Gateway)
	kv("session", uintText(f.Session))
	kv("seq", uintText(f.Seq))
	kv("kind", f.Kind)
	kv("event", f.Event)
	kv("classId", strconv.Itoa(ClassOf(f.Event).ID))
	kv("severity", f.Level.String())
	kv("verified", strconv.FormatBool(f.Verified))
	if f.Historical {
		kv("historical", "true")
	}
	kv("signer", f.Signer)
	kv("topic", f.Topic)
	kv("alert", f.Alert)
	kv("error", f.Error)
	kv("gap_from", uintText(f.GapFrom))
	kv("gap_to", uintText(f.GapTo))
	user := f.Attr("identity")
	if v := f.Attr("vendor"); v != "" && user == "" {
		kv("usrName", v)
	}
	if host, port := splitRemote(f.Attr("remote")); host != "" {
		kv("src", host)
		kv("srcPort", port)
	}
	for _, a := range f.Attrs {
		k, ok := leefKeys[a.Key]
		if !ok {
			k = camel(a.Key)
			k = strings.ToLower(k[:1]) + k[1:]
			if coreParams[k] || leefReserved[k] {
				k = "attr" + camel(a.Key)
			}
		}
		kv(k, a.Value)
	}
	kv("msg", f.Summary())
	return []byte(b.String())
}

// leefReserved are keys the record sets itself.
var leefReserved = map[string]bool{"devTime": true, "devTimeFormat": true, "sev": true, "cat": true,
	"identHostName": true, "classId": true, "usrName": true, "src": true, "srcPort": true, "msg": true,
	"resource": true, "srcBytes": true, "dstBytes": true, "gapFrom": true, "gapTo": true}

// EscapeLEEFHeader escapes a LEEF header field: '\' and '|' get a
// backslash, control characters become a space.
func EscapeLEEFHeader(s string) string { return EscapeCEFHeader(s) }

// EscapeLEEFValue keeps a value inside its tab-delimited attribute: '\'
// becomes \\, tab, CR and LF become \t, \r and \n, other control
// characters a space. '=' needs no escape: a key ends at the first '='.
func EscapeLEEFValue(s string) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case isControl(r):
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
