package monitor

import (
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/wardgate/wardgate/config"
)

// authState counts failures per source and claimed identity, and tracks
// where each vendor identity is active.
type authState struct {
	bySource   map[string]*burst
	byIdentity map[string]*burst
	byDevice   map[string]*burst // clinical failures per device, folded ones included
	// vendors: identity -> source address -> activity.
	vendors map[string]map[string]*vendorSeen
	// sessions: vendor session id -> identity and source.
	sessions map[string][2]string
}

type burst struct {
	start, first, last time.Time
	count              int
	devices            map[string]bool
}

type vendorSeen struct {
	last time.Time
	live int // sessions open from this source
}

// vendorAtOnce is how close in time two sources of one vendor identity
// count as "at once" when neither has a live session.
const vendorAtOnce = 2 * time.Minute

// maxTracked bounds the per-source and per-identity maps: beyond it new
// keys are folded into one.
const maxTracked = 8192

func (a *authState) init() {
	a.bySource, a.byIdentity, a.byDevice = map[string]*burst{}, map[string]*burst{}, map[string]*burst{}
	a.vendors, a.sessions = map[string]map[string]*vendorSeen{}, map[string][2]string{}
}

// expire forgets bursts whose window ended and idle vendor sources.
func (a *authState) expire(now time.Time, mon config.Monitor) {
	w := mon.FailedHandshakes.Window.D()
	for _, m := range []map[string]*burst{a.bySource, a.byIdentity, a.byDevice} {
		for k, b := range m {
			if now.Sub(b.start) >= w {
				delete(m, k)
			}
		}
	}
	for id, srcs := range a.vendors {
		for s, v := range srcs {
			if v.live <= 0 && now.Sub(v.last) > vendorAtOnce {
				delete(srcs, s)
			}
		}
		if len(srcs) == 0 {
			delete(a.vendors, id)
		}
	}
}

// hostOf returns the address part of IP:port ("" stays "").
func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

func atoiOr(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil && n > 0 {
		return n
	}
	return def
}

func (m *Monitor) observeLocked(t time.Time, kind string, a map[string]string, out *[]Finding) {
	switch kind {
	case "clinical.handshake_failed", "clinical.refused":
		n := 1 + atoiOr(a["suppressed"], 0)
		claimed := a["identity"]
		if claimed == "" {
			claimed = a["claimed"]
		}
		// The relay folds its refusals per device and reason, not per
		// source: the folded ones count for the device, and only the one
		// this event names for its source and identity.
		m.authFailLocked(t, hostOf(a["remote"]), claimed, a["device"], a["reason"], 1, out)
		m.deviceFailLocked(t, a["device"], a["remote"], a["reason"], n, out)
		if kind == "clinical.refused" {
			m.refusalLocked(t, a["reason"], claimed, a["remote"], a["device"], n, out)
		}
	case "vendor.refused":
		n := atoiOr(a["count"], 1)
		// The vendor channel's refusal codes (access.Code*), snake_case.
		code := a["code"]
		switch code {
		case "handshake", "bad_certificate", "identity", "locked":
			m.authFailLocked(t, hostOf(a["remote"]), a["vendor"], a["device"], code, n, out)
		}
		switch {
		case (code == "bad_certificate" || code == "identity") && strings.Contains(a["reason"], "not issued by"):
			m.refusalLocked(t, "untrusted", a["vendor"], a["remote"], a["device"], n, out)
		case code == "identity" && (strings.Contains(a["reason"], "lifetime") || strings.Contains(a["reason"], "lives longer")):
			m.refusalLocked(t, "lifetime_too_long", a["vendor"], a["remote"], a["device"], n, out)
		case code == "locked" || code == "identity" && strings.Contains(a["reason"], "locked"):
			// The broker's own lock check (locked) or the peer policy's
			// (identity, before the identity is named).
			m.refusalLocked(t, "locked", a["vendor"], a["remote"], a["device"], n, out)
		case code == "off_hours":
			m.vendorOffHoursLocked(t, a, "refused", n, out)
		}
		authenticated := code != "handshake" && code != "bad_certificate" && code != "identity"
		if authenticated && a["vendor"] != "" && a["remote"] != "" {
			m.vendorSourceLocked(t, a["vendor"], hostOf(a["remote"]), 0, out)
		}
	case "vendor.request":
		m.vendorOffHoursLocked(t, a, "requested", 1, out)
	case "vendor.session_start":
		m.vendorOffHoursLocked(t, a, "session", 1, out)
		if v, s := a["vendor"], hostOf(a["remote"]); v != "" && s != "" {
			if id := a["session"]; id != "" {
				m.auth.sessions[id] = [2]string{v, s}
			}
			m.vendorSourceLocked(t, v, s, 1, out)
		}
	case "vendor.session_end":
		if vs, ok := m.auth.sessions[a["session"]]; ok {
			delete(m.auth.sessions, a["session"])
			if v := m.auth.vendors[vs[0]][vs[1]]; v != nil {
				v.live--
				v.last = t
			}
		}
	case "clinical.session_start":
		m.clinicalIdentityLocked(t, a["device"], a["identity"], hostOf(a["remote"]), out)
	case "vendor.approve", "vendor.deny", "vendor.revoke", "access.lock_add", "access.lock_remove", "access.tamper_clear":
		m.approverLocked(t, kind, a, out)
	}
}

// authFailLocked counts n failed handshakes from source for claimed and
// raises monitor.auth_burst when a threshold is reached within the window.
func (m *Monitor) authFailLocked(t time.Time, source, claimed, device, reason string, n int, out *[]Finding) {
	fh := m.set.mon.FailedHandshakes
	count := func(mp map[string]*burst, key string) *burst {
		if key == "" {
			return nil
		}
		b := mp[key]
		if b != nil && t.Sub(b.start) >= fh.Window.D() {
			b = nil
		}
		if b == nil {
			if len(mp) >= maxTracked {
				key = "(many)"
				if b = mp[key]; b != nil {
					b.count += n
					b.last = t
					return b
				}
			}
			b = &burst{start: t, first: t, devices: map[string]bool{}}
			mp[key] = b
		}
		b.count += n
		b.last = t
		if device != "" && len(b.devices) < 16 {
			b.devices[device] = true
		}
		return b
	}
	report := func(b *burst, by, key string, threshold int) {
		if b == nil || b.count < threshold {
			return
		}
		c := n
		if b.count-n < threshold { // this event crossed the threshold
			c = b.count
		}
		devs := make([]string, 0, len(b.devices))
		for d := range b.devices {
			devs = append(devs, d)
		}
		*out = m.withRaise(*out, Finding{Time: t, Kind: KindAuthBurst, Key: by + ":" + key, Count: c, First: b.first, Last: b.last,
			Evidence: map[string]string{"by": by, by: key, "failures_in_window": strconv.Itoa(b.count), "threshold": strconv.Itoa(threshold),
				"window": fh.Window.String(), "last_reason": reason, "devices": strings.Join(sortStrings(devs), ",")}})
	}
	report(count(m.auth.bySource, source), "source", source, fh.PerSource)
	report(count(m.auth.byIdentity, claimed), "identity", claimed, fh.PerIdentity)
}

// deviceFailLocked counts n failed clinical handshakes on a device from any
// source; per_source failures on one device within the window raise
// monitor.auth_burst by device (the relay's folded refusals do not say
// which source each came from).
func (m *Monitor) deviceFailLocked(t time.Time, device, remote, reason string, n int, out *[]Finding) {
	if device == "" {
		return
	}
	fh := m.set.mon.FailedHandshakes
	b := m.auth.byDevice[device]
	if b != nil && t.Sub(b.start) >= fh.Window.D() {
		b = nil
	}
	if b == nil {
		b = &burst{start: t, first: t}
		m.auth.byDevice[device] = b
	}
	b.count += n
	b.last = t
	if b.count < fh.PerSource {
		return
	}
	c := n
	if b.count-n < fh.PerSource {
		c = b.count
	}
	f := Finding{Time: t, Kind: KindAuthBurst, Key: "device:" + device, Device: device, Count: c, First: b.first, Last: b.last,
		Evidence: map[string]string{"by": "device", "failures_in_window": strconv.Itoa(b.count), "threshold": strconv.Itoa(fh.PerSource),
			"window": fh.Window.String(), "last_reason": reason, "last_remote": remote}}
	if d := m.set.devices[device]; d != nil {
		f.Owner = d.owner
	}
	m.raiseLocked(f, out)
}

// withRaise is raiseLocked for call sites holding a slice.
func (m *Monitor) withRaise(out []Finding, f Finding) []Finding {
	m.raiseLocked(f, &out)
	return out
}

// refusalLocked turns certificate refusals into findings: an untrusted
// issuer, a refused lifetime, a locked identity retrying.
func (m *Monitor) refusalLocked(t time.Time, reason, identity, remote, device string, n int, out *[]Finding) {
	var kind string
	switch reason {
	case "untrusted":
		kind = KindUnknownIssuer
	case "lifetime_too_long":
		kind = KindRefusedLifetime
	case "locked":
		kind = KindLockedRetry
	default:
		return
	}
	key := identity
	if key == "" {
		key = hostOf(remote)
	}
	f := Finding{Time: t, Kind: kind, Key: key, Device: device, Count: n,
		Evidence: map[string]string{"remote": remote, "identity": identity, "reason": reason}}
	if d := m.set.devices[device]; d != nil {
		f.Owner = d.owner
	}
	m.raiseLocked(f, out)
}

// vendorSourceLocked records vendor activity from source (live: +1 for a
// session start) and raises monitor.identity_two_sources when the identity
// is active from another address at the same time.
func (m *Monitor) vendorSourceLocked(t time.Time, vendor, source string, live int, out *[]Finding) {
	srcs := m.auth.vendors[vendor]
	if srcs == nil {
		if len(m.auth.vendors) >= maxTracked {
			return
		}
		srcs = map[string]*vendorSeen{}
		m.auth.vendors[vendor] = srcs
	}
	v := srcs[source]
	if v == nil {
		if len(srcs) >= 16 {
			return
		}
		v = &vendorSeen{}
		srcs[source] = v
	}
	v.last = t
	v.live += live
	var others []string
	for s, o := range srcs {
		if s != source && (o.live > 0 || t.Sub(o.last) <= vendorAtOnce) {
			others = append(others, s)
		}
	}
	if len(others) == 0 {
		return
	}
	m.raiseLocked(Finding{Time: t, Kind: KindTwoSources, Key: vendor,
		Evidence: map[string]string{"identity": vendor, "source": source, "other_sources": strings.Join(sortStrings(others), ","),
			"live_sessions": strconv.Itoa(v.live)}}, out)
}

// vendorOffHoursLocked raises monitor.vendor_off_hours for vendor activity
// outside the device's service hours.
func (m *Monitor) vendorOffHoursLocked(t time.Time, a map[string]string, what string, n int, out *[]Finding) {
	d := m.set.devices[a["device"]]
	if d == nil || d.hours.IsZero() {
		return
	}
	if what != "refused" && d.hours.Contains(t.Local()) {
		return
	}
	sev := SevWarning
	if what == "refused" {
		sev = SevInfo // the broker refused it already
	}
	m.raiseLocked(Finding{Time: t, Kind: KindVendorOffHours, Key: a["device"] + ":" + a["vendor"], Device: d.id, Owner: d.owner, Count: n, Sev: sev,
		Evidence: map[string]string{"vendor": a["vendor"], "what": what, "hours": d.hours.String(), "remote": a["remote"], "grant": a["grant"]}}, out)
}

// clinicalIdentityLocked learns which identities reach each device; after
// the device's learning window a new one is a finding.
func (m *Monitor) clinicalIdentityLocked(t time.Time, device, identity, source string, out *[]Finding) {
	if device == "" || identity == "" {
		return
	}
	key := device + "\x00" + identity
	if m.st.has(bucketIdentities, key) {
		return
	}
	learning := m.learningLocked(t, device)
	if err := m.st.put(bucketIdentities, key, t.UTC()); err != nil {
		m.log.Warn("monitor state not saved", "err", err)
	}
	if learning {
		return
	}
	f := Finding{Time: t, Kind: KindNewClinicalID, Key: key, Device: device,
		Evidence: map[string]string{"identity": identity, "remote": source}}
	if d := m.set.devices[device]; d != nil {
		f.Owner = d.owner
	}
	f.Key = device + ":" + identity
	m.raiseLocked(f, out)
}

// approverHours is one actor's learned hours of the day.
type approverHours struct {
	Hours [24]int `json:"hours"`
	Total int     `json:"total"`
}

// approverLocked learns at which hours of the day each person acts; after
// ApproverLearn actions, one at an hour they never acted within an hour of
// is a finding.
func (m *Monitor) approverLocked(t time.Time, kind string, a map[string]string, out *[]Finding) {
	actor := a["actor"]
	if actor == "" || strings.HasPrefix(actor, "system") || actor == "local:button" {
		return // the gateway itself, or a press of the button (no person named)
	}
	var h approverHours
	m.st.get(bucketApprovers, actor, &h)
	hr := t.Local().Hour()
	usual := h.Hours[hr] > 0 || h.Hours[(hr+1)%24] > 0 || h.Hours[(hr+23)%24] > 0
	if h.Total >= m.set.mon.ApproverLearn && !usual {
		var seen []string
		for i, c := range h.Hours {
			if c > 0 {
				seen = append(seen, strconv.Itoa(i))
			}
		}
		m.raiseLocked(Finding{Time: t, Kind: KindApproverOffHours, Key: actor, Device: a["device"],
			Evidence: map[string]string{"actor": actor, "action": kind, "hour": strconv.Itoa(hr), "usual_hours": strings.Join(seen, ","),
				"actions_learned": strconv.Itoa(h.Total), "grant": a["grant"], "identity": a["identity"]}}, out)
	}
	h.Hours[hr]++
	h.Total++
	if err := m.st.put(bucketApprovers, actor, h); err != nil {
		m.log.Warn("monitor state not saved", "err", err)
	}
}
