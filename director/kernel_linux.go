package director

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNoIPVS means the running kernel has no IPVS (the ip_vs module is not loaded).
var ErrNoIPVS = errors.New("IPVS is not available in this kernel: the generic netlink family \"IPVS\" is missing; " +
	"load the module with `modprobe ip_vs` (and the schedulers you use, e.g. `modprobe ip_vs_wrr`), " +
	"and list them in /etc/modules-load.d/ to load them at boot")

// LinuxKernel is the Kernel of the running Linux system: IPVS through its own generic netlink
// client (batched writes, see ApplyBatch) and addresses through rtnetlink.
type LinuxKernel struct {
	nl *ipvsClient
}

// OpenKernel checks that IPVS is present and opens a handle in the current network namespace.
func OpenKernel() (*LinuxKernel, error) {
	c, err := openIPVSClient()
	if err != nil {
		return nil, err
	}
	return &LinuxKernel{nl: c}, nil
}

// Close releases the netlink socket.
func (k *LinuxKernel) Close() { _ = k.nl.close() }

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// Services implements IPVS: one dump of the services and one of the real servers of each, with
// the kernel's 64-bit counters. Firewall-mark services are not the director's and are left out.
func (k *LinuxKernel) Services() ([]VirtualService, error) { return k.nl.services() }

// Service implements ServiceReader: one request for the service and one dump of its real
// servers.
func (k *LinuxKernel) Service(key ServiceKey) (VirtualService, bool, error) { return k.nl.service(key) }

// ApplyBatch implements BatchApplier: the operations go to the kernel in writes of up to 256
// messages (or 128 KiB), and errs[i] is the kernel's answer to ops[i].
func (k *LinuxKernel) ApplyBatch(ops []Op) []error { return k.nl.apply(ops) }

func (k *LinuxKernel) one(op Op) error { return k.nl.apply([]Op{op})[0] }

// AddService implements IPVS.
func (k *LinuxKernel) AddService(s VirtualService) error {
	return k.one(Op{Kind: OpAddService, Service: s})
}

// UpdateService implements IPVS.
func (k *LinuxKernel) UpdateService(s VirtualService) error {
	return k.one(Op{Kind: OpUpdateService, Service: s})
}

// DelService implements IPVS.
func (k *LinuxKernel) DelService(key ServiceKey) error {
	return k.one(Op{Kind: OpDelService, Service: VirtualService{Key: key}})
}

// AddDest implements IPVS.
func (k *LinuxKernel) AddDest(key ServiceKey, d Dest) error {
	return k.one(Op{Kind: OpAddDest, Service: VirtualService{Key: key}, Dest: d})
}

// UpdateDest implements IPVS.
func (k *LinuxKernel) UpdateDest(key ServiceKey, d Dest) error {
	return k.one(Op{Kind: OpUpdateDest, Service: VirtualService{Key: key}, Dest: d})
}

// DelDest implements IPVS.
func (k *LinuxKernel) DelDest(key ServiceKey, a DestKey) error {
	return k.one(Op{Kind: OpDelDest, Service: VirtualService{Key: key}, Dest: Dest{Addr: a}})
}

// EnsureLink implements Addresses. A missing interface is created up, in one request.
func (k *LinuxKernel) EnsureLink(name string) error {
	fd, err := openRouteSocket(unix.NETLINK_GET_STRICT_CHK)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	index, up, found, err := getLink(fd, name)
	switch {
	case err != nil:
		return err
	case found && up:
		return nil // the usual case, on every sync
	case found:
		return netlink.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index}})
	}
	dummy := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name, Flags: net.FlagUp}}
	if err := netlink.LinkAdd(dummy); err != nil {
		return fmt.Errorf("creating dummy interface %s (is the dummy module available?): %w", name, err)
	}
	return nil
}

// Addrs implements Addresses.
func (k *LinuxKernel) Addrs(name string) ([]netip.Addr, error) {
	fd, err := openRouteSocket(unix.NETLINK_GET_STRICT_CHK)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	index, _, found, err := getLink(fd, name)
	if err != nil || !found {
		return nil, err
	}
	return dumpAddrsOn(fd, index)
}

func hostNet(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
}

// AddAddr implements Addresses. IPv6 addresses skip duplicate address detection.
func (k *LinuxKernel) AddAddr(name string, a netip.Addr) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	addr := &netlink.Addr{IPNet: hostNet(a)}
	if a.Is6() {
		addr.Flags = unix.IFA_F_NODAD
	}
	return netlink.AddrAdd(l, addr)
}

// DelAddr implements Addresses.
func (k *LinuxKernel) DelAddr(name string, a netip.Addr) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.AddrDel(l, &netlink.Addr{IPNet: hostNet(a)})
}

// ApplyAddrs implements AddrBatcher: the interface is looked up once for the whole batch (so a
// deleted and recreated interface is found again at the next sync) and the address operations
// go to the kernel in batches over one route netlink socket (applyAddrBatch).
func (k *LinuxKernel) ApplyAddrs(name string, ops []Op) []error { return applyAddrBatch(name, ops) }

// SetSysctl writes a value under /proc/sys, e.g. SetSysctl("net.ipv4.ip_forward", "1").
func (k *LinuxKernel) SetSysctl(name, value string) error {
	p := filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
	cur, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("sysctl %s: %w", name, err)
	}
	if strings.TrimSpace(string(cur)) == value {
		return nil
	}
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", name, value, err)
	}
	return nil
}
