package command

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/wardgate/wardgate/wire/envelope"
)

// MaxTTL is the longest a command may stay valid, unless it is
// restrictive.
const MaxTTL = 5 * time.Minute

// MaxRestrictiveTTL is the longest a restrictive command (see Restrictive)
// may stay valid: central re-publishes it on every birth until the
// gateway answers, so a gateway offline for days still gets it.
const MaxRestrictiveTTL = 7 * 24 * time.Hour

// Restrictive reports whether command name only narrows access (lock,
// end-session, revoke, deny). Restrictive commands may be valid up to
// MaxRestrictiveTTL and addressed to a site (and, except lock, the fleet);
// permissive ones (approve, unlock, clear-tamper) keep MaxTTL and must
// name exactly one gateway.
func Restrictive(name string) bool {
	switch name {
	case Lock, EndSession, Revoke, Deny:
		return true
	}
	return false
}

// Permissive reports whether command name widens access (approve, unlock,
// clear-tamper): those must name exactly one gateway.
func Permissive(name string) bool {
	switch name {
	case Approve, Unlock, ClearTamper:
		return true
	}
	return false
}

// MaxTTLOf is the longest command name may be valid.
func MaxTTLOf(name string) time.Duration {
	if Restrictive(name) {
		return MaxRestrictiveTTL
	}
	return MaxTTL
}

// MinNonce and MaxNonce bound the nonce length in bytes.
const (
	MinNonce = 16
	MaxNonce = 64
	maxArgs  = 16
	maxArg   = 256
)

// Command names a gateway understands.
const (
	Approve      = "approve"      // approve GRANT-ID [VENDOR-URI DEVICE PORTS]: see ApproveArgs
	Deny         = "deny"         // deny GRANT-ID
	Revoke       = "revoke"       // revoke GRANT-ID
	Lock         = "lock"         // lock IDENTITY [DURATION [REASON]]
	Unlock       = "unlock"       // unlock IDENTITY
	EndSession   = "end-session"  // end-session SESSION-ID
	Rebirth      = "rebirth"      // rebirth: publish a new birth
	InventoryNow = "inventory"    // inventory: publish the inventory now
	ClearTamper  = "clear-tamper" // clear-tamper: re-enable vendor access after a tamper
)

// Names lists the commands, with their argument counts (min, max).
var Names = map[string][2]int{
	Approve: {1, 4}, Deny: {1, 1}, Revoke: {1, 1}, Lock: {1, 3}, Unlock: {1, 1},
	EndSession: {1, 1}, Rebirth: {0, 0}, InventoryNow: {0, 0}, ClearTamper: {0, 0},
}

// Sentinel errors; each is a rejection reason reported in the reply.
var (
	ErrMalformed    = errors.New("malformed command")
	ErrUnsigned     = errors.New("command signature missing or invalid")
	ErrNotApprover  = errors.New("command not signed by an approver")
	ErrOtherGateway = errors.New("command addressed to another gateway")
	ErrExpired      = errors.New("command expired")
	ErrTooLong      = errors.New("command validity too long (at most 5 minutes; 7 days for lock, end-session, revoke and deny)")
	// ErrNotOneGateway: a permissive command addressed to a site or the
	// fleet, or a command naming no or several addressees.
	ErrNotOneGateway = errors.New("command must name exactly one gateway")
	// ErrFleetLock: a lock addressed to the fleet; a fleet-wide lock needs
	// two approvers and goes in the signed fleet lock set instead.
	ErrFleetLock = errors.New("a fleet-wide lock needs two approvers: put it in the fleet lock set")
	ErrReplay    = errors.New("command replayed")
	ErrUnknown   = errors.New("unknown command")
	// ErrEndorsement: the signer's certificate has expired since the
	// command was issued, and central's endorsement is missing or does not
	// stand behind it.
	ErrEndorsement = errors.New("command needs central's endorsement")
)

// MaxSkew is how far in the future a command may claim to be issued, and
// how far an endorsement may be off the command's issue time.
const MaxSkew = 5 * time.Minute

// endorsementKind names the payload of central's endorsement of a command.
const endorsementKind = "wardgate-command-endorsement"

// Payload is the signed CBOR map. Exactly one addressee: a gateway, a
// site or the fleet (an empty gateway with 7 or 8).
//
//	command = {1: gateway, 2: name, 3: [* tstr], 4: nonce, 5: iat-ms, 6: exp-ms,
//	           ? 7: site, ? 8: fleet}
type Payload struct {
	Gateway  string   `cbor:"1,keyasint"`
	Site     string   `cbor:"7,keyasint,omitempty"`
	Fleet    bool     `cbor:"8,keyasint,omitempty"`
	Name     string   `cbor:"2,keyasint"`
	Args     []string `cbor:"3,keyasint"`
	Nonce    []byte   `cbor:"4,keyasint"`
	IssuedAt int64    `cbor:"5,keyasint"`
	Expires  int64    `cbor:"6,keyasint"`
}

// Command is a verified command.
type Command struct {
	Payload
	// Approver is the identity VerifyApprover returned (for example
	// spiffe://TD/approver/ROLE/PERSON).
	Approver string
}

var nameRe = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

func (p *Payload) check() error {
	to := 0
	for _, set := range []bool{p.Gateway != "", p.Site != "", p.Fleet} {
		if set {
			to++
		}
	}
	switch {
	case to != 1:
		return fmt.Errorf("%w: %d addressees (one gateway, one site or the fleet)", ErrNotOneGateway, to)
	case p.Gateway != "" && !envelope.ValidGatewayID(p.Gateway):
		return fmt.Errorf("%w: gateway %q", ErrMalformed, p.Gateway)
	case p.Site != "" && !envelope.ValidGatewayID(p.Site):
		return fmt.Errorf("%w: site %q", ErrMalformed, p.Site)
	case p.Gateway == "" && Permissive(p.Name):
		return fmt.Errorf("%w: %s widens access and must name one gateway, not a site or the fleet", ErrNotOneGateway, p.Name)
	case p.Fleet && p.Name == Lock:
		return ErrFleetLock
	case !nameRe.MatchString(p.Name):
		return fmt.Errorf("%w: command name %q", ErrMalformed, p.Name)
	case len(p.Nonce) < MinNonce || len(p.Nonce) > MaxNonce:
		return fmt.Errorf("%w: nonce of %d bytes (%d..%d)", ErrMalformed, len(p.Nonce), MinNonce, MaxNonce)
	case len(p.Args) > maxArgs:
		return fmt.Errorf("%w: %d arguments", ErrMalformed, len(p.Args))
	case p.Expires <= p.IssuedAt:
		return fmt.Errorf("%w: expires before it was issued", ErrMalformed)
	}
	for _, a := range p.Args {
		if len(a) > maxArg {
			return fmt.Errorf("%w: argument longer than %d bytes", ErrMalformed, maxArg)
		}
	}
	n, ok := Names[p.Name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknown, p.Name)
	}
	if len(p.Args) < n[0] || len(p.Args) > n[1] {
		return fmt.Errorf("%w: %s takes %d to %d arguments, got %d", ErrMalformed, p.Name, n[0], n[1], len(p.Args))
	}
	if p.Name == Approve {
		if _, err := ParseApprove(p.Args); err != nil {
			return err
		}
	}
	return nil
}

// Approval is the argument list of an approve command. The short form
// names the grant only (what central saw announced); the bound form also
// names the vendor identity, the device and the ports approved, and the
// gateway refuses it when the request no longer has exactly those.
type Approval struct {
	Grant  string
	Bound  bool // Vendor, Device and Ports are set
	Vendor string
	Device string
	Ports  []int
}

// ApproveArgs returns the arguments of a bound approve command:
// GRANT-ID VENDOR-URI DEVICE PORTS, PORTS comma-separated ("23,8080").
func ApproveArgs(grant, vendor, device string, ports []int) []string {
	ps := make([]string, len(ports))
	for i, p := range ports {
		ps[i] = strconv.Itoa(p)
	}
	return []string{grant, vendor, device, strings.Join(ps, ",")}
}

// ParseApprove parses approve arguments: GRANT-ID, or GRANT-ID VENDOR-URI
// DEVICE PORTS. It fails with ErrMalformed on two or three arguments, an
// empty field or a port outside 1..65535.
func ParseApprove(args []string) (Approval, error) {
	switch len(args) {
	case 1:
		if args[0] == "" {
			return Approval{}, fmt.Errorf("%w: approve: empty grant id", ErrMalformed)
		}
		return Approval{Grant: args[0]}, nil
	case 4:
	default:
		return Approval{}, fmt.Errorf("%w: approve takes GRANT-ID or GRANT-ID VENDOR DEVICE PORTS, got %d arguments", ErrMalformed, len(args))
	}
	a := Approval{Grant: args[0], Bound: true, Vendor: args[1], Device: args[2]}
	if a.Grant == "" || a.Vendor == "" || a.Device == "" || args[3] == "" {
		return Approval{}, fmt.Errorf("%w: approve: empty field", ErrMalformed)
	}
	for _, s := range strings.Split(args[3], ",") {
		p, err := strconv.Atoi(s)
		if err != nil || p < 1 || p > 65535 {
			return Approval{}, fmt.Errorf("%w: approve: port %q", ErrMalformed, s)
		}
		a.Ports = append(a.Ports, p)
	}
	return a, nil
}

// Sign makes a signed command for gateway, valid from now for ttl (at most
// MaxTTLOf(name)), with a fresh 16-byte nonce. signer must be a P-256 key
// matching chain[0], an approver certificate.
func Sign(signer crypto.Signer, chain []*x509.Certificate, gateway, name string, args []string, now time.Time, ttl time.Duration) ([]byte, error) {
	return SignTo(signer, chain, To{Gateway: gateway}, name, args, now, ttl)
}

// To addresses a command: one of Gateway, Site or Fleet.
type To struct {
	Gateway string
	Site    string
	Fleet   bool
}

// SignTo is Sign for any addressee (a site or the fleet for restrictive
// commands; central delivers it on each addressed gateway's command topic).
func SignTo(signer crypto.Signer, chain []*x509.Certificate, to To, name string, args []string, now time.Time, ttl time.Duration) ([]byte, error) {
	if ttl <= 0 || ttl > MaxTTLOf(name) {
		return nil, fmt.Errorf("sign command: %w: ttl %s for %s", ErrTooLong, ttl, name)
	}
	nonce := make([]byte, MinNonce)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	if args == nil {
		args = []string{}
	}
	p := Payload{Gateway: to.Gateway, Site: to.Site, Fleet: to.Fleet, Name: name, Args: args, Nonce: nonce,
		IssuedAt: now.UnixMilli(), Expires: now.Add(ttl).UnixMilli()}
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("sign command: %w", err)
	}
	b, err := envelope.Marshal(&p)
	if err != nil {
		return nil, fmt.Errorf("sign command: %w", err)
	}
	return envelope.Sign(signer, chain, b)
}

// VerifyApprover decides whether chain (leaf first) belongs to an approver
// at now and returns its identity. The agent wires it to the identity
// package (trust bundle + spiffe://TD/approver/ROLE/PERSON).
type VerifyApprover func(chain []*x509.Certificate, now time.Time) (approver string, err error)

// Decode parses a command without verifying anything but its structure.
// It is exposed for fuzzing and tools.
func Decode(data []byte) (*envelope.Signed, *Payload, error) {
	s, p, _, err := decode(data)
	return s, p, err
}

// decode parses a command: a COSE_Sign1, or the pair [COSE_Sign1,
// endorsement] (Endorse); the endorsement is nil when absent.
func decode(data []byte) (*envelope.Signed, *Payload, *envelope.Endorsed, error) {
	var end *envelope.Endorsed
	if isArray(data) {
		var pair [][]byte
		if err := envelope.Unmarshal(data, &pair); err != nil || len(pair) != 2 {
			return nil, nil, nil, fmt.Errorf("%w: not a command and its endorsement", ErrMalformed)
		}
		es, err := envelope.Parse(pair[1])
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%w: endorsement: %w", ErrMalformed, err)
		}
		var ok bool
		if end, ok = envelope.ParseEndorsement(es, endorsementKind); !ok {
			return nil, nil, nil, fmt.Errorf("%w: the second element is not a command endorsement", ErrMalformed)
		}
		data = pair[0]
	}
	s, err := envelope.Parse(data)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %w", ErrUnsigned, err)
	}
	var p Payload
	if err := envelope.Unmarshal(s.Payload, &p); err != nil {
		return s, nil, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return s, &p, end, nil
}

// isArray reports whether data starts a CBOR array (major type 4): the
// pair of a command and its endorsement. A bare command starts with
// COSE_Sign1's tag 18.
func isArray(data []byte) bool { return len(data) > 0 && data[0]>>5 == 4 }

// Endorse returns the command msg with central's endorsement made at at
// with key and chain (spiffe://TD/svc/central), in place of any earlier
// one: [COSE_Sign1, endorsement]. Central endorses a restrictive command
// it delivers after its signer's day-long certificate expired; it does not
// verify the signer here, it did when it accepted the command.
func Endorse(msg []byte, key crypto.Signer, chain []*x509.Certificate, at time.Time) ([]byte, error) {
	if isArray(msg) {
		var pair [][]byte
		if err := envelope.Unmarshal(msg, &pair); err != nil || len(pair) != 2 {
			return nil, fmt.Errorf("endorse command: %w: not a command and its endorsement", ErrMalformed)
		}
		msg = pair[0]
	}
	s, err := envelope.Parse(msg)
	if err != nil {
		return nil, fmt.Errorf("endorse command: %w: %w", ErrUnsigned, err)
	}
	e, err := envelope.Endorse(key, chain, endorsementKind, s.Payload, at)
	if err != nil {
		return nil, fmt.Errorf("endorse command: %w", err)
	}
	return envelope.Marshal([][]byte{msg, e})
}

// Verify checks data as described in the package documentation and, when
// everything holds, records its nonce in nonces (durably) before returning
// the command. gateway is this gateway's id; a command addressed to a site
// is refused (VerifyAt accepts this gateway's site).
func Verify(data []byte, gateway string, now time.Time, approver VerifyApprover, nonces *NonceStore) (*Command, error) {
	return VerifyAt(data, gateway, "", now, approver, nonces)
}

// VerifyAt is Verify for gateway at site: it also accepts commands
// addressed to site and to the fleet.
func VerifyAt(data []byte, gateway, site string, now time.Time, approver VerifyApprover, nonces *NonceStore) (*Command, error) {
	return VerifyWith(data, gateway, site, now, VerifyOptions{Approver: approver}, nonces)
}

// VerifyOptions are the identity checks of VerifyWith.
type VerifyOptions struct {
	// Approver checks a signer's chain at a time and returns its identity.
	// Required.
	Approver VerifyApprover
	// Central checks the chain of central's endorsement at a time (it must
	// be spiffe://TD/svc/central). Nil: endorsements are ignored.
	Central VerifyApprover
}

// VerifyWith is VerifyAt with central's endorsement for restrictive
// commands that outlive their signer's certificate. Approver certificates
// live a day at most, a restrictive command up to MaxRestrictiveTTL, so
// that a lock queued for a gateway offline for days still reaches it. The
// signer's chain must be valid at now; failing that, for a restrictive
// command, valid when the command was issued, and then the command must
// carry central's endorsement, signed over its payload at or after its
// issue by a chain valid at now. A permissive command is never accepted
// on an endorsement.
func VerifyWith(data []byte, gateway, site string, now time.Time, o VerifyOptions, nonces *NonceStore) (*Command, error) {
	s, p, end, err := decode(data)
	if s == nil {
		return nil, err
	}
	if err := s.VerifySignature(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsigned, err)
	}
	who, aerr := o.Approver(s.Chain, now)
	if aerr != nil {
		if err != nil || o.Central == nil || end == nil || !Restrictive(p.Name) {
			return nil, fmt.Errorf("%w: %w", ErrNotApprover, aerr)
		}
		issued := time.UnixMilli(p.IssuedAt)
		if issued.After(now.Add(MaxSkew)) {
			return nil, fmt.Errorf("%w: %w", ErrNotApprover, aerr)
		}
		var errThen error
		if who, errThen = o.Approver(s.Chain, issued); errThen != nil {
			return nil, fmt.Errorf("%w: now: %w; when issued: %w", ErrNotApprover, aerr, errThen)
		}
		if err := end.Verify(s.Payload, issued, now, MaxSkew, o.Central); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrEndorsement, err)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	switch {
	case p.Fleet:
	case p.Site != "" && (site == "" || p.Site != site):
		return nil, fmt.Errorf("%w: for site %q, this gateway is at %q", ErrOtherGateway, p.Site, site)
	case p.Site == "" && p.Gateway != gateway:
		return nil, fmt.Errorf("%w: for %q, this is %q", ErrOtherGateway, p.Gateway, gateway)
	}
	nowMS := now.UnixMilli()
	if p.Expires <= nowMS {
		return nil, fmt.Errorf("%w: at %s", ErrExpired, time.UnixMilli(p.Expires).UTC().Format(time.RFC3339))
	}
	if p.Expires > now.Add(MaxTTLOf(p.Name)).UnixMilli() {
		return nil, fmt.Errorf("%w: expires at %s", ErrTooLong, time.UnixMilli(p.Expires).UTC().Format(time.RFC3339))
	}
	if err := nonces.Use(p.Nonce, time.UnixMilli(p.Expires), now); err != nil {
		return nil, err
	}
	return &Command{Payload: *p, Approver: who}, nil
}

var bucketNonces = []byte("cmd-nonces")

// NonceStore remembers command nonces until their expiry in a bbolt
// database (the outbox's file, see outbox.DB).
type NonceStore struct {
	db *bbolt.DB
}

// NewNonceStore creates its bucket in db if needed.
func NewNonceStore(db *bbolt.DB) (*NonceStore, error) {
	err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketNonces)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("command nonce store: %w", err)
	}
	return &NonceStore{db: db}, nil
}

// Use records nonce until exp, or fails with ErrReplay when it is already
// recorded. Expired nonces are forgotten on the way.
func (n *NonceStore) Use(nonce []byte, exp, now time.Time) error {
	err := n.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketNonces)
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(v) == 8 && int64(binary.BigEndian.Uint64(v)) <= now.UnixMilli() && !bytes.Equal(k, nonce) {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		if v := b.Get(nonce); v != nil {
			return ErrReplay
		}
		var e [8]byte
		binary.BigEndian.PutUint64(e[:], uint64(exp.UnixMilli()))
		return b.Put(nonce, e[:])
	})
	if errors.Is(err, ErrReplay) {
		return err
	}
	if err != nil {
		return fmt.Errorf("command nonce store: %w", err)
	}
	return nil
}
