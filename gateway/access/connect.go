package access

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Limits bound what the CONNECT parser accepts. Zero fields take defaults.
type Limits struct {
	MaxLine        int // longest request or header line, CRLF included (default 4096)
	MaxHeaderBytes int // request line plus all headers (default 16384)
	MaxHeaders     int // header fields (default 64)
}

func (l Limits) withDefaults() Limits {
	if l.MaxLine <= 0 {
		l.MaxLine = 4096
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = 16384
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = 64
	}
	return l
}

// ConnectRequest is a parsed proxy request head.
type ConnectRequest struct {
	Method  string
	Target  string // request target as sent
	Host    string // device name (CONNECT only)
	Port    int    // CONNECT only
	Proto   string
	Headers map[string]string // canonical lower-case names; repeated fields joined with ", "
}

// Reason returns the vendor's stated reason (Reason or X-Reason header).
func (r *ConnectRequest) Reason() string {
	if v := r.Headers["reason"]; v != "" {
		return v
	}
	return r.Headers["x-reason"]
}

// ReadConnect reads one request head from br within lim. It reads exactly up
// to and including the blank line, leaving tunnel bytes buffered in br.
func ReadConnect(br *bufio.Reader, lim Limits) (*ConnectRequest, error) {
	lim = lim.withDefaults()
	total := 0
	readLine := func() (string, error) {
		var line []byte
		for {
			frag, err := br.ReadSlice('\n')
			line = append(line, frag...)
			total += len(frag)
			if len(line) > lim.MaxLine || total > lim.MaxHeaderBytes {
				return "", ErrHeadersTooLarge
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil {
				return "", fmt.Errorf("%w: %w", ErrMalformed, err)
			}
			break
		}
		if !bytes.HasSuffix(line, []byte("\r\n")) {
			// Tolerate bare LF as RFC 9112 section 2.2 allows.
			line = line[:len(line)-1]
		} else {
			line = line[:len(line)-2]
		}
		for _, c := range line {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return "", fmt.Errorf("%w: control character in request", ErrMalformed)
			}
		}
		return string(line), nil
	}
	first, err := readLine()
	if err != nil {
		return nil, err
	}
	parts := strings.Split(first, " ")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return nil, fmt.Errorf("%w: request line is not METHOD TARGET VERSION", ErrMalformed)
	}
	if !isToken(parts[0]) {
		return nil, fmt.Errorf("%w: bad method", ErrMalformed)
	}
	if parts[2] != "HTTP/1.1" && parts[2] != "HTTP/1.0" {
		return nil, fmt.Errorf("%w: unsupported protocol %q", ErrMalformed, parts[2])
	}
	req := &ConnectRequest{Method: parts[0], Target: parts[1], Proto: parts[2], Headers: map[string]string{}}
	for n := 0; ; n++ {
		line, err := readLine()
		if err != nil {
			return nil, err
		}
		if line == "" {
			break
		}
		if n >= lim.MaxHeaders {
			return nil, ErrHeadersTooLarge
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !isToken(name) {
			return nil, fmt.Errorf("%w: bad header line", ErrMalformed)
		}
		name = strings.ToLower(name)
		value = strings.Trim(value, " \t")
		if old, dup := req.Headers[name]; dup {
			value = old + ", " + value
		}
		req.Headers[name] = value
	}
	if req.Method != "CONNECT" {
		return req, nil
	}
	host, port, err := splitTarget(req.Target)
	if err != nil {
		return nil, err
	}
	req.Host, req.Port = host, port
	return req, nil
}

// splitAuthority parses DEVICE:PORT (or [v6]:PORT, refused later as an IP
// literal).
func splitAuthority(a string) (string, int, error) {
	host, ps, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return "", 0, fmt.Errorf("%w: CONNECT target must be DEVICE:PORT", ErrMalformed)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 || ps[0] == '+' || ps[0] == '0' {
		return "", 0, fmt.Errorf("%w: CONNECT target port must be 1-65535", ErrMalformed)
	}
	return host, port, nil
}

// isIPLiteral reports whether host names an address rather than a device.
func isIPLiteral(host string) bool {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if i := strings.IndexByte(h, '%'); i >= 0 {
		h = h[:i]
	}
	return net.ParseIP(h) != nil
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
