package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/wardgate/wardgate/gateway/admin"
	"github.com/wardgate/wardgate/gateway/agent"
)

func init() {
	register(cliCommand{name: "decommission", summary: "take this gateway out of service for good (revoke, final event, wipe)", run: cmdDecommission})
}

const decommissionAbout = `Takes the gateway out of service for good. Stop the agent first
(systemctl stop wardgate). Then it:
  1. publishes a final signed gateway.decommissioned event and waits until
     it and everything still queued reached the broker (--wait);
  2. revokes the gateway certificate at the CA (step-ca /1.0/revoke,
     authenticated by the certificate itself): it can never be renewed;
  3. wipes the keys and certificates, the outbox, the recordings, grants,
     locks and the last known good configuration from gateway.state_dir;
and prints what it did. When telemetry cannot be delivered it stops before
revoking; --force revokes anyway and keeps the undelivered outbox and
recordings on disk. It asks for confirmation unless --yes is given.`

func cmdDecommission(e *env, args []string) int {
	fs := newFlags(e, "decommission --config FILE [--yes] [--force] [--wait D]", decommissionAbout)
	cfgPath := fs.String("config", defaultConfig, "configuration `FILE`")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	force := fs.Bool("force", false, "revoke and wipe the keys even if telemetry is not delivered (the undelivered data stays)")
	wait := fs.Duration("wait", time.Minute, "how long to wait for telemetry to be delivered")
	if code, ok := parse(e, fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	cfg, _, err := loadOrLastGood(*cfgPath, time.Now())
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitUsage
	}
	// A running agent holds the state: refuse rather than wait on its locks.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err = admin.NewClient(cfg.Gateway.AdminSocket).Do(ctx, "GET", "/v1/status", nil, nil)
	cancel()
	if !errors.Is(err, admin.ErrNoAgent) {
		fmt.Fprintf(e.stderr, "wardgate decommission: the agent is running (its admin socket %s answers); stop it first: systemctl stop wardgate\n", cfg.Gateway.AdminSocket)
		return exitUsage
	}
	if !*yes {
		fmt.Fprintf(e.stdout, "Decommission gateway %s? Its certificate is revoked and its keys and state in %s are wiped; this cannot be undone.\nType the gateway id to confirm: ", cfg.Gateway.ID, cfg.Gateway.StateDir)
		line, _ := bufio.NewReader(e.stdin).ReadString('\n')
		if strings.TrimSpace(line) != cfg.Gateway.ID {
			fmt.Fprintln(e.stderr, "wardgate decommission: not confirmed; nothing was done")
			return exitUsage
		}
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rep, err := agent.Decommission(context.Background(), agent.DecommissionOptions{
		Agent:           agent.Options{Config: cfg, Logger: log, Version: version, BuildTime: builtAt()},
		DeliveryTimeout: *wait, Force: *force,
	})
	fmt.Fprint(e.stdout, rep.String())
	if err != nil {
		fmt.Fprintln(e.stderr, "wardgate decommission:", err)
		if errors.Is(err, agent.ErrUndelivered) || errors.Is(err, agent.ErrNotEnrolled) {
			return exitUsage
		}
		return exitFailure
	}
	fmt.Fprintf(e.stdout, "gateway %s decommissioned\n", cfg.Gateway.ID)
	return exitOK
}
