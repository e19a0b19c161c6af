package authority

import (
	"errors"
	"fmt"
	"strings"

	"github.com/wardgate/wardgate/certs"
)

// ErrBadTarget: a lock target is not an identity or prefix this gateway can
// lock. The wrapping message says what to use instead.
var ErrBadTarget = errors.New("invalid lock target")

// Target is a validated lock target: an exact SPIFFE ID, or a prefix pattern
// ("spiffe://TD/vendor/acme-medical/*") that matches every identity below
// the prefix, at any depth. The zero Target matches nothing.
type Target struct {
	src    string
	prefix string // non-empty for prefix patterns: "spiffe://TD/vendor/acme-medical/"
}

// String returns the target as given (trimmed).
func (t Target) String() string { return t.src }

// Prefix tells whether t is a prefix pattern.
func (t Target) Prefix() bool { return t.prefix != "" }

// Match reports whether identity (a SPIFFE URI) is covered by t.
func (t Target) Match(identity string) bool {
	if t.src == "" {
		return false
	}
	if t.prefix != "" {
		return strings.HasPrefix(identity, t.prefix) && len(identity) > len(t.prefix)
	}
	return identity == t.src
}

// ParseTarget validates s as a lock target under trustDomain. It refuses
// "*" and other bare wildcards, non-URIs, other trust domains, wildcards
// anywhere but a final "/*", a prefix that names no path segment (it would
// lock out everyone), and a prefix covering every approver (nobody could
// lift the lock from central). Errors wrap ErrBadTarget and say what to use.
func ParseTarget(s, trustDomain string) (Target, error) {
	s = strings.TrimSpace(s)
	base := "spiffe://" + trustDomain + "/"
	example := fmt.Sprintf("use an identity such as %svendor/ORG/PERSON or a prefix such as %svendor/ORG/*", base, base)
	switch {
	case s == "":
		return Target{}, fmt.Errorf("%w: the identity is empty: %s", ErrBadTarget, example)
	case !strings.HasPrefix(s, "spiffe://"):
		return Target{}, fmt.Errorf("%w: %q is not a SPIFFE URI: %s", ErrBadTarget, clip(s), example)
	case !strings.HasPrefix(s, base):
		return Target{}, fmt.Errorf("%w: %q is not under this gateway's trust domain %s: %s", ErrBadTarget, clip(s), trustDomain, example)
	}
	rest := s[len(base):]
	prefix := false
	if r, ok := strings.CutSuffix(rest, "/*"); ok {
		rest, prefix = r, true
	}
	if rest == "" || rest == "*" || rest == "**" {
		return Target{}, fmt.Errorf("%w: %q would lock every identity: %s", ErrBadTarget, clip(s), example)
	}
	segs := strings.Split(rest, "/")
	for _, seg := range segs {
		if strings.Contains(seg, "*") {
			return Target{}, fmt.Errorf("%w: %q: a wildcard is allowed only as the final /*: %s", ErrBadTarget, clip(s), example)
		}
	}
	if _, err := certs.CompilePattern(base + rest); err != nil {
		return Target{}, fmt.Errorf("%w: %v", ErrBadTarget, strings.TrimPrefix(err.Error(), certs.ErrBadPattern.Error()+": "))
	}
	switch segs[0] {
	case "vendor", "svc", "approver", "gateway":
	default:
		return Target{}, fmt.Errorf("%w: %q: identities start with vendor/, svc/, approver/ or gateway/: %s", ErrBadTarget, clip(s), example)
	}
	if !prefix {
		if _, err := certs.ParseIdentity(s, trustDomain); err != nil {
			return Target{}, fmt.Errorf("%w: %q is not a complete identity (%v): add /* to lock a prefix, or %s", ErrBadTarget, clip(s), err, example)
		}
	}
	if prefix && segs[0] == "approver" && len(segs) == 1 {
		return Target{}, fmt.Errorf("%w: %q would lock out every approver, and nobody could unlock it from central: lock one approver or one role (%sapprover/ROLE/*)", ErrBadTarget, clip(s), base)
	}
	if prefix && segs[0] == "gateway" && len(segs) == 1 {
		return Target{}, fmt.Errorf("%w: %q would lock every gateway: lock one gateway (%sgateway/ID)", ErrBadTarget, clip(s), base)
	}
	t := Target{src: s}
	if prefix {
		t.prefix = base + rest + "/"
	}
	return t, nil
}

// clip caps untrusted text quoted in messages.
func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
