package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/wardgate/wardgate/config"
)

func init() {
	register(cliCommand{name: "lock", summary: "lock an identity out of every path at once; list or remove locks", run: cmdLock})
}

const lockAbout = `Subcommands (over the admin socket; your uid is recorded):
  add IDENTITY [--for D] [--reason R]   cut and refuse IDENTITY on the clinical and vendor
                                        paths; IDENTITY is a URI such as
                                        spiffe://hospital.example/vendor/acme-medical/jane,
                                        or a prefix ending in /* to lock a whole group
  list                                  the locks in force
  remove IDENTITY                       lift a lock`

type lockView struct {
	Identity string    `json:"identity"`
	Until    time.Time `json:"until"`
	Reason   string    `json:"reason"`
	Created  time.Time `json:"created"`
}

func cmdLock(e *env, args []string) int {
	fs := newFlags(e, "lock add IDENTITY [--for D] [--reason R] | list | remove IDENTITY", lockAbout)
	forD := fs.String("for", "", "lock `DURATION` (e.g. 12h, 30d); default until removed")
	reason := fs.String("reason", "", "why, recorded with the lock and sent to central")
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
	switch pos[0] {
	case "add":
		if len(pos) != 2 {
			fmt.Fprintln(e.stderr, "wardgate lock add: give exactly one identity URI")
			return exitUsage
		}
		body := map[string]any{"identity": pos[1], "reason": *reason}
		if *forD != "" {
			d, err := config.ParseDuration(*forD)
			if err != nil || d <= 0 {
				fmt.Fprintf(e.stderr, "wardgate lock add: --for: %v\n", err)
				return exitUsage
			}
			body["for"] = d.String()
		}
		if code := call(e, resolve, "POST", "/v1/locks", body, &raw); code != exitOK {
			return code
		}
		if *asJSON {
			printJSON(e, raw)
			return exitOK
		}
		var l lockView
		_ = json.Unmarshal(raw, &l)
		until := "until removed"
		if !l.Until.IsZero() {
			until = "until " + l.Until.Local().Format(time.DateTime)
		}
		fmt.Fprintf(e.stdout, "locked %s %s; its live connections were cut\n", l.Identity, until)
	case "list":
		if code := call(e, resolve, "GET", "/v1/locks", nil, &raw); code != exitOK {
			return code
		}
		if *asJSON {
			printJSON(e, raw)
			return exitOK
		}
		var ls []lockView
		if err := json.Unmarshal(raw, &ls); err != nil {
			fmt.Fprintln(e.stderr, "wardgate: unexpected answer from the agent:", err)
			return exitFailure
		}
		if len(ls) == 0 {
			fmt.Fprintln(e.stdout, "no locks")
			return exitOK
		}
		now := time.Now()
		var rows [][]string
		for _, l := range ls {
			rows = append(rows, []string{l.Identity, ago(now, l.Until), l.Reason})
		}
		table(e, "IDENTITY\tENDS\tREASON", rows)
	case "remove":
		if len(pos) != 2 {
			fmt.Fprintln(e.stderr, "wardgate lock remove: give exactly one identity URI")
			return exitUsage
		}
		if code := call(e, resolve, "DELETE", "/v1/locks?identity="+url.QueryEscape(pos[1]), nil, &raw); code != exitOK {
			return code
		}
		fmt.Fprintf(e.stdout, "lock on %s removed\n", pos[1])
	default:
		fmt.Fprintf(e.stderr, "wardgate lock: unknown subcommand %q\n", pos[0])
		fs.Usage()
		return exitUsage
	}
	return exitOK
}
