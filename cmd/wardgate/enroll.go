package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/config"
)

func init() {
	register(cliCommand{name: "enroll", summary: "obtain the gateway's first certificate from the CA with a one-time token", run: cmdEnroll})
}

const enrollAbout = `Obtains the gateway's first identity from the hospital's CA (step-ca): checks
the CA root against identity.root_fingerprint, makes a P-256 key that never
leaves the gateway, sends a certificate request with the one-time token, and
stores key and certificate in STATE_DIR/identity. The agent renews it from
then on. The token's names must include this gateway's identity,
spiffe://TRUST_DOMAIN/gateway/ID; the CA operator mints it with
  step ca token ID --san ID --san spiffe://TRUST_DOMAIN/gateway/ID`

func cmdEnroll(e *env, args []string) int {
	fs := newFlags(e, "enroll --config FILE --token TOKEN", enrollAbout)
	cfgPath := fs.String("config", defaultConfig, "configuration `FILE`")
	token := fs.String("token", "", "one-time enrollment `TOKEN` (or @FILE to read it from a file)")
	force := fs.Bool("force", false, "replace an identity that is still valid")
	if code, ok := parse(e, fs, args); !ok {
		return code
	}
	if *token == "" || fs.NArg() > 0 {
		fmt.Fprintln(e.stderr, "wardgate enroll: --token is required (ask the CA operator for a one-time token)")
		return exitUsage
	}
	tok := *token
	if name, ok := strings.CutPrefix(tok, "@"); ok {
		b, err := os.ReadFile(name)
		if err != nil {
			fmt.Fprintln(e.stderr, "wardgate enroll:", err)
			return exitUsage
		}
		tok = strings.TrimSpace(string(b))
	}
	cfg, err := config.Load(*cfgPath, time.Now())
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitUsage
	}
	if cfg.Identity.CA != "step" {
		fmt.Fprintf(e.stderr, "wardgate enroll: identity.ca is %q; enrollment is for the hospital's CA (ca: step). The development CA needs none.\n", cfg.Identity.CA)
		return exitUsage
	}
	claims, err := certs.ParseTokenClaims(tok)
	if err != nil {
		fmt.Fprintln(e.stderr, "wardgate enroll:", err)
		return exitUsage
	}
	want := certs.GatewayURI(cfg.Gateway.TrustDomain, cfg.Gateway.ID)
	if !slices.Contains(claims.SANs, want) || claims.Subject != cfg.Gateway.ID {
		fmt.Fprintf(e.stderr, "wardgate enroll: the token is for %q with names %v, not for this gateway (%s).\n"+
			"The certificate's name must be the gateway id (the broker ACL maps it to the gateway's topics).\n"+
			"Ask the CA operator for `step ca token %s --san %s --san %s`, or fix gateway.id in %s.\n",
			claims.Subject, claims.SANs, cfg.Gateway.ID, cfg.Gateway.ID, cfg.Gateway.ID, want, *cfgPath)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	leaf, err := certs.Enroll(ctx, certs.EnrollOptions{
		CAURL: cfg.Identity.CAURL, RootFingerprint: cfg.Identity.RootFingerprint, Token: tok,
		Dir: filepath.Join(cfg.Gateway.StateDir, "identity"), Lifetime: cfg.Identity.Lifetime.D(),
		NotBefore: builtAt(), Force: *force,
	})
	if err != nil {
		fmt.Fprintln(e.stderr, "wardgate enroll:", err)
		return exitFailure
	}
	fmt.Fprintf(e.stdout, "enrolled %s: certificate valid until %s; start the agent (systemctl start wardgate)\n",
		cfg.Gateway.ID, leaf.NotAfter.Local().Format(time.DateTime))
	return exitOK
}
