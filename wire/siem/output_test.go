package siem

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// TestOutputCheck: every rule of OutputConfig, with yaml key names.
func TestOutputCheck(t *testing.T) {
	dir := t.TempDir()
	good, short, notPEM := filepath.Join(dir, "good"), filepath.Join(dir, "short"), filepath.Join(dir, "ca.pem")
	_ = os.WriteFile(good, testSecret, 0o600)
	_ = os.WriteFile(short, []byte("abc"), 0o600)
	_ = os.WriteFile(notPEM, []byte("nope"), 0o600)
	q := filepath.Join(dir, "q")
	for _, c := range []struct {
		name string
		c    OutputConfig
		want []string // "" for valid
	}{
		{"zero value", OutputConfig{}, nil},
		{"cef", OutputConfig{Format: "cef"}, nil},
		{"bad format", OutputConfig{Format: "xml"}, []string{"format: unknown format"}},
		{"no queue", OutputConfig{Syslog: "tcp://127.0.0.1:1"}, []string{"need queue DIR"}},
		{"negative max", OutputConfig{QueueMax: -1}, []string{"queue_max -1"}},
		{"udp", OutputConfig{Syslog: "udp://h:514", Queue: q}, []string{"syslog: ", "UDP"}},
		{"tls files on tcp", OutputConfig{Syslog: "tcp://h:514", SyslogCA: notPEM, Queue: q}, []string{"need a tls:// syslog target"}},
		{"tls files alone", OutputConfig{SyslogCert: "c"}, []string{"need syslog tls://HOST:PORT"}},
		{"bad CA", OutputConfig{Syslog: "tls://h:514", SyslogCA: notPEM, Queue: q}, []string{"syslog_ca " + notPEM + ": no PEM"}},
		{"half pair", OutputConfig{Syslog: "tls://h:514", SyslogKey: "k", Queue: q}, []string{"syslog_cert and syslog_key go together"}},
		{"tls ok", OutputConfig{Syslog: "tls://h:514", Queue: q}, nil},
		{"webhook files alone", OutputConfig{WebhookSecret: good}, []string{"need webhook URL"}},
		{"webhook no secret", OutputConfig{Webhook: "https://h/x", Queue: q}, []string{"webhook needs webhook_secret"}},
		{"webhook short secret", OutputConfig{Webhook: "https://h/x", WebhookSecret: short, Queue: q}, []string{"webhook_secret: webhook secret"}},
		{"webhook http", OutputConfig{Webhook: "http://h/x", WebhookSecret: good, Queue: q}, []string{"webhook: webhook URL"}},
		{"webhook bad CA", OutputConfig{Webhook: "https://h/x", WebhookSecret: good, WebhookCA: notPEM, Queue: q}, []string{"webhook_ca"}},
		{"all at once", OutputConfig{Format: "xml", Syslog: "udp://h:1", Webhook: "ftp://x"},
			[]string{"format:", "need queue DIR", "UDP", "webhook: webhook URL", "webhook needs webhook_secret"}},
	} {
		err := c.c.Check(OutputOptions{})
		if len(c.want) == 0 {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", c.name, err, w)
			}
		}
	}
	err := OutputConfig{Syslog: "tcp://h:1"}.Check(OutputOptions{Name: func(k string) string { return "--" + k }})
	if err == nil || !strings.Contains(err.Error(), "--syslog and --webhook need --queue DIR") {
		t.Errorf("Name not applied: %v", err)
	}
}

// TestOpenOutput: writer by default; syslog and webhook with their
// queues, Run returning after cancel, the queues locked while open.
func TestOpenOutput(t *testing.T) {
	var buf bytes.Buffer
	out, err := OpenOutput(OutputConfig{Format: "leef"}, &buf, OutputOptions{Version: "9"})
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Sinks.Send(lineCases[0].line); err != nil || !strings.HasPrefix(buf.String(), "LEEF:2.0|wardgate|wardgate|9|") {
		t.Errorf("writer output %q %v", buf.String(), err)
	}
	if err := out.Run(context.Background()); err != nil {
		t.Error(err)
	}
	if _, ok := out.SyslogStats(); ok {
		t.Error("syslog stats without a syslog sink")
	}

	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	_ = os.WriteFile(secret, testSecret, 0o600)
	r := startReceiver(t, "127.0.0.1:0", nil, 0)
	clk := clockwork.NewFakeClockAt(testNow)
	srv := newHookServer(t, clk)
	caFile := filepath.Join(dir, "hook-ca.pem")
	writeCertPEM(t, caFile, srv.Certificate().Raw)
	c := OutputConfig{Syslog: "tcp://" + r.addr, Queue: filepath.Join(dir, "q"), Webhook: srv.URL + "/h",
		WebhookSecret: secret, WebhookCA: caFile}
	out, err = OpenOutput(c, nil, OutputOptions{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenOutput(c, nil, OutputOptions{}); !errors.Is(err, ErrQueueInUse) {
		t.Errorf("second output on the same queue: %v", err)
	}
	notes := make(chan string, 10)
	out.hook.hook = func(ev string) { notes <- ev }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- out.Run(ctx) }()
	if err := out.Sinks.SendBatch(seqLines(1, 3)); err != nil {
		t.Fatal(err)
	}
	seqs, _ := recvSeqs(t, r, 3)
	checkRun(t, "output syslog", seqs, 1)
	he := &hookEnv{notes: notes}
	for range 3 { // three vendor requests: three notifications
		nextReq(t, srv)
		he.await(t, "delivered")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if st, ok := out.SyslogStats(); !ok || st.Written != 3 {
		t.Errorf("syslog stats %+v", st)
	}
	if st, ok := out.WebhookStats(); !ok || st.Delivered != 3 {
		t.Errorf("webhook stats %+v", st)
	}
	if err := out.Close(); err != nil {
		t.Error(err)
	}
	if err := out.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
