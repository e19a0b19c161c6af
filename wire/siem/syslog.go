package siem

import (
	"strconv"
	"strings"
)

// coreParams are the SD-PARAM names of the wardgate SD element that are
// not event attributes. An event attribute with one of these names is
// written as "attr_" + name.
var coreParams = map[string]bool{"gateway": true, "session": true, "seq": true, "kind": true,
	"event": true, "severity": true, "topic": true, "historical": true, "verified": true,
	"signer": true, "alert": true, "error": true, "gap_from": true, "gap_to": true}

func (e *Encoder) syslog(f Fields) []byte {
	return e.syslogWith(f, true, f.Summary())
}

// syslogWith builds HEADER SP STRUCTURED-DATA [SP MSG] (RFC 5424 section 6).
func (e *Encoder) syslogWith(f Fields, full bool, msg string) []byte {
	var b strings.Builder
	b.WriteByte('<')
	b.WriteString(strconv.Itoa(Facility*8 + syslogSeverity[f.Level]))
	b.WriteString(">1 ")
	b.WriteString(rfc3339ms(f.Time))
	b.WriteByte(' ')
	b.WriteString(headerField(f.Gateway, 255))
	b.WriteByte(' ')
	b.WriteString(AppName)
	b.WriteString(" - ")
	b.WriteString(headerField(f.Event, 32))
	b.WriteByte(' ')
	pen := strconv.Itoa(e.o.PEN)
	if full {
		b.WriteString("[wardgate@" + pen)
		param := func(k, v string) {
			b.WriteByte(' ')
			b.WriteString(k)
			b.WriteString(`="`)
			b.WriteString(EscapeSDValue(v))
			b.WriteByte('"')
		}
		u := func(k string, v uint64) {
			if v != 0 {
				param(k, strconv.FormatUint(v, 10))
			}
		}
		nonEmpty := func(k, v string) {
			if v != "" {
				param(k, v)
			}
		}
		param("gateway", f.Gateway)
		u("session", f.Session)
		u("seq", f.Seq)
		nonEmpty("kind", f.Kind)
		nonEmpty("event", f.Event)
		param("severity", f.Level.String())
		param("verified", strconv.FormatBool(f.Verified))
		if f.Historical {
			param("historical", "true")
		}
		nonEmpty("signer", f.Signer)
		nonEmpty("topic", f.Topic)
		nonEmpty("alert", f.Alert)
		nonEmpty("error", f.Error)
		u("gap_from", f.GapFrom)
		u("gap_to", f.GapTo)
		for _, a := range f.Attrs {
			k := SDName(a.Key)
			if coreParams[k] {
				k = SDName("attr_" + a.Key)
			}
			param(k, a.Value)
		}
		b.WriteByte(']')
	}
	// meta is registered with IANA (RFC 5424 section 7.3): no @PEN.
	b.WriteString(`[meta sequenceId="`)
	b.WriteString(strconv.FormatUint(uint64(e.nextSeq()), 10))
	b.WriteString(`"]`)
	if msg != "" {
		b.WriteByte(' ')
		b.WriteString(cleanMsg(msg))
	}
	return []byte(b.String())
}

// headerField makes s a valid RFC 5424 header field: printable US-ASCII
// (33-126) only, others replaced by '_', cut to max, "-" when empty.
func headerField(s string, max int) string {
	if s == "" {
		return "-"
	}
	b := []byte(s)
	if len(b) > max {
		b = b[:max]
	}
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	return string(b)
}

// SDName makes s a valid SD-NAME (RFC 5424 section 6.3.3): 1 to 32
// printable US-ASCII characters except '=', ' ', ']' and '"'; others
// become '_'.
func SDName(s string) string {
	if s == "" {
		return "_"
	}
	b := []byte(s)
	if len(b) > 32 {
		b = b[:32]
	}
	for i, c := range b {
		if c < 33 || c > 126 || c == '=' || c == ']' || c == '"' {
			b[i] = '_'
		}
	}
	return string(b)
}

// EscapeSDValue escapes a PARAM-VALUE (RFC 5424 section 6.3.3): '"', '\'
// and ']' get a backslash. Invalid UTF-8 becomes U+FFFD and control
// characters become their \uXXXX text, so a value never breaks a line.
func EscapeSDValue(s string) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == '"' || r == '\\' || r == ']':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029:
			b.WriteString(`\u`)
			b.WriteString(strconv.FormatInt(int64(r)+0x10000, 16)[1:])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// cleanMsg keeps MSG on one line: valid UTF-8, control characters
// replaced by a space. MSG-ANY (no BOM) as most receivers expect.
func cleanMsg(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 {
			return ' '
		}
		return r
	}, s)
}

// Frame returns msg with RFC 6587 octet-counting framing: the length in
// bytes, a space, the message.
func Frame(msg []byte) []byte {
	out := make([]byte, 0, len(msg)+8)
	out = strconv.AppendInt(out, int64(len(msg)), 10)
	out = append(out, ' ')
	return append(out, msg...)
}
