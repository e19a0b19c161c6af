package agent

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/authority"
	"github.com/wardgate/wardgate/gateway/release"
	"github.com/wardgate/wardgate/wire"
)

// Configuration lifecycle events and alarms.
const (
	// EvConfigReloadRefused: a reload (SIGHUP) was refused; the running
	// configuration stays. Attrs: file, problems (count), problem_1..N.
	EvConfigReloadRefused = "config.reload_refused"
	// EvConfigLastGood: the configuration file is invalid and the agent
	// started on the last known good one. Attrs: file, config_hash,
	// problems, problem_1..N.
	EvConfigLastGood = "config.started_last_good"
	// EvConfigReloaded: a reload was applied. Attrs: config_hash, previous.
	EvConfigReloaded = "config.reloaded"

	alarmConfigRefused = "config_refused"
	alarmConfigInvalid = "config_invalid"
)

// maxProblemAttrs bounds the problem_N attributes of one event; the count
// is always exact.
const maxProblemAttrs = 32

// problemAttrs lists every problem of err as problem_1..problem_N.
func problemAttrs(attrs map[string]string, err error) map[string]string {
	ps := config.ProblemList(err)
	attrs["problems"] = strconv.Itoa(len(ps))
	for i, p := range ps {
		if i == maxProblemAttrs {
			attrs["problems_omitted"] = strconv.Itoa(len(ps) - i)
			break
		}
		attrs["problem_"+strconv.Itoa(i+1)] = p
	}
	return attrs
}

// ReloadFile re-reads the configuration at path and applies it (Reload).
// A file with problems, or a change that needs a restart, is refused: the
// running configuration stays, the alarm config_refused is raised (status,
// red LED) and a signed config.reload_refused event lists every problem. A
// successful reload clears the configuration alarms and saves the file as
// the last known good one.
func (a *Agent) ReloadFile(path string) error {
	next, err := config.Load(path, a.clock.Now())
	if err == nil {
		err = a.Reload(next)
	}
	if err != nil {
		a.refuseReload(path, err)
		return err
	}
	return nil
}

func (a *Agent) refuseReload(path string, err error) {
	attrs := problemAttrs(map[string]string{"file": path, "running_hash": a.cfg().Hash}, err)
	a.events.emit(a.clock.Now(), EvConfigReloadRefused, wire.SeverityAlarm, attrs)
	a.raise(alarmConfigRefused, fmt.Sprintf("the configuration in %s was refused (%s problem(s)); the previous one keeps running: run `wardgate config check %s`, fix it and reload", path, attrs["problems"], path))
}

// configAccepted is called once a configuration runs (after start and
// after a reload): it clears the configuration alarms and keeps it as the
// last known good one.
func (a *Agent) configAccepted(cfg *config.Config) {
	if a.o.StartProblems != nil && cfg == a.o.Config {
		// Running on the last known good configuration: the file is still
		// broken; nothing to save, the alarm stays.
		return
	}
	a.clear(alarmConfigRefused)
	a.clear(alarmConfigInvalid)
	if err := config.SaveLastGood(cfg); err != nil {
		a.log.Warn("last known good configuration not saved", "err", err)
	}
}

// startedOnLastGood raises the alarm of a start on the last known good
// configuration.
func (a *Agent) startedOnLastGood() {
	cfg := a.cfg()
	attrs := problemAttrs(map[string]string{"file": a.o.ConfigFile, "config_hash": cfg.Hash}, a.o.StartProblems)
	a.events.emit(a.clock.Now(), EvConfigLastGood, wire.SeverityAlarm, attrs)
	a.raise(alarmConfigInvalid, fmt.Sprintf("%s is invalid (%s problem(s)); running on the last known good configuration %s: run `wardgate config check %s`, fix it and reload", a.o.ConfigFile, attrs["problems"], cfg.Hash, a.o.ConfigFile))
}

// EvDeviceRetired: a device was retired (retired: DATE in the
// configuration): its clinical listener is closed, its grants revoked,
// vendors are refused with code "retired", and its accounts are flagged
// for rotation or removal. Attrs: device, retired, replaced_by,
// grants_revoked, accounts.
const EvDeviceRetired = "device.retired"

// retireDevices applies the retirement of every device retired in cfg and
// not in old, and reports it. With no old configuration (a start without a
// last known good one) only a device with grants left to revoke is
// reported. Listeners are closed by the clinical setup or update, which
// skip retired devices.
func (a *Agent) retireDevices(old, cfg *config.Config) {
	was := map[string]bool{}
	if old != nil {
		for i := range old.Devices {
			if old.Devices[i].IsRetired() {
				was[old.Devices[i].ID] = true
			}
		}
	}
	actor := access.Actor{Kind: authority.KindSystem, Via: "config"}
	for i := range cfg.Devices {
		d := &cfg.Devices[i]
		if !d.IsRetired() || was[d.ID] {
			continue
		}
		revoked, err := a.access.RetireDevice(d.ID, actor)
		if err != nil {
			a.log.Error("grants of a retired device not revoked", "device", d.ID, "err", err)
		}
		if old == nil && len(revoked) == 0 {
			continue
		}
		accounts := make([]string, 0, len(d.Accounts))
		for _, acc := range d.Accounts {
			accounts = append(accounts, acc.ID)
		}
		a.events.emit(a.clock.Now(), EvDeviceRetired, wire.SeverityWarning, map[string]string{
			"device": d.ID, "retired": d.Retired.String(), "replaced_by": d.ReplacedBy,
			"grants_revoked": strings.Join(revoked, ","), "accounts": strings.Join(accounts, ","),
		})
	}
}

// previousGood is the last known good configuration saved by an earlier
// run (nil if none, or if it is the one running now).
func (a *Agent) previousGood() *config.Config {
	cfg := a.cfg()
	prev, err := config.LoadLastGood(cfg.Gateway.StateDir, a.clock.Now())
	if err != nil || prev.Hash == cfg.Hash {
		return nil
	}
	return prev
}

// emitUpdateJournal emits the steps `wardgate update apply` journaled in
// STATE_DIR as update.STEP events (at start, and on POST
// /v1/update/journal, which update apply calls when it is done) (update.verified, update.installed,
// update.restarted, update.healthy, update.unhealthy, update.rolled_back,
// update.failed).
func (a *Agent) emitUpdateJournal() int {
	entries, err := release.DrainJournal(filepath.Join(a.cfg().Gateway.StateDir, release.JournalFile))
	if err != nil {
		a.log.Warn("update journal not read", "err", err)
	}
	for _, e := range entries {
		sev := wire.SeverityInfo
		switch e.Step {
		case "failed", "unhealthy":
			sev = wire.SeverityWarning
		case "rolled_back":
			sev = wire.SeverityAlarm
		}
		if e.Attrs == nil {
			e.Attrs = map[string]string{}
		}
		a.events.emit(e.Time, "update."+e.Step, sev, e.Attrs)
	}
	return len(entries)
}
