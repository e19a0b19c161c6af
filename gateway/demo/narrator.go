package demo

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// narrator prints the scenario for a person (sections, checks, decoded
// telemetry) or, with JSON, one object per line for machines. Safe for
// concurrent use: telemetry arrives on its own goroutine.
type narrator struct {
	mu      sync.Mutex
	w       io.Writer
	json    bool
	start   time.Time
	section int
	steps   []StepResult
}

// StepResult is one checked step of the scenario.
type StepResult struct {
	Type    string `json:"type"` // "step"
	Section int    `json:"section"`
	ID      string `json:"id"`
	OK      bool   `json:"ok"`
	Message string `json:"message"`
	Elapsed string `json:"elapsed"`
}

func (n *narrator) emit(v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintln(n.w, string(b))
}

// heading starts a numbered section.
func (n *narrator) heading(title string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.section++
	if n.json {
		n.emit(map[string]any{"type": "section", "section": n.section, "title": title})
		return
	}
	fmt.Fprintf(n.w, "\n== %d. %s\n", n.section, title)
}

// say prints a line of narration.
func (n *narrator) say(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	if n.json {
		n.emit(map[string]any{"type": "info", "section": n.section, "message": msg})
		return
	}
	fmt.Fprintf(n.w, "   %s\n", msg)
}

// check records a step and prints it with a mark.
func (n *narrator) check(id string, ok bool, format string, args ...any) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	r := StepResult{Type: "step", Section: n.section, ID: id, OK: ok, Message: fmt.Sprintf(format, args...),
		Elapsed: time.Since(n.start).Round(time.Millisecond).String()}
	n.steps = append(n.steps, r)
	if n.json {
		n.emit(r)
		return ok
	}
	mark := "ok  "
	if !ok {
		mark = "FAIL"
	}
	fmt.Fprintf(n.w, "   [%s] %s\n", mark, r.Message)
	return ok
}

// telemetry prints one decoded, verified telemetry message.
func (n *narrator) telemetry(line map[string]any, summary string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.json {
		out := make(map[string]any, len(line)+1)
		for k, v := range line {
			out[k] = v
		}
		out["type"] = "telemetry"
		n.emit(out)
		return
	}
	verified := "signature ok"
	if v, _ := line["verified"].(bool); !v {
		verified = "NOT VERIFIED"
	}
	hist := ""
	if h, _ := line["historical"].(bool); h {
		hist = " (from backlog)"
	}
	fmt.Fprintf(n.w, "      telemetry #%v %-9v %s%s [%s]\n", line["seq"], line["kind"], summary, hist, verified)
}

// summary prints the outcome and reports whether every step passed.
func (n *narrator) summary() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	passed, failed := 0, []string{}
	for _, s := range n.steps {
		if s.OK {
			passed++
		} else {
			failed = append(failed, s.ID)
		}
	}
	ok := len(failed) == 0 && passed > 0
	if n.json {
		n.emit(map[string]any{"type": "summary", "ok": ok, "passed": passed, "failed": len(failed), "failed_steps": failed,
			"elapsed": time.Since(n.start).Round(time.Millisecond).String()})
		return ok
	}
	fmt.Fprintf(n.w, "\n== Summary\n   %d passed, %d failed", passed, len(failed))
	if len(failed) > 0 {
		fmt.Fprintf(n.w, " (%s)", strings.Join(failed, ", "))
	}
	fmt.Fprintf(n.w, " in %s\n", time.Since(n.start).Round(time.Second))
	return ok
}

// describe makes a one-line summary of a telemetry body for people.
func describe(kind string, body any) string {
	m, _ := body.(map[string]any)
	switch kind {
	case "event":
		attrs, _ := m["attrs"].(map[string]any)
		keys := make([]string, 0, len(attrs))
		for k := range attrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			if len(parts) == 4 {
				parts = append(parts, "...")
				break
			}
			parts = append(parts, fmt.Sprintf("%s=%v", k, attrs[k]))
		}
		return fmt.Sprintf("%v %v: %s", m["severity"], m["kind"], strings.Join(parts, " "))
	case "birth":
		return fmt.Sprintf("gateway %v at %v, version %v, inventory %v", m["gateway"], m["site"], m["version"], m["inventory"])
	case "metrics":
		if recs, ok := body.([]any); ok {
			return fmt.Sprintf("SenML pack of %d records", len(recs))
		}
	case "inventory":
		if devs, ok := m["devices"].([]any); ok {
			return fmt.Sprintf("%d devices with owners, accounts and exceptions", len(devs))
		}
	case "status":
		return fmt.Sprintf("state %v, alarms %v", m["state"], m["alarms"])
	}
	return ""
}
