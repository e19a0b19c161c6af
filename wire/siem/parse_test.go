package siem

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The parsers below are strict readers for the tests: they accept only
// what the RFC or format allows and return every field unescaped.

type sdElement struct {
	ID     string
	Params [][2]string
}

type syslogMsg struct {
	Pri                           int
	Time                          time.Time
	Host, App, ProcID, MsgID, Msg string
	SD                            []sdElement
}

func (m syslogMsg) param(id, name string) (string, bool) {
	for _, e := range m.SD {
		if e.ID != id {
			continue
		}
		for _, p := range e.Params {
			if p[0] == name {
				return p[1], true
			}
		}
	}
	return "", false
}

// parseRFC5424 parses one RFC 5424 message (section 6, ABNF) strictly.
func parseRFC5424(s string) (syslogMsg, error) {
	var m syslogMsg
	if !utf8.ValidString(s) {
		return m, fmt.Errorf("not UTF-8")
	}
	if strings.ContainsAny(s, "\r\n") {
		return m, fmt.Errorf("line break in message")
	}
	if !strings.HasPrefix(s, "<") {
		return m, fmt.Errorf("no PRI")
	}
	end := strings.IndexByte(s, '>')
	if end < 2 || end > 4 {
		return m, fmt.Errorf("bad PRI")
	}
	pri := s[1:end]
	if len(pri) > 1 && pri[0] == '0' {
		return m, fmt.Errorf("PRI with leading zero")
	}
	p, err := strconv.Atoi(pri)
	if err != nil || p < 0 || p > 191 {
		return m, fmt.Errorf("bad PRI %q", pri)
	}
	m.Pri = p
	rest := s[end+1:]
	if !strings.HasPrefix(rest, "1 ") {
		return m, fmt.Errorf("bad VERSION")
	}
	rest = rest[2:]
	field := func(name string, max int) (string, error) {
		i := strings.IndexByte(rest, ' ')
		if i < 0 {
			return "", fmt.Errorf("%s: missing SP", name)
		}
		v := rest[:i]
		rest = rest[i+1:]
		if v == "" || len(v) > max {
			return "", fmt.Errorf("%s: length %d", name, len(v))
		}
		for _, c := range []byte(v) {
			if c < 33 || c > 126 {
				return "", fmt.Errorf("%s: byte %d", name, c)
			}
		}
		return v, nil
	}
	ts, err := field("TIMESTAMP", 32)
	if err != nil {
		return m, err
	}
	if ts != "-" {
		// FULL-DATE "T" FULL-TIME, TIME-SECFRAC at most 6 digits.
		if dot := strings.IndexByte(ts, '.'); dot >= 0 {
			n := 0
			for _, c := range ts[dot+1:] {
				if c < '0' || c > '9' {
					break
				}
				n++
			}
			if n < 1 || n > 6 {
				return m, fmt.Errorf("TIME-SECFRAC of %d digits", n)
			}
		}
		if m.Time, err = time.Parse(time.RFC3339Nano, ts); err != nil {
			return m, fmt.Errorf("TIMESTAMP: %w", err)
		}
	}
	if m.Host, err = field("HOSTNAME", 255); err != nil {
		return m, err
	}
	if m.App, err = field("APP-NAME", 48); err != nil {
		return m, err
	}
	if m.ProcID, err = field("PROCID", 128); err != nil {
		return m, err
	}
	if m.MsgID, err = field("MSGID", 32); err != nil {
		return m, err
	}
	if strings.HasPrefix(rest, "-") {
		rest = rest[1:]
	} else {
		if !strings.HasPrefix(rest, "[") {
			return m, fmt.Errorf("no STRUCTURED-DATA")
		}
		for strings.HasPrefix(rest, "[") {
			var e sdElement
			rest = rest[1:]
			if e.ID, rest, err = sdName(rest); err != nil {
				return m, fmt.Errorf("SD-ID: %w", err)
			}
			for strings.HasPrefix(rest, " ") {
				rest = rest[1:]
				var name string
				if name, rest, err = sdName(rest); err != nil {
					return m, fmt.Errorf("PARAM-NAME: %w", err)
				}
				if !strings.HasPrefix(rest, `="`) {
					return m, fmt.Errorf("PARAM %s: no =\"", name)
				}
				rest = rest[2:]
				var val strings.Builder
				closed := false
				for i := 0; i < len(rest); i++ {
					c := rest[i]
					if c == '\\' && i+1 < len(rest) && (rest[i+1] == '"' || rest[i+1] == '\\' || rest[i+1] == ']') {
						val.WriteByte(rest[i+1])
						i++
						continue
					}
					if c == '"' {
						rest, closed = rest[i+1:], true
						break
					}
					if c == ']' {
						return m, fmt.Errorf("PARAM %s: unescaped ]", name)
					}
					val.WriteByte(c)
				}
				if !closed {
					return m, fmt.Errorf("PARAM %s: unterminated", name)
				}
				e.Params = append(e.Params, [2]string{name, val.String()})
			}
			if !strings.HasPrefix(rest, "]") {
				return m, fmt.Errorf("SD-ELEMENT %s: no ]", e.ID)
			}
			rest = rest[1:]
			m.SD = append(m.SD, e)
		}
	}
	if rest != "" {
		if rest[0] != ' ' {
			return m, fmt.Errorf("no SP before MSG")
		}
		m.Msg = rest[1:]
	}
	return m, nil
}

func sdName(s string) (string, string, error) {
	i := 0
	for i < len(s) {
		c := s[i]
		if c < 33 || c > 126 || c == '=' || c == ' ' || c == ']' || c == '"' {
			break
		}
		i++
	}
	if i == 0 || i > 32 {
		return "", s, fmt.Errorf("length %d", i)
	}
	return s[:i], s[i:], nil
}

// parseOctetCounted reads one RFC 6587 octet-counted frame.
func parseOctetCounted(b []byte) (msg, rest []byte, err error) {
	sp := strings.IndexByte(string(b[:min(len(b), 12)]), ' ')
	if sp < 1 {
		return nil, b, fmt.Errorf("no MSG-LEN")
	}
	n, err := strconv.Atoi(string(b[:sp]))
	if err != nil || n < 1 || b[0] == '0' {
		return nil, b, fmt.Errorf("bad MSG-LEN %q", b[:sp])
	}
	if len(b) < sp+1+n {
		return nil, b, fmt.Errorf("short frame")
	}
	return b[sp+1 : sp+1+n], b[sp+1+n:], nil
}

type cefMsg struct {
	Header [7]string // version.., i.e. Version, Vendor, Product, DevVersion, ClassID, Name, Severity
	Ext    map[string]string
	Keys   []string
}

// splitHeader splits n fields on unescaped '|' (escapes \| and \\) and
// returns the rest after the n-th pipe.
func splitHeader(s string, n int) ([]string, string, error) {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' {
			if i+1 >= len(s) || (s[i+1] != '|' && s[i+1] != '\\') {
				return nil, "", fmt.Errorf("bad header escape at %d", i)
			}
			cur.WriteByte(s[i+1])
			i++
			continue
		}
		if c == '|' {
			out = append(out, cur.String())
			cur.Reset()
			if len(out) == n {
				return out, s[i+1:], nil
			}
			continue
		}
		cur.WriteByte(c)
	}
	return nil, "", fmt.Errorf("header has %d fields, want %d", len(out), n)
}

func parseCEF(s string) (cefMsg, error) {
	var m cefMsg
	if strings.ContainsAny(s, "\r\n") {
		return m, fmt.Errorf("line break")
	}
	if !strings.HasPrefix(s, "CEF:0|") {
		return m, fmt.Errorf("no CEF:0 prefix")
	}
	h, ext, err := splitHeader(s[len("CEF:"):], 7)
	if err != nil {
		return m, err
	}
	copy(m.Header[:], h)
	if sev, err := strconv.Atoi(m.Header[6]); err != nil || sev < 0 || sev > 10 {
		return m, fmt.Errorf("severity %q", m.Header[6])
	}
	m.Ext = map[string]string{}
	// Keys: [A-Za-z0-9_]+ then an unescaped '='. Values run to the space
	// before the next key.
	type kpos struct {
		key             string
		start, valStart int
	}
	var keys []kpos
	for i := 0; i < len(ext); i++ {
		if ext[i] == '\\' {
			i++
			continue
		}
		if ext[i] != '=' {
			continue
		}
		j := i
		for j > 0 && isKeyByte(ext[j-1]) {
			j--
		}
		if j == i || (j > 0 && ext[j-1] != ' ') {
			return m, fmt.Errorf("unescaped = inside a value at %d", i)
		}
		keys = append(keys, kpos{ext[j:i], j, i + 1})
	}
	if len(keys) == 0 || keys[0].start != 0 {
		return m, fmt.Errorf("extension does not start with a key")
	}
	for k, p := range keys {
		end := len(ext)
		if k+1 < len(keys) {
			end = keys[k+1].start - 1
		}
		raw := ext[p.valStart:end]
		var v strings.Builder
		for i := 0; i < len(raw); i++ {
			if raw[i] == '\\' {
				if i+1 >= len(raw) {
					return m, fmt.Errorf("dangling backslash in %s", p.key)
				}
				switch raw[i+1] {
				case '\\', '=':
					v.WriteByte(raw[i+1])
				case 'n':
					v.WriteByte('\n')
				case 'r':
					v.WriteByte('\r')
				default:
					return m, fmt.Errorf("bad escape \\%c in %s", raw[i+1], p.key)
				}
				i++
				continue
			}
			v.WriteByte(raw[i])
		}
		if _, dup := m.Ext[p.key]; dup {
			return m, fmt.Errorf("duplicate key %s", p.key)
		}
		m.Ext[p.key] = v.String()
		m.Keys = append(m.Keys, p.key)
	}
	return m, nil
}

func isKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

type leefMsg struct {
	Header [5]string // Version, Vendor, Product, DevVersion, EventID
	Attrs  map[string]string
	Keys   []string
}

func parseLEEF(s string) (leefMsg, error) {
	var m leefMsg
	if strings.ContainsAny(s, "\r\n") {
		return m, fmt.Errorf("line break")
	}
	if !strings.HasPrefix(s, "LEEF:2.0|") {
		return m, fmt.Errorf("no LEEF:2.0 prefix")
	}
	h, rest, err := splitHeader(s[len("LEEF:"):], 6)
	if err != nil {
		return m, err
	}
	copy(m.Header[:], h[:5])
	if h[5] != "x09" {
		return m, fmt.Errorf("delimiter %q", h[5])
	}
	m.Attrs = map[string]string{}
	for _, kv := range strings.Split(rest, "\t") {
		k, raw, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return m, fmt.Errorf("attribute %q without key", kv)
		}
		for _, c := range []byte(k) {
			if !isKeyByte(c) {
				return m, fmt.Errorf("bad key %q", k)
			}
		}
		var v strings.Builder
		for i := 0; i < len(raw); i++ {
			if raw[i] == '\\' {
				if i+1 >= len(raw) {
					return m, fmt.Errorf("dangling backslash in %s", k)
				}
				switch raw[i+1] {
				case '\\':
					v.WriteByte('\\')
				case 't':
					v.WriteByte('\t')
				case 'n':
					v.WriteByte('\n')
				case 'r':
					v.WriteByte('\r')
				default:
					return m, fmt.Errorf("bad escape in %s", k)
				}
				i++
				continue
			}
			v.WriteByte(raw[i])
		}
		if _, dup := m.Attrs[k]; dup {
			return m, fmt.Errorf("duplicate key %s", k)
		}
		m.Attrs[k] = v.String()
		m.Keys = append(m.Keys, k)
	}
	return m, nil
}
