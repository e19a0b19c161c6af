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
	"github.com/wardgate/wardgate/wire/command"
)

// adminRoutes is the admin API (docs/security-team.md documents the JSON).
// Routes that change access run the same operations as central commands
// (ops.go); the actor is the local caller.
//
//	GET    /v1/status                     Status
//	GET    /v1/grants                     access.Snapshot
//	POST   /v1/grants/{id}/approve        the grant after approval
//	POST   /v1/grants/{id}/deny|revoke    the grant after the change
//	GET    /v1/locks                      []access.Lock
//	POST   /v1/locks {identity, for, reason}
//	DELETE /v1/locks?identity=URI
//	POST   /v1/tamper/clear
//	POST   /v1/clock/reset                trusted-time mark := clock (local actor)
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
		switch action := r.PathValue("action"); action {
		case command.Approve, command.Deny, command.Revoke:
			a.serveOp(w, action, localActor(r), opRequest{Grant: r.PathValue("id")})
		default:
			admin.WriteError(w, http.StatusNotFound, "unknown action; use approve, deny or revoke")
		}
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
		var d time.Duration
		if in.For != "" {
			var err error
			if d, err = config.ParseDuration(in.For); err != nil || d <= 0 {
				admin.WriteError(w, http.StatusBadRequest, "for: give a positive duration such as 12h or 30d")
				return
			}
		}
		a.serveOp(w, command.Lock, localActor(r), opRequest{Target: in.Identity, For: d, Reason: in.Reason})
	})
	mux.HandleFunc("DELETE /v1/locks", func(w http.ResponseWriter, r *http.Request) {
		a.serveOp(w, command.Unlock, localActor(r), opRequest{Target: r.URL.Query().Get("identity")})
	})
	mux.HandleFunc("POST /v1/tamper/clear", func(w http.ResponseWriter, r *http.Request) {
		a.serveOp(w, command.ClearTamper, localActor(r), opRequest{})
	})
	mux.HandleFunc("POST /v1/clock/reset", func(w http.ResponseWriter, r *http.Request) {
		if err := a.auth.ResetTrustedTime(localActor(r)); err != nil {
			admin.WriteError(w, accessStatus(err), err.Error())
			return
		}
		admin.WriteJSON(w, http.StatusOK, map[string]any{"trusted_time": a.auth.TrustedTime()})
	})
	a.halRoutes(mux)
	return mux
}

// serveOp runs an operation for the admin API and writes its result. A lock
// in force but not saved is a success with an alarm (see opLock).
func (a *Agent) serveOp(w http.ResponseWriter, name string, actor authority.Actor, r opRequest) {
	res, err := a.do(name, actor, r)
	if err != nil && !(name == command.Lock && errors.Is(err, authority.ErrNotSaved)) {
		admin.WriteError(w, accessStatus(err), err.Error())
		return
	}
	admin.WriteJSON(w, http.StatusOK, res.Value)
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
		errors.Is(err, authority.ErrTamperActive), errors.Is(err, access.ErrNoneOrMany), errors.Is(err, access.ErrNoSession),
		errors.Is(err, access.ErrSamePerson), errors.Is(err, access.ErrBinding), errors.Is(err, authority.ErrClockBehind):
		return http.StatusConflict
	case errors.Is(err, access.ErrPolicy):
		return http.StatusForbidden
	case errors.Is(err, access.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}
