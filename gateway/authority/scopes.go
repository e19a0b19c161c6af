package authority

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/config"
)

// ErrNotPermitted: no approvers entry covers the identity, action and
// device of a central command. The error's text names the missing scope.
var ErrNotPermitted = errors.New("not permitted")

// EvRefused is the event of a central command refused for lack of scope.
const EvRefused = "authority.refused"

// DeviceRef names the device a command acts on. The zero value is the
// gateway as a whole (lock, unlock, clear-tamper, rebirth, inventory) or a
// grant or session that does not exist.
type DeviceRef struct {
	ID   string
	Kind string
}

func (d DeviceRef) String() string {
	switch {
	case d.ID == "":
		return "the whole gateway"
	case d.Kind != "":
		return "device " + d.ID + " (kind " + d.Kind + ")"
	}
	return "device " + d.ID
}

// GatewayWide reports whether action acts on the whole gateway and
// therefore needs an approvers entry with devices ["*"]: lock, unlock and
// clear-tamper. Rebirth and inventory change nothing and need the action
// only.
func GatewayWide(action string) bool {
	switch action {
	case config.ActionLock, config.ActionUnlock, config.ActionClearTamper:
		return true
	}
	return false
}

type scope struct {
	identities []certs.Pattern
	actions    []string
	devices    []string
}

// Scopes are the compiled approvers section. A nil *Scopes (no approvers
// section) permits everything; an empty one permits nothing. Scopes are
// immutable and safe for concurrent use.
type Scopes struct {
	scopes []scope
}

// CompileScopes compiles validated approvers entries. It fails only on an
// identity pattern that does not compile.
func CompileScopes(entries []config.Approver) (*Scopes, error) {
	s := &Scopes{}
	var errs []error
	for i, e := range entries {
		ps, err := certs.CompilePatterns(e.Identities)
		if err != nil {
			errs = append(errs, fmt.Errorf("approvers[%d]: %w", i, err))
			continue
		}
		s.scopes = append(s.scopes, scope{identities: ps, actions: slices.Clone(e.Actions), devices: slices.Clone(e.Devices)})
	}
	return s, errors.Join(errs...)
}

// covers reports whether the device list covers d.
func covers(devices []string, d DeviceRef) bool {
	for _, want := range devices {
		switch k, isKind := strings.CutPrefix(want, "kind:"); {
		case want == "*":
			return true
		case d.ID == "":
		case isKind && k == d.Kind && d.Kind != "":
			return true
		case !isKind && want == d.ID:
			return true
		}
	}
	return false
}

// Permit decides whether approver identity may run action on dev. A nil
// Scopes permits everything. On refusal the error wraps ErrNotPermitted
// and says which scope is missing: no entry for the identity, no entry
// granting the action, or none granting it on that device.
func (s *Scopes) Permit(identity, action string, dev DeviceRef) error {
	if s == nil {
		return nil
	}
	if GatewayWide(action) {
		dev = DeviceRef{}
	}
	var mine, withAction []scope
	for _, sc := range s.scopes {
		if certs.MatchAny(sc.identities, identity) {
			mine = append(mine, sc)
			if slices.Contains(sc.actions, action) {
				withAction = append(withAction, sc)
			}
		}
	}
	if len(mine) == 0 {
		return fmt.Errorf("%w: no approvers entry names %s (missing scope: identities)", ErrNotPermitted, identity)
	}
	if len(withAction) == 0 {
		return fmt.Errorf("%w: no approvers entry of %s allows %s (missing scope: action %s)", ErrNotPermitted, identity, action, action)
	}
	if action == config.ActionRebirth || action == config.ActionInventory {
		return nil
	}
	for _, sc := range withAction {
		if covers(sc.devices, dev) {
			return nil
		}
	}
	need := dev.ID
	if need == "" {
		need = `"*"`
	}
	return fmt.Errorf("%w: no approvers entry of %s allows %s on %s (missing scope: %s on %s)", ErrNotPermitted, identity, action, dev, action, need)
}

// SetScopes installs the approvers scopes (nil: no approvers section,
// every approver may do everything). Called at start and on reload.
func (a *Authority) SetScopes(s *Scopes) {
	a.mu.Lock()
	a.scopes, a.scopesSet = s, true
	a.mu.Unlock()
}

// Permit checks a central command by approver against the scopes set with
// SetScopes. A refusal is reported as an EvRefused event (approver, action,
// device and the missing scope) and returned wrapping ErrNotPermitted.
func (a *Authority) Permit(approver, action string, dev DeviceRef) error {
	a.mu.Lock()
	s := a.scopes
	a.mu.Unlock()
	err := s.Permit(approver, action, dev)
	if err == nil {
		return nil
	}
	now := a.clock.Now()
	a.log.Warn("central command refused: outside the approver's scope", "approver", approver, "action", action, "device", dev.ID)
	a.emit(Event{Time: now, Kind: EvRefused, Action: action, Device: dev.ID, Reason: err.Error(),
		Actor: Actor{Kind: KindCentral, Via: "command", Approver: approver}})
	return err
}
