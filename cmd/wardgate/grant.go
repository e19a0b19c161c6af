package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/wardgate/wardgate/gateway/access"
)

func init() {
	register(cliCommand{name: "grant", summary: "list vendor requests and grants; approve, deny or revoke one", run: cmdGrant})
}

const grantAbout = `Subcommands (they talk to the running agent over its admin socket; your
uid is recorded as the actor of each change):
  list         pending requests, active grants and live sessions
  approve ID   approve a pending request (local approval)
  deny ID      deny a pending request
  revoke ID    end a grant now; its live sessions are cut`

// grantView is the part of a grant the table shows.
type grantView struct {
	ID       string    `json:"id"`
	State    string    `json:"state"`
	Vendor   string    `json:"vendor"`
	Device   string    `json:"device"`
	Ports    []int     `json:"ports"`
	Reason   string    `json:"reason"`
	Policy   []string  `json:"policy"`
	Deadline time.Time `json:"deadline"`
	// Extension requests: the grant they extend and by how much.
	Extends string        `json:"extends"`
	Extend  time.Duration `json:"extend"`
}

type sessionView struct {
	ID       string    `json:"id"`
	Grant    string    `json:"grant"`
	Vendor   string    `json:"vendor"`
	Device   string    `json:"device"`
	Port     int       `json:"port"`
	Start    time.Time `json:"start"`
	ToDevice int64     `json:"to_device"`
	FromDev  int64     `json:"from_device"`
}

type vendorView struct {
	Time     time.Time     `json:"time"`
	Requests []grantView   `json:"requests"`
	Grants   []grantView   `json:"grants"`
	Sessions []sessionView `json:"sessions"`
	Tamper   bool          `json:"tamper"`
}

func cmdGrant(e *env, args []string) int {
	fs := newFlags(e, "grant list|approve ID|deny ID|revoke ID [--json]", grantAbout)
	asJSON := fs.Bool("json", false, "print the agent's answer as JSON")
	resolve := socketFlags(fs)
	rest, code, ok := parseAll(e, fs, args)
	if !ok {
		return code
	}
	if len(rest) == 0 {
		fs.Usage()
		return exitUsage
	}
	var raw json.RawMessage
	switch sub := rest[0]; sub {
	case "list":
		if len(rest) != 1 {
			fs.Usage()
			return exitUsage
		}
		if code := call(e, resolve, "GET", "/v1/grants", nil, &raw); code != exitOK {
			return code
		}
		if *asJSON {
			printJSON(e, raw)
			return exitOK
		}
		var v vendorView
		if err := json.Unmarshal(raw, &v); err != nil {
			fmt.Fprintln(e.stderr, "wardgate: unexpected answer from the agent:", err)
			return exitFailure
		}
		printGrants(e, v)
		return exitOK
	case "approve", "deny", "revoke":
		if len(rest) != 2 {
			fmt.Fprintf(e.stderr, "wardgate grant %s: give the request id, as shown by `wardgate grant list`\n", sub)
			return exitUsage
		}
		if code := call(e, resolve, "POST", "/v1/grants/"+url.PathEscape(rest[1])+"/"+sub, nil, &raw); code != exitOK {
			return code
		}
		if *asJSON {
			printJSON(e, raw)
			return exitOK
		}
		var g grantView
		_ = json.Unmarshal(raw, &g)
		switch {
		case sub == "approve" && g.State == "pending":
			fmt.Fprintf(e.stdout, "%s: your approval is recorded; it still needs the other approval of its policy (%s)\n", g.ID, strings.Join(g.Policy, " + "))
		case sub == "approve":
			fmt.Fprintf(e.stdout, "%s: approved; %s may reach %s ports %v until %s\n", g.ID, g.Vendor, g.Device, g.Ports, g.Deadline.Local().Format(time.DateTime))
		default:
			fmt.Fprintf(e.stdout, "%s: %s\n", g.ID, g.State)
		}
		return exitOK
	default:
		fmt.Fprintf(e.stderr, "wardgate grant: unknown subcommand %q\n", sub)
		fs.Usage()
		return exitUsage
	}
}

// portsText writes ports as targets do ("console" for a serial console).
func portsText(ps []int) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = access.PortName(p)
	}
	return "[" + strings.Join(out, " ") + "]"
}

func printGrants(e *env, v vendorView) {
	now := v.Time
	if now.IsZero() {
		now = time.Now()
	}
	if v.Tamper {
		fmt.Fprintln(e.stdout, "TAMPER: vendor access is disabled until the tamper alarm is cleared")
	}
	if len(v.Requests)+len(v.Grants) == 0 {
		fmt.Fprintln(e.stdout, "no pending requests and no active grants")
	} else {
		var rows [][]string
		for _, g := range append(v.Requests, v.Grants...) {
			reason := g.Reason
			if g.Extends != "" {
				reason = fmt.Sprintf("extend %s by %s: %s", g.Extends, g.Extend, g.Reason)
			}
			rows = append(rows, []string{g.ID, g.State, g.Vendor, g.Device, portsText(g.Ports), ago(now, g.Deadline), reason})
		}
		table(e, "ID\tSTATE\tVENDOR\tDEVICE\tPORTS\tENDS\tREASON", rows)
	}
	if len(v.Sessions) > 0 {
		fmt.Fprintln(e.stdout)
		var rows [][]string
		for _, s := range v.Sessions {
			rows = append(rows, []string{s.ID, s.Grant, s.Vendor, s.Device + ":" + access.PortName(s.Port), ago(now, s.Start), fmt.Sprintf("%d/%d", s.ToDevice, s.FromDev)})
		}
		table(e, "SESSION\tGRANT\tVENDOR\tTARGET\tSTARTED\tBYTES IN/OUT", rows)
	}
}
