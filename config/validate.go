package config

import (
	"cmp"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

var (
	// lowerLabel is for names that end up in URIs, topics and certificates.
	lowerLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// anyLabel is for record ids such as EX-2026-014.
	anyLabel  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	dnsName   = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	hexSHA256 = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	// vendorOrgPath matches the paths whose decode failure leaves the set
	// of vendor organisations unknown.
	vendorOrgPath = regexp.MustCompile(`^vendors(\[\d+\](\.org)?)?$`)
)

// Bounds enforced by validation.
const (
	MinLifetime        = 5 * time.Minute
	MaxLifetime        = 24 * time.Hour
	MaxExceptionAhead  = 366 * 24 * time.Hour
	MaxVendorLifetime  = 7 * 24 * time.Hour
	MaxSessionLimit    = 24 * time.Hour
	MinMetricsInterval = time.Second
	MinOutbox          = 1 << 20

	MinVendorHandshakeTimeout = time.Second
	MaxVendorHandshakeTimeout = time.Minute
	MinRecordingsMaxBytes     = 1 << 20
	MinRecordingsFreeShare    = 1  // percent
	MaxRecordingsFreeShare    = 90 // percent
	MinFsyncEvery             = 100 * time.Millisecond
	MaxFsyncEvery             = 30 * time.Second
)

type validator struct {
	d   *decoder
	now time.Time
	// td is the trust domain, or "" when it is missing, invalid or did not
	// decode: rules that build identities from it are then skipped.
	td string
	// orgsKnown is false when a vendor's org did not decode, so that
	// "not a configured vendor" would be a guess.
	orgsKnown bool
}

// add reports a validation problem at path, unless path, a parent or a
// child of it did not decode: that problem is already reported, and the
// value seen here is not the one the file meant.
func (v *validator) add(path, format string, args ...any) {
	if v.d.related(path) {
		return
	}
	v.d.addf(v.d.lineOf(path), path, format, args...)
}

// decoded reports whether path and its parents and children decoded
// cleanly, so that rules reading its value from elsewhere may trust it.
func (v *validator) decoded(path string) bool { return !v.d.related(path) }

func (v *validator) validate(c *Config) {
	if td := c.Gateway.TrustDomain; dnsName.MatchString(td) && v.decoded("gateway.trust_domain") {
		v.td = td
	}
	v.orgsKnown = true
	for f := range v.d.failed {
		if vendorOrgPath.MatchString(f) {
			v.orgsKnown = false
		}
	}
	v.gateway(c)
	v.identity(c)
	v.mqtt(c)
	v.hal(c)
	orgs := v.vendors(c)
	v.devices(c, orgs)
	v.approvers(c)
	v.identityTrust(c)
	v.monitor(c)
	v.update(c)
	v.upload(c)
}

func (v *validator) label(path, s, what string) {
	switch {
	case s == "":
		v.add(path, "missing; give the %s a name of lowercase letters, digits and dashes", what)
	case !lowerLabel.MatchString(s):
		v.add(path, "%q is not a valid name; use lowercase letters, digits and dashes (at most 63), starting and ending with a letter or digit", s)
	}
}

func (v *validator) gateway(c *Config) {
	g := c.Gateway
	v.label("gateway.id", g.ID, "gateway")
	if g.ID == "fleet" || g.ID == "site" {
		// wardgate/v1/fleet/... and wardgate/v1/site/... carry the fleet lock
		// sets; a gateway of that name could write them (docs/scale.md).
		v.add("gateway.id", "%q is reserved for the fleet lock-set topics; name the gateway after its place, e.g. gw-icu3-12", g.ID)
	}
	v.label("gateway.site", g.Site, "site")
	switch {
	case g.TrustDomain == "":
		v.add("gateway.trust_domain", "missing; set the hospital's SPIFFE trust domain, e.g. hospital.example")
	case !dnsName.MatchString(g.TrustDomain):
		v.add("gateway.trust_domain", "%q is not a trust domain; use a lowercase DNS name such as hospital.example", g.TrustDomain)
	}
	if !filepath.IsAbs(g.StateDir) {
		v.add("gateway.state_dir", "%q is not an absolute path; use one such as /var/lib/wardgate", g.StateDir)
	}
	if g.AdminSocket != "" && !filepath.IsAbs(g.AdminSocket) {
		v.add("gateway.admin_socket", "%q is not an absolute path; use one such as /run/wardgate/admin.sock", g.AdminSocket)
	}
	v.listenAddr("gateway.vendor_listen", g.VendorListen)

	vl := g.VendorLimits
	for _, f := range []struct {
		key string
		n   int
	}{{"max_connections", vl.MaxConnections}, {"max_per_source", vl.MaxPerSource}, {"max_pending", vl.MaxPending}, {"handshake_rate", vl.HandshakeRate}} {
		if f.n < 1 {
			v.add("gateway.vendor_limits."+f.key, "%d is not allowed; use 1 or more, or leave it out for the default", f.n)
		}
	}
	if vl.MaxConnections >= 1 && vl.MaxPerSource > vl.MaxConnections {
		v.add("gateway.vendor_limits.max_per_source", "%d is more than max_connections (%d); one address cannot use more than the whole listener, lower it", vl.MaxPerSource, vl.MaxConnections)
	}
	if h := vl.HandshakeTimeout.D(); h < MinVendorHandshakeTimeout || h > MaxVendorHandshakeTimeout {
		v.add("gateway.vendor_limits.handshake_timeout", "%s is outside the allowed range; use between 1s and 60s (10s is usual)", vl.HandshakeTimeout)
	}

	r := g.Recordings
	if r.MaxBytes < MinRecordingsMaxBytes {
		v.add("gateway.recordings.max_bytes", "%s is too small; use at least 1MiB (1GiB is usual)", r.MaxBytes)
	}
	if r.MaxFreeShare < MinRecordingsFreeShare || r.MaxFreeShare > MaxRecordingsFreeShare {
		v.add("gateway.recordings.max_free_share", "%s is outside the allowed range; use between 1%% and 90%% of the state disk's free space (25%% is usual)", r.MaxFreeShare)
	}
	if f := r.FsyncEvery.D(); f < MinFsyncEvery || f > MaxFsyncEvery {
		v.add("gateway.recordings.fsync_every", "%s is outside the allowed range; use between 100ms and 30s (2s is usual)", r.FsyncEvery)
	}
}

func (v *validator) listenAddr(path, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(path, "%q is not a listen address; write HOST:PORT or :PORT, e.g. :8443", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.add(path, "port %q is out of range; use 1 to 65535", port)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		v.add(path, "host %q is not an IP address; listen on an address of this gateway, or :PORT for all", host)
	}
}

func (v *validator) identity(c *Config) {
	id := c.Identity
	ca := id.CA
	if !v.decoded("identity.ca") {
		ca = "" // step was defaulted in; do not insist on its settings
	}
	switch ca {
	case "step":
		u, err := url.Parse(id.CAURL)
		switch {
		case id.CAURL == "":
			v.add("identity.ca_url", "missing; set the URL of the hospital's CA, e.g. https://ca.hospital.example:9000")
		case err != nil || u.Scheme != "https" || u.Host == "":
			v.add("identity.ca_url", "%q is not an https URL; the CA must be reached over https", id.CAURL)
		}
		fp := strings.ReplaceAll(id.RootFingerprint, ":", "")
		switch {
		case id.RootFingerprint == "":
			v.add("identity.root_fingerprint", "missing; ask the CA operator for the root fingerprint (`step certificate fingerprint root_ca.crt`)")
		case !hexSHA256.MatchString(fp):
			v.add("identity.root_fingerprint", "not a SHA-256 fingerprint; it must be 64 hexadecimal characters")
		}
	case "dev", "":
	default:
		v.add("identity.ca", "%q is not a CA kind; use step (the hospital's CA) or dev (built-in development CA, labs only)", id.CA)
	}
	if l := id.Lifetime.D(); l < MinLifetime || l > MaxLifetime {
		v.add("identity.lifetime", "%s is outside the allowed range; use between 5m and 24h (4h is a good choice)", id.Lifetime)
	}
	if id.RekeyEvery < 1 {
		v.add("identity.rekey_every", "must be 1 or more (1 re-keys at every renewal)")
	}
}

func (v *validator) mqtt(c *Config) {
	m := c.MQTT
	_, listed := v.d.lines["mqtt.brokers"]
	switch {
	case len(m.Brokers) == 0 && v.decoded("mqtt.brokers") && v.decoded("mqtt.broker"):
		v.add("mqtt.broker", "missing; set the telemetry broker, e.g. broker: mqtts://broker.hospital.example:8883, or brokers: [URL, URL] for a cluster")
	case listed && m.Broker != "" && m.Broker != m.Brokers[0]:
		v.add("mqtt.broker", "both broker and brokers are set; keep brokers (a list) and remove broker")
	}
	seen := map[string]bool{}
	for i, b := range m.Brokers {
		p := fmt.Sprintf("mqtt.brokers[%d]", i)
		if !listed {
			p = "mqtt.broker"
		}
		u, err := url.Parse(b)
		switch {
		case b == "":
			v.add(p, "empty; write a broker URL like mqtts://broker.hospital.example:8883")
		case err != nil || u.Host == "":
			v.add(p, "%q is not a broker URL; write it like mqtts://broker.hospital.example:8883", b)
		case u.Scheme != "mqtts" && u.Scheme != "ssl" && u.Scheme != "tls":
			v.add(p, "scheme %q is not allowed; telemetry goes over TLS only, use mqtts://", u.Scheme)
		case seen[b]:
			v.add(p, "%q is listed twice; list each broker once", b)
		}
		seen[b] = true
	}
	if m.MetricsInterval.D() < MinMetricsInterval {
		v.add("mqtt.metrics_interval", "%s is too short; use 1s or more (60s is usual)", m.MetricsInterval)
	}
	if m.OutboxMax < MinOutbox {
		v.add("mqtt.outbox_max", "%s is too small; use at least 1MiB (256MiB is usual)", m.OutboxMax)
	} else if m.OutboxReserve >= m.OutboxMax && v.decoded("mqtt.outbox_max") {
		v.add("mqtt.outbox_reserve", "%s is not less than outbox_max (%s); the reserve for security events is part of the outbox, use less (outbox_max/4 is the default)", m.OutboxReserve, m.OutboxMax)
	}
}

func (v *validator) hal(c *Config) {
	h := c.HAL
	driver := h.Driver
	if !v.decoded("hal.driver") {
		driver = "" // periph was defaulted in; do not ask for its pins
	}
	switch driver {
	case "periph":
		for path, pin := range map[string]string{
			"hal.approve_button": h.ApproveButton,
			"hal.leds.ok":        h.LEDs.OK, "hal.leds.vendor": h.LEDs.Vendor, "hal.leds.alarm": h.LEDs.Alarm,
		} {
			if pin == "" {
				v.add(path, "missing; name the GPIO pin, e.g. GPIO17 (see docs/hardware.md)")
			}
		}
	case "sim", "":
	default:
		v.add("hal.driver", "%q is not a driver; use periph (real GPIO) or sim (simulated hardware)", h.Driver)
	}
	seen := map[string]string{}
	for _, p := range []struct{ path, pin string }{
		{"hal.approve_button", h.ApproveButton}, {"hal.leds.ok", h.LEDs.OK},
		{"hal.leds.vendor", h.LEDs.Vendor}, {"hal.leds.alarm", h.LEDs.Alarm}, {"hal.tamper", h.Tamper},
	} {
		if p.pin == "" || p.pin == "none" {
			continue
		}
		if other, dup := seen[p.pin]; dup {
			v.add(p.path, "pin %s is already used by %s; give each signal its own pin", p.pin, other)
		}
		seen[p.pin] = p.path
	}
	if h.Watchdog != "none" && !filepath.IsAbs(h.Watchdog) {
		v.add("hal.watchdog", "%q is not an absolute path; use /dev/watchdog, or none when systemd's RuntimeWatchdogSec owns it", h.Watchdog)
	}
	if h.LongPress.D() < 500*time.Millisecond || h.LongPress.D() > 30*time.Second {
		v.add("hal.long_press", "%s is outside the allowed range; use between 500ms and 30s", h.LongPress)
	}
}

func (v *validator) vendors(c *Config) map[string]bool {
	orgs := map[string]bool{}
	for i, vd := range c.Vendors {
		p := fmt.Sprintf("vendors[%d]", i)
		v.label(p+".org", vd.Org, "vendor organisation")
		if orgs[vd.Org] && vd.Org != "" {
			v.add(p+".org", "vendor %q is listed twice; merge the entries", vd.Org)
		}
		orgs[vd.Org] = true
		if len(vd.Identities) == 0 {
			v.add(p+".identities", "missing; list the technicians' identities, e.g. spiffe://%s/vendor/%s/*", c.Gateway.TrustDomain, vd.Org)
		}
		prefix := "spiffe://" + v.td + "/vendor/" + vd.Org + "/"
		for j, pat := range vd.Identities {
			if v.td == "" || !v.decoded(p+".org") {
				break // reported at gateway.trust_domain or the org
			}
			if !strings.HasPrefix(pat, prefix) || len(pat) == len(prefix) {
				v.add(fmt.Sprintf("%s.identities[%d]", p, j), "%q must name this vendor's technicians: start it with %s", pat, prefix)
			}
		}
		if l := vd.MaxCertLifetime.D(); l < time.Minute || l > MaxVendorLifetime {
			v.add(p+".max_cert_lifetime", "%s is outside the allowed range; use between 1m and 7d (short-lived certificates, e.g. 12h)", vd.MaxCertLifetime)
		}
	}
	return orgs
}

// listener is one address the gateway listens on, for collision checks.
type listener struct{ path, host, port string }

func (a listener) collides(b listener) bool {
	if a.port != b.port {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return a.host == b.host || wild(a.host) || wild(b.host)
}

func (v *validator) devices(c *Config, orgs map[string]bool) {
	var listeners []listener
	addListener := func(path, addr string) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return // reported by listenAddr
		}
		l := listener{path, host, port}
		for _, o := range listeners {
			if o.collides(l) {
				v.add(path, "%s collides with %s; give each listener its own port", addr, o.path)
				return
			}
		}
		listeners = append(listeners, l)
	}
	if v.decoded("gateway.vendor_listen") {
		addListener("gateway.vendor_listen", c.Gateway.VendorListen)
	}

	deviceIDs := map[string]string{}
	accountIDs := map[string]string{}
	exceptionIDs := map[string]string{}
	consoles := map[string]string{}
	for i := range c.Devices {
		dev := &c.Devices[i]
		p := fmt.Sprintf("devices[%d]", i)
		v.label(p+".id", dev.ID, "device")
		if other, dup := deviceIDs[dev.ID]; dup && dev.ID != "" {
			v.add(p+".id", "device id %q is already used by %s; ids must be unique", dev.ID, other)
		}
		deviceIDs[dev.ID] = p
		if strings.TrimSpace(dev.Owner) == "" {
			v.add(p+".owner", "missing; every device needs an accountable owner, e.g. clinical-engineering/icu")
		}
		v.link(p+".link", dev)
		v.clinical(p+".clinical", c, dev)
		// A retired device's listener is closed: its port is free for
		// the device that replaces it.
		if dev.Clinical.Listen != "" && !dev.IsRetired() {
			addListener(p+".clinical.listen", dev.Clinical.Listen)
		}
		if dev.Vendor != nil {
			v.deviceVendor(p, dev, orgs)
			v.vendorConsole(p, c, dev, consoles)
		}
		injected := map[int]string{}
		for j, a := range dev.Accounts {
			ap := fmt.Sprintf("%s.accounts[%d]", p, j)
			v.inject(ap, dev, &dev.Accounts[j], injected)
			v.recordID(ap+".id", a.ID, "account", accountIDs)
			if strings.TrimSpace(a.Owner) == "" {
				v.add(ap+".owner", "missing; every account needs an accountable owner")
			}
			if strings.TrimSpace(a.Type) == "" {
				v.add(ap+".type", "missing; say what kind of credential it is, e.g. shared-password, ssh-key, api-token")
			}
			if a.RotateEvery == 0 {
				v.add(ap+".rotate_every", "missing; set how often the credential is rotated, e.g. 90d")
			}
			if !a.LastRotated.IsZero() && a.LastRotated.After(v.now) {
				v.add(ap+".last_rotated", "%s is in the future; give the date it was last rotated", a.LastRotated)
			}
			if a.Vendor != "" && !orgs[a.Vendor] && v.orgsKnown {
				v.add(ap+".vendor", "%q is not a configured vendor; add it under vendors or fix the name", a.Vendor)
			}
		}
		for j, e := range dev.Exceptions {
			ep := fmt.Sprintf("%s.exceptions[%d]", p, j)
			v.recordID(ep+".id", e.ID, "exception", exceptionIDs)
			for _, f := range []struct{ key, val, hint string }{
				{"control", e.Control, "the control it is an exception to, e.g. PR.PS-02"},
				{"reason", e.Reason, "why the control cannot be met"},
				{"approved_by", e.ApprovedBy, "who accepted the risk, e.g. ciso/jdoe"},
			} {
				if strings.TrimSpace(f.val) == "" {
					v.add(ep+"."+f.key, "missing; give %s", f.hint)
				}
			}
			if len(e.Compensating) == 0 {
				v.add(ep+".compensating", "missing; list the compensating controls, e.g. [segmentation, continuous-monitoring]")
			}
			switch {
			case e.Expires.IsZero():
				v.add(ep+".expires", "missing; every exception needs an expiry date (YYYY-MM-DD) at most 366 days ahead")
			case e.Expires.Sub(v.now) > MaxExceptionAhead:
				v.add(ep+".expires", "%s is more than 366 days ahead; exceptions are reviewed at least yearly, pick an earlier date", e.Expires)
			}
		}
	}
	v.retirement(c, deviceIDs)
}

func (v *validator) recordID(path, id, what string, seen map[string]string) {
	switch {
	case id == "":
		v.add(path, "missing; give the %s an id of letters, digits and dashes", what)
		return
	case !anyLabel.MatchString(id):
		v.add(path, "%q is not a valid id; use letters, digits and dashes (at most 63)", id)
	}
	if other, dup := seen[id]; dup {
		v.add(path, "%s id %q is already used at %s; ids must be unique", what, id, other)
	}
	seen[id] = path
}

func (v *validator) link(p string, dev *Device) {
	l := dev.Link
	switch {
	case l.TCP == "" && l.Serial == nil:
		v.add(p, "missing; set exactly one of tcp: HOST:PORT or serial: {port: /dev/ttyUSB0, baud: 9600}")
		return
	case l.TCP != "" && l.Serial != nil:
		v.add(p, "both tcp and serial are set; a device has exactly one link, keep one")
		return
	}
	if l.TCP != "" {
		host, port, err := net.SplitHostPort(l.TCP)
		n, perr := strconv.Atoi(port)
		if err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			v.add(p+".tcp", "%q is not a device address; write HOST:PORT, e.g. 10.20.0.7:4001", l.TCP)
		}
		return
	}
	s := l.Serial
	sp := p + ".serial"
	if !filepath.IsAbs(s.Port) {
		v.add(sp+".port", "%q is not a device path; use one such as /dev/ttyUSB0 or /dev/serial/by-id/...", s.Port)
	}
	for _, pr := range s.Problems() {
		if pr.Field != "port" { // a missing port is reported above
			v.add(sp+"."+pr.Field, "%s", pr.Message)
		}
	}
}

func (v *validator) clinical(p string, c *Config, dev *Device) {
	cl := dev.Clinical
	if cl.Listen == "" {
		v.add(p+".listen", "missing; set the address patient-care systems connect to, e.g. :7001")
	} else {
		v.listenAddr(p+".listen", cl.Listen)
	}
	if len(cl.Allow) == 0 {
		v.add(p+".allow", "missing; list the identities allowed in, e.g. spiffe://%s/svc/pump-server", c.Gateway.TrustDomain)
	}
	for j, pat := range cl.Allow {
		if msg := v.allowProblem(pat); msg != "" {
			v.add(fmt.Sprintf("%s.allow[%d]", p, j), "%s", msg)
		}
	}
	if l := cl.MaxCertLifetime.D(); l < time.Minute || l > MaxVendorLifetime {
		v.add(p+".max_cert_lifetime", "%s is outside the allowed range; use between 1m and 7d", cl.MaxCertLifetime)
	}
	if cl.MaxConnections < 1 || cl.MaxPerSource < 1 {
		v.add(p, "connection limits must be 1 or more")
	}
	if cl.MaxPending < 0 {
		v.add(p+".max_pending", "%d is not allowed; use 1 or more, or 0 (or leave it out) for the clinical relay's default", cl.MaxPending)
	}
}

// reservedKinds are the first path segments of identities that must never
// reach a device's clinical port directly: vendors reach devices only
// through the vendor channel (approval, recording); approvers and gateways
// have no business there.
var reservedKinds = []string{"vendor", "approver", "gateway"}

// allowProblem returns what is wrong with a clinical allow pattern, or "".
func (v *validator) allowProblem(pat string) string {
	hint := "use spiffe://" + cmp.Or(v.td, "TRUST_DOMAIN") + "/svc/NAME patterns for patient-care systems"
	rest, ok := strings.CutPrefix(pat, "spiffe://")
	if !ok {
		return fmt.Sprintf("%q is not a SPIFFE identity pattern; %s", pat, hint)
	}
	td, path, _ := strings.Cut(rest, "/")
	if strings.Contains(td, "*") {
		return fmt.Sprintf("%q has a wildcard trust domain: it would admit identities of every trust domain, vendors included, to the raw clinical port without approval or recording; %s", pat, hint)
	}
	first, _, _ := strings.Cut(path, "/")
	switch {
	case strings.Contains(first, "*"):
		return fmt.Sprintf("%q starts its path with a wildcard: it would admit vendor technicians to the raw clinical port without approval or recording; %s", pat, hint)
	case slices.Contains(reservedKinds, first):
		return fmt.Sprintf("%q admits %s identities to the clinical path, where they would reach the raw clinical port without approval or recording (vendors come in only through the vendor channel); %s", pat, first, hint)
	case v.td == "":
		return "" // the trust domain's own problem is reported at gateway.trust_domain
	case td != v.td || path == "":
		return fmt.Sprintf("%q is not an identity of this trust domain; start it with spiffe://%s/ (%s)", pat, v.td, hint)
	}
	return ""
}

func (v *validator) deviceVendor(dp string, dev *Device, orgs map[string]bool) {
	p := dp + ".vendor"
	vd := dev.Vendor
	switch {
	case vd.Org == "":
		v.add(p+".org", "missing; name the vendor (one of vendors[].org) allowed to service this device")
	case !orgs[vd.Org] && v.orgsKnown:
		v.add(p+".org", "%q is not a configured vendor; add it under vendors or fix the name", vd.Org)
	}
	if len(vd.Ports) == 0 && vd.Console == nil {
		v.add(p+".ports", "missing; declare the service ports a vendor may reach, e.g. [23, 8080], or a console")
	}
	clinicalPort := -1
	if dev.Link.TCP != "" && dev.Link.Serial == nil && v.decoded(dp+".link") {
		if _, port, err := net.SplitHostPort(dev.Link.TCP); err == nil {
			if n, err := strconv.Atoi(port); err == nil {
				clinicalPort = n
			}
		}
	}
	seen := map[int]bool{}
	for j, port := range vd.Ports {
		pp := fmt.Sprintf("%s.ports[%d]", p, j)
		if port < 1 || port > 65535 {
			v.add(pp, "port %d is out of range; use 1 to 65535", port)
		}
		if seen[port] {
			v.add(pp, "port %d is listed twice", port)
		}
		seen[port] = true
		if port == clinicalPort {
			v.add(pp, "port %d is the device's clinical service (link.tcp %s): a vendor would reach the raw clinical port without approval or recording, around the clinical mTLS front; remove it and list only the device's service ports", port, dev.Link.TCP)
		}
	}
	if len(vd.Approval) == 0 {
		v.add(p+".approval", "missing; say who approves vendor access: [local], [central] or [local, central]")
	}
	seenA := map[string]bool{}
	for j, a := range vd.Approval {
		ap := fmt.Sprintf("%s.approval[%d]", p, j)
		if a != "local" && a != "central" {
			v.add(ap, "%q is not an approval kind; use local (button or CLI) or central (signed command)", a)
		}
		if seenA[a] {
			v.add(ap, "%q is listed twice", a)
		}
		seenA[a] = true
	}
	if s := vd.MaxSession.D(); s < 10*time.Second || s > MaxSessionLimit {
		v.add(p+".max_session", "%s is outside the allowed range; use between 10s and 24h (1h is usual)", vd.MaxSession)
	}
	if r := vd.RequestTimeout.D(); r < time.Minute || r > 24*time.Hour {
		v.add(p+".request_timeout", "%s is outside the allowed range; use between 1m and 24h", vd.RequestTimeout)
	}
	if vd.Host == "" && len(vd.Ports) > 0 && v.decoded(dp+".link") {
		v.add(p+".host", "missing; serial devices need the device's network address for service ports (a console-only device lists no ports)")
	} else if strings.ContainsAny(vd.Host, ":/ ") && net.ParseIP(vd.Host) == nil {
		v.add(p+".host", "%q is not a host; give an IP address or host name", vd.Host)
	}
}
