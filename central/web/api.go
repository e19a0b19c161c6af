package web

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wardgate/wardgate/central/ingest"
	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/wire"
)

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /api/v1/gateways", s.apiGateways)
	m.HandleFunc("GET /api/v1/gateways/{id}", s.apiGateway)
	m.HandleFunc("GET /api/v1/devices", s.apiDevices)
	m.HandleFunc("GET /api/v1/accountability", s.apiAccountability)
	m.HandleFunc("GET /api/v1/sessions", s.apiSessions)
	m.HandleFunc("GET /api/v1/events", s.apiEvents)
	m.HandleFunc("GET /api/v1/alarms", s.apiAlarms)
	m.HandleFunc("GET /api/v1/findings", s.apiFindings)
	m.HandleFunc("POST /api/v1/findings/{id}/triage", s.apiTriage)
	m.HandleFunc("GET /api/v1/whoami", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"user": userOf(r)})
	})
	m.HandleFunc("GET /metrics", s.metrics)
	m.HandleFunc("GET /live", s.live)
	s.pageRoutes()
	s.recordingRoutes()
	s.commandRoutes()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// apiError writes {"error": msg}.
func apiError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func (s *Server) internal(w http.ResponseWriter, err error) {
	s.log.Error("request failed", "err", err)
	apiError(w, http.StatusInternalServerError, "internal error; see central's log")
}

func (s *Server) apiGateways(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	gs, err := s.o.Store.Gateways(r.Context())
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"gateways": gs})
}

func (s *Server) apiGateway(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	id := r.PathValue("id")
	g, err := s.o.Store.Gateway(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		apiError(w, http.StatusNotFound, fmt.Sprintf("no gateway %q has reported to central", id))
		return
	}
	if err != nil {
		s.internal(w, err)
		return
	}
	devs, err := s.o.Store.Devices(r.Context(), id)
	if err != nil {
		s.internal(w, err)
		return
	}
	al, err := s.gatewayAlarms(r, id)
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"gateway": g, "devices": devs, "alarms": al})
}

func (s *Server) gatewayAlarms(r *http.Request, id string) ([]store.Alarm, error) {
	all, err := s.o.Store.Alarms(r.Context(), true)
	if err != nil {
		return nil, err
	}
	out := []store.Alarm{}
	for _, a := range all {
		if a.Gateway == id {
			out = append(out, a)
		}
	}
	return out, nil
}

func (s *Server) apiDevices(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	devs, err := s.o.Store.Devices(r.Context(), r.URL.Query().Get("gateway"))
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": devs})
}

func (s *Server) apiAccountability(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	now := s.clock.Now()
	rep, err := s.o.Store.Accountability(r.Context(), now, wire.ExpiryWarning)
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"generated": now.UTC(), "warning_days": int(wire.ExpiryWarning.Hours() / 24), "owners": rep})
}

func (s *Server) apiSessions(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	var states []string
	if v := r.URL.Query().Get("state"); v != "" {
		states = strings.Split(v, ",")
	}
	ss, err := s.o.Store.Sessions(r.Context(), states, 0)
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": ss})
}

func (s *Server) apiAlarms(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	al, err := s.o.Store.Alarms(r.Context(), r.URL.Query().Get("active") != "false")
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"alarms": al})
}

func (s *Server) apiFindings(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	fs, err := s.o.Store.Findings(r.Context(), r.URL.Query().Get("state"), 0)
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"findings": fs})
}

// TriageRequest is the body of POST /api/v1/findings/{id}/triage.
type TriageRequest struct {
	Action string `json:"action"` // acknowledge, suppress or resolve
	Note   string `json:"note,omitempty"`
}

func (s *Server) apiTriage(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		apiError(w, http.StatusBadRequest, "the finding id must be a number")
		return
	}
	var req TriageRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "body must be {\"action\": \"acknowledge|suppress|resolve\", \"note\": \"...\"}: "+err.Error())
		return
	}
	f, err := s.triage(r, id, req)
	if errors.Is(err, store.ErrNotFound) {
		apiError(w, http.StatusNotFound, fmt.Sprintf("no finding %d", id))
		return
	}
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func (s *Server) triage(r *http.Request, id int64, req TriageRequest) (store.Finding, error) {
	if len(req.Note) > 1000 {
		return store.Finding{}, errors.New("the note is longer than 1000 characters")
	}
	f, err := s.o.Store.Triage(r.Context(), id, req.Action, userOf(r), req.Note, s.clock.Now())
	if err == nil {
		s.log.Info("finding triaged", "finding", id, "action", req.Action, "user", userOf(r))
	}
	return f, err
}

// eventQuery parses the filters of /api/v1/events and /events.
func eventQuery(r *http.Request) (store.EventQuery, error) {
	v := r.URL.Query()
	var q store.EventQuery
	var err error
	parseT := func(name string) time.Time {
		s := v.Get(name)
		if s == "" || err != nil {
			return time.Time{}
		}
		t, e := time.Parse(time.RFC3339, s)
		if e != nil {
			if d, e2 := time.Parse("2006-01-02T15:04", s); e2 == nil { // <input type=datetime-local>
				return d
			}
			if d, e2 := time.Parse("2006-01-02", s); e2 == nil {
				return d
			}
			err = fmt.Errorf("%s=%q is not a time (RFC 3339, e.g. 2026-11-01T00:00:00Z)", name, s)
		}
		return t
	}
	q.Since, q.Until = parseT("since"), parseT("until")
	q.Kind, q.Gateway, q.Device, q.Identity = v.Get("kind"), v.Get("gateway"), v.Get("device"), v.Get("identity")
	if c := v.Get("cursor"); c != "" && err == nil {
		q.After, err = strconv.ParseInt(c, 10, 64)
		if err != nil {
			err = fmt.Errorf("cursor=%q is not a number", c)
		}
	}
	return q, err
}

// apiEvents pages (JSON, limit default 1000, at most 10000, next_cursor
// to continue) or exports everything (format=csv or format=jsonl,
// streamed without a row cap).
func (s *Server) apiEvents(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	q, err := eventQuery(r)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	switch r.URL.Query().Get("format") {
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="wardgate-events.csv"`)
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"id", "time", "received", "gateway", "session", "seq", "kind", "severity", "device", "identity", "historical", "attrs"})
		_, err = s.o.Store.Events(r.Context(), q, func(e store.Event) error {
			attrs, _ := json.Marshal(e.Attrs)
			return cw.Write([]string{strconv.FormatInt(e.ID, 10), e.Time.Format(time.RFC3339Nano), e.Received.Format(time.RFC3339Nano),
				e.Gateway, strconv.FormatUint(e.Session, 10), strconv.FormatUint(e.Seq, 10), csvSafe(e.Kind), e.Severity, csvSafe(e.Device),
				csvSafe(e.Identity), strconv.FormatBool(e.Historical), csvSafe(string(attrs))})
		})
		cw.Flush()
		if err != nil {
			s.log.Warn("csv export ended early", "err", err)
		}
		return
	case "jsonl", "ndjson":
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Content-Disposition", `attachment; filename="wardgate-events.jsonl"`)
		enc := json.NewEncoder(w)
		_, err = s.o.Store.Events(r.Context(), q, func(e store.Event) error { return enc.Encode(e) })
		if err != nil {
			s.log.Warn("json export ended early", "err", err)
		}
		return
	case "", "json":
	default:
		apiError(w, http.StatusBadRequest, "format must be json, jsonl or csv")
		return
	}
	q.Limit = 1000
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 10000 {
			apiError(w, http.StatusBadRequest, "limit must be 1..10000")
			return
		}
		q.Limit = n
	}
	evs := []store.Event{}
	next, err := s.o.Store.Events(r.Context(), q, func(e store.Event) error { evs = append(evs, e); return nil })
	if err != nil {
		s.internal(w, err)
		return
	}
	resp := map[string]any{"events": evs}
	if len(evs) == q.Limit {
		resp["next_cursor"] = strconv.FormatInt(next, 10)
	}
	writeJSON(w, http.StatusOK, resp)
}

// csvSafe defuses spreadsheet formulas in exported cells.
func csvSafe(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

// metrics writes central's own health in the Prometheus text format.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	s.count("metrics")
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	p := func(name, help, typ string, v any) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", name, help, name, typ, name, v)
	}
	p("wardgate_central_uptime_seconds", "Seconds since central started.", "gauge", int64(s.clock.Since(s.started).Seconds()))
	if t, err := s.o.Store.Totals(r.Context()); err == nil {
		p("wardgate_central_gateways", "Gateways known.", "gauge", t.Gateways)
		p("wardgate_central_gateways_online", "Gateways online.", "gauge", t.Online)
		p("wardgate_central_gateways_stale", "Gateways whose data is stale (waiting for a resync).", "gauge", t.Stale)
		p("wardgate_central_events_stored", "Events in the database.", "gauge", t.Events)
		p("wardgate_central_findings_open", "Open security findings.", "gauge", t.OpenFindings)
		p("wardgate_central_alarms_active", "Active gateway alarms.", "gauge", t.ActiveAlarms)
		p("wardgate_central_store_up", "1 when the database answers.", "gauge", 1)
	} else {
		p("wardgate_central_store_up", "1 when the database answers.", "gauge", 0)
	}
	if s.o.Stats != nil {
		st := s.o.Stats()
		c := func(name, help string, v uint64) { p("wardgate_central_"+name+"_total", help, "counter", v) }
		c("messages_received", "MQTT messages received.", st.Received)
		c("messages_verified", "Messages whose signature and chain verified.", st.Verified)
		c("messages_rejected", "Messages that did not verify (stored as findings).", st.Rejected)
		c("messages_duplicate", "Redelivered messages skipped.", st.Duplicates)
		c("messages_late", "Messages that arrived after their gap was recorded.", st.Late)
		c("messages_stored", "Messages applied to the database.", st.Stored)
		c("gaps", "Sequence gaps recorded.", st.Gaps)
		c("resyncs", "Resync requests sent to gateways.", st.Resyncs)
		c("findings_folded", "Findings not stored because of a flood (over 20 a minute per gateway and kind).", st.FindingsFolded)
		p("wardgate_central_messages_held", "Out-of-order messages waiting for missing ones.", "gauge", st.Held)
		conn := 0
		if st.Connected {
			conn = 1
		}
		p("wardgate_central_mqtt_connected", "1 while subscribed to the broker.", "gauge", conn)
		name := "wardgate_central_store_latency_seconds"
		fmt.Fprintf(w, "# HELP %s Message time to database commit.\n# TYPE %s histogram\n", name, name)
		var acc uint64
		for i, b := range ingest.Buckets {
			acc += st.StoreLatency.Counts[i]
			fmt.Fprintf(w, "%s_bucket{le=\"%g\"} %d\n", name, b, acc)
		}
		acc += st.StoreLatency.Counts[len(ingest.Buckets)]
		fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n%s_sum %g\n%s_count %d\n", name, acc, name, st.StoreLatency.Sum, name, st.StoreLatency.N)
	}
	s.mu.Lock()
	classes := make([]string, 0, len(s.reqs))
	for k := range s.reqs {
		classes = append(classes, k)
	}
	sort.Strings(classes)
	fmt.Fprintf(w, "# HELP wardgate_central_http_requests_total HTTP requests served.\n# TYPE wardgate_central_http_requests_total counter\n")
	for _, k := range classes {
		fmt.Fprintf(w, "wardgate_central_http_requests_total{class=%q} %d\n", k, s.reqs[k])
	}
	fmt.Fprintf(w, "# HELP wardgate_central_live_clients Connected live pages.\n# TYPE wardgate_central_live_clients gauge\nwardgate_central_live_clients %d\n", len(s.clients))
	s.mu.Unlock()
}
