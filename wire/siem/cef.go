package siem

import (
	"net"
	"strconv"
	"strings"
	"unicode"
)

// cefKeys maps attribute names to keys of the CEF extension dictionary.
// Attributes not listed become custom keys "wardgate" + CamelCase(name).
var cefKeys = map[string]string{
	"identity":    "suser",
	"device":      "dhost",
	"reason":      "reason",
	"actor":       "duser",
	"from_device": "in",
	"to_device":   "out",
}

func (e *Encoder) cef(f Fields) []byte {
	var b strings.Builder
	c := ClassOf(f.Event)
	b.WriteString("CEF:0|")
	for _, h := range []string{Vendor, Product, e.o.Version, strconv.Itoa(c.ID), c.Name} {
		b.WriteString(EscapeCEFHeader(h))
		b.WriteByte('|')
	}
	b.WriteString(strconv.Itoa(cefSeverity[f.Level]))
	b.WriteByte('|')
	kv := (&extWriter{b: &b, sep: ' ', esc: EscapeCEFValue}).add
	kv("rt", strconv.FormatInt(f.Time.UnixMilli(), 10))
	kv("dvchost", f.Gateway)
	kv("cat", category(f))
	kv("act", action(f.Event))
	kv("externalId", uintText(f.Seq))
	kv("cn1Label", labelIf(f.Session != 0, "session"))
	kv("cn1", uintText(f.Session))
	kv("cs1Label", labelIf(f.Signer != "", "signer"))
	kv("cs1", f.Signer)
	kv("cs2Label", labelIf(f.Topic != "", "topic"))
	kv("cs2", f.Topic)
	kv("cs3Label", "verified")
	kv("cs3", strconv.FormatBool(f.Verified))
	kv("cs4Label", labelIf(f.Alert != "", "alert"))
	kv("cs4", f.Alert)
	kv("cs5Label", "event")
	kv("cs5", f.Event)
	if f.Historical {
		kv("cs6Label", "historical")
		kv("cs6", "true")
	}
	kv("cn2Label", labelIf(f.GapFrom != 0, "gap_from"))
	kv("cn2", uintText(f.GapFrom))
	kv("cn3Label", labelIf(f.GapTo != 0, "gap_to"))
	kv("cn3", uintText(f.GapTo))
	user := f.Attr("identity")
	if v := f.Attr("vendor"); v != "" && user == "" {
		kv("suser", v)
	}
	if host, port := splitRemote(f.Attr("remote")); host != "" {
		kv("src", host)
		kv("spt", port)
	}
	for _, a := range f.Attrs {
		k, ok := cefKeys[a.Key]
		switch {
		case ok:
		case a.Key == "vendor" && user == "", a.Key == "remote" && validRemote(a.Value):
			continue
		default:
			k = "wardgate" + camel(a.Key)
		}
		kv(k, a.Value)
	}
	kv("msg", f.Summary())
	return []byte(b.String())
}

func labelIf(ok bool, s string) string {
	if ok {
		return s
	}
	return ""
}

func uintText(v uint64) string {
	if v == 0 {
		return ""
	}
	return strconv.FormatUint(v, 10)
}

// category is the first segment of an event kind (clinical, vendor,
// access, identity, ...), "alert" for alert lines, and the message kind
// otherwise.
func category(f Fields) string {
	if f.Alert != "" {
		return "alert"
	}
	if f.Kind == "event" {
		c, _, _ := strings.Cut(f.Event, ".")
		return c
	}
	return f.Kind
}

// action is the part of an event kind after the first dot.
func action(kind string) string {
	_, a, _ := strings.Cut(kind, ".")
	return a
}

func splitRemote(r string) (host, port string) {
	h, p, err := net.SplitHostPort(r)
	if err != nil || net.ParseIP(h) == nil {
		return "", ""
	}
	if _, err := strconv.ParseUint(p, 10, 16); err != nil {
		return "", ""
	}
	return h, p
}

func validRemote(r string) bool { h, _ := splitRemote(r); return h != "" }

// camel turns an attribute name into the CamelCase tail of a custom key:
// letters and digits only, each run after a separator capitalised.
func camel(s string) string {
	var b strings.Builder
	up := true
	for _, r := range s {
		if r > unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r)) {
			up = true
			continue
		}
		if up {
			r = unicode.ToUpper(r)
			up = false
		}
		b.WriteRune(r)
	}
	if b.Len() == 0 {
		return "Attr"
	}
	return b.String()
}

// EscapeCEFHeader escapes a CEF header field: '\' and '|' get a
// backslash; line breaks and other control characters become a space
// (the header has no escape for them).
func EscapeCEFHeader(s string) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == '\\' || r == '|':
			b.WriteByte('\\')
			b.WriteRune(r)
		case isControl(r):
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// EscapeCEFValue escapes a CEF extension value: '\' and '=' get a
// backslash, CR and LF become \r and \n, other control characters a
// space.
func EscapeCEFValue(s string) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == '\\' || r == '=':
			b.WriteByte('\\')
			b.WriteRune(r)
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

func isControl(r rune) bool {
	return r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029
}

// extWriter writes the key=value extension of a CEF or LEEF record: empty
// values are left out, keys that two attributes sanitise to are numbered
// (k, k2, ...), pairs are separated by sep and values escaped with esc.
type extWriter struct {
	b     *strings.Builder
	sep   byte
	esc   func(string) string
	wrote bool
	used  map[string]int
}

func (w *extWriter) add(k, v string) {
	if v == "" {
		return
	}
	if w.used == nil {
		w.used = map[string]int{}
	}
	if n := w.used[k]; n > 0 {
		w.used[k]++
		k += strconv.Itoa(n + 1)
	}
	w.used[k]++
	if w.wrote {
		w.b.WriteByte(w.sep)
	}
	w.wrote = true
	w.b.WriteString(k)
	w.b.WriteByte('=')
	w.b.WriteString(w.esc(v))
}
