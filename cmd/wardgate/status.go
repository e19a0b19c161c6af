package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/agent"
)

func init() {
	register(cliCommand{name: "status", summary: "identity, certificate expiry, devices, links, vendor access, queue, LEDs", run: cmdStatus})
}

const statusAbout = `Shows the running agent's state: the gateway identity and when its
certificate expires, each device with its link and live connections, vendor
requests, grants and sessions, locks, the telemetry queue, the LEDs and any
alarm. --json prints the full, stable document (docs/security-team.md).`

func cmdStatus(e *env, args []string) int {
	fs := newFlags(e, "status [--json] [--config FILE | --socket PATH]", statusAbout)
	asJSON := fs.Bool("json", false, "print the status document as JSON")
	resolve := socketFlags(fs)
	if code, ok := parse(e, fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	var raw json.RawMessage
	if code := call(e, resolve, "GET", "/v1/status", nil, &raw); code != exitOK {
		return code
	}
	if *asJSON {
		printJSON(e, raw)
		return exitOK
	}
	var s agent.Status
	if err := json.Unmarshal(raw, &s); err != nil {
		fmt.Fprintln(e.stderr, "wardgate: unexpected answer from the agent:", err)
		return exitFailure
	}
	printStatus(e, s)
	return exitOK
}

func printStatus(e *env, s agent.Status) {
	now := s.Time
	w := e.stdout
	g := s.Gateway
	fmt.Fprintf(w, "gateway    %s (site %s)  state %s  version %s  up %s\n", g.ID, g.Site, strings.ToUpper(g.State), g.Version, now.Sub(g.Started).Round(time.Second))
	for _, why := range g.Why {
		fmt.Fprintf(w, "           degraded: %s\n", why)
	}
	id := s.Identity
	switch {
	case id.ReenrollNeeded:
		fmt.Fprintf(w, "identity   %s  RE-ENROLLMENT NEEDED: run wardgate enroll --config FILE --token TOKEN\n", id.URI)
	case id.Expired:
		fmt.Fprintf(w, "identity   %s  EXPIRED at %s; renewing\n", id.URI, id.NotAfter.Local().Format(time.DateTime))
	default:
		fmt.Fprintf(w, "identity   %s  expires %s, renews %s (%d renewals, %d re-keys)\n", id.URI, ago(now, id.NotAfter), ago(now, id.NextRenewal), id.Renewals, id.Rekeys)
	}
	if id.LastError != "" {
		fmt.Fprintf(w, "           last renewal error: %s\n", id.LastError)
	}
	if len(s.Alarms) == 0 {
		fmt.Fprintln(w, "alarms     none")
	}
	for _, a := range s.Alarms {
		fmt.Fprintf(w, "ALARM      %s\n", a)
	}
	fmt.Fprintln(w)
	var rows [][]string
	for _, d := range s.Devices {
		k := d.Counters
		var hs, auth int64
		for _, n := range k.HandshakeFailures {
			hs += n
		}
		for _, n := range k.AuthFailures {
			auth += n
		}
		state := d.LinkState
		if state == "down" {
			state = "DOWN"
		}
		rows = append(rows, []string{d.ID, d.Listen, d.Link, state, fmt.Sprint(k.Live), fmt.Sprint(k.Sessions),
			fmt.Sprintf("%d/%d", k.BytesToDevice, k.BytesFromDevice), fmt.Sprintf("%d/%d", auth, hs)})
	}
	table(e, "DEVICE\tLISTEN\tLINK\tSTATE\tLIVE\tSESSIONS\tBYTES TO/FROM\tAUTH/TLS FAIL", rows)
	for _, d := range s.Devices {
		for _, c := range d.Conns {
			fmt.Fprintf(w, "  %s: %s from %s since %s\n", d.ID, c.Identity, c.Remote, ago(now, c.Since))
		}
	}
	fmt.Fprintln(w)
	v := s.Vendor
	printGrants(e, vendorView{Time: now, Tamper: v.Tamper, Requests: grantViews(v.Requests), Grants: grantViews(v.Grants), Sessions: sessionViews(v)})
	if len(v.Locks) > 0 {
		fmt.Fprintln(w)
		var lrows [][]string
		for _, l := range v.Locks {
			lrows = append(lrows, []string{l.Identity, ago(now, l.Until), l.Reason})
		}
		table(e, "LOCKED IDENTITY\tENDS\tREASON", lrows)
	}
	fmt.Fprintln(w)
	t := s.Telemetry
	conn := "connected"
	if !t.Connected {
		conn = "NOT CONNECTED"
	}
	oldest := ""
	if !t.OldestQueued.IsZero() {
		oldest = ", oldest " + ago(now, t.OldestQueued)
	}
	fmt.Fprintf(w, "telemetry  %s, session %d, %d sent, queue %d message(s)%s, %d metrics dropped for space\n",
		conn, t.Session, t.Sent, t.Queued, oldest, t.Lost)
	h := s.Hardware
	leds := []string{}
	for _, name := range []string{"ok", "vendor", "alarm"} {
		if l, ok := h.LEDs[name]; ok {
			leds = append(leds, fmt.Sprintf("%s %s", name, l.Pattern))
		}
	}
	tamper := "closed"
	if h.Tamper.Open {
		tamper = "OPEN"
	}
	fmt.Fprintf(w, "hardware   %s: LEDs %s; enclosure %s\n", h.Driver, strings.Join(leds, ", "), tamper)
	printMonitor(e, now, s.Monitor)
}

func grantViews(gs []access.Grant) []grantView {
	out := make([]grantView, 0, len(gs))
	for _, g := range gs {
		out = append(out, grantView{ID: g.ID, State: string(g.State), Vendor: g.Vendor, Device: g.Device, Ports: g.Ports,
			Reason: g.Reason, Policy: g.Policy, Deadline: g.Deadline})
	}
	return out
}

func sessionViews(v access.Snapshot) []sessionView {
	out := make([]sessionView, 0, len(v.Sessions))
	for _, x := range v.Sessions {
		out = append(out, sessionView{ID: x.ID, Grant: x.Grant, Vendor: x.Vendor, Device: x.Device, Port: x.Port,
			Start: x.Start, ToDevice: x.ToDevice, FromDev: x.FromDev})
	}
	return out
}
