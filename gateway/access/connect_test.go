package access

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

var connectCases = []struct {
	name   string
	in     string
	err    error
	method string
	host   string
	port   int
	reason string
	rest   string // bytes left for the tunnel
}{
	{name: "curl", in: "CONNECT pump-07:23 HTTP/1.1\r\nHost: pump-07:23\r\nUser-Agent: curl/7.88.1\r\nProxy-Connection: Keep-Alive\r\n\r\n", method: "CONNECT", host: "pump-07", port: 23},
	{name: "reason", in: "CONNECT pump-07:8080 HTTP/1.1\r\nReason: alarm E42\r\n\r\n", method: "CONNECT", host: "pump-07", port: 8080, reason: "alarm E42"},
	{name: "x-reason", in: "CONNECT pump-07:8080 HTTP/1.1\r\nx-reason:  fix  \r\n\r\n", method: "CONNECT", host: "pump-07", port: 8080, reason: "fix"},
	{name: "pipelined bytes", in: "CONNECT a:1 HTTP/1.0\r\n\r\nhello", method: "CONNECT", host: "a", port: 1, rest: "hello"},
	{name: "bare LF", in: "CONNECT a:1 HTTP/1.1\nHost: a\n\n", method: "CONNECT", host: "a", port: 1},
	{name: "ipv6", in: "CONNECT [::1]:23 HTTP/1.1\r\n\r\n", method: "CONNECT", host: "::1", port: 23},
	{name: "GET", in: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", method: "GET"},
	{name: "console", in: "CONNECT mon-03:console HTTP/1.1\r\n\r\n", method: "CONNECT", host: "mon-03", port: ConsolePort},
	{name: "console without device", in: "CONNECT :console HTTP/1.1\r\n\r\n", err: ErrMalformed},
	{name: "status API", in: "GET /v1/me HTTP/1.1\r\nHost: gw\r\n\r\n", method: "GET"},
	{name: "empty", in: "", err: ErrMalformed},
	{name: "no version", in: "CONNECT a:1\r\n\r\n", err: ErrMalformed},
	{name: "HTTP/2", in: "CONNECT a:1 HTTP/2\r\n\r\n", err: ErrMalformed},
	{name: "double space", in: "CONNECT  a:1 HTTP/1.1\r\n\r\n", err: ErrMalformed},
	{name: "no port", in: "CONNECT a HTTP/1.1\r\n\r\n", err: ErrMalformed},
	{name: "port 0", in: "CONNECT a:0 HTTP/1.1\r\n\r\n", err: ErrMalformed},
	{name: "port big", in: "CONNECT a:65536 HTTP/1.1\r\n\r\n", err: ErrMalformed},
	{name: "port sign", in: "CONNECT a:+23 HTTP/1.1\r\n\r\n", err: ErrMalformed},
	{name: "port leading zero", in: "CONNECT a:023 HTTP/1.1\r\n\r\n", err: ErrMalformed},
	{name: "empty host", in: "CONNECT :23 HTTP/1.1\r\n\r\n", err: ErrMalformed},
	{name: "header no colon", in: "CONNECT a:1 HTTP/1.1\r\nbad\r\n\r\n", err: ErrMalformed},
	{name: "header space name", in: "CONNECT a:1 HTTP/1.1\r\nX Y: 1\r\n\r\n", err: ErrMalformed},
	{name: "control char", in: "CONNECT a:1 HTTP/1.1\r\nX: a\x00b\r\n\r\n", err: ErrMalformed},
	{name: "truncated", in: "CONNECT a:1 HTTP/1.1\r\nHost: a\r\n", err: ErrMalformed},
	{name: "long line", in: "CONNECT a:1 HTTP/1.1\r\nX: " + strings.Repeat("a", 5000) + "\r\n\r\n", err: ErrHeadersTooLarge},
	{name: "many headers", in: "CONNECT a:1 HTTP/1.1\r\n" + strings.Repeat("X: 1\r\n", 65) + "\r\n", err: ErrHeadersTooLarge},
	{name: "total size", in: "CONNECT a:1 HTTP/1.1\r\n" + strings.Repeat("X: "+strings.Repeat("b", 400)+"\r\n", 50) + "\r\n", err: ErrHeadersTooLarge},
}

func TestReadConnect(t *testing.T) {
	for _, c := range connectCases {
		t.Run(c.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(c.in), 4096)
			req, err := ReadConnect(br, Limits{})
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("err %v, want %v", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if req.Method != c.method || req.Host != c.host || req.Port != c.port || req.Reason() != c.reason {
				t.Fatalf("%+v", req)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != c.rest {
				t.Fatalf("rest %q", rest)
			}
		})
	}
}

func TestIsIPLiteral(t *testing.T) {
	for h, want := range map[string]bool{"10.0.0.1": true, "::1": true, "[::1]": true, "fe80::1%eth0": true, "pump-07": false, "1.2.3": false, "localhost": false} {
		if isIPLiteral(h) != want {
			t.Errorf("%s: %v", h, !want)
		}
	}
}

func FuzzReadConnect(f *testing.F) {
	for _, c := range connectCases {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		lim := Limits{MaxLine: 256, MaxHeaderBytes: 1024, MaxHeaders: 8}
		req, err := ReadConnect(bufio.NewReaderSize(strings.NewReader(string(in)), 256), lim)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrHeadersTooLarge) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if len(req.Headers) > lim.MaxHeaders {
			t.Fatalf("%d headers", len(req.Headers))
		}
		if req.Method == "CONNECT" && (req.Port < 1 && req.Port != ConsolePort || req.Port > 65535 || req.Host == "") {
			t.Fatalf("bad target accepted: %+v", req)
		}
		for _, c := range req.Method + req.Target + req.Reason() {
			if c < 0x20 && c != '\t' || c == 0x7f {
				t.Fatalf("control character passed: %q", req.Target)
			}
		}
	})
}
