package release

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/wardgate/wardgate/internal/atomicfile"
)

// Install layout under Updater.Dir: two slots and a symlink naming the
// active one. /usr/bin/wardgate (or the unit's ExecStart) points at Link.
const (
	SlotA = "wardgate.a"
	SlotB = "wardgate.b"
	Link  = "wardgate"
)

// ErrRolledBack is returned by Apply when the new binary failed its health
// check and the previous one was restored.
var ErrRolledBack = errors.New("the new release failed its health check and was rolled back")

// Step is one step of an update, reported to Updater.Report (and from there
// as an update.STEP event).
type Step struct {
	Name  string // verified, installed, restarted, healthy, unhealthy, rolled_back, failed
	Attrs map[string]string
}

// Updater installs verified releases A/B next to the running binary.
type Updater struct {
	// Dir is the install directory (default /usr/lib/wardgate).
	Dir string
	// Pins are the release keys (update.release_keys).
	Pins []Pin
	// OS, Arch and Current describe this gateway and its running version.
	OS, Arch, Current string
	// CurrentBinary bootstraps the layout on the first update: it is
	// copied into slot A when Dir holds no link yet (default: the running
	// executable).
	CurrentBinary string
	// Restart restarts the agent on the binary Link names (systemctl
	// restart wardgate, or exec). Required.
	Restart func(ctx context.Context) error
	// Health reports nil once the restarted agent is healthy (clinical
	// listeners up, identity valid, telemetry connected). Required.
	Health func(ctx context.Context) error
	// HealthTimeout bounds the wait for health after a restart (default
	// 2m); HealthEvery is the polling interval (default 1s).
	HealthTimeout, HealthEvery time.Duration
	// Report receives every step (may be nil).
	Report func(Step)
}

func (u *Updater) report(name string, attrs map[string]string) {
	if u.Report != nil {
		u.Report(Step{Name: name, Attrs: attrs})
	}
}

// Apply verifies bundle, installs it into the inactive slot, switches the
// link, restarts and waits for health; when the new binary is not healthy
// within HealthTimeout it switches back, restarts the previous binary and
// returns ErrRolledBack. A bundle that does not verify changes nothing.
func (u *Updater) Apply(ctx context.Context, bundle []byte) (Manifest, error) {
	if u.Dir == "" {
		u.Dir = "/usr/lib/wardgate"
	}
	if u.HealthTimeout <= 0 {
		u.HealthTimeout = 2 * time.Minute
	}
	if u.HealthEvery <= 0 {
		u.HealthEvery = time.Second
	}
	b, err := ParseBundle(bundle)
	if err != nil {
		u.report("failed", map[string]string{"step": "verify", "error": err.Error()})
		return Manifest{}, err
	}
	m, err := b.Verify(u.Pins, u.OS, u.Arch, u.Current)
	if err != nil {
		u.report("failed", map[string]string{"step": "verify", "error": err.Error(), "version": m.Version})
		return m, err
	}
	u.report("verified", map[string]string{"version": m.Version, "sha256": m.SHA256, "arch": m.Arch, "from": u.Current})

	prev, err := u.active()
	if err != nil {
		u.report("failed", map[string]string{"step": "install", "error": err.Error()})
		return m, err
	}
	next := SlotB
	if prev == SlotB {
		next = SlotA
	}
	if err := atomicfile.Write(filepath.Join(u.Dir, next), b.Binary, 0o755); err != nil {
		u.report("failed", map[string]string{"step": "install", "error": err.Error()})
		return m, fmt.Errorf("install %s: %w", next, err)
	}
	if err := u.switchTo(next); err != nil {
		u.report("failed", map[string]string{"step": "install", "error": err.Error()})
		return m, err
	}
	u.report("installed", map[string]string{"version": m.Version, "slot": next, "previous": prev})

	if err := u.Restart(ctx); err != nil {
		u.report("failed", map[string]string{"step": "restart", "error": err.Error()})
		return m, u.rollback(ctx, prev, m, fmt.Errorf("restart: %w", err))
	}
	u.report("restarted", map[string]string{"version": m.Version})
	if err := u.awaitHealth(ctx); err != nil {
		u.report("unhealthy", map[string]string{"version": m.Version, "error": err.Error()})
		return m, u.rollback(ctx, prev, m, err)
	}
	u.report("healthy", map[string]string{"version": m.Version})
	return m, nil
}

// rollback switches back to prev and restarts it.
func (u *Updater) rollback(ctx context.Context, prev string, m Manifest, cause error) error {
	if err := u.switchTo(prev); err != nil {
		return fmt.Errorf("%w; rollback failed too: %w", cause, err)
	}
	rerr := u.Restart(ctx)
	if rerr == nil {
		rerr = u.awaitHealth(ctx)
	}
	attrs := map[string]string{"version": m.Version, "restored": u.Current, "slot": prev, "cause": cause.Error()}
	if rerr != nil {
		attrs["error"] = rerr.Error()
	}
	u.report("rolled_back", attrs)
	if rerr != nil {
		return fmt.Errorf("%w (%w); the previous binary did not come back healthy either: %w", ErrRolledBack, cause, rerr)
	}
	return fmt.Errorf("%w: %w", ErrRolledBack, cause)
}

func (u *Updater) awaitHealth(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, u.HealthTimeout)
	defer cancel()
	t := time.NewTicker(u.HealthEvery)
	defer t.Stop()
	var last error
	for {
		if last = u.Health(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy within %s: %w", u.HealthTimeout, last)
		case <-t.C:
		}
	}
}

// active returns the slot Link names, bootstrapping the layout (the
// current binary into slot A) when there is none.
func (u *Updater) active() (string, error) {
	target, err := os.Readlink(filepath.Join(u.Dir, Link))
	if err == nil {
		if t := filepath.Base(target); t == SlotA || t == SlotB {
			return t, nil
		}
		return "", fmt.Errorf("%s points to %s, not to %s or %s: fix the install directory", filepath.Join(u.Dir, Link), target, SlotA, SlotB)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	src := u.CurrentBinary
	if src == "" {
		if src, err = os.Executable(); err != nil {
			return "", err
		}
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("bootstrap %s from the running binary: %w", u.Dir, err)
	}
	if err := os.MkdirAll(u.Dir, 0o755); err != nil {
		return "", err
	}
	if err := atomicfile.Write(filepath.Join(u.Dir, SlotA), data, 0o755); err != nil {
		return "", err
	}
	return SlotA, u.switchTo(SlotA)
}

// switchTo points Link at slot atomically (a new symlink renamed over it).
func (u *Updater) switchTo(slot string) error {
	tmp := filepath.Join(u.Dir, "."+Link+".tmp")
	os.Remove(tmp)
	if err := os.Symlink(slot, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(u.Dir, Link)); err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(u.Dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
