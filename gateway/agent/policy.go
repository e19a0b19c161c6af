package agent

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/wardgate/wardgate/wire"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/access"
)

// MaxApproverLifetime is the longest an approver certificate may be valid
// (NotAfter - NotBefore, plus certs.LifetimeSlack); longer ones are refused
// for signed commands.
const MaxApproverLifetime = 24 * time.Hour

// CentralMaxLifetime is the longest certificate lifetime accepted from
// central's own identity (spiffe://TD/svc/central).
const CentralMaxLifetime = 90 * 24 * time.Hour

// policy is the part of the configuration the listeners consult on every
// connection, compiled once per (re)load and swapped atomically.
type policy struct {
	cfg      *config.Config
	clinical map[string]certs.PeerPolicy // by device id
	vendors  []vendorPolicy
	approver certs.PeerPolicy
	// central is central's own identity, spiffe://TD/svc/central: it may
	// only ask for a resync (rebirth, inventory).
	central certs.PeerPolicy
}

type vendorPolicy struct {
	org    string
	policy certs.PeerPolicy
}

// compile builds the policy of cfg; locked is consulted for every peer.
func compile(cfg *config.Config, locked func(certs.Identity) (bool, string)) (*policy, error) {
	td := cfg.Gateway.TrustDomain
	p := &policy{cfg: cfg, clinical: map[string]certs.PeerPolicy{}}
	pins := cfg.Identity.PinIntermediates
	norm := func(fps []string) []string {
		var out []string
		for _, fp := range fps {
			out = append(out, config.NormFingerprint(fp))
		}
		return out
	}
	var errs []error
	for _, d := range cfg.Devices {
		allow, err := certs.CompilePatterns(d.Clinical.Allow)
		if err != nil {
			errs = append(errs, fmt.Errorf("device %s: %w", d.ID, err))
			continue
		}
		p.clinical[d.ID] = certs.PeerPolicy{TrustDomain: td, Allow: allow, MaxLifetime: d.Clinical.MaxCertLifetime.D(), Locked: locked,
			Usage: x509.ExtKeyUsageClientAuth, Intermediates: norm(pins.Clinical)}
	}
	for _, v := range cfg.Vendors {
		allow, err := certs.CompilePatterns(v.Identities)
		if err != nil {
			errs = append(errs, fmt.Errorf("vendor %s: %w", v.Org, err))
			continue
		}
		p.vendors = append(p.vendors, vendorPolicy{org: v.Org, policy: certs.PeerPolicy{TrustDomain: td, Allow: allow, MaxLifetime: v.MaxCertLifetime.D(), Locked: locked,
			Usage: x509.ExtKeyUsageClientAuth, Intermediates: norm(pins.Vendor)}})
	}
	// Approver certificates live 24 h at most: a signing key that escapes
	// is useful for a day, and the CA's short-lived issuance is enforced.
	p.approver = certs.PeerPolicy{TrustDomain: td, Allow: []certs.Pattern{certs.MustCompilePattern("spiffe://" + td + "/approver/**")},
		MaxLifetime: MaxApproverLifetime, Locked: locked, Intermediates: norm(pins.Approver)}
	// Central's service certificate may live longer than a person's (it
	// can only ask for a resync, which reveals nothing new and changes no
	// access).
	p.central = certs.PeerPolicy{TrustDomain: td, Allow: []certs.Pattern{certs.MustCompilePattern(certs.ServiceURI(td, "central"))},
		MaxLifetime: CentralMaxLifetime, Locked: locked}
	return p, errors.Join(errs...)
}

// accessDevices maps the configuration's vendor policies to the broker's.
func accessDevices(cfg *config.Config) []access.Device {
	var out []access.Device
	for _, d := range cfg.Devices {
		if d.Vendor == nil {
			continue
		}
		// The device's own clinical service port (link.tcp), never
		// reachable by vendors whatever vendor.ports says.
		cp := 0
		if d.Link.TCP != "" {
			_, port, _ := net.SplitHostPort(d.Link.TCP)
			cp, _ = strconv.Atoi(port)
		}
		ad := access.Device{
			ID: d.ID, Org: d.Vendor.Org, Ports: d.Vendor.Ports, Approval: d.Vendor.Approval,
			MaxSession: d.Vendor.MaxSession.D(), Host: d.Vendor.Host, ClinicalPort: cp,
			OffHours: offHoursFunc(d.Vendor),
			Retired:  d.IsRetired(), ReplacedBy: d.ReplacedBy,
			RequestTTL: d.Vendor.RequestTimeout.D(),
		}
		if d.Link.Serial != nil {
			ad.ClinicalSerial = d.Link.Serial.Port
		}
		if c := d.Vendor.Console; c != nil && c.Serial != nil {
			sc := *c.Serial
			ad.Console = &sc
		}
		ad.Inject = injections(&d)
		out = append(out, ad)
	}
	return out
}

// injections maps a device's injected accounts (validated: the
// expressions compile and the port resolves) to the broker's.
func injections(d *config.Device) []access.Injection {
	var out []access.Injection
	for _, a := range d.Accounts {
		in := a.Inject
		if in == nil {
			continue
		}
		port, ok := config.InjectPort(d, in)
		if !ok {
			continue
		}
		ai := access.Injection{Account: a.ID, Owner: a.Owner, Port: port, User: in.User, SecretFile: in.SecretFile,
			Credential: in.Credential, Timeout: in.Timeout.D(), Newline: config.Newlines[in.Newline]}
		for _, st := range in.Login {
			ai.Login = append(ai.Login, access.LoginStep{Expect: regexp.MustCompile(st.Expect), Send: st.Send})
		}
		out = append(out, ai)
	}
	return out
}

// inventory maps the configuration to telemetry's inventory (no secrets:
// the configuration holds none).
func inventory(cfg *config.Config) wire.Inventory {
	var inv wire.Inventory
	for _, d := range cfg.Devices {
		td := wire.Device{ID: d.ID, Kind: d.Kind, Manufacturer: d.Manufacturer, Model: d.Model, Serial: d.Serial,
			Firmware: d.Firmware, Owner: d.Owner, Location: d.Location, Link: "tcp",
			Retired: d.Retired.Time, ReplacedBy: d.ReplacedBy}
		if d.Link.Serial != nil {
			td.Link = "serial"
		}
		if d.Vendor != nil {
			td.VendorOrg, td.VendorPorts, td.Approval = d.Vendor.Org, d.Vendor.Ports, d.Vendor.Approval
		}
		for _, a := range d.Accounts {
			td.Accounts = append(td.Accounts, wire.Account{ID: a.ID, Type: a.Type, Owner: a.Owner, Vendor: a.Vendor,
				RotateEvery: a.RotateEvery.D(), LastRotated: a.LastRotated.Time})
		}
		for _, e := range d.Exceptions {
			td.Exceptions = append(td.Exceptions, wire.Exception{ID: e.ID, Control: e.Control, Reason: e.Reason,
				Compensating: e.Compensating, ApprovedBy: e.ApprovedBy, Expires: e.Expires.Time})
		}
		inv.Devices = append(inv.Devices, td)
	}
	return inv
}

// vendorIdentity decides which configured vendor a chain belongs to and
// verifies it against that vendor's policy (lifetime, locks).
func (p *policy) vendorIdentity(v *certs.Verifier, chain []*x509.Certificate) (access.VendorIdentity, string, error) {
	if len(chain) == 0 {
		return access.VendorIdentity{}, "a client certificate is required", errors.New("no certificate")
	}
	id, err := certs.IdentityFromCert(chain[0], p.cfg.Gateway.TrustDomain)
	if err != nil || id.Kind != certs.KindVendor {
		return access.VendorIdentity{}, "the certificate is not a vendor identity of this hospital", fmt.Errorf("not a vendor identity: %v", err)
	}
	for _, vp := range p.vendors {
		if !certs.MatchAny(vp.policy.Allow, id.URI) {
			continue
		}
		got, err := v.Verify(chain, vp.policy)
		if err != nil {
			return access.VendorIdentity{}, peerMessage(err), err
		}
		return access.VendorIdentity{URI: got.URI, Org: vp.org, Person: got.Person}, "", nil
	}
	return access.VendorIdentity{}, "your organisation is not a configured vendor of this gateway", fmt.Errorf("%s matches no configured vendor", id.URI)
}

// peerMessage is the one line a refused peer is told.
func peerMessage(err error) string {
	switch certs.PeerReason(err) {
	case certs.ReasonExpired:
		return "your certificate has expired or is not yet valid; get a fresh one"
	case certs.ReasonLifetimeTooLong:
		return "your certificate lives longer than this gateway allows; use a short-lived certificate"
	case certs.ReasonLocked:
		return "your identity is locked on this gateway"
	case certs.ReasonNotAllowed:
		return "your identity is not allowed here"
	case certs.ReasonUntrusted:
		return "your certificate is not issued by the hospital's CA"
	case certs.ReasonIntermediate:
		return "your certificate is not issued by the intermediate CA this gateway pins for your kind of identity"
	}
	return strings.TrimSpace("certificate refused: " + certs.PeerReason(err))
}
