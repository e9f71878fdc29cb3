package director

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNoIPVS means the running kernel has no IPVS (the ip_vs module is not loaded).
var ErrNoIPVS = errors.New("IPVS is not available in this kernel: the generic netlink family \"IPVS\" is missing; " +
	"load the module with `modprobe ip_vs` (and the schedulers you use, e.g. `modprobe ip_vs_wrr`), " +
	"and list them in /etc/modules-load.d/ to load them at boot")

// LinuxKernel is the Kernel of the running Linux system: IPVS through moby/ipvs (generic
// netlink) and addresses through rtnetlink.
type LinuxKernel struct {
	h *ipvs.Handle
}

// OpenKernel checks that IPVS is present and opens a handle in the current network namespace.
func OpenKernel() (*LinuxKernel, error) {
	if _, err := netlink.GenlFamilyGet("IPVS"); err != nil {
		if errors.Is(err, syscall.ENOENT) || strings.Contains(err.Error(), "no such file") {
			return nil, ErrNoIPVS
		}
		return nil, fmt.Errorf("looking up the IPVS generic netlink family: %w", err)
	}
	h, err := ipvs.New("")
	if err != nil {
		return nil, fmt.Errorf("opening IPVS: %w", err)
	}
	return &LinuxKernel{h: h}, nil
}

// Close releases the netlink socket.
func (k *LinuxKernel) Close() { k.h.Close() }

func family(a netip.Addr) uint16 {
	if a.Is4() {
		return syscall.AF_INET
	}
	return syscall.AF_INET6
}

func toIPVSService(s VirtualService) *ipvs.Service {
	return &ipvs.Service{
		Address: net.IP(s.Key.Addr.AsSlice()), Protocol: s.Key.Protocol, Port: s.Key.Port,
		SchedName: s.Scheduler, Flags: s.Flags, Timeout: s.Timeout, Netmask: s.Netmask,
		AddressFamily: family(s.Key.Addr),
	}
}

func toIPVSDest(d Dest) *ipvs.Destination {
	return &ipvs.Destination{
		Address: net.IP(d.Addr.Addr().AsSlice()), Port: d.Addr.Port(), Weight: d.Weight,
		ConnectionFlags: d.Fwd & FwdMask, AddressFamily: family(d.Addr.Addr()),
	}
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// Services implements IPVS. Firewall-mark services are not the director's and are left out.
func (k *LinuxKernel) Services() ([]VirtualService, error) {
	svcs, err := k.h.GetServices()
	if err != nil {
		return nil, err
	}
	out := make([]VirtualService, 0, len(svcs))
	for _, s := range svcs {
		if s.FWMark != 0 {
			continue
		}
		vs := VirtualService{
			Key:       ServiceKey{Protocol: s.Protocol, Addr: addrOf(s.Address), Port: s.Port},
			Scheduler: s.SchedName, Flags: s.Flags &^ flagHashed, Timeout: s.Timeout, Netmask: s.Netmask,
		}
		if vs.Key.Addr.Is4() && len(s.Address) == 16 && s.AddressFamily == syscall.AF_INET {
			vs.Key.Addr = addrOf(s.Address.To4())
		}
		dests, err := k.h.GetDestinations(s)
		if err != nil {
			return nil, fmt.Errorf("real servers of %s: %w", vs.Key, err)
		}
		for _, d := range dests {
			vs.Dests = append(vs.Dests, Dest{
				Addr: netip.AddrPortFrom(addrOf(d.Address), d.Port), Weight: d.Weight,
				Fwd: d.ConnectionFlags & FwdMask, ActiveConns: d.ActiveConnections, InactiveConns: d.InactiveConnections,
			})
		}
		vs.sortDests()
		out = append(out, vs)
	}
	return out, nil
}

// AddService implements IPVS.
func (k *LinuxKernel) AddService(s VirtualService) error { return k.h.NewService(toIPVSService(s)) }

// UpdateService implements IPVS.
func (k *LinuxKernel) UpdateService(s VirtualService) error {
	return k.h.UpdateService(toIPVSService(s))
}

// DelService implements IPVS.
func (k *LinuxKernel) DelService(key ServiceKey) error {
	return k.h.DelService(toIPVSService(VirtualService{Key: key}))
}

// AddDest implements IPVS.
func (k *LinuxKernel) AddDest(key ServiceKey, d Dest) error {
	return k.h.NewDestination(toIPVSService(VirtualService{Key: key}), toIPVSDest(d))
}

// UpdateDest implements IPVS.
func (k *LinuxKernel) UpdateDest(key ServiceKey, d Dest) error {
	return k.h.UpdateDestination(toIPVSService(VirtualService{Key: key}), toIPVSDest(d))
}

// DelDest implements IPVS.
func (k *LinuxKernel) DelDest(key ServiceKey, a DestKey) error {
	return k.h.DelDestination(toIPVSService(VirtualService{Key: key}), toIPVSDest(Dest{Addr: a}))
}

// EnsureLink implements Addresses.
func (k *LinuxKernel) EnsureLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return err
		}
		if err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
			return fmt.Errorf("creating dummy interface %s (is the dummy module available?): %w", name, err)
		}
		if l, err = netlink.LinkByName(name); err != nil {
			return err
		}
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		return netlink.LinkSetUp(l)
	}
	return nil
}

// Addrs implements Addresses.
func (k *LinuxKernel) Addrs(name string) ([]netip.Addr, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, nil
		}
		return nil, err
	}
	as, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range as {
		ip := addrOf(a.IP)
		if ip.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, ip)
	}
	return out, nil
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
