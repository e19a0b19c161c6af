package lockset

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/envelope"
)

// Limits of a lock set.
const (
	// MaxValidity is the longest a lock set may be accepted after it was
	// issued.
	MaxValidity = 7 * 24 * time.Hour
	// MaxSigners bounds the signatures (and the approvers list).
	MaxSigners = 4
	// MaxLocks bounds the locks in one set.
	MaxLocks = 1024
	// MaxSkew is how far in the future a set may claim to be issued.
	MaxSkew = 5 * time.Minute
	maxText = 256
)

// ScopeFleet is the scope of a fleet-wide set.
const ScopeFleet = "fleet"

// Sentinel errors (match with errors.Is).
var (
	ErrMalformed   = errors.New("malformed lock set")
	ErrUnsigned    = errors.New("lock set signature missing or invalid")
	ErrNotApprover = errors.New("lock set not signed by an approver")
	ErrSigners     = errors.New("lock set signers do not match its approvers")
	ErrTwoPersons  = errors.New("a fleet-wide lock set needs two distinct approvers")
	ErrExpired     = errors.New("lock set expired")
	ErrTooLong     = errors.New("lock set validity longer than 7 days")
	ErrNotYet      = errors.New("lock set issued in the future")
	ErrOtherDomain = errors.New("lock set for another trust domain")
	// ErrEndorsement: an approver's certificate has expired since the set
	// was signed and central's endorsement is missing or invalid.
	ErrEndorsement = errors.New("lock set needs central's endorsement")
)

// endorsementKind names the payload of an endorsement.
const endorsementKind = "wardgate-lockset-endorsement"

// Lock is one desired lock.
type Lock struct {
	Target string `cbor:"1,keyasint"`           // SPIFFE ID or prefix pattern, as `wardgate lock add` takes
	Until  int64  `cbor:"2,keyasint,omitempty"` // ms since epoch; 0: until a newer set drops it
	Reason string `cbor:"3,keyasint,omitempty"`
}

// Set is the signed payload.
type Set struct {
	TrustDomain string   `cbor:"1,keyasint"`
	Version     uint64   `cbor:"2,keyasint"`
	IssuedAt    int64    `cbor:"3,keyasint"`
	Expires     int64    `cbor:"4,keyasint"`
	Scope       string   `cbor:"5,keyasint"`
	Locks       []Lock   `cbor:"6,keyasint"`
	Approvers   []string `cbor:"7,keyasint"`
}

// Site returns the scope of site s.
func Site(s string) string { return "site/" + s }

// Gateway returns the scope of one gateway.
func Gateway(id string) string { return "gateway/" + id }

// Topic returns the retained MQTT topic of scope:
// wardgate/v1/fleet/lockset, wardgate/v1/site/S/lockset or
// wardgate/v1/GATEWAY/lockset.
func Topic(scope string) string {
	if g, ok := strings.CutPrefix(scope, "gateway/"); ok {
		return wire.TopicPrefix + g + "/lockset"
	}
	return wire.TopicPrefix + scope + "/lockset"
}

// Topics returns the topics a gateway subscribes to: the fleet's, its
// site's (when site is set) and its own.
func Topics(gateway, site string) []string {
	ts := []string{Topic(ScopeFleet)}
	if site != "" {
		ts = append(ts, Topic(Site(site)))
	}
	return append(ts, Topic(Gateway(gateway)))
}

// Applies reports whether the set's scope covers gateway at site.
func (s *Set) Applies(gateway, site string) bool {
	switch {
	case s.Scope == ScopeFleet:
		return true
	case strings.HasPrefix(s.Scope, "site/"):
		return site != "" && s.Scope == Site(site)
	}
	return s.Scope == Gateway(gateway)
}

func validScope(s string) bool {
	if s == ScopeFleet {
		return true
	}
	if v, ok := strings.CutPrefix(s, "site/"); ok {
		return envelope.ValidGatewayID(v) // same alphabet as gateway ids
	}
	if v, ok := strings.CutPrefix(s, "gateway/"); ok {
		return envelope.ValidGatewayID(v)
	}
	return false
}

// Check validates the set's structure (not its times against a clock).
func (s *Set) Check() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: "+f, append([]any{ErrMalformed}, a...)...) }
	switch {
	case s.TrustDomain == "" || len(s.TrustDomain) > maxText:
		return bad("trust domain %q", s.TrustDomain)
	case s.Version == 0:
		return bad("version 0 (versions start at 1)")
	case !validScope(s.Scope):
		return bad("scope %q (fleet, site/SITE or gateway/ID)", s.Scope)
	case s.Expires <= s.IssuedAt:
		return bad("expires before it was issued")
	case time.Duration(s.Expires-s.IssuedAt)*time.Millisecond > MaxValidity:
		return fmt.Errorf("%w: valid for %s", ErrTooLong, time.Duration(s.Expires-s.IssuedAt)*time.Millisecond)
	case len(s.Locks) > MaxLocks:
		return bad("%d locks (at most %d)", len(s.Locks), MaxLocks)
	case len(s.Approvers) == 0 || len(s.Approvers) > MaxSigners:
		return bad("%d approvers (1..%d)", len(s.Approvers), MaxSigners)
	}
	seen := map[string]bool{}
	for i, l := range s.Locks {
		switch {
		case l.Target == "" || len(l.Target) > maxText:
			return bad("locks[%d]: target %q", i, l.Target)
		case len(l.Reason) > maxText:
			return bad("locks[%d]: reason longer than %d bytes", i, maxText)
		case l.Until < 0:
			return bad("locks[%d]: negative until", i)
		case seen[l.Target]:
			return bad("locks[%d]: target %s twice", i, l.Target)
		}
		seen[l.Target] = true
	}
	persons := map[string]bool{}
	for i, a := range s.Approvers {
		if a == "" || len(a) > maxText || slices.Contains(s.Approvers[:i], a) {
			return bad("approvers[%d] %q empty, too long or repeated", i, a)
		}
		persons[Person(a)] = true
	}
	if s.Scope == ScopeFleet && len(persons) < 2 {
		return ErrTwoPersons
	}
	return nil
}

// Person is the PERSON segment of spiffe://TD/approver/ROLE/PERSON, lower
// case: two roles of one person are one person.
func Person(uri string) string {
	return strings.ToLower(uri[strings.LastIndexByte(uri, '/')+1:])
}

// Signer is one approver's key and certificate chain (leaf first).
type Signer struct {
	Key   crypto.Signer
	Chain []*x509.Certificate
}

// Sign encodes s and signs it by every signer (in order). s.Approvers
// must list the signers' identities; more signatures can be added later
// with Cosign.
func Sign(s *Set, signers ...Signer) ([]byte, error) {
	if err := s.Check(); err != nil {
		return nil, fmt.Errorf("sign lock set: %w", err)
	}
	payload, err := envelope.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("sign lock set: %w", err)
	}
	var sigs [][]byte
	for _, sg := range signers {
		b, err := envelope.Sign(sg.Key, sg.Chain, payload)
		if err != nil {
			return nil, fmt.Errorf("sign lock set: %w", err)
		}
		sigs = append(sigs, b)
	}
	return envelope.Marshal(sigs)
}

// Cosign adds signer's signature over the payload of msg (signed by
// someone else already). It does not verify the earlier signatures.
func Cosign(msg []byte, signer Signer) ([]byte, error) {
	sigs, s, _, err := decode(msg)
	if err != nil {
		return nil, err
	}
	if len(sigs) >= MaxSigners {
		return nil, fmt.Errorf("cosign lock set: %w: already %d signatures", ErrMalformed, len(sigs))
	}
	b, err := envelope.Sign(signer.Key, signer.Chain, s.Payload)
	if err != nil {
		return nil, fmt.Errorf("cosign lock set: %w", err)
	}
	raw := make([][]byte, 0, len(sigs)+1)
	for _, x := range sigs {
		raw = append(raw, x.raw)
	}
	return envelope.Marshal(append(raw, b))
}

type sig struct {
	raw []byte
	s   *envelope.Signed
}

// decode parses the container and every COSE_Sign1, and checks that the
// approvers' signatures carry the same payload; it returns them, the
// first, and central's endorsement (the last element, nil when absent).
func decode(data []byte) ([]sig, *envelope.Signed, *envelope.Endorsed, error) {
	var raws [][]byte
	if err := envelope.Unmarshal(data, &raws); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if len(raws) == 0 || len(raws) > MaxSigners+1 {
		return nil, nil, nil, fmt.Errorf("%w: %d signatures (1..%d and an endorsement)", ErrMalformed, len(raws), MaxSigners)
	}
	out := make([]sig, 0, len(raws))
	var end *envelope.Endorsed
	for i, r := range raws {
		s, err := envelope.Parse(r)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%w: signature %d: %w", ErrUnsigned, i, err)
		}
		if i > 0 && !bytes.Equal(s.Payload, out[0].s.Payload) {
			e, ok := envelope.ParseEndorsement(s, endorsementKind)
			if i != len(raws)-1 || !ok {
				return nil, nil, nil, fmt.Errorf("%w: signature %d covers another payload", ErrMalformed, i)
			}
			end = e
			break
		}
		out = append(out, sig{raw: r, s: s})
	}
	if len(out) > MaxSigners {
		return nil, nil, nil, fmt.Errorf("%w: %d signatures (1..%d)", ErrMalformed, len(out), MaxSigners)
	}
	return out, out[0].s, end, nil
}

// Endorse returns msg with central's endorsement (signed by signer, at
// at) in place of any earlier one. It does not verify the approvers'
// signatures: central endorses what it verified when it accepted the set.
func Endorse(msg []byte, signer Signer, at time.Time) ([]byte, error) {
	sigs, first, _, err := decode(msg)
	if err != nil {
		return nil, err
	}
	b, err := envelope.Endorse(signer.Key, signer.Chain, endorsementKind, first.Payload, at)
	if err != nil {
		return nil, fmt.Errorf("endorse lock set: %w", err)
	}
	raw := make([][]byte, 0, len(sigs)+1)
	for _, x := range sigs {
		raw = append(raw, x.raw)
	}
	return envelope.Marshal(append(raw, b))
}

// Decode parses a lock set without verifying anything but its structure.
// It is exposed for fuzzing and tools.
func Decode(data []byte) (*Set, error) {
	_, first, _, err := decode(data)
	if err != nil {
		return nil, err
	}
	var s Set
	if err := envelope.Unmarshal(first.Payload, &s); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := s.Check(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Verify checks every signature, that each signer is an approver (hook),
// that the signers are exactly the set's approvers, the trust domain, and
// the validity at now. It does not know versions: the gateway compares
// the version with the newest it accepted for the scope. It is VerifyWith
// without central: every approver's certificate must be valid at now.
func Verify(data []byte, trustDomain string, now time.Time, approver command.VerifyApprover) (*Set, error) {
	return VerifyWith(data, trustDomain, now, VerifyOptions{Approver: approver})
}

// VerifyOptions are the identity checks of VerifyWith.
type VerifyOptions struct {
	// Approver checks an approver's chain at a time and returns its
	// identity. Required.
	Approver command.VerifyApprover
	// Central checks the chain of central's endorsement at a time (it
	// must be spiffe://TD/svc/central). Nil: endorsements are ignored.
	Central command.VerifyApprover
}

// VerifyWith is Verify, with central's endorsement for sets that outlive
// their signers' certificates. Approver certificates are short-lived (a
// day at most) while a set may stay valid for MaxValidity, so that a
// gateway offline for days still converges at its next connection. Each
// approver's chain must be valid at now; failing that, valid when the
// set was issued, and then the set must carry central's endorsement,
// signed over the set's digest at or after it was issued by a chain
// valid at now. Central re-endorses the sets it publishes well within its
// own certificate's lifetime.
func VerifyWith(data []byte, trustDomain string, now time.Time, o VerifyOptions) (*Set, error) {
	sigs, first, end, err := decode(data)
	if err != nil {
		return nil, err
	}
	var s Set
	if err := envelope.Unmarshal(first.Payload, &s); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	issued := time.UnixMilli(s.IssuedAt)
	var signers []string
	needEndorsement := false
	for i, x := range sigs {
		if err := x.s.VerifySignature(); err != nil {
			return nil, fmt.Errorf("%w: signature %d: %w", ErrUnsigned, i, err)
		}
		who, errNow := o.Approver(x.s.Chain, now)
		if errNow != nil {
			if o.Central == nil || end == nil {
				return nil, fmt.Errorf("%w: signature %d: %w", ErrNotApprover, i, errNow)
			}
			var errThen error
			if who, errThen = o.Approver(x.s.Chain, issued); errThen != nil {
				return nil, fmt.Errorf("%w: signature %d: now: %w; when issued: %w", ErrNotApprover, i, errNow, errThen)
			}
			needEndorsement = true
		}
		if slices.Contains(signers, who) {
			return nil, fmt.Errorf("%w: %s signed twice", ErrSigners, who)
		}
		signers = append(signers, who)
	}
	if needEndorsement {
		if err := end.Verify(first.Payload, issued, now, MaxSkew, o.Central); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrEndorsement, err)
		}
	}
	if err := s.Check(); err != nil {
		return nil, err
	}
	if s.TrustDomain != trustDomain {
		return nil, fmt.Errorf("%w: %q, this is %q", ErrOtherDomain, s.TrustDomain, trustDomain)
	}
	for _, a := range s.Approvers {
		if !slices.Contains(signers, a) {
			return nil, fmt.Errorf("%w: %s has not signed", ErrSigners, a)
		}
	}
	if len(signers) != len(s.Approvers) {
		return nil, fmt.Errorf("%w: signed by %v, names %v", ErrSigners, signers, s.Approvers)
	}
	nowMS := now.UnixMilli()
	if s.Expires <= nowMS {
		return nil, fmt.Errorf("%w: at %s", ErrExpired, time.UnixMilli(s.Expires).UTC().Format(time.RFC3339))
	}
	if s.IssuedAt > now.Add(MaxSkew).UnixMilli() {
		return nil, fmt.Errorf("%w: at %s", ErrNotYet, time.UnixMilli(s.IssuedAt).UTC().Format(time.RFC3339))
	}
	return &s, nil
}
