package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/wardgate/wardgate/config"
)

func init() {
	register(cliCommand{name: "hal", summary: "drive and show simulated hardware (hal.driver: sim)", run: cmdHal})
	register(cliCommand{name: "tamper", summary: "clear a tamper alarm after the enclosure was checked", run: cmdTamper})
}

const halAbout = `Subcommands (simulated hardware only, over the admin socket):
  press NAME [--hold D]   press a button, e.g. approve; --hold 3s for a long press
  tamper open|closed      open or close the simulated enclosure loop
  show                    LED states, tamper input and watchdog`

func cmdHal(e *env, args []string) int {
	fs := newFlags(e, "hal press NAME [--hold D] | tamper open|closed | show", halAbout)
	hold := fs.String("hold", "100ms", "how long the button is held (`DURATION`)")
	asJSON := fs.Bool("json", false, "print the agent's answer as JSON")
	resolve := socketFlags(fs)
	pos, code, ok := parseAll(e, fs, args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		fs.Usage()
		return exitUsage
	}
	var raw json.RawMessage
	switch {
	case pos[0] == "press" && len(pos) == 2:
		d, err := config.ParseDuration(*hold)
		if err != nil || d <= 0 || d > time.Minute {
			fmt.Fprintln(e.stderr, "wardgate hal press: --hold must be a duration up to 1m, e.g. 3s")
			return exitUsage
		}
		if code := call(e, resolve, "POST", "/v1/hal/press", map[string]any{"name": pos[1], "hold": d.String()}, &raw); code != exitOK {
			return code
		}
		fmt.Fprintf(e.stdout, "pressed %s for %s\n", pos[1], d)
	case pos[0] == "tamper" && len(pos) == 2 && (pos[1] == "open" || pos[1] == "closed"):
		if code := call(e, resolve, "POST", "/v1/hal/tamper", map[string]any{"open": pos[1] == "open"}, &raw); code != exitOK {
			return code
		}
		fmt.Fprintf(e.stdout, "enclosure loop %s\n", pos[1])
	case pos[0] == "show" && len(pos) == 1:
		if code := call(e, resolve, "GET", "/v1/hal", nil, &raw); code != exitOK {
			return code
		}
		if *asJSON {
			printJSON(e, raw)
			return exitOK
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			fmt.Fprintln(e.stderr, "wardgate: unexpected answer from the agent:", err)
			return exitFailure
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b, _ := json.Marshal(m[k])
			fmt.Fprintf(e.stdout, "%-10s %s\n", k, b)
		}
	default:
		fs.Usage()
		return exitUsage
	}
	return exitOK
}

const tamperAbout = `Subcommands (over the admin socket; your uid is recorded):
  clear   clear the tamper alarm and re-enable vendor access; check the
          enclosure first: a loop that is still open raises it again`

func cmdTamper(e *env, args []string) int {
	fs := newFlags(e, "tamper clear", tamperAbout)
	resolve := socketFlags(fs)
	pos, code, ok := parseAll(e, fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 || pos[0] != "clear" {
		fs.Usage()
		return exitUsage
	}
	if code := call(e, resolve, "POST", "/v1/tamper/clear", nil, nil); code != exitOK {
		return code
	}
	fmt.Fprintln(e.stdout, "tamper alarm cleared; vendor access re-enabled")
	return exitOK
}
