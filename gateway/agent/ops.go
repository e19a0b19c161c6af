package agent

import (
	"fmt"
	"time"

	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/authority"
	"github.com/wardgate/wardgate/wire/command"
)

// Operations are what a person may do to the gateway, whoever asks: a local
// person over the admin socket (adminRoutes) or an approver through a
// signed central command (command). Each operation has one implementation
// in this table; the two front doors only translate their request into an
// opRequest and the opResult back, so they cannot drift apart. Operation
// names are the central command names (wire/command).
var operations = map[string]operation{
	command.Approve:     opApprove,
	command.Deny:        opDeny,
	command.Revoke:      opRevoke,
	command.EndSession:  opEndSession,
	command.Lock:        opLock,
	command.Unlock:      opUnlock,
	command.ClearTamper: opClearTamper,
}

type operation func(a *Agent, actor authority.Actor, r opRequest) (opResult, error)

// opRequest carries the arguments of every operation; each reads its own.
type opRequest struct {
	Grant   string          // approve, deny, revoke
	Binding *access.Binding // approve: what a signed approval approved (nil: the grant as it stands)
	Session string          // end-session
	Target  string          // lock, unlock: a SPIFFE ID or prefix pattern
	For     time.Duration   // lock: how long; 0 until removed
	Reason  string          // lock
}

// opResult is what an operation did: Value for the admin API's JSON,
// Summary for a central command's reply.
type opResult struct {
	Value   any
	Summary string
}

// do runs operation name for actor.
func (a *Agent) do(name string, actor authority.Actor, r opRequest) (opResult, error) {
	op, ok := operations[name]
	if !ok {
		return opResult{}, fmt.Errorf("operation %s is not handled by this gateway", name)
	}
	return op(a, actor, r)
}

func opApprove(a *Agent, actor authority.Actor, r opRequest) (opResult, error) {
	g, err := a.access.ApproveBound(r.Grant, actor, r.Binding)
	if err != nil {
		return opResult{}, err
	}
	res := opResult{Value: a.grant(g.ID)}
	if g.State == access.StateActive {
		res.Summary = fmt.Sprintf("grant %s active until %s", g.ID, g.Deadline.UTC().Format(time.RFC3339))
	} else {
		res.Summary = fmt.Sprintf("approval recorded; %s still needs %v", g.ID, g.Policy)
	}
	return res, nil
}

func opDeny(a *Agent, actor authority.Actor, r opRequest) (opResult, error) {
	if err := a.access.Deny(r.Grant, actor); err != nil {
		return opResult{}, err
	}
	return opResult{Value: a.grant(r.Grant), Summary: "denied"}, nil
}

func opRevoke(a *Agent, actor authority.Actor, r opRequest) (opResult, error) {
	if err := a.access.Revoke(r.Grant, actor); err != nil {
		return opResult{}, err
	}
	return opResult{Value: a.grant(r.Grant), Summary: "revoked"}, nil
}

func opEndSession(a *Agent, actor authority.Actor, r opRequest) (opResult, error) {
	if err := a.access.EndSession(r.Session, actor); err != nil {
		return opResult{}, err
	}
	return opResult{Value: map[string]bool{"ended": true}, Summary: "session ended"}, nil
}

// opLock adds a lock. A lock in force but not saved (authority.ErrNotSaved)
// raises an alarm and is returned with the error: callers decide whether
// that counts as done.
func opLock(a *Agent, actor authority.Actor, r opRequest) (opResult, error) {
	var until time.Time
	if r.For > 0 {
		until = a.clock.Now().Add(r.For)
	}
	l, err := a.lock(r.Target, until, r.Reason, actor)
	return opResult{Value: l, Summary: "locked"}, err
}

func opUnlock(a *Agent, actor authority.Actor, r opRequest) (opResult, error) {
	if err := a.auth.RemoveLock(r.Target, actor); err != nil {
		return opResult{}, err
	}
	return opResult{Value: map[string]bool{"removed": true}, Summary: "unlocked"}, nil
}

func opClearTamper(a *Agent, actor authority.Actor, _ opRequest) (opResult, error) {
	if err := a.clearTamper(actor); err != nil {
		return opResult{}, err
	}
	return opResult{Value: map[string]bool{"cleared": true}, Summary: "tamper cleared"}, nil
}
