package monitor

import (
	"bufio"
	"bytes"
	"encoding/binary"

	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Neighbour is one entry of an interface's neighbour table.
type Neighbour struct {
	IP  netip.Addr
	MAC string // lowercase, colons
}

// NeighbourSource reads the neighbour table of one interface. Entries
// without a hardware address (incomplete, failed) are left out.
type NeighbourSource interface {
	Neighbours(iface string) ([]Neighbour, error)
}

// ProcNeighbours reads IPv4 neighbours from /proc/net/arp and IPv6
// neighbours over rtnetlink (RTM_GETNEIGH). Root, when set, prefixes the
// /proc path (tests).
type ProcNeighbours struct {
	Root string
	// IPv4Only skips the netlink dump.
	IPv4Only bool
}

// Neighbours implements NeighbourSource.
func (p ProcNeighbours) Neighbours(iface string) ([]Neighbour, error) {
	f, err := os.Open(p.Root + "/proc/net/arp")
	if err != nil {
		return nil, fmt.Errorf("read the ARP table: %w", err)
	}
	defer f.Close()
	out, err := ParseARP(f, iface)
	if err != nil {
		return nil, err
	}
	if p.IPv4Only {
		return out, nil
	}
	v6, err := netlinkNeighbours(iface, unix.AF_INET6)
	if err != nil {
		return out, fmt.Errorf("read the IPv6 neighbour table: %w", err)
	}
	return append(out, v6...), nil
}

// maxNeighbours bounds what one read returns (a flooded segment must not
// make the monitor grow without bound).
const maxNeighbours = 4096

// ParseARP parses /proc/net/arp and returns the complete entries of iface
// (all interfaces when iface is ""). Malformed lines are skipped.
func ParseARP(r io.Reader, iface string) ([]Neighbour, error) {
	sc := bufio.NewScanner(io.LimitReader(r, 4<<20))
	var out []Neighbour
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue // header
		}
		f := strings.Fields(sc.Text())
		if len(f) < 6 || (iface != "" && f[5] != iface) {
			continue
		}
		ip, err := netip.ParseAddr(f[0])
		if err != nil || !ip.Is4() {
			continue
		}
		flags, err := strconv.ParseUint(strings.TrimPrefix(f[2], "0x"), 16, 32)
		if err != nil || flags&0x2 == 0 { // ATF_COM: the entry is complete
			continue
		}
		hw, err := net.ParseMAC(f[3])
		if err != nil || len(hw) != 6 || bytes.Equal(hw, make([]byte, 6)) {
			continue
		}
		out = append(out, Neighbour{IP: ip, MAC: hw.String()})
		if len(out) >= maxNeighbours {
			break
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read the ARP table: %w", err)
	}
	return out, nil
}

// netlinkNeighbours dumps the neighbour table of family for iface.
func netlinkNeighbours(iface string, family int) ([]Neighbour, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, err
	}
	rib, err := syscall.NetlinkRIB(unix.RTM_GETNEIGH, family)
	if err != nil {
		return nil, err
	}
	return parseNeighMessages(rib, ifi.Index)
}

// ndmsg is struct ndmsg: family, pad, pad, ifindex, state, flags, type.
const sizeofNdmsg = 12

// parseNeighMessages parses RTM_NEWNEIGH messages of ifindex (any when 0).
func parseNeighMessages(rib []byte, ifindex int) ([]Neighbour, error) {
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, err
	}
	var out []Neighbour
	for _, msg := range msgs {
		if msg.Header.Type != unix.RTM_NEWNEIGH || len(msg.Data) < sizeofNdmsg {
			continue
		}
		idx := int(int32(binary.NativeEndian.Uint32(msg.Data[4:8])))
		state := binary.NativeEndian.Uint16(msg.Data[8:10])
		if ifindex != 0 && idx != ifindex {
			continue
		}
		if state&(unix.NUD_INCOMPLETE|unix.NUD_FAILED|unix.NUD_NOARP) != 0 {
			continue
		}
		var n Neighbour
		attrs := msg.Data[sizeofNdmsg:]
		for len(attrs) >= 4 {
			l := int(binary.NativeEndian.Uint16(attrs[0:2]))
			typ := binary.NativeEndian.Uint16(attrs[2:4])
			if l < 4 || l > len(attrs) {
				break
			}
			val := attrs[4:l]
			switch typ {
			case unix.NDA_DST:
				if a, ok := netip.AddrFromSlice(val); ok {
					n.IP = a.Unmap()
				}
			case unix.NDA_LLADDR:
				if len(val) == 6 && !bytes.Equal(val, make([]byte, 6)) {
					n.MAC = net.HardwareAddr(val).String()
				}
			}
			adv := (l + 3) &^ 3
			if adv > len(attrs) {
				break
			}
			attrs = attrs[adv:]
		}
		if n.IP.IsValid() && n.MAC != "" && !n.IP.IsLinkLocalUnicast() {
			out = append(out, n)
			if len(out) >= maxNeighbours {
				break
			}
		}
	}
	return out, nil
}

// neighState is what the neighbour scan saw last.
type neighState struct {
	seen, unknown int
	err           string
	errReported   bool
}

// ScanNeighbours reads the segment's neighbour table once and raises
// monitor.unknown_device and monitor.mac_changed. Without a segment
// interface it does nothing.
func (m *Monitor) ScanNeighbours() {
	m.mu.Lock()
	iface := m.set.mon.SegmentInterface
	on := m.enabledLocked()
	m.mu.Unlock()
	if iface == "" || !on {
		return
	}
	ns, err := m.o.Neighbours.Neighbours(iface)
	now := m.clock.Now()
	var out []Finding
	m.mu.Lock()
	defer func() {
		m.mu.Unlock()
		m.emit(out)
	}()
	if m.closed {
		return
	}
	if err != nil {
		m.neigh.err = err.Error()
		if !m.neigh.errReported && len(ns) == 0 {
			m.neigh.errReported = true
			m.raiseLocked(Finding{Time: now, Kind: KindNeighboursUnreadable, Key: iface,
				Evidence: map[string]string{"interface": iface, "error": err.Error()}}, &out)
		}
	} else {
		m.neigh.err, m.neigh.errReported = "", false
	}
	m.neigh.seen, m.neigh.unknown = len(ns), 0
	for _, n := range ns {
		m.judgeNeighbourLocked(now, iface, n, &out)
	}
}

func (m *Monitor) judgeNeighbourLocked(now time.Time, iface string, n Neighbour, out *[]Finding) {
	s := m.set
	devByIP, ipKnown := s.byIP[n.IP]
	devByMAC, macKnown := s.byMAC[n.MAC]
	switch {
	case ipKnown:
		d := s.devices[devByIP]
		want := d.mac
		learned := false
		if want == "" {
			var l string
			if m.st.get(bucketMACs, n.IP.String(), &l) {
				want, learned = l, true
			} else if !macKnown {
				if err := m.st.put(bucketMACs, n.IP.String(), n.MAC); err != nil {
					m.log.Warn("monitor state not saved", "err", err)
				}
				return
			}
		}
		if want != "" && want != n.MAC {
			src := "declared"
			if learned {
				src = "learned"
			}
			m.raiseLocked(Finding{Time: now, Kind: KindMACChanged, Key: d.id + ":" + n.MAC, Device: d.id, Owner: d.owner,
				Evidence: map[string]string{"ip": n.IP.String(), "mac": n.MAC, "expected_mac": want, "expected_from": src, "interface": iface,
					"mac_owner": devByMAC}}, out)
		}
	case macKnown:
		d := s.devices[devByMAC]
		m.neigh.unknown++
		m.raiseLocked(Finding{Time: now, Kind: KindUnknownDevice, Key: n.IP.String() + "/" + n.MAC, Device: d.id, Owner: d.owner,
			Evidence: map[string]string{"ip": n.IP.String(), "mac": n.MAC, "interface": iface,
				"note": "the MAC of " + d.id + " answers at an address not in the inventory"}}, out)
	default:
		m.neigh.unknown++
		m.raiseLocked(Finding{Time: now, Kind: KindUnknownDevice, Key: n.IP.String() + "/" + n.MAC,
			Evidence: map[string]string{"ip": n.IP.String(), "mac": n.MAC, "interface": iface}}, out)
	}
}
