package authority

import "fmt"

// Actor kinds.
const (
	KindLocal   = "local"   // approve button or the admin socket on the gateway
	KindCentral = "central" // a signed command from an approver identity
	KindSystem  = "system"  // the gateway itself (expiry, tamper, lock)
)

// Actor is who made a change. The zero value is invalid.
type Actor struct {
	Kind     string `json:"kind"`               // KindLocal, KindCentral or KindSystem
	Via      string `json:"via,omitempty"`      // "button", "admin" (admin socket), "command", "expiry"
	UID      int    `json:"uid"`                // admin socket caller's uid (Via "admin")
	Name     string `json:"name,omitempty"`     // admin socket caller's user name (Via "admin")
	Approver string `json:"approver,omitempty"` // central approver identity URI
}

// String names the actor as events, status and recordings show it:
// "local:NAME(uid=N)", "local:button", "central:URI", "system:VIA".
func (a Actor) String() string {
	switch {
	case a.Kind == KindCentral:
		return "central:" + a.Approver
	case a.Kind == KindLocal && a.Via == "button":
		return "local:button"
	case a.Kind == KindLocal && a.Name != "":
		return fmt.Sprintf("local:%s(uid=%d)", a.Name, a.UID)
	case a.Kind == KindLocal:
		return fmt.Sprintf("local:uid=%d", a.UID)
	}
	if a.Via != "" {
		return a.Kind + ":" + a.Via
	}
	return a.Kind
}

// Valid tells whether the actor names a kind and, for central, an approver.
func (a Actor) Valid() bool {
	switch a.Kind {
	case KindLocal, KindSystem:
		return true
	case KindCentral:
		return a.Approver != ""
	}
	return false
}
