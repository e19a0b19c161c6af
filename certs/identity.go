package certs

import (
	"crypto/x509"
	"fmt"
	"strings"
)

// Kind is the kind of a SPIFFE identity.
type Kind int

// Identity kinds: the first path segment of the SPIFFE ID.
const (
	KindUnknown  Kind = iota
	KindGateway       // spiffe://TD/gateway/ID
	KindVendor        // spiffe://TD/vendor/ORG/PERSON
	KindService       // spiffe://TD/svc/NAME
	KindApprover      // spiffe://TD/approver/ROLE/PERSON
)

// String returns the kind's path segment ("gateway", "vendor", "svc",
// "approver") or "unknown".
func (k Kind) String() string {
	switch k {
	case KindGateway:
		return "gateway"
	case KindVendor:
		return "vendor"
	case KindService:
		return "svc"
	case KindApprover:
		return "approver"
	}
	return "unknown"
}

const spiffeScheme = "spiffe://"

// Identity is a typed SPIFFE identity. Only the fields of its Kind are set:
// Gateway (KindGateway), Org and Person (KindVendor), Service (KindService),
// Role and Person (KindApprover). URI is the canonical URI.
type Identity struct {
	Kind        Kind
	TrustDomain string
	Gateway     string
	Org         string
	Person      string
	Service     string
	Role        string
	URI         string
}

// String returns the identity's URI.
func (id Identity) String() string { return id.URI }

// GatewayURI, VendorURI, ServiceURI and ApproverURI build identity URIs.
func GatewayURI(td, id string) string { return spiffeScheme + td + "/gateway/" + id }

// VendorURI builds spiffe://TD/vendor/ORG/PERSON.
func VendorURI(td, org, person string) string {
	return spiffeScheme + td + "/vendor/" + org + "/" + person
}

// ServiceURI builds spiffe://TD/svc/NAME.
func ServiceURI(td, name string) string { return spiffeScheme + td + "/svc/" + name }

// ApproverURI builds spiffe://TD/approver/ROLE/PERSON.
func ApproverURI(td, role, person string) string {
	return spiffeScheme + td + "/approver/" + role + "/" + person
}

// splitSPIFFE splits a spiffe:// URI into its trust domain and path
// segments, checking the SPIFFE character rules.
func splitSPIFFE(uri string) (td string, segs []string, err error) {
	if !strings.HasPrefix(uri, spiffeScheme) {
		return "", nil, fmt.Errorf("%q does not start with spiffe://", uri)
	}
	rest := uri[len(spiffeScheme):]
	parts := strings.Split(rest, "/")
	td = parts[0]
	if err := checkTrustDomain(td); err != nil {
		return "", nil, fmt.Errorf("%q: %w", uri, err)
	}
	segs = parts[1:]
	for _, s := range segs {
		if err := checkSegment(s); err != nil {
			return "", nil, fmt.Errorf("%q: %w", uri, err)
		}
	}
	return td, segs, nil
}

func checkTrustDomain(td string) error {
	if td == "" {
		return fmt.Errorf("empty trust domain")
	}
	if len(td) > 255 {
		return fmt.Errorf("trust domain too long")
	}
	for _, c := range td {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("trust domain %q: only lowercase letters, digits, '.', '-' and '_' are allowed", td)
		}
	}
	return nil
}

func checkSegment(s string) error {
	if s == "" {
		return fmt.Errorf("empty path segment")
	}
	if s == "." || s == ".." {
		return fmt.Errorf("path segment %q not allowed", s)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("path segment %q: only letters, digits, '.', '-' and '_' are allowed", s)
		}
	}
	return nil
}

// ParseIdentity parses a SPIFFE URI of a known kind under trustDomain. It
// fails with an error wrapping ErrBadIdentity on any other URI.
func ParseIdentity(uri, trustDomain string) (Identity, error) {
	td, segs, err := splitSPIFFE(uri)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrBadIdentity, err)
	}
	if td != trustDomain {
		return Identity{}, fmt.Errorf("%w: %q is in trust domain %q, want %q", ErrBadIdentity, uri, td, trustDomain)
	}
	id := Identity{TrustDomain: td, URI: uri}
	want := 0
	if len(segs) > 0 {
		switch segs[0] {
		case "gateway":
			id.Kind, want = KindGateway, 2
		case "vendor":
			id.Kind, want = KindVendor, 3
		case "svc":
			id.Kind, want = KindService, 2
		case "approver":
			id.Kind, want = KindApprover, 3
		}
	}
	if id.Kind == KindUnknown {
		return Identity{}, fmt.Errorf("%w: %q: path must start with gateway/, vendor/, svc/ or approver/", ErrBadIdentity, uri)
	}
	if len(segs) != want {
		return Identity{}, fmt.Errorf("%w: %q: a %s identity has %d path segments", ErrBadIdentity, uri, id.Kind, want)
	}
	switch id.Kind {
	case KindGateway:
		id.Gateway = segs[1]
	case KindVendor:
		id.Org, id.Person = segs[1], segs[2]
	case KindService:
		id.Service = segs[1]
	case KindApprover:
		id.Role, id.Person = segs[1], segs[2]
	}
	return id, nil
}

// IdentityFromCert returns the identity in the certificate's URI SANs. The
// certificate must carry exactly one spiffe:// URI SAN (as SPIFFE requires).
func IdentityFromCert(cert *x509.Certificate, trustDomain string) (Identity, error) {
	if cert == nil {
		return Identity{}, fmt.Errorf("%w: no certificate", ErrBadIdentity)
	}
	var found []string
	for _, u := range cert.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			found = append(found, u.String())
		}
	}
	switch len(found) {
	case 0:
		return Identity{}, fmt.Errorf("%w: certificate %q has no spiffe:// URI SAN", ErrBadIdentity, cert.Subject.CommonName)
	case 1:
		return ParseIdentity(found[0], trustDomain)
	default:
		return Identity{}, fmt.Errorf("%w: certificate %q has %d spiffe:// URI SANs, want exactly one", ErrBadIdentity, cert.Subject.CommonName, len(found))
	}
}

// Pattern matches identity URIs. It is compiled from a spiffe:// URI whose
// trust domain or path segments may be "*" (exactly one segment) or, as the
// last segment only, "**" (one or more remaining segments). Any other
// segment matches itself exactly. The zero Pattern matches nothing.
type Pattern struct {
	src  string
	segs []string // segs[0] is the trust domain
}

// CompilePattern compiles s. It fails with an error wrapping ErrBadPattern.
func CompilePattern(s string) (Pattern, error) {
	if !strings.HasPrefix(s, spiffeScheme) {
		return Pattern{}, fmt.Errorf("%w: %q does not start with spiffe://", ErrBadPattern, s)
	}
	segs := strings.Split(s[len(spiffeScheme):], "/")
	for i, seg := range segs {
		switch {
		case seg == "*":
		case seg == "**":
			if i != len(segs)-1 || i == 0 {
				return Pattern{}, fmt.Errorf("%w: %q: ** is allowed only as the last path segment", ErrBadPattern, s)
			}
		case i == 0:
			if err := checkTrustDomain(seg); err != nil {
				return Pattern{}, fmt.Errorf("%w: %q: %w", ErrBadPattern, s, err)
			}
		default:
			if err := checkSegment(seg); err != nil {
				return Pattern{}, fmt.Errorf("%w: %q: %w", ErrBadPattern, s, err)
			}
		}
	}
	if len(segs) < 2 {
		return Pattern{}, fmt.Errorf("%w: %q has no path", ErrBadPattern, s)
	}
	return Pattern{src: s, segs: segs}, nil
}

// MustCompilePattern is CompilePattern that panics; for tests and constants.
func MustCompilePattern(s string) Pattern {
	p, err := CompilePattern(s)
	if err != nil {
		panic(err)
	}
	return p
}

// CompilePatterns compiles every pattern and reports all failures at once.
func CompilePatterns(ss []string) ([]Pattern, error) {
	var errs []error
	out := make([]Pattern, 0, len(ss))
	for _, s := range ss {
		p, err := CompilePattern(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, p)
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return out, nil
}

// String returns the pattern's source.
func (p Pattern) String() string { return p.src }

// Match reports whether uri (a spiffe:// URI) matches the pattern.
func (p Pattern) Match(uri string) bool {
	if len(p.segs) == 0 {
		return false
	}
	td, segs, err := splitSPIFFE(uri)
	if err != nil {
		return false
	}
	all := append([]string{td}, segs...)
	for i, ps := range p.segs {
		if ps == "**" {
			return len(all) > i
		}
		if i >= len(all) {
			return false
		}
		if ps != "*" && ps != all[i] {
			return false
		}
	}
	return len(all) == len(p.segs)
}

// MatchAny reports whether uri matches one of ps.
func MatchAny(ps []Pattern, uri string) bool {
	for _, p := range ps {
		if p.Match(uri) {
			return true
		}
	}
	return false
}
