package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/access/recording"
	"github.com/wardgate/wardgate/wire/command"
)

func init() {
	register(cliCommand{name: "replay", summary: "verify a vendor session recording and print its timeline", run: cmdReplay})
	register(cliCommand{name: "connect", summary: "vendor client: reach a device service port through the gateway", run: cmdConnect})
	register(cliCommand{name: "sign-command", summary: "make a signed command for central to publish to a gateway", run: cmdSignCommand})
}

func cmdReplay(e *env, args []string) int {
	fs := newFlags(e, "replay FILE", "Verifies the hash chain of a session recording and prints its timeline. On a broken\nchain it names the first bad frame and exits 1.")
	if code, ok := parse(e, fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(e.stderr, "wardgate replay: %v\n", err)
		return exitUsage
	}
	defer f.Close()
	if err := recording.Replay(f, e.stdout); err != nil {
		fmt.Fprintf(e.stderr, "wardgate replay: %s: %v\n", fs.Arg(0), err)
		return exitFailure
	}
	return exitOK
}

const connectAbout = `For vendor technicians: listens on ADDR and carries every connection made to it
through the gateway's vendor channel (HTTP CONNECT over mutual TLS) to
DEVICE:PORT. If the device's owner has not approved yet, a request is recorded
and this command waits, printing progress, until it is approved or refused.
Example:
  wardgate connect --gateway gw-icu3-12:8443 --target pump-07:23 \
      --listen 127.0.0.1:2323 --cert me.crt --key me.key --ca hospital-root.crt
  telnet 127.0.0.1 2323`

func cmdConnect(e *env, args []string) int {
	fs := newFlags(e, "connect --gateway HOST:PORT --target DEVICE:PORT --listen ADDR --cert F --key F --ca F", connectAbout)
	gw := fs.String("gateway", "", "the gateway's vendor listener `HOST:PORT`")
	target := fs.String("target", "", "`DEVICE:PORT` to reach (a device id, never an address)")
	listen := fs.String("listen", "127.0.0.1:2323", "local `ADDR` to listen on")
	certFile := fs.String("cert", "", "your certificate `FILE` (PEM)")
	keyFile := fs.String("key", "", "your private key `FILE` (PEM)")
	caFile := fs.String("ca", "", "the hospital CA `FILE` (PEM) to verify the gateway with")
	reason := fs.String("reason", "", "why you need access (shown to the approver)")
	if code, ok := parse(e, fs, args); !ok {
		return code
	}
	if *gw == "" || *target == "" || fs.NArg() > 0 {
		fmt.Fprintln(e.stderr, "wardgate connect: --gateway and --target are required")
		fs.Usage()
		return exitUsage
	}
	if *certFile == "" || *keyFile == "" || *caFile == "" {
		fmt.Fprintln(e.stderr, "wardgate connect: --cert, --key and --ca are all required")
		return exitUsage
	}
	tlsConf, err := access.LoadClientTLS(*certFile, *keyFile, *caFile)
	if err != nil {
		fmt.Fprintln(e.stderr, "wardgate connect:", err)
		return exitUsage
	}
	if _, _, err := net.SplitHostPort(*gw); err != nil {
		fmt.Fprintf(e.stderr, "wardgate connect: --gateway %q: write HOST:PORT\n", *gw)
		return exitUsage
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(e.stderr, "wardgate connect: --listen: %v\n", err)
		return exitUsage
	}
	c := &access.Client{
		Gateway: *gw, Target: *target, Reason: *reason, Out: e.stdout,
		TLS: tlsConf,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(e.stdout, "listening on %s; connections go to %s through %s (Ctrl-C to stop)\n", ln.Addr(), *target, *gw)
	if err := c.Serve(ctx, ln); err != nil {
		fmt.Fprintln(e.stderr, "wardgate connect:", err)
		return exitFailure
	}
	return exitOK
}

const signAbout = `For central security: signs a command for one gateway with an approver
certificate (spiffe://TD/approver/ROLE/PERSON) and writes the COSE_Sign1 bytes
to --out (default stdout), ready to publish to wardgate/v1/GATEWAY/cmd with QoS 1.
Commands and their argument counts are listed in docs/security-team.md; an
approval names what it approves (grant, vendor identity, device, ports) so the
gateway refuses it when the request changed.
Example:
  wardgate sign-command --cert ciso.crt --key ciso.key --gateway gw-icu3-12 \
    approve R7K2MQ spiffe://hospital.example/vendor/acme-medical/jane pump-07 23 \
    | mosquitto_pub ... -t wardgate/v1/gw-icu3-12/cmd -q 1 -s`

func cmdSignCommand(e *env, args []string) int {
	fs := newFlags(e, "sign-command --cert F --key F --gateway ID CMD [ARGS]", signAbout)
	certFile := fs.String("cert", "", "approver certificate chain `FILE` (PEM, leaf first)")
	keyFile := fs.String("key", "", "approver private key `FILE` (PEM, P-256)")
	gwID := fs.String("gateway", "", "the gateway `ID` the command is for")
	ttl := fs.Duration("ttl", 2*time.Minute, "how long the command stays valid (at most 5m; 168h for lock, end-session, revoke, deny)")
	out := fs.String("out", "", "write to `FILE` instead of stdout")
	if code, ok := parse(e, fs, args); !ok {
		return code
	}
	if *certFile == "" || *keyFile == "" || *gwID == "" || fs.NArg() == 0 {
		fmt.Fprintln(e.stderr, "wardgate sign-command: --cert, --key, --gateway and a command are required")
		fs.Usage()
		return exitUsage
	}
	pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		fmt.Fprintf(e.stderr, "wardgate sign-command: %v\n", err)
		return exitUsage
	}
	var chain []*x509.Certificate
	for _, der := range pair.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			fmt.Fprintf(e.stderr, "wardgate sign-command: %v\n", err)
			return exitUsage
		}
		chain = append(chain, c)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		fmt.Fprintln(e.stderr, "wardgate sign-command: the key cannot sign")
		return exitUsage
	}
	msg, err := command.Sign(signer, chain, *gwID, fs.Arg(0), fs.Args()[1:], time.Now(), *ttl)
	if err != nil {
		fmt.Fprintf(e.stderr, "wardgate sign-command: %v\n", err)
		return exitUsage
	}
	if *out != "" {
		if err := os.WriteFile(*out, msg, 0o600); err != nil {
			fmt.Fprintf(e.stderr, "wardgate sign-command: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	if f, ok := e.stdout.(*os.File); ok && isTerminal(f) {
		fmt.Fprintln(e.stderr, "wardgate sign-command: refusing to write binary to a terminal; pipe it or use --out FILE")
		return exitUsage
	}
	_, _ = e.stdout.Write(msg)
	return exitOK
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0 && !strings.HasPrefix(f.Name(), "/dev/null")
}
