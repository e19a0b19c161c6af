package agent

import (
	"errors"
	"net/http"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/admin"
	"github.com/wardgate/wardgate/gateway/authority"
)

// adminRoutes is the admin API (docs/security-team.md documents the JSON).
//
//	GET    /v1/status                     Status
//	GET    /v1/grants                     access.Snapshot
//	POST   /v1/grants/{id}/approve        the grant after approval
//	POST   /v1/grants/{id}/deny|revoke    the grant after the change
//	GET    /v1/locks                      []access.Lock
//	POST   /v1/locks {identity, for, reason}
//	DELETE /v1/locks?identity=URI
//	POST   /v1/tamper/clear
//	GET    /v1/hal                        simulated hardware state
//	POST   /v1/hal/press {name, hold}     simulated hardware only
//	POST   /v1/hal/tamper {open}          simulated hardware only
//	POST   /v1/update/journal             emit the update steps journaled since
func (a *Agent) adminRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/update/journal", func(w http.ResponseWriter, r *http.Request) {
		admin.WriteJSON(w, http.StatusOK, map[string]int{"emitted": a.emitUpdateJournal()})
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		admin.WriteJSON(w, http.StatusOK, a.Status())
	})
	mux.HandleFunc("GET /v1/grants", func(w http.ResponseWriter, r *http.Request) {
		admin.WriteJSON(w, http.StatusOK, a.access.Snapshot())
	})
	mux.HandleFunc("POST /v1/grants/{id}/{action}", func(w http.ResponseWriter, r *http.Request) {
		id, actor := r.PathValue("id"), localActor(r)
		var err error
		switch r.PathValue("action") {
		case "approve":
			_, err = a.access.Approve(id, actor)
		case "deny":
			err = a.access.Deny(id, actor)
		case "revoke":
			err = a.access.Revoke(id, actor)
		default:
			admin.WriteError(w, http.StatusNotFound, "unknown action; use approve, deny or revoke")
			return
		}
		if err != nil {
			admin.WriteError(w, accessStatus(err), err.Error())
			return
		}
		admin.WriteJSON(w, http.StatusOK, a.grant(id))
	})
	mux.HandleFunc("GET /v1/locks", func(w http.ResponseWriter, r *http.Request) {
		admin.WriteJSON(w, http.StatusOK, a.auth.Locks())
	})
	mux.HandleFunc("POST /v1/locks", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Identity string `json:"identity"`
			For      string `json:"for"`
			Reason   string `json:"reason"`
		}
		if err := admin.ReadJSON(r, &in); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		var until time.Time
		if in.For != "" {
			d, err := config.ParseDuration(in.For)
			if err != nil || d <= 0 {
				admin.WriteError(w, http.StatusBadRequest, "for: give a positive duration such as 12h or 30d")
				return
			}
			until = a.clock.Now().Add(d)
		}
		l, err := a.lock(in.Identity, until, in.Reason, localActor(r))
		if err != nil && !errors.Is(err, authority.ErrNotSaved) {
			admin.WriteError(w, accessStatus(err), err.Error())
			return
		}
		admin.WriteJSON(w, http.StatusOK, l)
	})
	mux.HandleFunc("DELETE /v1/locks", func(w http.ResponseWriter, r *http.Request) {
		if err := a.auth.RemoveLock(r.URL.Query().Get("identity"), localActor(r)); err != nil {
			admin.WriteError(w, accessStatus(err), err.Error())
			return
		}
		admin.WriteJSON(w, http.StatusOK, map[string]bool{"removed": true})
	})
	mux.HandleFunc("POST /v1/tamper/clear", func(w http.ResponseWriter, r *http.Request) {
		if err := a.clearTamper(localActor(r)); err != nil {
			admin.WriteError(w, accessStatus(err), err.Error())
			return
		}
		admin.WriteJSON(w, http.StatusOK, map[string]bool{"cleared": true})
	})
	a.halRoutes(mux)
	return mux
}

// localActor is the admin socket caller.
func localActor(r *http.Request) authority.Actor {
	uid := admin.PeerUID(r)
	return authority.Actor{Kind: authority.KindLocal, Via: "admin", UID: uid, Name: userName(uid)}
}

// userName names uid from the user database ("" when unknown), so actions
// are recorded as local:NAME(uid=N) rather than a bare number.
func userName(uid int) string {
	if uid < 0 {
		return ""
	}
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return ""
	}
	return u.Username
}

// lock adds a lock through the authority; a lock in force but not saved
// raises an alarm and is returned with the error.
func (a *Agent) lock(target string, until time.Time, reason string, actor authority.Actor) (authority.Lock, error) {
	l, err := a.auth.AddLock(target, until, reason, actor)
	if errors.Is(err, authority.ErrNotSaved) {
		a.raise("state_not_saved", "a lock is in force but could not be saved to the state directory (is the disk full?); it will be lost at restart: "+err.Error())
	}
	return l, err
}

func (a *Agent) grant(id string) access.Grant {
	s := a.access.Snapshot()
	for _, list := range [][]access.Grant{s.Requests, s.Grants, s.Recent} {
		for _, g := range list {
			if strings.EqualFold(g.ID, strings.TrimSpace(id)) {
				return g
			}
		}
	}
	return access.Grant{ID: id}
}

func accessStatus(err error) int {
	switch {
	case errors.Is(err, access.ErrNotFound), errors.Is(err, authority.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, access.ErrNotPending), errors.Is(err, access.ErrNotActive), errors.Is(err, access.ErrAlreadyApproved),
		errors.Is(err, authority.ErrTamperActive), errors.Is(err, access.ErrNoneOrMany), errors.Is(err, access.ErrNoSession):
		return http.StatusConflict
	case errors.Is(err, access.ErrPolicy):
		return http.StatusForbidden
	case errors.Is(err, access.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}
