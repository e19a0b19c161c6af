package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/admin"
	"github.com/wardgate/wardgate/gateway/agent"
	"github.com/wardgate/wardgate/gateway/release"
)

func init() {
	register(cliCommand{name: "update", summary: "apply a signed release bundle (A/B, health check, rollback)", run: cmdUpdate})
}

const updateAbout = `update apply BUNDLE verifies a release bundle (a COSE_Sign1-signed
manifest: version, sha256, os/arch) against update.release_keys, refuses
downgrades and bundles for another architecture, installs the new binary
into the inactive slot of update.install_dir (wardgate.a / wardgate.b; the
link wardgate names the active one, and the unit runs that link), restarts
the agent (--restart systemd: systemctl restart wardgate; none: you restart
it), and waits up to update.health_timeout for it to be healthy: running
the new version, every clinical listener up, the identity valid, telemetry
connected. Otherwise it switches back and restarts the previous binary.
Every step is journaled in STATE_DIR and sent as an update.STEP event by the
agent. Run it as root (it writes update.install_dir).`

func cmdUpdate(e *env, args []string) int {
	if len(args) == 0 || args[0] != "apply" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprintf(e.stdout, "Usage: wardgate update apply BUNDLE --config FILE [--restart systemd|none]\n\n%s\n", updateAbout)
			return exitOK
		}
		fmt.Fprintln(e.stderr, "Usage: wardgate update apply BUNDLE --config FILE [--restart systemd|none]")
		return exitUsage
	}
	fs := newFlags(e, "update apply BUNDLE --config FILE [--restart systemd|none]", updateAbout)
	cfgPath := fs.String("config", defaultConfig, "configuration `FILE`")
	restart := fs.String("restart", "systemd", "how to restart the agent: systemd or none")
	pos, code, ok := parseAll(e, fs, args[1:])
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fs.Usage()
		return exitUsage
	}
	cfg, _, err := loadOrLastGood(*cfgPath, time.Now())
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitUsage
	}
	data, err := os.ReadFile(pos[0])
	if err != nil {
		fmt.Fprintln(e.stderr, "wardgate update:", err)
		return exitUsage
	}
	var pins []release.Pin
	for _, k := range cfg.Update.ReleaseKeys {
		p, err := release.ParsePin(k)
		if err != nil {
			fmt.Fprintln(e.stderr, "wardgate update:", err)
			return exitUsage
		}
		pins = append(pins, p)
	}
	var restartFn func(context.Context) error
	switch *restart {
	case "systemd":
		restartFn = func(ctx context.Context) error {
			out, err := exec.CommandContext(ctx, "systemctl", "restart", "wardgate").CombinedOutput()
			if err != nil {
				return fmt.Errorf("systemctl restart wardgate: %v: %s", err, out)
			}
			return nil
		}
	case "none":
		restartFn = func(context.Context) error {
			fmt.Fprintln(e.stdout, "restart the agent now; waiting for it to be healthy")
			return nil
		}
	default:
		fmt.Fprintf(e.stderr, "wardgate update: --restart %q: use systemd or none\n", *restart)
		return exitUsage
	}
	goos, arch := release.Platform()
	journal := filepath.Join(cfg.Gateway.StateDir, release.JournalFile)
	u := &release.Updater{
		Dir: cfg.Update.InstallDir, Pins: pins, OS: goos, Arch: arch, Current: version,
		Restart: restartFn, HealthTimeout: cfg.Update.HealthTimeout.D(),
		Report: func(s release.Step) {
			fmt.Fprintf(e.stdout, "update: %s %v\n", s.Name, s.Attrs)
			if err := release.AppendJournal(journal, release.JournalEntry{Time: time.Now(), Step: s.Name, Attrs: s.Attrs}); err != nil {
				fmt.Fprintln(e.stderr, "wardgate update: journal:", err)
			}
		},
	}
	var want string
	u.Health = func(ctx context.Context) error { return agentHealthy(ctx, cfg, want) }
	b, err := release.ParseBundle(data)
	if err == nil {
		if m, verr := b.Verify(pins, goos, arch, version); verr == nil {
			want = m.Version
		}
	}
	m, err := u.Apply(context.Background(), data)
	// The steps since the agent last started go out as events now.
	jctx, jcancel := context.WithTimeout(context.Background(), 10*time.Second)
	if jerr := admin.NewClient(cfg.Gateway.AdminSocket).Do(jctx, "POST", "/v1/update/journal", nil, nil); jerr != nil {
		fmt.Fprintf(e.stderr, "wardgate update: the agent did not take the update journal (%v); it sends it when it next starts\n", jerr)
	}
	jcancel()
	if err != nil {
		fmt.Fprintln(e.stderr, "wardgate update:", err)
		switch {
		case errors.Is(err, release.ErrRolledBack):
			return exitFailure
		case errors.Is(err, release.ErrBadBundle), errors.Is(err, release.ErrUntrusted), errors.Is(err, release.ErrTampered),
			errors.Is(err, release.ErrWrongArch), errors.Is(err, release.ErrDowngrade), errors.Is(err, release.ErrNoReleasKey):
			return exitUsage
		}
		return exitFailure
	}
	fmt.Fprintf(e.stdout, "updated to %s\n", m.Version)
	return exitOK
}

// agentHealthy asks the running agent over its admin socket whether it
// runs version want with every clinical listener up, a valid identity and
// telemetry connected.
func agentHealthy(ctx context.Context, cfg *config.Config, want string) error {
	var st agent.Status
	if err := admin.NewClient(cfg.Gateway.AdminSocket).Do(ctx, "GET", "/v1/status", nil, &st); err != nil {
		return err
	}
	if want != "" && st.Gateway.Version != want && "v"+st.Gateway.Version != want {
		return fmt.Errorf("the agent runs %s, not %s", st.Gateway.Version, want)
	}
	if st.Identity.Expired || st.Identity.NotAfter.IsZero() {
		return errors.New("the gateway identity is not valid")
	}
	if !st.Telemetry.Connected {
		return errors.New("telemetry is not connected")
	}
	up := map[string]bool{}
	for _, d := range st.Devices {
		up[d.ID] = true
	}
	for _, d := range cfg.Devices {
		if !d.IsRetired() && !up[d.ID] {
			return fmt.Errorf("the clinical listener of %s is not up", d.ID)
		}
	}
	return nil
}
