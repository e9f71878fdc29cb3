package director

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A cold start puts every VIP on the interface: a thousand addresses at 10,000 services. One
// request and acknowledgement each (a round trip through the scheduler per address) took a
// tenth of the daemon's own start-up time in the lab VM. applyAddrBatch writes them to one
// route netlink socket addrBatch at a time and then reads the acknowledgements, each matched
// to its operation by sequence number, so every operation still gets its own result.

// addrBatch is how many address messages go to the kernel in one write.
const addrBatch = 256

// applyAddrBatch adds (OpAddVIP) and deletes (OpDelVIP) addresses on the interface name; the
// result of ops[i] is errs[i].
func applyAddrBatch(name string, ops []Op) []error {
	errs := make([]error, len(ops))
	fail := func(err error) []error {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return fail(fmt.Errorf("interface %s: %w", name, err))
	}
	fd, err := openRouteSocket(unix.NETLINK_CAP_ACK) // acks without the request
	if err != nil {
		return fail(err)
	}
	defer unix.Close(fd)
	seq := uint32(time.Now().UnixNano())
	buf := make([]byte, 0, addrBatch*64)
	rbuf := make([]byte, 64<<10)
	for start := 0; start < len(ops); start += addrBatch {
		chunk := ops[start:min(start+addrBatch, len(ops))]
		buf = buf[:0]
		first := seq
		for i, op := range chunk {
			var err error
			if buf, err = appendAddrMsg(buf, op, int32(ifi.Index), seq); err != nil {
				errs[start+i] = err
			}
			seq++
		}
		if err := unix.Sendto(fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			for i := range chunk {
				if errs[start+i] == nil {
					errs[start+i] = fmt.Errorf("sending address requests: %w", err)
				}
			}
			continue
		}
		pending := 0
		answered := make([]bool, len(chunk))
		for i := range chunk {
			if errs[start+i] == nil {
				pending++
			} else {
				answered[i] = true
			}
		}
		for pending > 0 {
			n, _, err := unix.Recvfrom(fd, rbuf, 0)
			if err != nil {
				for i := range chunk {
					if !answered[i] {
						errs[start+i] = fmt.Errorf("reading address acknowledgements: %w", err)
					}
				}
				break
			}
			for b := rbuf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
				l := int(binary.NativeEndian.Uint32(b[0:4]))
				if l < unix.NLMSG_HDRLEN || l > len(b) {
					break
				}
				typ, s := binary.NativeEndian.Uint16(b[4:6]), binary.NativeEndian.Uint32(b[8:12])
				if i := int(s - first); typ == unix.NLMSG_ERROR && s-first < uint32(len(chunk)) && !answered[i] && l >= unix.NLMSG_HDRLEN+4 {
					if code := int32(binary.NativeEndian.Uint32(b[16:20])); code != 0 {
						errs[start+i] = fmt.Errorf("%s %s: %w", chunk[i].Kind, chunk[i].VIP, unix.Errno(-code))
					}
					answered[i] = true
					pending--
				}
				b = b[min(nlmAlign(l), len(b)):]
			}
		}
	}
	return errs
}

func nlmAlign(n int) int { return (n + 3) &^ 3 }

// openRouteSocket opens a bound route netlink socket with the receive timeout and the netlink
// option opt turned on where the kernel has it (the caller closes it).
func openRouteSocket(opt int) (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return -1, fmt.Errorf("opening a route netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("binding the route netlink socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, opt, 1)
	tv := unix.NsecToTimeval(recvTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("route netlink socket timeout: %w", err)
	}
	return fd, nil
}

// appendAddrMsg appends the RTM_NEWADDR or RTM_DELADDR request of op (a host address: /32 or
// /128; IPv6 without duplicate address detection, as the daemon has always added them).
func appendAddrMsg(b []byte, op Op, index int32, seq uint32) ([]byte, error) {
	var typ, flags uint16 = unix.RTM_DELADDR, unix.NLM_F_REQUEST | unix.NLM_F_ACK
	switch op.Kind {
	case OpAddVIP:
		typ, flags = unix.RTM_NEWADDR, flags|unix.NLM_F_CREATE|unix.NLM_F_EXCL
	case OpDelVIP:
	default:
		return b, fmt.Errorf("%s is not an address operation", op.Kind)
	}
	if !op.VIP.IsValid() {
		return b, fmt.Errorf("%s: invalid address", op.Kind)
	}
	a := op.VIP.Unmap()
	raw := a.AsSlice()
	family, plen, ifaFlags := byte(unix.AF_INET), byte(32), byte(0)
	if a.Is6() {
		family, plen = unix.AF_INET6, 128
		if op.Kind == OpAddVIP {
			ifaFlags = unix.IFA_F_NODAD
		}
	}
	attr := 4 + len(raw) // IFA_LOCAL and IFA_ADDRESS, each a header and the address
	total := unix.NLMSG_HDRLEN + unix.SizeofIfAddrmsg + 2*nlmAlign(attr)
	b = binary.NativeEndian.AppendUint32(b, uint32(total))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = append(b, family, plen, ifaFlags, unix.RT_SCOPE_UNIVERSE)
	b = binary.NativeEndian.AppendUint32(b, uint32(index))
	for _, t := range []uint16{unix.IFA_LOCAL, unix.IFA_ADDRESS} {
		b = binary.NativeEndian.AppendUint16(b, uint16(attr))
		b = binary.NativeEndian.AppendUint16(b, t)
		b = append(b, raw...)
		for i := attr; i < nlmAlign(attr); i++ {
			b = append(b, 0)
		}
	}
	return b, nil
}

// getLink reads an interface's index and whether it is up, by name, with one RTM_GETLINK
// request on the route netlink socket fd. A missing interface is not found, with no error.
//
// (Not the SIOCGIFINDEX ioctl, nor anything else that goes through the kernel's dev_load: for a
// name it does not know, that asks for the module "netdev-<name>", and the kernel runs modprobe
// for it. A cold start, where the director's interface does not exist yet, waited 0.14-0.22 s
// for that modprobe in the lab VM.)
func getLink(fd int, name string) (index int, up, found bool, err error) {
	if name == "" || len(name) >= unix.IFNAMSIZ || strings.ContainsRune(name, 0) {
		return 0, false, false, fmt.Errorf("interface %q: not a valid interface name", name)
	}
	seq := uint32(time.Now().UnixNano())
	attr := 4 + len(name) + 1 // IFLA_IFNAME: the name and its NUL
	req := make([]byte, unix.NLMSG_HDRLEN+unix.SizeofIfInfomsg+nlmAlign(attr))
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.RTM_GETLINK)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], seq)
	a := req[unix.NLMSG_HDRLEN+unix.SizeofIfInfomsg:]
	binary.NativeEndian.PutUint16(a[0:], uint16(attr))
	binary.NativeEndian.PutUint16(a[2:], unix.IFLA_IFNAME)
	copy(a[4:], name)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, false, false, fmt.Errorf("interface %s: sending the link request: %w", name, err)
	}
	rbuf := make([]byte, 16<<10) // (only the header is read: a longer message is cut short)
	for {
		n, _, err := unix.Recvfrom(fd, rbuf, 0)
		if err != nil {
			return 0, false, false, fmt.Errorf("interface %s: reading the link: %w", name, err)
		}
		for b := rbuf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(b[0:]))
			if l < unix.NLMSG_HDRLEN {
				return 0, false, false, fmt.Errorf("interface %s: bad message length %d", name, l)
			}
			typ, mseq := binary.NativeEndian.Uint16(b[4:]), binary.NativeEndian.Uint32(b[8:])
			msg := b[unix.NLMSG_HDRLEN:min(l, len(b))]
			b = b[min(nlmAlign(l), len(b)):]
			if mseq != seq {
				continue
			}
			switch typ {
			case unix.NLMSG_ERROR:
				if len(msg) < 4 {
					return 0, false, false, fmt.Errorf("interface %s: short error message", name)
				}
				switch e := unix.Errno(-int32(binary.NativeEndian.Uint32(msg))); e {
				case 0:
					return 0, false, false, fmt.Errorf("interface %s: no answer", name)
				case unix.ENODEV:
					return 0, false, false, nil
				default:
					return 0, false, false, fmt.Errorf("interface %s: %w", name, e)
				}
			case unix.RTM_NEWLINK:
				if len(msg) < unix.SizeofIfInfomsg {
					return 0, false, false, fmt.Errorf("interface %s: short link message", name)
				}
				index = int(int32(binary.NativeEndian.Uint32(msg[4:])))
				flags := binary.NativeEndian.Uint32(msg[8:])
				return index, flags&unix.IFF_UP != 0, true, nil
			}
		}
	}
}

// dumpAddrsOn returns the addresses on the interface with the given index, but link-local ones,
// read on the route netlink socket fd (opened with NETLINK_GET_STRICT_CHK).
// Syncs read them every time (they decide what the director owns): at 10,000 services there are
// a thousand, and the general-purpose netlink library's dump (every address of the namespace,
// each into a structure of its own) took tens of milliseconds of a reload in the lab VM. This
// one asks the kernel for the interface's addresses only (NETLINK_GET_STRICT_CHK; the index is
// checked here too, for kernels before 4.20) and reads them in place.
func dumpAddrsOn(fd, index int) ([]netip.Addr, error) {
	seq := uint32(time.Now().UnixNano())
	req := make([]byte, unix.SizeofNlMsghdr+unix.SizeofIfAddrmsg)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.RTM_GETADDR)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], seq)
	binary.NativeEndian.PutUint32(req[unix.SizeofNlMsghdr+4:], uint32(index)) // ifa_index; family 0: all
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sending the address dump request: %w", err)
	}
	var out []netip.Addr
	rbuf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, rbuf, 0)
		if err != nil {
			return nil, fmt.Errorf("reading the address dump: %w", err)
		}
		for b := rbuf[:n]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(binary.NativeEndian.Uint32(b[0:]))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return nil, fmt.Errorf("address dump: bad message length %d", l)
			}
			typ, mseq := binary.NativeEndian.Uint16(b[4:]), binary.NativeEndian.Uint32(b[8:])
			msg := b[unix.SizeofNlMsghdr:l]
			b = b[min(nlmAlign(l), len(b)):]
			if mseq != seq {
				continue
			}
			switch typ {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(msg) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(msg)); e != 0 {
						return nil, fmt.Errorf("address dump: %w", unix.Errno(-e))
					}
				}
				return out, nil
			case unix.RTM_NEWADDR:
				if a, ok := parseAddrMsg(msg, index); ok && !a.IsLinkLocalUnicast() {
					out = append(out, a)
				}
			}
		}
	}
}

// parseAddrMsg reads the address of an RTM_NEWADDR message of the interface index: IFA_LOCAL
// (the interface's own address; IFA_ADDRESS is the peer's on point-to-point links), else
// IFA_ADDRESS.
func parseAddrMsg(msg []byte, index int) (netip.Addr, bool) {
	if len(msg) < unix.SizeofIfAddrmsg || int(binary.NativeEndian.Uint32(msg[4:])) != index {
		return netip.Addr{}, false
	}
	var local, address netip.Addr
	for b := msg[unix.SizeofIfAddrmsg:]; len(b) >= 4; {
		l := int(binary.NativeEndian.Uint16(b[0:]))
		typ := binary.NativeEndian.Uint16(b[2:])
		if l < 4 || l > len(b) {
			break
		}
		v := b[4:l]
		b = b[min(nlmAlign(l), len(b)):]
		a, ok := netip.AddrFromSlice(v)
		if !ok {
			continue
		}
		switch typ {
		case unix.IFA_LOCAL:
			local = a
		case unix.IFA_ADDRESS:
			address = a
		}
	}
	if local.IsValid() {
		return local, true
	}
	return address, address.IsValid()
}
