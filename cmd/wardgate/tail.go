package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/telemetry"
	"github.com/wardgate/wardgate/wire/envelope"
	"github.com/wardgate/wardgate/wire/siem"
)

func init() {
	register(cliCommand{name: "tail", summary: "central: verify gateways' telemetry and feed a SIEM (JSON, syslog, CEF, LEEF)", run: cmdTail})
}

const tailAbout = `For central security: subscribes to wardgate/v1/+/# (or one gateway's
topics), verifies every message's signature against the CA bundle (--ca) and
that the signing certificate names the gateway, de-duplicates, and prints one
record per line: messages, and alerts (verify_failed, topic_mismatch,
body_invalid, gap when a sequence number stays missing).

--format picks the record format: json (default), syslog (RFC 5424), cef
(ArcSight) or leef (QRadar LEEF 2.0). --syslog sends the records to a
syslog receiver over TCP or TLS instead of stdout (RFC 6587 octet counting;
json, cef and leef records travel inside an RFC 5424 header), through a
disk queue in --queue that survives outages and restarts. --webhook also
POSTs signed JSON for vendor requests, alarms and findings. docs/siem.md
describes the formats and the field mapping.`

// tailFlags are the SIEM output flags of tail.
type tailFlags struct {
	format                                  *string
	syslog, syslogCA, syslogCert, syslogKey *string
	queue                                   *string
	queueMax                                *int
	webhook, webhookSecret, webhookCA       *string
}

func cmdTail(e *env, args []string) int {
	fs := newFlags(e, "tail --broker URL --cert F --key F --ca F [--gateway ID] [--format json|syslog|cef|leef] [--syslog tcp://HOST:PORT|tls://HOST:PORT --queue DIR] [--webhook URL --webhook-secret F --queue DIR]", tailAbout)
	broker := fs.String("broker", "", "broker `URL`, e.g. mqtts://broker.hospital.example:8883")
	certFile := fs.String("cert", "", "central's client certificate `FILE` (PEM)")
	keyFile := fs.String("key", "", "its private key `FILE` (PEM)")
	caFile := fs.String("ca", "", "the hospital CA bundle `FILE` (PEM): verifies the broker and every message")
	gw := fs.String("gateway", "", "only this gateway `ID` (default: all)")
	persistent := fs.Bool("persistent", false, "keep a broker session so messages sent while tail is down arrive later")
	clientID := fs.String("client-id", "", "MQTT client `ID` (needed with --persistent)")
	tf := tailFlags{
		format:        fs.String("format", "json", "record `FORMAT`: json, syslog, cef or leef (default json; syslog when --syslog is given)"),
		syslog:        fs.String("syslog", "", "send records to this syslog `TARGET` (tcp://HOST:PORT or tls://HOST:PORT) instead of stdout"),
		syslogCA:      fs.String("syslog-ca", "", "CA `FILE` (PEM) that verifies the tls:// syslog receiver (default: the system roots)"),
		syslogCert:    fs.String("syslog-cert", "", "client certificate `FILE` (PEM) for mutual TLS with the syslog receiver"),
		syslogKey:     fs.String("syslog-key", "", "its private key `FILE` (PEM)"),
		queue:         fs.String("queue", "", "`DIR` for the disk queues of --syslog and --webhook (created 0700)"),
		queueMax:      fs.Int("queue-max", siem.DefaultQueueMax, "records each queue keeps at most; when full, metrics and status go first (`N`)"),
		webhook:       fs.String("webhook", "", "also POST signed JSON for vendor requests, alarms and findings to this https `URL`"),
		webhookSecret: fs.String("webhook-secret", "", "`FILE` holding the shared webhook secret (at least 16 bytes)"),
		webhookCA:     fs.String("webhook-ca", "", "CA `FILE` (PEM) that verifies the webhook server (default: the system roots)"),
	}
	if code, ok := parse(e, fs, args); !ok {
		return code
	}
	if *broker == "" || *certFile == "" || *keyFile == "" || *caFile == "" || fs.NArg() > 0 {
		fmt.Fprintln(e.stderr, "wardgate tail: --broker, --cert, --key and --ca are required")
		fs.Usage()
		return exitUsage
	}
	if *persistent && *clientID == "" {
		fmt.Fprintln(e.stderr, "wardgate tail: --persistent needs a stable --client-id")
		return exitUsage
	}
	formatSet := false
	fs.Visit(func(f *flag.Flag) { formatSet = formatSet || f.Name == "format" })
	if !formatSet && *tf.syslog != "" {
		*tf.format = string(siem.FormatSyslog)
	}
	out, err := tf.build(e)
	if err != nil {
		fmt.Fprintln(e.stderr, "wardgate tail:", err)
		return exitUsage
	}
	defer out.close()
	tlsConf, err := access.LoadClientTLS(*certFile, *keyFile, *caFile)
	if err != nil {
		fmt.Fprintln(e.stderr, "wardgate tail:", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	wait := out.run(ctx)
	err = telemetry.Tail(ctx, telemetry.TailOptions{
		BrokerURL: *broker, TLSConfig: tlsConf, Verify: envelope.RootsVerifier(tlsConf.RootCAs),
		Gateway: *gw, ClientID: *clientID, Persistent: *persistent, Emit: out.sinks.SendBatch, Logger: out.log,
	})
	stop()
	wait()
	if err != nil {
		fmt.Fprintln(e.stderr, "wardgate tail:", err)
		return exitFailure
	}
	return exitOK
}

// tailOutput is what tail writes to: its sinks, the background delivery
// loops of the network sinks and the queues to close.
type tailOutput struct {
	sinks  siem.Sinks
	loops  []func(context.Context) error
	queues []*siem.Queue
	log    *slog.Logger
}

func (o *tailOutput) close() {
	for _, q := range o.queues {
		_ = q.Close()
	}
}

// run starts the delivery loops; the returned function waits for them.
func (o *tailOutput) run(ctx context.Context) func() {
	var wg sync.WaitGroup
	for _, loop := range o.loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := loop(ctx); err != nil {
				o.log.Error("siem delivery stopped", "err", err)
			}
		}()
	}
	return wg.Wait
}

// build checks the SIEM flags together and builds the sinks. Every
// problem here is a usage error.
func (f tailFlags) build(e *env) (*tailOutput, error) {
	format, err := siem.ParseFormat(*f.format)
	if err != nil {
		return nil, fmt.Errorf("--format: %w", err)
	}
	enc, err := siem.NewEncoder(format, siem.EncoderOptions{Version: version})
	if err != nil {
		return nil, err
	}
	o := &tailOutput{log: slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if (*f.syslog != "" || *f.webhook != "") && *f.queue == "" {
		return nil, errors.New("--syslog and --webhook need --queue DIR: records wait there while the receiver is away")
	}
	if *f.syslog == "" && (*f.syslogCA != "" || *f.syslogCert != "" || *f.syslogKey != "") {
		return nil, errors.New("--syslog-ca, --syslog-cert and --syslog-key need --syslog tls://HOST:PORT")
	}
	if *f.webhook == "" && (*f.webhookSecret != "" || *f.webhookCA != "") {
		return nil, errors.New("--webhook-secret and --webhook-ca need --webhook URL")
	}
	if *f.queueMax <= 0 {
		return nil, fmt.Errorf("--queue-max %d: must be at least 1", *f.queueMax)
	}
	var plan []func() error
	if *f.syslog == "" {
		o.sinks = append(o.sinks, siem.NewWriterSink(e.stdout, enc))
	} else {
		addr, useTLS, err := siem.ParseSyslogTarget(*f.syslog)
		if err != nil {
			return nil, fmt.Errorf("--syslog: %w", err)
		}
		var tlsConf *tls.Config
		switch {
		case useTLS:
			if tlsConf, err = clientTLS(*f.syslogCA, *f.syslogCert, *f.syslogKey, "--syslog"); err != nil {
				return nil, err
			}
		case *f.syslogCA != "" || *f.syslogCert != "" || *f.syslogKey != "":
			return nil, errors.New("--syslog-ca, --syslog-cert and --syslog-key need a tls:// target")
		}
		plan = append(plan, func() error {
			q, err := siem.OpenQueue(filepath.Join(*f.queue, "syslog.db"), *f.queueMax)
			if err != nil {
				return err
			}
			o.queues = append(o.queues, q)
			s, err := siem.NewSyslogSink(siem.SyslogOptions{Addr: addr, TLS: tlsConf, Encoder: enc, Queue: q, Logger: o.log})
			if err != nil {
				return err
			}
			o.sinks, o.loops = append(o.sinks, s), append(o.loops, s.Run)
			return nil
		})
	}
	if *f.webhook != "" {
		if *f.webhookSecret == "" {
			return nil, errors.New("--webhook needs --webhook-secret FILE")
		}
		secret, err := siem.LoadSecret(*f.webhookSecret)
		if err != nil {
			return nil, err
		}
		tlsConf, err := clientTLS(*f.webhookCA, "", "", "--webhook")
		if err != nil {
			return nil, err
		}
		plan = append(plan, func() error {
			q, err := siem.OpenQueue(filepath.Join(*f.queue, "webhook.db"), *f.queueMax)
			if err != nil {
				return err
			}
			o.queues = append(o.queues, q)
			w, err := siem.NewWebhook(siem.WebhookOptions{URL: *f.webhook, Secret: secret, Queue: q, Logger: o.log,
				Client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf, Proxy: http.ProxyFromEnvironment}}})
			if err != nil {
				return err
			}
			o.sinks, o.loops = append(o.sinks, w), append(o.loops, w.Run)
			return nil
		})
	}
	for _, step := range plan {
		if err := step(); err != nil {
			o.close()
			return nil, err
		}
	}
	return o, nil
}

// clientTLS builds a TLS client configuration: caFile ("" for the system
// roots) verifies the server; certFile and keyFile, both or neither, are
// the client certificate for mutual TLS.
func clientTLS(caFile, certFile, keyFile, what string) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pemBytes, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s CA: %w", what, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("%s CA %s: no PEM certificate in it", what, caFile)
		}
		conf.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("%s-cert and %s-key go together (mutual TLS)", what, what)
	}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("%s client certificate: %w", what, err)
		}
		conf.Certificates = []tls.Certificate{c}
	}
	return conf, nil
}
