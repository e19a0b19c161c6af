package agent

import (
	"fmt"
	"strconv"

	"github.com/wardgate/wardgate/config"
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
