package web

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/wire"
)

//go:embed templates/*.html
var templateFS embed.FS

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"date": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02")
	},
	"days": func(s int64) int64 { return s / 86400 },
	"attrs": func(m map[string]string) string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, k+"="+m[k])
		}
		return strings.Join(parts, " ")
	},
}

// pages holds one template set per page (layout + content).
var pages = func() map[string]*template.Template {
	out := map[string]*template.Template{}
	for _, name := range []string{"fleet", "gateway", "device", "accountability", "sessions", "events", "alarms", "findings"} {
		out[name] = template.Must(template.New("layout").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
	return out
}()

type pageData struct {
	Title, Page, User, Nonce string
	Data                     any
}

func (s *Server) pageRoutes() {
	m := s.mux
	m.HandleFunc("GET /{$}", s.pageFleet)
	m.HandleFunc("GET /gateways/{id}", s.pageGateway)
	m.HandleFunc("GET /gateways/{gw}/devices/{id}", s.pageDevice)
	m.HandleFunc("GET /accountability", s.pageAccountability)
	m.HandleFunc("GET /sessions", s.pageSessions)
	m.HandleFunc("GET /events", s.pageEvents)
	m.HandleFunc("GET /alarms", s.pageAlarms)
	m.HandleFunc("GET /findings", s.pageFindings)
	m.HandleFunc("POST /findings/{id}/triage", s.formTriage)
	m.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, page, title string, data any) {
	s.count("page")
	n := nonce()
	var buf bytes.Buffer
	// Live updates fetch only the content (X-Fragment: main): a whole
	// page parsed in the browser would carry another response's nonce.
	tmpl := "layout"
	if r.Header.Get("X-Fragment") == "main" {
		tmpl = "content"
	}
	if err := pages[page].ExecuteTemplate(&buf, tmpl, pageData{Title: title, Page: page, User: userOf(r), Nonce: n, Data: data}); err != nil {
		s.log.Error("render failed", "page", page, "err", err)
		http.Error(w, "internal error; see central's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Vary", "X-Fragment")
	w.Header().Set("Content-Security-Policy", fmt.Sprintf("default-src 'none'; script-src 'nonce-%s'; style-src 'nonce-%s'; connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'", n, n))
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) pageError(w http.ResponseWriter, err error) {
	s.log.Error("page failed", "err", err)
	http.Error(w, "internal error; see central's log", http.StatusInternalServerError)
}

func (s *Server) pageFleet(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	gs, err := s.o.Store.Gateways(ctx)
	if err != nil {
		s.pageError(w, err)
		return
	}
	t, err := s.o.Store.Totals(ctx)
	if err != nil {
		s.pageError(w, err)
		return
	}
	ph, err := s.o.Store.EventsPerHour(ctx, s.clock.Now().Add(-24*time.Hour))
	if err != nil {
		s.pageError(w, err)
		return
	}
	pv, err := s.o.Store.SessionsPerVendor(ctx)
	if err != nil {
		s.pageError(w, err)
		return
	}
	s.render(w, r, "fleet", "Fleet", map[string]any{"Gateways": gs, "Online": t.Online, "Alarms": t.ActiveAlarms,
		"Stale": t.Stale, "Findings": t.OpenFindings, "PerHour": BarChart("events per hour", ph), "PerVendor": BarChart("grants per vendor", pv)})
}

func (s *Server) pageGateway(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	g, err := s.o.Store.Gateway(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		http.Error(w, fmt.Sprintf("no gateway %q has reported to central", id), http.StatusNotFound)
		return
	}
	if err != nil {
		s.pageError(w, err)
		return
	}
	devs, err := s.o.Store.Devices(r.Context(), id)
	if err != nil {
		s.pageError(w, err)
		return
	}
	al, err := s.gatewayAlarms(r, id)
	if err != nil {
		s.pageError(w, err)
		return
	}
	s.render(w, r, "gateway", "Gateway "+id, map[string]any{"G": g, "Devices": devs, "Alarms": al})
}

func (s *Server) pageDevice(w http.ResponseWriter, r *http.Request) {
	devs, err := s.o.Store.Devices(r.Context(), r.PathValue("gw"))
	if err != nil {
		s.pageError(w, err)
		return
	}
	for _, d := range devs {
		if d.ID == r.PathValue("id") {
			s.render(w, r, "device", "Device "+d.ID, map[string]any{"D": d})
			return
		}
	}
	http.Error(w, "no such device in the gateway's last inventory", http.StatusNotFound)
}

func (s *Server) pageAccountability(w http.ResponseWriter, r *http.Request) {
	rep, err := s.o.Store.Accountability(r.Context(), s.clock.Now(), wire.ExpiryWarning)
	if err != nil {
		s.pageError(w, err)
		return
	}
	var counts []store.Count
	for _, o := range rep {
		if n := len(o.Overdue) + len(o.Exceptions); n > 0 {
			counts = append(counts, store.Count{Label: o.Owner, N: int64(n)})
		}
	}
	s.render(w, r, "accountability", "Accountability", map[string]any{"Owners": rep, "WarnDays": int(wire.ExpiryWarning.Hours() / 24),
		"Chart": BarChart("overdue items per owner", counts)})
}

func (s *Server) pageSessions(w http.ResponseWriter, r *http.Request) {
	open, err := s.o.Store.Sessions(r.Context(), []string{"requested", "approved", "live"}, 0)
	if err != nil {
		s.pageError(w, err)
		return
	}
	recent, err := s.o.Store.Sessions(r.Context(), nil, 100)
	if err != nil {
		s.pageError(w, err)
		return
	}
	pv, err := s.o.Store.SessionsPerVendor(r.Context())
	if err != nil {
		s.pageError(w, err)
		return
	}
	s.render(w, r, "sessions", "Vendor access", map[string]any{"Open": open, "Recent": recent, "Chart": BarChart("grants per vendor", pv)})
}

func (s *Server) pageEvents(w http.ResponseWriter, r *http.Request) {
	q, qerr := eventQuery(r)
	data := map[string]any{"Q": q, "Since": r.URL.Query().Get("since"), "Until": r.URL.Query().Get("until")}
	raw := url.Values{}
	for _, k := range []string{"gateway", "device", "identity", "kind", "since", "until"} {
		if v := r.URL.Query().Get(k); v != "" {
			raw.Set(k, v)
		}
	}
	data["Raw"] = template.URL(raw.Encode())
	evs := []store.Event{}
	if qerr != nil {
		data["Err"] = qerr.Error()
	} else {
		q.Limit = 200
		next, err := s.o.Store.Events(r.Context(), q, func(e store.Event) error { evs = append(evs, e); return nil })
		if err != nil {
			s.pageError(w, err)
			return
		}
		if len(evs) == q.Limit {
			data["Next"] = strconv.FormatInt(next, 10)
		}
	}
	data["Events"] = evs
	s.render(w, r, "events", "Events", data)
}

func (s *Server) pageAlarms(w http.ResponseWriter, r *http.Request) {
	al, err := s.o.Store.Alarms(r.Context(), false)
	if err != nil {
		s.pageError(w, err)
		return
	}
	s.render(w, r, "alarms", "Alarms", al)
}

func (s *Server) pageFindings(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	switch state {
	case "":
		state = store.FindingOpen
	case "all":
		state = ""
	}
	fs, err := s.o.Store.Findings(r.Context(), state, 0)
	if err != nil {
		s.pageError(w, err)
		return
	}
	s.render(w, r, "findings", "Findings", fs)
}

func (s *Server) formTriage(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		http.Error(w, "the finding id must be a number", http.StatusBadRequest)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	_, err = s.triage(r, id, TriageRequest{Action: r.PostForm.Get("action"), Note: r.PostForm.Get("note")})
	if errors.Is(err, store.ErrNotFound) {
		http.Error(w, "no such finding", http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	http.Redirect(w, r, "/findings", http.StatusSeeOther)
}

// BarChart draws counts as an accessible inline SVG bar chart (a title,
// and a text label on each bar), or a sentence when there is nothing.
func BarChart(title string, counts []store.Count) template.HTML {
	if len(counts) == 0 {
		return template.HTML("<p>No data yet.</p>")
	}
	if len(counts) > 48 {
		counts = counts[len(counts)-48:]
	}
	var maxN int64 = 1
	for _, c := range counts {
		maxN = max(maxN, c.N)
	}
	const barW, gap, h = 28, 6, 120
	width := len(counts) * (barW + gap)
	var b strings.Builder
	esc := template.HTMLEscapeString
	fmt.Fprintf(&b, `<svg role="img" aria-label="%s" width="%d" height="%d" viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg"><title>%s</title>`,
		esc(title), width, h+40, width, h+40, esc(title))
	for i, c := range counts {
		bh := int(c.N * int64(h) / maxN)
		x := i * (barW + gap)
		fmt.Fprintf(&b, `<g><title>%s: %d</title><rect x="%d" y="%d" width="%d" height="%d" fill="#457b9d"></rect>`, esc(c.Label), c.N, x, h-bh+14, barW, bh)
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="10" text-anchor="middle">%d</text>`, x+barW/2, h-bh+11, c.N)
		label := c.Label
		if r := []rune(label); len(r) > 6 {
			label = string(r[len(r)-6:])
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="9" text-anchor="middle">%s</text></g>`, x+barW/2, h+28, esc(label))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
