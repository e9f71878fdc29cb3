package director

import (
	"net/netip"
)

// IPVS is the part of the kernel's IPVS the director uses.
type IPVS interface {
	// Services dumps every virtual service with its real servers.
	Services() ([]VirtualService, error)
	AddService(VirtualService) error
	UpdateService(VirtualService) error
	DelService(ServiceKey) error
	AddDest(ServiceKey, Dest) error
	UpdateDest(ServiceKey, Dest) error
	DelDest(ServiceKey, DestKey) error
}

// Addresses manages the VIP addresses on the director's dummy interface.
type Addresses interface {
	// EnsureLink creates the dummy interface if it is missing and sets it up.
	EnsureLink(name string) error
	// Addrs lists the global addresses on the interface (none if it does not exist).
	Addrs(name string) ([]netip.Addr, error)
	AddAddr(name string, a netip.Addr) error
	DelAddr(name string, a netip.Addr) error
}

// Kernel is everything the reconciler changes.
type Kernel interface {
	IPVS
	Addresses
	// SetFullNAT makes the director's own nftables table masquerade the traffic of exactly
	// these services (those with full_nat), and does nothing when it already does.
	SetFullNAT(keys []ServiceKey) error
	// GuardUnreachable suppresses the ICMP unreachable answers sent from these VIPs (while
	// their scheduler is replaced); an empty list lifts it.
	GuardUnreachable(vips []netip.Addr) error
	// SetSysctl sets a sysctl such as net.ipv4.ip_forward, doing nothing when it has the value.
	SetSysctl(name, value string) error
}

// BatchApplier is implemented by kernels that can send many IPVS operations at once (one
// netlink write per batch instead of one round trip per operation). errs[i] is the result of
// ops[i]; ops never contain VIP operations.
type BatchApplier interface {
	ApplyBatch(ops []Op) (errs []error)
}

// AddrBatcher is implemented by kernels that apply many VIP operations (OpAddVIP, OpDelVIP) on
// one interface with one lookup of the interface and one socket, instead of a new socket and a
// lookup per address (a cold start with 1,000 VIPs). errs[i] is the result of ops[i].
type AddrBatcher interface {
	ApplyAddrs(name string, ops []Op) (errs []error)
}

// ServiceReader is implemented by kernels that can read one virtual service with its real
// servers without dumping the whole table. found is false when the kernel has no such service.
type ServiceReader interface {
	Service(key ServiceKey) (vs VirtualService, found bool, err error)
}
