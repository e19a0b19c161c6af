package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/telemetry"
	"github.com/wardgate/wardgate/wire/envelope"
)

func init() {
	register(cliCommand{name: "tail", summary: "central: verify gateways' telemetry and print JSON lines for a SIEM", run: cmdTail})
}

const tailAbout = `For central security: subscribes to wardgate/v1/+/# (or one gateway's
topics), verifies every message's signature against the CA bundle (--ca) and
that the signing certificate names the gateway, de-duplicates, and prints one
JSON object per line: messages, and alerts (verify_failed, topic_mismatch,
gap when a sequence number stays missing). Feed it to a SIEM.`

func cmdTail(e *env, args []string) int {
	fs := newFlags(e, "tail --broker URL --cert F --key F --ca F [--gateway ID]", tailAbout)
	broker := fs.String("broker", "", "broker `URL`, e.g. mqtts://broker.hospital.example:8883")
	certFile := fs.String("cert", "", "central's client certificate `FILE` (PEM)")
	keyFile := fs.String("key", "", "its private key `FILE` (PEM)")
	caFile := fs.String("ca", "", "the hospital CA bundle `FILE` (PEM): verifies the broker and every message")
	gw := fs.String("gateway", "", "only this gateway `ID` (default: all)")
	persistent := fs.Bool("persistent", false, "keep a broker session so messages sent while tail is down arrive later")
	clientID := fs.String("client-id", "", "MQTT client `ID` (needed with --persistent)")
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
	tlsConf, err := access.LoadClientTLS(*certFile, *keyFile, *caFile)
	if err != nil {
		fmt.Fprintln(e.stderr, "wardgate tail:", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = telemetry.Tail(ctx, telemetry.TailOptions{
		BrokerURL: *broker, TLSConfig: tlsConf, Verify: envelope.RootsVerifier(tlsConf.RootCAs),
		Gateway: *gw, ClientID: *clientID, Persistent: *persistent, Out: e.stdout,
	})
	if err != nil {
		fmt.Fprintln(e.stderr, "wardgate tail:", err)
		return exitFailure
	}
	return exitOK
}
