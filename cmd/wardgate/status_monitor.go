package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/wardgate/wardgate/gateway/monitor"
)

// printMonitor prints the monitor's part of `wardgate status`: each
// exception's compensating controls with their live state, the traffic
// baselines, the segment's neighbours and the recent findings.
func printMonitor(e *env, now time.Time, m *monitor.Status) {
	if m == nil {
		return
	}
	w := e.stdout
	fmt.Fprintln(w)
	if !m.Enabled {
		fmt.Fprintln(w, "monitor    DISABLED (monitor.enabled: false): no findings, continuous-monitoring not in force")
	}
	var crows [][]string
	for _, ec := range m.Controls {
		for _, c := range ec.Controls {
			state := "in force"
			if !c.InForce {
				state = "NOT IN FORCE"
			}
			if c.Checked.IsZero() {
				state = "not checked yet"
			}
			crows = append(crows, []string{ec.Device, ec.Exception, ec.ApprovedBy, c.Name, state, c.Detail})
		}
	}
	if len(crows) > 0 {
		table(e, "DEVICE\tEXCEPTION\tAPPROVED BY\tCONTROL\tSTATE\tDETAIL", crows)
		fmt.Fprintln(w)
	}
	var brows [][]string
	for _, b := range m.Baselines {
		state := "learned"
		if b.Learning {
			state = "learning until " + b.Until.Local().Format(time.DateTime)
		}
		brows = append(brows, []string{b.Device, state, fmt.Sprintf("%d/168", b.Slots),
			fmt.Sprintf("%d/%d", b.LastHourToDevice, b.LastHourFromDevice), fmt.Sprint(b.LastHourSessions), ago(now, b.LastActivity)})
	}
	if len(brows) > 0 {
		table(e, "BASELINE\tSTATE\tHOURS LEARNED\tLAST HOUR BYTES TO/FROM\tSESSIONS\tLAST ACTIVITY", brows)
		fmt.Fprintln(w)
	}
	n := m.Neighbours
	if n.Interface != "" {
		line := fmt.Sprintf("segment    %s: %d neighbour(s), %d not in the inventory", n.Interface, n.Seen, n.Unknown)
		if n.Error != "" {
			line += "; cannot read: " + n.Error
		}
		fmt.Fprintln(w, line)
	}
	kinds := make([]string, 0, len(m.Counts))
	for k := range m.Counts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var counts []string
	for _, k := range kinds {
		counts = append(counts, fmt.Sprintf("%s %d", strings.TrimPrefix(k, "monitor."), m.Counts[k]))
	}
	if len(counts) == 0 {
		fmt.Fprintln(w, "findings   none since start")
		return
	}
	fmt.Fprintf(w, "findings   %s\n", strings.Join(counts, ", "))
	recent := m.Findings
	if len(recent) > 10 {
		recent = recent[len(recent)-10:]
	}
	for _, f := range recent {
		who := f.Device
		if f.Owner != "" {
			who += " (" + f.Owner + ")"
		}
		fmt.Fprintf(w, "  %s %-7s %s %s x%d %s\n", ago(now, f.Time), strings.ToUpper(f.Severity()), strings.TrimPrefix(f.Kind, "monitor."), f.Key, f.Count, strings.TrimSpace(who))
	}
}
