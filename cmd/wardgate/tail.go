package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

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

func cmdTail(e *env, args []string) int {
	fs := newFlags(e, "tail --broker URL --cert F --key F --ca F [--gateway ID] [--format json|syslog|cef|leef] [--syslog tcp://HOST:PORT|tls://HOST:PORT --queue DIR] [--webhook URL --webhook-secret F --queue DIR]", tailAbout)
	broker := fs.String("broker", "", "broker `URL`, e.g. mqtts://broker.hospital.example:8883")
	certFile := fs.String("cert", "", "central's client certificate `FILE` (PEM)")
	keyFile := fs.String("key", "", "its private key `FILE` (PEM)")
	caFile := fs.String("ca", "", "the hospital CA bundle `FILE` (PEM): verifies the broker and every message")
	gw := fs.String("gateway", "", "only this gateway `ID` (default: all)")
	persistent := fs.Bool("persistent", false, "keep a broker session so messages sent while tail is down arrive later")
	clientID := fs.String("client-id", "", "MQTT client `ID` (needed with --persistent)")
	var oc siem.OutputConfig
	fs.StringVar(&oc.Format, "format", "json", "record `FORMAT`: json, syslog, cef or leef (syslog when --syslog is given without --format)")
	fs.StringVar(&oc.Syslog, "syslog", "", "send records to this syslog `TARGET` (tcp://HOST:PORT or tls://HOST:PORT) instead of stdout")
	fs.StringVar(&oc.SyslogCA, "syslog-ca", "", "CA `FILE` (PEM) that verifies the tls:// syslog receiver (default: the system roots)")
	fs.StringVar(&oc.SyslogCert, "syslog-cert", "", "client certificate `FILE` (PEM) for mutual TLS with the syslog receiver")
	fs.StringVar(&oc.SyslogKey, "syslog-key", "", "its private key `FILE` (PEM)")
	fs.StringVar(&oc.Queue, "queue", "", "`DIR` for the disk queues of --syslog and --webhook (created 0700)")
	fs.IntVar(&oc.QueueMax, "queue-max", siem.DefaultQueueMax, "records each queue keeps at most; when full, metrics and status go first (`N`)")
	fs.StringVar(&oc.Webhook, "webhook", "", "also POST signed JSON for vendor requests, alarms and findings to this https `URL`")
	fs.StringVar(&oc.WebhookSecret, "webhook-secret", "", "`FILE` holding the shared webhook secret (at least 16 bytes)")
	fs.StringVar(&oc.WebhookCA, "webhook-ca", "", "CA `FILE` (PEM) that verifies the webhook server (default: the system roots)")
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
	if !formatSet && oc.Syslog != "" {
		oc.Format = string(siem.FormatSyslog)
	}
	if _, err := siem.ParseFormat(oc.Format); err != nil {
		fmt.Fprintln(e.stderr, "wardgate tail: --format:", err)
		return exitUsage
	}
	if oc.QueueMax <= 0 {
		fmt.Fprintf(e.stderr, "wardgate tail: --queue-max %d: must be at least 1\n", oc.QueueMax)
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	out, err := siem.OpenOutput(oc, e.stdout, siem.OutputOptions{Version: version, Logger: log,
		Name: func(k string) string { return "--" + strings.ReplaceAll(k, "_", "-") }})
	if err != nil {
		fmt.Fprintln(e.stderr, "wardgate tail:", strings.ReplaceAll(err.Error(), "\n", "\nwardgate tail: "))
		return exitUsage
	}
	defer out.Close()
	tlsConf, err := access.LoadClientTLS(*certFile, *keyFile, *caFile)
	if err != nil {
		fmt.Fprintln(e.stderr, "wardgate tail:", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	delivered := make(chan struct{})
	go func() {
		defer close(delivered)
		_ = out.Run(ctx) // logs its own errors
	}()
	err = telemetry.Tail(ctx, telemetry.TailOptions{
		BrokerURL: *broker, TLSConfig: tlsConf, Verify: envelope.RootsVerifier(tlsConf.RootCAs),
		Gateway: *gw, ClientID: *clientID, Persistent: *persistent, Emit: out.Sinks.SendBatch, Logger: log,
	})
	stop()
	<-delivered
	if err != nil {
		fmt.Fprintln(e.stderr, "wardgate tail:", err)
		return exitFailure
	}
	return exitOK
}
