// Package director turns desired virtual services into kernel IPVS state.
//
// The decisions are pure: Desired builds the kernel-level model from the configuration and the
// health of each real server, Plan diffs it against the observed kernel state and returns the
// operations to apply. The Reconciler runs them through the narrow Kernel interface.
package director

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
)

// Protocol numbers as IPVS uses them.
const (
	ProtoTCP  uint16 = syscall.IPPROTO_TCP
	ProtoUDP  uint16 = syscall.IPPROTO_UDP
	ProtoSCTP uint16 = 132
)

// Service flags (include/uapi/linux/ip_vs.h).
const (
	FlagPersistent uint32 = 0x0001
	flagHashed     uint32 = 0x0002
)

// Forwarding methods (the low bits of a destination's connection flags).
const (
	FwdMasq   uint32 = 0
	FwdMask   uint32 = 0x7
	fwdTunnel uint32 = 2
	fwdDirect uint32 = 3
)

// ProtocolNumber maps a config protocol name to its number.
func ProtocolNumber(name string) (uint16, error) {
	switch strings.ToLower(name) {
	case "tcp":
		return ProtoTCP, nil
	case "udp":
		return ProtoUDP, nil
	case "sctp":
		return ProtoSCTP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q", name)
}

// ProtocolName maps a protocol number to its name.
func ProtocolName(p uint16) string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoSCTP:
		return "sctp"
	}
	return fmt.Sprintf("proto%d", p)
}

// ServiceKey identifies a virtual service in the kernel.
type ServiceKey struct {
	Protocol uint16
	Addr     netip.Addr
	Port     uint16
}

func (k ServiceKey) String() string {
	return ProtocolName(k.Protocol) + "/" + netip.AddrPortFrom(k.Addr, k.Port).String()
}

// Less orders keys by address, port and protocol.
func (k ServiceKey) Less(o ServiceKey) bool { return k.compare(o) < 0 }

func (k ServiceKey) compare(o ServiceKey) int {
	if c := k.Addr.Compare(o.Addr); c != 0 {
		return c
	}
	if k.Port != o.Port {
		return cmp.Compare(k.Port, o.Port)
	}
	return cmp.Compare(k.Protocol, o.Protocol)
}

// DestKey identifies a real server inside a virtual service.
type DestKey = netip.AddrPort

// VirtualService is a virtual service as the kernel holds it.
type VirtualService struct {
	Key       ServiceKey
	Scheduler string
	Flags     uint32 // FlagPersistent or 0 (the kernel's hashed flag is ignored)
	Timeout   uint32 // persistence timeout in seconds
	Netmask   uint32 // persistence netmask: IPv4 mask bits as a uint32, IPv6 prefix length
	Dests     []Dest
	// FullNAT (desired only): masquerade the traffic to the real servers too.
	FullNAT bool
	// Stats (observed only) are the kernel's 64-bit counters of the service.
	Stats Stats
	// stub (desired only): the service without its real servers (see DesiredCache); a plan
	// must not look at it.
	stub bool
}

// Stats are IPVS traffic counters as the kernel keeps them (64-bit).
type Stats struct {
	Conns, PacketsIn, PacketsOut, BytesIn, BytesOut uint64
}

// Dest is a real server as the kernel holds it. (72 bytes: the director keeps one for each real
// server in the kernel; the counters, wanted only by a scrape, are behind a pointer.)
type Dest struct {
	Addr   DestKey
	Weight int32
	Fwd    uint32 // forwarding method, FwdMasq for NAT
	// Observed only:
	ActiveConns   uint32
	InactiveConns uint32
	Stats         *Stats // nil: not read
	// Desired only: the real server must not be in the kernel at all (unhealthy without
	// inhibit_on_failure). It is deleted at once instead of drained.
	Absent bool
}

// Counters returns the real server's counters (zero when they were not read).
func (d *Dest) Counters() Stats {
	if d.Stats == nil {
		return Stats{}
	}
	return *d.Stats
}

func (s *VirtualService) sortDests() {
	byAddr := func(a, b Dest) int { return a.Addr.Compare(b.Addr) }
	if !slices.IsSortedFunc(s.Dests, byAddr) {
		slices.SortFunc(s.Dests, byAddr)
	}
}

func (s *VirtualService) sameAttrs(o *VirtualService) bool {
	return s.Scheduler == o.Scheduler && s.Flags&^flagHashed == o.Flags&^flagHashed &&
		s.Timeout == o.Timeout && s.Netmask == o.Netmask
}

func (s *VirtualService) dest(k DestKey) (*Dest, bool) {
	for i := range s.Dests {
		if s.Dests[i].Addr == k {
			return &s.Dests[i], true
		}
	}
	return nil, false
}

// String describes the service's attributes like ipvsadm.
func (s *VirtualService) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", s.Key, s.Scheduler)
	if s.Flags&FlagPersistent != 0 {
		fmt.Fprintf(&b, " persistent %d", s.Timeout)
		if s.Netmask != 0 && s.Netmask != 0xffffffff && s.Netmask != 128 {
			fmt.Fprintf(&b, " mask %s", netmaskString(s.Key.Addr, s.Netmask))
		}
	}
	return b.String()
}

func netmaskString(a netip.Addr, m uint32) string {
	if a.Is4() {
		return netip.AddrFrom4([4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}).String()
	}
	return fmt.Sprintf("/%d", m)
}

func fwdName(f uint32) string {
	switch f & FwdMask {
	case FwdMasq:
		return "masq"
	case fwdTunnel:
		return "tunnel"
	case fwdDirect:
		return "route"
	}
	return fmt.Sprintf("fwd%d", f&FwdMask)
}
