package web

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"

	"github.com/wardgate/wardgate/central/commands"
	"github.com/wardgate/wardgate/central/store"
)

// The commands page templates join the page set (pages.go).
func init() {
	for _, name := range []string{"commands", "command"} {
		pages[name] = template.Must(template.New("layout").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
}

// SubmitRequest is the body of POST /api/v1/commands and
// POST /api/v1/locksets: the signed bytes (COSE_Sign1 of a command, or the
// CBOR array of a lock set's signatures), base64, and for a command an
// optional note (not signed, at most 1000 characters).
type SubmitRequest struct {
	Signed string `json:"signed"`
	Note   string `json:"note,omitempty"`
}

func (s *Server) commandRoutes() {
	m := s.mux
	m.HandleFunc("GET /api/v1/commands", s.apiCommands)
	m.HandleFunc("GET /api/v1/commands/{id}", s.apiCommand)
	m.HandleFunc("POST /api/v1/commands", s.apiSubmitCommand)
	m.HandleFunc("GET /api/v1/locksets", s.apiLockSets)
	m.HandleFunc("GET /api/v1/locksets/{scope...}", s.apiLockSet)
	m.HandleFunc("POST /api/v1/locksets", s.apiSubmitLockSet)
	m.HandleFunc("GET /commands", s.pageCommands)
	m.HandleFunc("GET /commands/{id}", s.pageCommand)
}

func (s *Server) apiCommands(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	limit := 1000
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			apiError(w, http.StatusBadRequest, "limit must be a number from 1 to 10000")
			return
		}
		limit = n
	}
	cs, err := s.o.Store.Commands(r.Context(), limit)
	if err != nil {
		s.internal(w, err)
		return
	}
	for i := range cs {
		cs[i].Signed = nil
	}
	writeJSON(w, http.StatusOK, map[string]any{"commands": cs})
}

func (s *Server) apiCommand(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	c, err := s.o.Store.Command(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		apiError(w, http.StatusNotFound, fmt.Sprintf("no command %q (GET /api/v1/commands lists them)", r.PathValue("id")))
		return
	}
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"command": c})
}

// submission decodes a SubmitRequest; it answers the error itself.
func (s *Server) submission(w http.ResponseWriter, r *http.Request) ([]byte, string, bool) {
	if s.o.Commands == nil {
		apiError(w, http.StatusServiceUnavailable, "this central does not queue commands")
		return nil, "", false
	}
	var req SubmitRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 2<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "body must be {\"signed\": \"BASE64\", \"note\": \"...\"}: "+err.Error())
		return nil, "", false
	}
	signed, err := base64.StdEncoding.DecodeString(req.Signed)
	if err != nil || len(signed) == 0 {
		apiError(w, http.StatusBadRequest, "signed must be the signed bytes in standard base64")
		return nil, "", false
	}
	return signed, req.Note, true
}

func submitStatus(err error) int {
	switch {
	case errors.Is(err, commands.ErrNotSigner):
		return http.StatusForbidden
	case errors.Is(err, commands.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, commands.ErrInvalid):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func (s *Server) apiSubmitCommand(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	signed, note, ok := s.submission(w, r)
	if !ok {
		return
	}
	c, err := s.o.Commands.Submit(r.Context(), signed, userOf(r), note)
	if err != nil {
		if code := submitStatus(err); code != http.StatusInternalServerError {
			s.log.Warn("command refused", "user", userOf(r), "err", err)
			apiError(w, code, err.Error())
			return
		}
		s.internal(w, err)
		return
	}
	c.Signed = nil
	writeJSON(w, http.StatusCreated, map[string]any{"command": c})
}

func (s *Server) apiLockSets(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	ls, err := commands.LockSets(r.Context(), s.o.Store)
	if err != nil {
		s.internal(w, err)
		return
	}
	for i := range ls {
		ls[i].Signed = nil
	}
	writeJSON(w, http.StatusOK, map[string]any{"locksets": ls})
}

func (s *Server) apiLockSet(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	scope := r.PathValue("scope")
	ls, err := commands.LockSet(r.Context(), s.o.Store, scope)
	if errors.Is(err, store.ErrNotFound) {
		apiError(w, http.StatusNotFound, fmt.Sprintf("no lock set for scope %q (fleet, site/SITE or gateway/ID)", scope))
		return
	}
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"lockset": ls})
}

func (s *Server) apiSubmitLockSet(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	signed, _, ok := s.submission(w, r)
	if !ok {
		return
	}
	ls, err := s.o.Commands.SubmitLockSet(r.Context(), signed, userOf(r))
	if err != nil {
		if code := submitStatus(err); code != http.StatusInternalServerError {
			s.log.Warn("lock set refused", "user", userOf(r), "err", err)
			apiError(w, code, err.Error())
			return
		}
		s.internal(w, err)
		return
	}
	ls.Signed = nil
	writeJSON(w, http.StatusCreated, map[string]any{"lockset": ls})
}

type commandsPage struct {
	Commands []store.Command
	LockSets []commands.LockSetView
	States   []string
}

func (s *Server) pageCommands(w http.ResponseWriter, r *http.Request) {
	cs, err := s.o.Store.Commands(r.Context(), 200)
	if err != nil {
		s.pageError(w, err)
		return
	}
	ls, err := commands.LockSets(r.Context(), s.o.Store)
	if err != nil {
		s.pageError(w, err)
		return
	}
	s.render(w, r, "commands", "Commands", commandsPage{Commands: cs, LockSets: ls, States: store.TargetStates})
}

func (s *Server) pageCommand(w http.ResponseWriter, r *http.Request) {
	c, err := s.o.Store.Command(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		http.Error(w, "no such command", http.StatusNotFound)
		return
	}
	if err != nil {
		s.pageError(w, err)
		return
	}
	s.render(w, r, "command", "Command "+c.ID, c)
}
