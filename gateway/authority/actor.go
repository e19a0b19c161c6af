package authority

import (
	"encoding/json"
	"fmt"
	"strings"
)

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

// Person names the human behind the actor for dual control: the user name
// of an admin-socket caller (uid=N when the name is unknown), the PERSON
// segment of an approver identity (spiffe://TD/approver/ROLE/PERSON), and
// "" for the approve button and the system (nobody in particular).
// Dual control compares persons case-insensitively: the local user jdoe and
// the approver .../approver/biomed/jdoe are the same person, and so are two
// roles of one approver.
func (a Actor) Person() string {
	switch {
	case a.Kind == KindCentral:
		i := strings.LastIndexByte(a.Approver, '/')
		return strings.ToLower(a.Approver[i+1:])
	case a.Kind == KindLocal && a.Via == "button":
		return ""
	case a.Kind == KindLocal && a.Name != "":
		return strings.ToLower(a.Name)
	case a.Kind == KindLocal:
		return fmt.Sprintf("uid=%d", a.UID)
	}
	return ""
}

// SamePerson reports whether a and b are known to be the same person.
func SamePerson(a, b Actor) bool {
	pa, pb := a.Person(), b.Person()
	return pa != "" && pa == pb
}

// MarshalJSON adds "id", the actor as String prints it, to the fields, so
// that every --json output and stored record names the actor the same way
// events do. Decoding ignores it.
func (a Actor) MarshalJSON() ([]byte, error) {
	type plain Actor
	return json.Marshal(struct {
		plain
		ID string `json:"id"`
	}{plain(a), a.String()})
}
