package siem

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// OutputConfig says where records go; `wardgate tail` fills it from its
// flags and central from its configuration file (the yaml keys). The zero
// value prints JSON lines to the writer given to OpenOutput.
type OutputConfig struct {
	Format     string `yaml:"format"`      // json, syslog, cef or leef; "" is syslog with a syslog target, else json
	Syslog     string `yaml:"syslog"`      // tcp://HOST:PORT or tls://HOST:PORT instead of the writer
	SyslogCA   string `yaml:"syslog_ca"`   // PEM file verifying a tls:// receiver; "" for the system roots
	SyslogCert string `yaml:"syslog_cert"` // client certificate (PEM) for mutual TLS
	SyslogKey  string `yaml:"syslog_key"`  // its key
	Queue      string `yaml:"queue"`       // directory of the disk queues; required with syslog or webhook
	QueueMax   int    `yaml:"queue_max"`   // records per queue; 0 is DefaultQueueMax
	Webhook    string `yaml:"webhook"`     // https URL for signed notifications
	// WebhookSecret is the file holding the shared secret.
	WebhookSecret string `yaml:"webhook_secret"`
	WebhookCA     string `yaml:"webhook_ca"` // PEM file verifying the webhook server; "" for the system roots
}

// OutputOptions are the parts of an output that are not configuration.
type OutputOptions struct {
	Version string // product version in CEF and LEEF headers
	Logger  *slog.Logger
	Clock   clockwork.Clock
	// Name renders a setting's yaml key in error messages (the CLI shows
	// its flag names); nil keeps the key.
	Name func(key string) string
}

// Output is an opened OutputConfig: its sinks, their delivery loops and
// queues.
type Output struct {
	// Sinks receives the lines.
	Sinks  Sinks
	loops  []func(context.Context) error
	queues []*Queue
	log    *slog.Logger
	syslog *SyslogSink
	hook   *Webhook
}

// Check validates c without touching the network or the queue
// directory; it reports every problem at once.
func (c OutputConfig) Check(o OutputOptions) error {
	_, err := c.plan(o)
	return err
}

type outputPlan struct {
	format        Format
	syslogAddr    string
	syslogTLS     *tls.Config
	webhookSecret []byte
	webhookTLS    *tls.Config
}

func (c OutputConfig) plan(o OutputOptions) (outputPlan, error) {
	n := o.Name
	if n == nil {
		n = func(k string) string { return k }
	}
	var p outputPlan
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Format == "" {
		c.Format = string(FormatJSON)
		if c.Syslog != "" {
			c.Format = string(FormatSyslog)
		}
	}
	f, err := ParseFormat(c.Format)
	if err != nil {
		bad("%s: %w", n("format"), err)
	}
	p.format = f
	if (c.Syslog != "" || c.Webhook != "") && c.Queue == "" {
		bad("%s and %s need %s DIR: records wait there while the receiver is away", n("syslog"), n("webhook"), n("queue"))
	}
	if c.QueueMax < 0 {
		bad("%s %d: must be at least 1 (0 for the default %d)", n("queue_max"), c.QueueMax, DefaultQueueMax)
	}
	tlsFiles := c.SyslogCA != "" || c.SyslogCert != "" || c.SyslogKey != ""
	if c.Syslog != "" {
		addr, useTLS, err := ParseSyslogTarget(c.Syslog)
		switch {
		case err != nil:
			bad("%s: %w", n("syslog"), err)
		case useTLS:
			p.syslogAddr = addr
			if p.syslogTLS, err = clientTLS(c.SyslogCA, c.SyslogCert, c.SyslogKey, n("syslog_ca"), n("syslog_cert"), n("syslog_key")); err != nil {
				errs = append(errs, err)
			}
		case tlsFiles:
			bad("%s, %s and %s need a tls:// %s target", n("syslog_ca"), n("syslog_cert"), n("syslog_key"), n("syslog"))
		default:
			p.syslogAddr = addr
		}
	} else if tlsFiles {
		bad("%s, %s and %s need %s tls://HOST:PORT", n("syslog_ca"), n("syslog_cert"), n("syslog_key"), n("syslog"))
	}
	if c.Webhook == "" {
		if c.WebhookSecret != "" || c.WebhookCA != "" {
			bad("%s and %s need %s URL", n("webhook_secret"), n("webhook_ca"), n("webhook"))
		}
	} else {
		if err := checkWebhookURL(c.Webhook); err != nil {
			bad("%s: %w", n("webhook"), err)
		}
		if c.WebhookSecret == "" {
			bad("%s needs %s FILE", n("webhook"), n("webhook_secret"))
		} else if p.webhookSecret, err = LoadSecret(c.WebhookSecret); err != nil {
			bad("%s: %w", n("webhook_secret"), err)
		}
		if p.webhookTLS, err = clientTLS(c.WebhookCA, "", "", n("webhook_ca"), "", ""); err != nil {
			errs = append(errs, err)
		}
	}
	return p, errors.Join(errs...)
}

// clientTLS builds a TLS client configuration: caFile ("" for the system
// roots) verifies the server; certFile and keyFile, both or neither, are
// the client certificate for mutual TLS.
func clientTLS(caFile, certFile, keyFile, caName, certName, keyName string) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pemBytes, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", caName, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("%s %s: no PEM certificate in it", caName, caFile)
		}
		conf.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("%s and %s go together (mutual TLS)", certName, keyName)
	}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("%s: client certificate: %w", certName, err)
		}
		conf.Certificates = []tls.Certificate{c}
	}
	return conf, nil
}

// OpenOutput checks c, opens its queues and builds its sinks: a
// WriterSink on w unless c.Syslog is set, a SyslogSink, and a Webhook.
// Configuration problems are reported all at once; a queue held by
// another process gives ErrQueueInUse.
func OpenOutput(c OutputConfig, w io.Writer, o OutputOptions) (*Output, error) {
	p, err := c.plan(o)
	if err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	enc, err := NewEncoder(p.format, EncoderOptions{Version: o.Version, Clock: o.Clock})
	if err != nil {
		return nil, err
	}
	out := &Output{log: o.Logger}
	fail := func(err error) (*Output, error) {
		_ = out.Close()
		return nil, err
	}
	if c.Syslog == "" {
		out.Sinks = append(out.Sinks, NewWriterSink(w, enc))
	} else {
		q, err := OpenQueue(filepath.Join(c.Queue, "syslog.db"), c.QueueMax)
		if err != nil {
			return fail(err)
		}
		out.queues = append(out.queues, q)
		s, err := NewSyslogSink(SyslogOptions{Addr: p.syslogAddr, TLS: p.syslogTLS, Encoder: enc, Queue: q,
			Clock: o.Clock, Logger: o.Logger})
		if err != nil {
			return fail(err)
		}
		out.Sinks, out.loops, out.syslog = append(out.Sinks, s), append(out.loops, s.Run), s
	}
	if c.Webhook != "" {
		q, err := OpenQueue(filepath.Join(c.Queue, "webhook.db"), c.QueueMax)
		if err != nil {
			return fail(err)
		}
		out.queues = append(out.queues, q)
		h, err := NewWebhook(WebhookOptions{URL: c.Webhook, Secret: p.webhookSecret, Queue: q, Clock: o.Clock,
			Logger: o.Logger, Client: &http.Client{Timeout: 10 * time.Second,
				Transport: &http.Transport{TLSClientConfig: p.webhookTLS, Proxy: http.ProxyFromEnvironment}}})
		if err != nil {
			return fail(err)
		}
		out.Sinks, out.loops, out.hook = append(out.Sinks, h), append(out.loops, h.Run), h
	}
	return out, nil
}

// Run runs the delivery loops of the network sinks until ctx ends and
// returns after they have exited. Without network sinks it returns at
// once.
func (o *Output) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(o.loops))
	for i, loop := range o.loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := loop(ctx); err != nil {
				o.log.Error("siem delivery stopped", "component", "siem", "err", err)
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// SyslogStats returns the syslog sink's counters; ok is false without one.
func (o *Output) SyslogStats() (SyslogStats, bool) {
	if o.syslog == nil {
		return SyslogStats{}, false
	}
	return o.syslog.Stats(), true
}

// WebhookStats returns the webhook's counters; ok is false without one.
func (o *Output) WebhookStats() (WebhookStats, bool) {
	if o.hook == nil {
		return WebhookStats{}, false
	}
	return o.hook.Stats(), true
}

// Close closes the queues; call it after Run returned. Calling it twice
// is harmless.
func (o *Output) Close() error {
	var errs []error
	for _, q := range o.queues {
		errs = append(errs, q.Close())
	}
	return errors.Join(errs...)
}
