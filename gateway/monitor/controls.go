package monitor

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wardgate/wardgate/config"
)

// System answers the segmentation questions about the gateway's own
// network stack.
type System interface {
	// Forwarding reports whether the kernel forwards packets of the
	// address family of ip arriving on iface (both the global switch and
	// the interface's must be on for that).
	Forwarding(iface string, ip netip.Addr) (bool, error)
	// RouteInterface returns the interface the route to ip goes out of.
	RouteInterface(ip netip.Addr) (string, error)
}

// ProcSystem reads /proc (Root prefixes it, for tests).
type ProcSystem struct{ Root string }

func (p ProcSystem) readBool(path string) (bool, error) {
	b, err := os.ReadFile(p.Root + path)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(b)) != "0", nil
}

// Forwarding implements System.
func (p ProcSystem) Forwarding(iface string, ip netip.Addr) (bool, error) {
	if strings.ContainsAny(iface, "/\x00") || iface == "" || iface == "." || iface == ".." {
		return false, fmt.Errorf("bad interface name %q", iface)
	}
	if ip.Is6() && !ip.Is4In6() {
		all, err := p.readBool("/proc/sys/net/ipv6/conf/all/forwarding")
		if err != nil || !all {
			return all, err
		}
		return p.readBool("/proc/sys/net/ipv6/conf/" + iface + "/forwarding")
	}
	all, err := p.readBool("/proc/sys/net/ipv4/ip_forward")
	if err != nil || !all {
		return all, err
	}
	return p.readBool("/proc/sys/net/ipv4/conf/" + iface + "/forwarding")
}

// RouteInterface implements System: the longest matching prefix of
// /proc/net/route (IPv4) or /proc/net/ipv6_route, lowest metric first.
func (p ProcSystem) RouteInterface(ip netip.Addr) (string, error) {
	ip = ip.Unmap()
	name := "/proc/net/route"
	if ip.Is6() {
		name = "/proc/net/ipv6_route"
	}
	f, err := os.Open(p.Root + name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var routes []route
	if ip.Is6() {
		routes, err = parseIPv6Routes(f)
	} else {
		routes, err = parseIPv4Routes(f)
	}
	if err != nil {
		return "", err
	}
	return bestRoute(routes, ip)
}

type route struct {
	prefix netip.Prefix
	metric uint32
	iface  string
}

func bestRoute(routes []route, ip netip.Addr) (string, error) {
	best := -1
	for i, r := range routes {
		if !r.prefix.Contains(ip) {
			continue
		}
		if best < 0 || r.prefix.Bits() > routes[best].prefix.Bits() ||
			r.prefix.Bits() == routes[best].prefix.Bits() && r.metric < routes[best].metric {
			best = i
		}
	}
	if best < 0 {
		return "", fmt.Errorf("no route to %s", ip)
	}
	return routes[best].iface, nil
}

// parseIPv4Routes parses /proc/net/route: Iface Destination Gateway Flags
// RefCnt Use Metric Mask ..., addresses in host-order hex.
func parseIPv4Routes(r io.Reader) ([]route, error) {
	sc := bufio.NewScanner(io.LimitReader(r, 4<<20))
	var out []route
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[0] == "Iface" {
			continue
		}
		dst, err1 := strconv.ParseUint(f[1], 16, 32)
		mask, err2 := strconv.ParseUint(f[7], 16, 32)
		metric, err3 := strconv.ParseUint(f[6], 10, 32)
		flags, err4 := strconv.ParseUint(f[3], 16, 32)
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil || flags&1 == 0 { // RTF_UP
			continue
		}
		var d, mk [4]byte
		binary.NativeEndian.PutUint32(d[:], uint32(dst))
		binary.NativeEndian.PutUint32(mk[:], uint32(mask))
		bits := 0
		for _, b := range mk {
			for i := 7; i >= 0 && b&(1<<i) != 0; i-- {
				bits++
			}
		}
		pfx, err := netip.AddrFrom4(d).Prefix(bits)
		if err != nil {
			continue
		}
		out = append(out, route{pfx, uint32(metric), f[0]})
	}
	return out, sc.Err()
}

// parseIPv6Routes parses /proc/net/ipv6_route: dst dst_len src src_len
// next_hop metric refcnt use flags iface.
func parseIPv6Routes(r io.Reader) ([]route, error) {
	sc := bufio.NewScanner(io.LimitReader(r, 4<<20))
	var out []route
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		raw, err := hex.DecodeString(f[0])
		if err != nil || len(raw) != 16 {
			continue
		}
		bits, err1 := strconv.ParseUint(f[1], 16, 8)
		metric, err2 := strconv.ParseUint(f[5], 16, 32)
		flags, err3 := strconv.ParseUint(f[8], 16, 32)
		if err1 != nil || err2 != nil || err3 != nil || flags&1 == 0 || f[9] == "lo" && flags&0x200 != 0 { // RTF_UP; skip reject routes
			continue
		}
		pfx, err := netip.AddrFrom16([16]byte(raw)).Prefix(int(bits))
		if err != nil {
			continue
		}
		out = append(out, route{pfx, uint32(metric), f[9]})
	}
	return out, sc.Err()
}

// ControlState is the live state of one compensating control.
type ControlState struct {
	Name    string    `json:"name"`
	InForce bool      `json:"in_force"`
	Detail  string    `json:"detail"` // what was checked, or why it is not in force
	Checked time.Time `json:"checked"`
	Since   time.Time `json:"since"` // the state holds since

	reported time.Time // last monitor.control_not_in_force for it
}

// ExceptionControls are the live controls of one exception.
type ExceptionControls struct {
	Device     string         `json:"device"`
	Exception  string         `json:"exception"`
	ApprovedBy string         `json:"approved_by"`
	Controls   []ControlState `json:"controls"`
}

type controlKey struct{ device, exception, control string }

// controlCheck tells whether a control is in force for a device.
type controlCheck func(m *Monitor, s *settings, dev *config.Device) (bool, string)

// controlChecks maps every name config.CompensatingControls lists to its
// check.
var controlChecks = map[string]controlCheck{
	config.ControlSegmentation:         checkSegmentation,
	config.ControlRestrictedAdminPath:  checkRestrictedAdmin,
	config.ControlContinuousMonitoring: checkContinuousMonitoring,
	config.ControlVendorHours:          checkVendorHours,
	config.ControlNoVendorAccess:       checkNoVendorAccess,
}

func checkSegmentation(m *Monitor, s *settings, dev *config.Device) (bool, string) {
	iface := s.mon.SegmentInterface
	if iface == "" {
		return false, "monitor.segment_interface is not set: the segment cannot be checked"
	}
	di := s.devices[dev.ID]
	if di == nil || len(di.ips) == 0 {
		return false, fmt.Sprintf("the device's address %q is unknown or does not resolve", di.host)
	}
	for _, ip := range di.ips {
		out, err := m.o.System.RouteInterface(ip)
		if err != nil {
			return false, fmt.Sprintf("no route to %s: %v", ip, err)
		}
		if out != iface {
			return false, fmt.Sprintf("the route to %s goes out %s, not the segment interface %s", ip, out, iface)
		}
		fwd, err := m.o.System.Forwarding(iface, ip)
		if err != nil {
			return false, fmt.Sprintf("cannot read forwarding for %s: %v", iface, err)
		}
		if fwd {
			return false, fmt.Sprintf("the gateway forwards packets on %s: other networks can reach %s through it; set net.ipv4.ip_forward=0 (or forwarding=0 on %s)", iface, ip, iface)
		}
	}
	return true, fmt.Sprintf("%s reachable only out %s, not forwarded", joinAddrs(di.ips), iface)
}

func joinAddrs(a []netip.Addr) string {
	s := make([]string, len(a))
	for i, x := range a {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

func checkRestrictedAdmin(m *Monitor, s *settings, dev *config.Device) (bool, string) {
	if m.o.Env.VendorPolicy == nil || m.o.Env.LocksEnforced == nil {
		return false, "the vendor broker is not running"
	}
	p, ok := m.o.Env.VendorPolicy(dev.ID)
	if !ok {
		return false, "the vendor broker has no policy for this device"
	}
	switch {
	case len(p.Approval) == 0:
		return false, "vendor access does not require approval"
	case len(p.Ports) == 0:
		return false, "no vendor ports are declared"
	case !m.o.Env.LocksEnforced():
		return false, "the vendor broker does not consult locks"
	}
	return true, fmt.Sprintf("approval %s, ports %s, locks enforced", strings.Join(p.Approval, "+"), intsString(p.Ports))
}

func intsString(p []int) string {
	s := make([]string, len(p))
	for i, x := range p {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func checkContinuousMonitoring(m *Monitor, s *settings, dev *config.Device) (bool, string) {
	if !s.mon.On() {
		return false, "the monitor is disabled (monitor.enabled: false)"
	}
	if m.o.Env.TelemetryOldest == nil {
		return false, "telemetry is not running"
	}
	oldest, running := m.o.Env.TelemetryOldest()
	if !running {
		return false, "telemetry is not running"
	}
	within := s.mon.TelemetryWithin.D()
	if !oldest.IsZero() {
		if age := m.clock.Now().Sub(oldest); age > within {
			return false, fmt.Sprintf("telemetry has waited %s for delivery (more than %s): central security does not see this gateway", age.Round(time.Second), within)
		}
	}
	return true, fmt.Sprintf("monitor on, telemetry delivered within %s", within)
}

func checkVendorHours(m *Monitor, s *settings, dev *config.Device) (bool, string) {
	if dev.Vendor == nil || dev.Vendor.Hours.IsZero() {
		return false, "the device has no vendor.hours"
	}
	if m.o.Env.VendorPolicy == nil {
		return false, "the vendor broker is not running"
	}
	p, ok := m.o.Env.VendorPolicy(dev.ID)
	if !ok || !p.Hours {
		return false, "the vendor broker does not enforce the device's hours"
	}
	return true, "vendor requests outside " + dev.Vendor.Hours.String() + " are " + map[string]string{config.OffHoursRefuse: "refused", config.OffHoursCentral: "held for central approval"}[dev.Vendor.OffHours]
}

func checkNoVendorAccess(m *Monitor, s *settings, dev *config.Device) (bool, string) {
	if dev.Vendor != nil {
		return false, "the device has a vendor block"
	}
	if m.o.Env.VendorPolicy != nil {
		if _, ok := m.o.Env.VendorPolicy(dev.ID); ok {
			return false, "the vendor broker accepts requests for this device"
		}
	}
	return true, "no vendor access is configured or brokered"
}

// daily is how often a control still not in force is reported again.
const daily = 24 * time.Hour

// CheckControls runs every exception's compensating-control checks once,
// raising monitor.control_not_in_force (to the exception's approver) when
// one fails and monitor.control_restored when it holds again.
func (m *Monitor) CheckControls() {
	m.mu.Lock()
	s := m.set
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return
	}
	now := m.clock.Now()
	type result struct {
		k      controlKey
		ok     bool
		detail string
		dev    *config.Device
		ex     config.Exception
	}
	var res []result
	for i := range s.cfg.Devices {
		dev := &s.cfg.Devices[i]
		for _, ex := range dev.Exceptions {
			for _, name := range ex.Compensating {
				ok, detail := false, "the gateway has no check for this control"
				if c := controlChecks[name]; c != nil {
					ok, detail = c(m, s, dev)
				}
				res = append(res, result{controlKey{dev.ID, ex.ID, name}, ok, detail, dev, ex})
			}
		}
	}
	var out []Finding
	changed := false
	m.mu.Lock()
	if m.closed || m.set != s {
		m.mu.Unlock()
		return
	}
	keep := map[controlKey]bool{}
	for _, r := range res {
		keep[r.k] = true
		cur := m.controls[r.k]
		first := cur == nil
		if first {
			cur = &ControlState{Name: r.k.control, Since: now}
			m.controls[r.k] = cur
		}
		flipped := !first && cur.InForce != r.ok
		if flipped {
			cur.Since = now
		}
		if first || flipped {
			changed = true // a detail alone (e.g. a growing delay) does not republish
		}
		cur.InForce, cur.Detail, cur.Checked = r.ok, r.detail, now
		f := Finding{Time: now, Key: r.k.device + ":" + r.k.exception + ":" + r.k.control, Device: r.k.device, Owner: r.ex.ApprovedBy,
			First: cur.Since, Evidence: map[string]string{"exception": r.ex.ID, "control": r.k.control, "exception_control": r.ex.Control,
				"approved_by": r.ex.ApprovedBy, "detail": r.detail, "device_owner": r.dev.Owner}}
		switch {
		case !r.ok && (first || flipped):
			f.Kind = KindControlNotInForce
		case !r.ok && now.Sub(cur.reported) >= daily:
			f.Kind = KindControlNotInForce // still not in force: remind daily
		case r.ok && flipped:
			f.Kind = KindControlRestored
		default:
			continue
		}
		// Control transitions are rare: they bypass the rate limit so a
		// restore is never hidden behind the failure before it.
		f.Count, f.Last = 1, now
		if f.Kind == KindControlNotInForce {
			cur.reported = now
		}
		m.noteLocked(&f)
		out = append(out, f)
	}
	for k := range m.controls {
		if !keep[k] {
			delete(m.controls, k)
			changed = true
		}
	}
	m.mu.Unlock()
	m.emit(out)
	if changed && m.o.ControlsChanged != nil {
		m.o.ControlsChanged()
	}
}

// Controls returns the live state of every exception's controls, in
// configuration order (controls not yet checked are reported not in force
// with Checked zero).
func (m *Monitor) Controls() []ExceptionControls {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []ExceptionControls
	for _, dev := range m.set.cfg.Devices {
		for _, ex := range dev.Exceptions {
			ec := ExceptionControls{Device: dev.ID, Exception: ex.ID, ApprovedBy: ex.ApprovedBy, Controls: []ControlState{}}
			for _, name := range ex.Compensating {
				if cs := m.controls[controlKey{dev.ID, ex.ID, name}]; cs != nil {
					ec.Controls = append(ec.Controls, *cs)
				} else {
					ec.Controls = append(ec.Controls, ControlState{Name: name, Detail: "not checked yet"})
				}
			}
			out = append(out, ec)
		}
	}
	return out
}
