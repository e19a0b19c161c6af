package main

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wardgate/wardgate/central/commands"
	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/certs"
	gwconfig "github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/envelope"
	"github.com/wardgate/wardgate/wire/lockset"
)

const commandUsage = `usage:
  wardgate-central command --api https://HOST:PORT --cert F --key F --ca F (--gateway ID | --site S | --fleet)
                           [--valid D] [--reason R] [--note TEXT] [--json] CMD [ARGS]
      sign CMD with your approver key (it never leaves this machine) and queue it at central
      CMD: lock IDENTITY [DURATION] | end-session SESSION | revoke GRANT | deny GRANT    (gateway, site or fleet*)
           approve GRANT [VENDOR DEVICE PORTS] | unlock IDENTITY | clear-tamper           (one gateway only)
           rebirth | inventory                                                            (one gateway only)
      * a fleet-wide lock goes in the fleet lock set (wardgate-central lockset)
      --valid: default 24h for lock, end-session, revoke and deny (at most 7d), 5m otherwise (at most 5m)
  wardgate-central command list --api URL --cert F --key F --ca F [--json]
  wardgate-central command show --api URL --cert F --key F --ca F [--json] ID
`

const locksetUsage = `usage:
  wardgate-central lockset sign --cert F --key F (--fleet | --site S | --gateway ID) --lock TARGET... --out FILE
                                [--version N | --api URL --ca F] [--until D] [--reason R] [--valid D] [--cosigner URI]...
      sign a new version of a scope's lock set (the complete desired list of locks); a fleet set names
      a second approver with --cosigner, who adds their signature with cosign
  wardgate-central lockset cosign --cert F --key F --in FILE --out FILE
  wardgate-central lockset submit --api URL --cert F --key F --ca F --in FILE [--json]
  wardgate-central lockset show   --api URL --cert F --key F --ca F [--json] [SCOPE]
`

// operator is an approver's key and certificate chain, and the client to
// central's API.
type operator struct {
	key   crypto.Signer
	chain []*x509.Certificate
	uri   string
	api   string
	http  *http.Client
}

func loadSigner(certFile, keyFile string) (*operator, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("--cert and --key (your approver certificate and key, PEM) are required")
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--cert %s / --key %s: %w", certFile, keyFile, err)
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("--key is not a signing key")
	}
	op := &operator{key: key}
	for _, der := range pair.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("--cert: %w", err)
		}
		op.chain = append(op.chain, x)
	}
	if len(op.chain[0].URIs) != 1 || op.chain[0].URIs[0].Scheme != "spiffe" {
		return nil, fmt.Errorf("--cert %s names no SPIFFE identity: give your approver certificate (spiffe://TD/approver/ROLE/PERSON)", certFile)
	}
	u := op.chain[0].URIs[0]
	id, err := certs.IdentityFromCert(op.chain[0], u.Host)
	if err != nil || id.Kind != certs.KindApprover {
		return nil, fmt.Errorf("--cert %s names %s, not an approver (spiffe://TD/approver/ROLE/PERSON): %v", certFile, u, err)
	}
	if now := time.Now(); now.After(op.chain[0].NotAfter) {
		return nil, fmt.Errorf("--cert %s expired at %s: renew your approver certificate", certFile, op.chain[0].NotAfter.UTC().Format(time.RFC3339))
	}
	op.uri = id.URI
	return op, nil
}

func (op *operator) trustDomain() string { return op.chain[0].URIs[0].Host }

// connect prepares the mTLS client to api with the same certificate.
func (op *operator) connect(api, caFile, certFile, keyFile string) error {
	u, err := url.Parse(api)
	if api == "" || err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("--api must be central's https://HOST:PORT, got %q", api)
	}
	if caFile == "" {
		return errors.New("--ca (the hospital's root CA bundle, PEM) is required to check central's certificate")
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("--ca: %w", err)
	}
	roots, err := certs.ParseCertsPEM(pem)
	if err != nil || len(roots) == 0 {
		return fmt.Errorf("--ca %s holds no certificate", caFile)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	op.api = strings.TrimSuffix(u.String(), "/")
	op.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
	return nil
}

// call sends a request to central and decodes a 2xx answer into out; any
// other status is an error with central's message.
func (op *operator) call(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, op.api+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := op.http.Do(req)
	if err != nil {
		return fmt.Errorf("central at %s: %w", op.api, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return &apiErr{code: resp.StatusCode, msg: e.Error}
		}
		return &apiErr{code: resp.StatusCode, msg: strings.TrimSpace(string(b))}
	}
	if out != nil {
		if raw, ok := out.(*json.RawMessage); ok {
			*raw = b
			return nil
		}
		return json.Unmarshal(b, out)
	}
	return nil
}

type apiErr struct {
	code int
	msg  string
}

func (e *apiErr) Error() string {
	return fmt.Sprintf("central refused (%d %s): %s", e.code, http.StatusText(e.code), e.msg)
}

// commonFlags are the flags every API-facing subcommand takes.
type commonFlags struct {
	api, cert, key, ca *string
	json               *bool
}

func addCommon(fs *flag.FlagSet) commonFlags {
	return commonFlags{
		api:  fs.String("api", "", "central's `URL`, https://HOST:PORT"),
		cert: fs.String("cert", "", "your approver certificate `FILE` (PEM)"),
		key:  fs.String("key", "", "your approver key `FILE` (PEM)"),
		ca:   fs.String("ca", "", "the root CA bundle `FILE` (PEM) that central's certificate chains to"),
		json: fs.Bool("json", false, "print central's JSON answer"),
	}
}

func (c commonFlags) operator(needAPI bool) (*operator, error) {
	op, err := loadSigner(*c.cert, *c.key)
	if err != nil {
		return nil, err
	}
	if needAPI {
		if err := op.connect(*c.api, *c.ca, *c.cert, *c.key); err != nil {
			return nil, err
		}
	}
	return op, nil
}

func cmdCommand(stdout, stderr io.Writer, args []string) int {
	if len(args) > 0 && (args[0] == "list" || args[0] == "show") {
		return cmdCommandRead(stdout, stderr, args[0], args[1:])
	}
	fs := flag.NewFlagSet("command", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, commandUsage) }
	cf := addCommon(fs)
	gateway := fs.String("gateway", "", "address one gateway `ID`")
	site := fs.String("site", "", "address every gateway of `SITE` (restrictive commands only)")
	fleet := fs.Bool("fleet", false, "address the fleet (end-session, revoke, deny only)")
	valid := fs.String("valid", "", "how long the command stays valid (`DURATION`: 5m, 12h, 3d)")
	reason := fs.String("reason", "", "lock: the lock's reason, signed (`TEXT`)")
	note := fs.String("note", "", "a note stored with the command at central, not signed (`TEXT`)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	usage := func(f string, a ...any) int {
		fmt.Fprintf(stderr, "wardgate-central command: "+f+"\n", a...)
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, commandUsage)
		return exitUsage
	}
	name, cargs := fs.Arg(0), fs.Args()[1:]
	if *reason != "" {
		if name != command.Lock {
			return usage("--reason is signed into a lock only; use --note for a note on %s", name)
		}
		switch len(cargs) {
		case 1:
			cargs = append(cargs, "", *reason)
		case 2:
			cargs = append(cargs, *reason)
		default:
			return usage("lock takes IDENTITY [DURATION] with --reason")
		}
	}
	ttl := 5 * time.Minute
	if command.Restrictive(name) {
		ttl = 24 * time.Hour
	}
	if *valid != "" {
		d, err := gwconfig.ParseDuration(*valid)
		if err != nil {
			return usage("--valid: %v", err)
		}
		ttl = d
	}
	now := time.Now()
	p := command.Payload{Gateway: *gateway, Site: *site, Fleet: *fleet, Name: name, Args: cargs,
		Nonce: make([]byte, command.MinNonce), IssuedAt: now.UnixMilli(), Expires: now.Add(ttl).UnixMilli()}
	if err := commands.Check(p, now); err != nil {
		return usage("%v", err)
	}
	op, err := cf.operator(true)
	if err != nil {
		return usage("%v", err)
	}
	signed, err := command.SignTo(op.key, op.chain, command.To{Gateway: *gateway, Site: *site, Fleet: *fleet}, name, cargs, now, ttl)
	if err != nil {
		return usage("%v", err)
	}
	var raw json.RawMessage
	if err := op.call(http.MethodPost, "/api/v1/commands", map[string]string{"signed": base64.StdEncoding.EncodeToString(signed), "note": *note}, &raw); err != nil {
		fmt.Fprintf(stderr, "wardgate-central command: %v\n", err)
		return exitFailure
	}
	if *cf.json {
		stdout.Write(raw)
		return exitOK
	}
	var r struct{ Command store.Command }
	if err := json.Unmarshal(raw, &r); err != nil {
		fmt.Fprintf(stderr, "wardgate-central command: %v\n", err)
		return exitFailure
	}
	c := r.Command
	fmt.Fprintf(stdout, "queued %s %s for %s as command %s, signed by %s, valid until %s; %d gateway(s) addressed now\n",
		c.Name, strings.Join(c.Args, " "), c.Scope, c.ID, c.Signer, c.Expires.Format(time.RFC3339), len(c.Targets))
	fmt.Fprintf(stdout, "follow it with: wardgate-central command show --api %s ... %s\n", op.api, c.ID)
	warnUnknownTarget(stderr, op, *gateway, *site, len(c.Targets))
	return exitOK
}

// warnUnknownTarget says when the command addresses a gateway central has
// never heard from, or a site without gateways (a typo waits silently
// until the command expires otherwise).
func warnUnknownTarget(stderr io.Writer, op *operator, gateway, site string, targets int) {
	switch {
	case gateway != "":
		var ae *apiErr
		if err := op.call(http.MethodGet, "/api/v1/gateways/"+url.PathEscape(gateway), nil, nil); errors.As(err, &ae) && ae.code == http.StatusNotFound {
			fmt.Fprintf(stderr, "warning: central has never heard from gateway %s; the command waits for its first birth (check the ID)\n", gateway)
		}
	case site != "" && targets == 0:
		fmt.Fprintf(stderr, "warning: no gateway of site %s has reported to central yet; the command waits for their births (check the site)\n", site)
	}
}

func cmdCommandRead(stdout, stderr io.Writer, verb string, args []string) int {
	fs := flag.NewFlagSet("command "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, commandUsage) }
	cf := addCommon(fs)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if (verb == "show") != (fs.NArg() == 1) || fs.NArg() > 1 {
		fmt.Fprint(stderr, commandUsage)
		return exitUsage
	}
	op, err := cf.operator(true)
	if err != nil {
		fmt.Fprintf(stderr, "wardgate-central command %s: %v\n", verb, err)
		return exitUsage
	}
	path := "/api/v1/commands"
	if verb == "show" {
		path += "/" + url.PathEscape(fs.Arg(0))
	}
	var raw json.RawMessage
	if err := op.call(http.MethodGet, path, nil, &raw); err != nil {
		fmt.Fprintf(stderr, "wardgate-central command %s: %v\n", verb, err)
		return exitFailure
	}
	if *cf.json {
		stdout.Write(raw)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	defer tw.Flush()
	if verb == "list" {
		var r struct{ Commands []store.Command }
		_ = json.Unmarshal(raw, &r)
		fmt.Fprintln(tw, "ID\tCOMMAND\tSCOPE\tEXPIRES\tQUEUED\tDELIVERED\tAPPLIED\tREJECTED\tEXPIRED")
		for _, c := range r.Commands {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", c.ID, c.Name, c.Scope, c.Expires.Format(time.RFC3339),
				c.States[store.TargetQueued], c.States[store.TargetDelivered], c.States[store.TargetApplied], c.States[store.TargetRejected], c.States[store.TargetExpired])
		}
		return exitOK
	}
	var r struct{ Command store.Command }
	_ = json.Unmarshal(raw, &r)
	c := r.Command
	fmt.Fprintf(tw, "command %s: %s %s\nscope:\t%s\nsigned by:\t%s\nvalid:\t%s to %s\n", c.ID, c.Name, strings.Join(c.Args, " "), c.Scope, c.Signer,
		c.Issued.Format(time.RFC3339), c.Expires.Format(time.RFC3339))
	if c.Note != "" {
		fmt.Fprintf(tw, "note:\t%s\n", c.Note)
	}
	fmt.Fprintln(tw, "\nGATEWAY\tSTATE\tQUEUED\tDELIVERED\tDELIVERIES\tANSWERED\tREASON/RESULT")
	for _, t := range c.Targets {
		answered := t.Applied
		switch t.State {
		case store.TargetRejected:
			answered = t.Rejected
		case store.TargetExpired:
			answered = t.Expired
		}
		why := t.Reason
		if why == "" {
			why = t.Result
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", t.Gateway, t.State, stamp(t.Queued), stamp(t.Delivered), t.Deliveries, stamp(answered), why)
	}
	return exitOK
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func cmdLockSet(stdout, stderr io.Writer, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, locksetUsage)
		return exitUsage
	}
	verb := args[0]
	fs := flag.NewFlagSet("lockset "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, locksetUsage) }
	cf := addCommon(fs)
	in := fs.String("in", "", "the signed lock set `FILE`")
	out := fs.String("out", "", "write the signed lock set to `FILE`")
	var locks, cosigners multi
	fs.Var(&locks, "lock", "a lock `TARGET` (SPIFFE id or .../vendor/ORG/* pattern); repeat for more")
	fs.Var(&cosigners, "cosigner", "the `URI` of another approver who will cosign (a fleet set needs two persons)")
	gateway := fs.String("gateway", "", "the lock set of one gateway `ID`")
	site := fs.String("site", "", "the lock set of `SITE`")
	fleet := fs.Bool("fleet", false, "the fleet's lock set (two approvers)")
	version := fs.Uint64("version", 0, "the set's `N`; default: central's current version + 1 (needs --api, --ca)")
	until := fs.String("until", "", "the locks end after `DURATION` (default: until a newer set drops them)")
	reason := fs.String("reason", "", "the locks' reason (`TEXT`)")
	valid := fs.String("valid", "7d", "how long gateways accept the set (`DURATION`, at most 7d)")
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	fail := func(code int, f string, a ...any) int {
		fmt.Fprintf(stderr, "wardgate-central lockset %s: "+f+"\n", append([]any{verb}, a...)...)
		return code
	}
	switch verb {
	case "sign":
		scope := ""
		n := 0
		if *gateway != "" {
			scope, n = lockset.Gateway(*gateway), n+1
		}
		if *site != "" {
			scope, n = lockset.Site(*site), n+1
		}
		if *fleet {
			scope, n = lockset.ScopeFleet, n+1
		}
		if n != 1 {
			return fail(exitUsage, "give exactly one of --fleet, --site S, --gateway ID")
		}
		if *out == "" {
			return fail(exitUsage, "--out FILE is required (the file the cosigner or submit reads)")
		}
		op, err := cf.operator(false)
		if err != nil {
			return fail(exitUsage, "%v", err)
		}
		if *version == 0 {
			if err := op.connect(*cf.api, *cf.ca, *cf.cert, *cf.key); err != nil {
				return fail(exitUsage, "--version N, or --api and --ca to ask central for the current version: %v", err)
			}
			var r struct{ Lockset store.LockSet }
			err := op.call(http.MethodGet, "/api/v1/locksets/"+scope, nil, &r)
			var ae *apiErr
			if err != nil && !(errors.As(err, &ae) && ae.code == http.StatusNotFound) {
				return fail(exitFailure, "%v", err)
			}
			*version = r.Lockset.Version + 1
		}
		validity, err := gwconfig.ParseDuration(*valid)
		if err != nil {
			return fail(exitUsage, "--valid: %v", err)
		}
		now := time.Now()
		s := &lockset.Set{TrustDomain: op.trustDomain(), Version: *version, IssuedAt: now.UnixMilli(), Expires: now.Add(validity).UnixMilli(),
			Scope: scope, Locks: []lockset.Lock{}, Approvers: append([]string{op.uri}, cosigners...)}
		var end int64
		if *until != "" {
			d, err := gwconfig.ParseDuration(*until)
			if err != nil {
				return fail(exitUsage, "--until: %v", err)
			}
			end = now.Add(d).UnixMilli()
		}
		for _, l := range locks {
			s.Locks = append(s.Locks, lockset.Lock{Target: l, Until: end, Reason: *reason})
		}
		signed, err := lockset.Sign(s, lockset.Signer{Key: op.key, Chain: op.chain})
		if err != nil {
			return fail(exitUsage, "%v", err)
		}
		if err := os.WriteFile(*out, signed, 0o600); err != nil {
			return fail(exitFailure, "%v", err)
		}
		next := "submit it with: wardgate-central lockset submit --in " + *out
		if len(cosigners) > 0 {
			next = "now each cosigner runs: wardgate-central lockset cosign --in " + *out + " --out FILE"
		}
		fmt.Fprintf(stdout, "signed %s version %d (%d locks, valid until %s) into %s; %s\n", scope, s.Version, len(s.Locks),
			time.UnixMilli(s.Expires).UTC().Format(time.RFC3339), *out, next)
		return exitOK
	case "cosign":
		if *in == "" || *out == "" {
			return fail(exitUsage, "--in FILE and --out FILE are required")
		}
		op, err := cf.operator(false)
		if err != nil {
			return fail(exitUsage, "%v", err)
		}
		data, err := os.ReadFile(*in)
		if err != nil {
			return fail(exitFailure, "%v", err)
		}
		s, err := lockset.Decode(data)
		if err != nil {
			return fail(exitUsage, "%s: %v", *in, err)
		}
		named := false
		for _, a := range s.Approvers {
			named = named || a == op.uri
		}
		var sigs [][]byte
		_ = envelope.Unmarshal(data, &sigs)
		for _, raw := range sigs {
			if sg, err := envelope.Parse(raw); err == nil && len(sg.Chain) > 0 && len(sg.Chain[0].URIs) == 1 && sg.Chain[0].URIs[0].String() == op.uri {
				return fail(exitUsage, "%s: you (%s) signed it already; the other approvers it names cosign it: %v", *in, op.uri, s.Approvers)
			}
		}
		if !named {
			return fail(exitUsage, "%s names approvers %v, not you (%s): the first signer must name you with --cosigner", *in, s.Approvers, op.uri)
		}
		signed, err := lockset.Cosign(data, lockset.Signer{Key: op.key, Chain: op.chain})
		if err != nil {
			return fail(exitUsage, "%v", err)
		}
		if err := os.WriteFile(*out, signed, 0o600); err != nil {
			return fail(exitFailure, "%v", err)
		}
		fmt.Fprintf(stdout, "cosigned %s version %d:\n", s.Scope, s.Version)
		for _, l := range s.Locks {
			fmt.Fprintf(stdout, "  lock %s %s\n", l.Target, l.Reason)
		}
		fmt.Fprintf(stdout, "into %s; submit it with: wardgate-central lockset submit --in %s\n", *out, *out)
		return exitOK
	case "submit", "show":
		op, err := cf.operator(true)
		if err != nil {
			return fail(exitUsage, "%v", err)
		}
		var raw json.RawMessage
		if verb == "submit" {
			if *in == "" {
				return fail(exitUsage, "--in FILE is required")
			}
			data, err := os.ReadFile(*in)
			if err != nil {
				return fail(exitFailure, "%v", err)
			}
			err = op.call(http.MethodPost, "/api/v1/locksets", map[string]string{"signed": base64.StdEncoding.EncodeToString(data)}, &raw)
			if err != nil {
				return fail(exitFailure, "%v", err)
			}
		} else {
			path := "/api/v1/locksets"
			if fs.NArg() == 1 {
				path += "/" + fs.Arg(0)
			}
			if err := op.call(http.MethodGet, path, nil, &raw); err != nil {
				return fail(exitFailure, "%v", err)
			}
		}
		if *cf.json {
			stdout.Write(raw)
			return exitOK
		}
		var r struct {
			Lockset  *commands.LockSetView
			Locksets []commands.LockSetView
		}
		_ = json.Unmarshal(raw, &r)
		if r.Lockset != nil {
			r.Locksets = append(r.Locksets, *r.Lockset)
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		defer tw.Flush()
		for _, ls := range r.Locksets {
			if verb == "submit" {
				fmt.Fprintf(tw, "stored and published ")
			}
			fmt.Fprintf(tw, "%s version %d, valid until %s, signed by %s\n", ls.Scope, ls.Version, ls.Expires.Format(time.RFC3339), strings.Join(ls.Approvers, ", "))
			for _, l := range ls.Locks {
				fmt.Fprintf(tw, "  lock\t%s\t%s\t%s\n", l.Target, stamp(l.Until), l.Reason)
			}
			for _, g := range ls.Gateways {
				fmt.Fprintf(tw, "  gateway\t%s\tapplied version %d\t%s\n", g.Gateway, g.Version, stamp(g.Applied))
			}
		}
		return exitOK
	}
	fmt.Fprint(stderr, locksetUsage)
	return exitUsage
}
