package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/access/recording"
	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/recbundle"
	"github.com/wardgate/wardgate/wire/recchain"
)

func init() {
	register(cliCommand{name: "replay", summary: "verify a vendor session recording and print its timeline", run: cmdReplay})
	register(cliCommand{name: "connect", summary: "vendor client: reach a device service port through the gateway", run: cmdConnect})
	register(cliCommand{name: "sign-command", summary: "make a signed command for central to publish to a gateway", run: cmdSignCommand})
}

const replayAbout = `Verifies the hash chain of a session recording and prints its timeline. On a
broken chain it names the first bad frame and exits 1.

--text prints the whole transcript instead of previews: offset from the start,
direction (>> vendor to device, << device to vendor), printable text as is,
other bytes as <hex>, and the gateway's notes (a credential injection appears
as a note naming the account; the secret is never recorded; a tunnel that
carried TLS or SSH is noted: its bytes are ciphertext).

--expect HASH compares the recording's final hash with the one the session-end
event carried (central has it signed): exit 1 with a clear message if they
differ, so a file can be checked against what central received.

FILE may also be an export bundle from central (GET
/api/v1/recordings/GATEWAY/SESSION/bundle, a tar file): then every part is
checked offline, central's signed manifest and receipt, the gateway's signed
session-end event and the recording's chain against the event's hash, and
the timeline is printed. --ca FILE (the hospital's root CA bundle, PEM)
anchors the signatures; without it they are checked only against the
certificates inside the bundle, and the output says so.`

func cmdReplay(e *env, args []string) int {
	fs := newFlags(e, "replay [--text] [--expect HASH] [--ca FILE] FILE|BUNDLE", replayAbout)
	text := fs.Bool("text", false, "print the whole transcript (text, hex for other bytes, timing, notes)")
	expect := fs.String("expect", "", "the session-end event's final `HASH` (hex) the recording must end in")
	caFile := fs.String("ca", "", "root CA bundle (PEM `FILE`) that anchors a bundle's signatures")
	pos, code, ok := parseAll(e, fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fs.Usage()
		return exitUsage
	}
	f, err := os.Open(pos[0])
	if err != nil {
		fmt.Fprintf(e.stderr, "wardgate replay: %v\n", err)
		return exitUsage
	}
	defer f.Close()
	if isTar(f) {
		return replayBundle(e, f, pos[0], *text, *expect, *caFile)
	}
	if *caFile != "" {
		fmt.Fprintf(e.stderr, "wardgate replay: --ca applies to bundles; %s is a plain recording\n", pos[0])
		return exitUsage
	}
	var sum *recording.Summary
	if *text {
		sum, err = recording.ReplayText(f, e.stdout)
	} else {
		err = recording.Replay(f, e.stdout)
		if err == nil && *expect != "" {
			if _, err = f.Seek(0, io.SeekStart); err == nil {
				sum, err = recording.Verify(f, nil)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "wardgate replay: %s: %v\n", pos[0], err)
		return exitFailure
	}
	if *expect != "" {
		if err := recording.CheckHash(sum, *expect); err != nil {
			fmt.Fprintf(e.stderr, "wardgate replay: %s: %v\n", pos[0], err)
			return exitFailure
		}
		fmt.Fprintf(e.stdout, "final hash matches the expected hash %s\n", strings.ToLower(strings.TrimSpace(*expect)))
	}
	return exitOK
}

const connectAbout = `For vendor technicians: carries connections through the gateway's vendor
channel (HTTP CONNECT over mutual TLS) to DEVICE:PORT, or DEVICE:console for a
device's serial service console.

First it asks for access: if the device's owner has not approved yet, a
request is recorded (give its id to the owner) and this command shows a
countdown until the request is approved, refused, or expires (the device's
request_timeout). Then it prints the grant id, who approved it and when it
expires, warns 10, 5 and 1 minute before the end, and says why a session
ended (expired, revoked, locked, tamper, ...).

--reason R is shown to whoever approves (an alarm code, a ticket number).

Modes:
  listen (default)  listens on --listen; each local connection is one tunnel.
  --stdio           one tunnel on stdin/stdout, for ssh's ProxyCommand:
                    ssh -o ProxyCommand='wardgate connect --stdio --gateway GW:8443 \
                        --target pump-07:22 --cert me.crt --key me.key --ca root.crt' \
                        -o HostKeyAlias=pump-07 service@pump-07
  --extend D        asks for D more on your active grant for --target (approved
                    by the owner like a grant, at most the device's max_session)
                    and waits for the answer; exit 0 when extended, 1 if not.
--host-alias NAME prints, in listen mode, the ssh and curl options that keep
the device's own name (HostKeyAlias for known_hosts, the Host header for web
consoles) although the tools talk to 127.0.0.1.

Examples:
  wardgate connect --gateway gw-icu3-12:8443 --target pump-07:23 \
      --listen 127.0.0.1:2323 --cert me.crt --key me.key --ca hospital-root.crt \
      --reason "occlusion alarm E42, ticket 1234"
  telnet 127.0.0.1 2323
  wardgate connect --gateway gw-icu3-12:8443 --target pump-07:23 --extend 30m \
      --reason "firmware flash needs 20 more minutes" --cert me.crt --key me.key --ca hospital-root.crt`

func cmdConnect(e *env, args []string) int {
	fs := newFlags(e, "connect --gateway HOST:PORT --target DEVICE:PORT --cert F --key F --ca F [--listen ADDR | --stdio | --extend D]", connectAbout)
	gw := fs.String("gateway", "", "the gateway's vendor listener `HOST:PORT`")
	target := fs.String("target", "", "`DEVICE:PORT` (or DEVICE:console) to reach: a device id, never an address")
	listen := fs.String("listen", "127.0.0.1:2323", "local `ADDR` to listen on")
	stdio := fs.Bool("stdio", false, "carry one tunnel on stdin/stdout (ssh ProxyCommand); messages go to stderr")
	extend := fs.Duration("extend", 0, "ask for `D` more on your active grant for --target, wait for the answer and exit")
	alias := fs.String("host-alias", "", "print ssh/curl options that keep the device `NAME` for host keys and Host headers")
	certFile := fs.String("cert", "", "your certificate `FILE` (PEM)")
	keyFile := fs.String("key", "", "your private key `FILE` (PEM)")
	caFile := fs.String("ca", "", "the hospital CA `FILE` (PEM) to verify the gateway with")
	reason := fs.String("reason", "", "why you need access or more time, shown to the approver (`TEXT`)")
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
	if *stdio && *extend != 0 {
		fmt.Fprintln(e.stderr, "wardgate connect: --stdio and --extend exclude each other")
		return exitUsage
	}
	if *extend < 0 {
		fmt.Fprintln(e.stderr, "wardgate connect: --extend must be positive, e.g. 30m")
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := &access.Client{Gateway: *gw, Target: *target, Reason: *reason, Out: e.stdout, TLS: tlsConf}
	switch {
	case *extend > 0:
		if _, err := c.Extend(ctx, *extend); err != nil {
			fmt.Fprintln(e.stderr, "wardgate connect: extension:", err)
			return exitFailure
		}
		return exitOK
	case *stdio:
		c.Out = e.stderr // stdout carries the tunnel
		if err := c.ServeStdio(ctx, e.stdin, e.stdout); err != nil {
			fmt.Fprintln(e.stderr, "wardgate connect:", err)
			return exitFailure
		}
		return exitOK
	}
	g, err := c.AwaitGrant(ctx)
	if err != nil {
		fmt.Fprintln(e.stderr, "wardgate connect:", err)
		return exitFailure
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(e.stderr, "wardgate connect: --listen: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(e.stdout, "listening on %s; connections go to %s through %s (Ctrl-C to stop)\n", ln.Addr(), *target, *gw)
	if *alias != "" {
		printAliasHints(e.stdout, *alias, ln.Addr().String(), *target)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go c.Watch(wctx, g.ID, g.Expires)
	if err := c.Serve(ctx, ln); err != nil {
		fmt.Fprintln(e.stderr, "wardgate connect:", err)
		return exitFailure
	}
	return exitOK
}

// printAliasHints prints the tool options that keep the device's name
// while the tools connect to the local port.
func printAliasHints(w io.Writer, alias, local, target string) {
	host, port, _ := net.SplitHostPort(local)
	_, tport, _ := net.SplitHostPort(target)
	fmt.Fprintf(w, "ssh:     ssh -p %s -o HostKeyAlias=%s USER@%s   (known_hosts keeps %s's key under its own name)\n", port, alias, host, alias)
	fmt.Fprintf(w, "web:     curl --connect-to %s:%s:%s:%s http://%s:%s/   (the device sees Host: %s)\n", alias, tport, host, port, alias, tport, alias)
	fmt.Fprintf(w, "browser: add \"%s %s\" to your hosts file, then open http://%s:%s/\n", host, alias, alias, port)
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

// isTar reports whether f starts with a tar header ("ustar" at 257); it
// rewinds f.
func isTar(f *os.File) bool {
	var h [262]byte
	n, _ := io.ReadFull(f, h[:])
	_, _ = f.Seek(0, io.SeekStart)
	return n == len(h) && string(h[257:262]) == "ustar"
}

// replayBundle verifies an export bundle and prints its timeline.
func replayBundle(e *env, f *os.File, name string, text bool, expect, caFile string) int {
	var roots *x509.CertPool
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			fmt.Fprintf(e.stderr, "wardgate replay: --ca: %v\n", err)
			return exitUsage
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			fmt.Fprintf(e.stderr, "wardgate replay: --ca %s holds no PEM certificate: give the hospital's root CA bundle\n", caFile)
			return exitUsage
		}
	}
	rep, err := recbundle.Verify(f, roots, func(r io.Reader) (*recchain.Decoded, error) {
		if text {
			return recchain.ReplayText(r, e.stdout)
		}
		return recchain.ReplaySummary(r, e.stdout)
	})
	if err != nil {
		fmt.Fprintf(e.stderr, "wardgate replay: %s: %v\n", name, err)
		return exitFailure
	}
	m := rep.Manifest
	fmt.Fprintf(e.stdout, "bundle verified: %s/%s, exported by %s at %s\n", m.Gateway, m.Session, m.Exporter,
		time.UnixMilli(m.Created).UTC().Format(time.RFC3339))
	fmt.Fprintf(e.stdout, "  manifest and receipt signed by %s\n  session-end event signed by %s\n", rep.Central, rep.Gateway)
	fmt.Fprintf(e.stdout, "  recording: %d frames, final hash %x = the signed session-end event's\n", rep.Recording.Frames, rep.Recording.FinalHash)
	if !rep.Anchored {
		fmt.Fprintln(e.stdout, "  WARNING: signatures checked only against the certificates in the bundle; give --ca ROOT_CA.crt to anchor them")
	}
	if expect != "" {
		if err := recchain.CheckHash(rep.Recording, expect); err != nil {
			fmt.Fprintf(e.stderr, "wardgate replay: %s: %v\n", name, err)
			return exitFailure
		}
		fmt.Fprintf(e.stdout, "final hash matches the expected hash %s\n", strings.ToLower(strings.TrimSpace(expect)))
	}
	return exitOK
}
