package director

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A raw generic-netlink client for IPVS (include/uapi/linux/ip_vs.h). Compared with one
// request and one acknowledgement per operation, ApplyBatch packs many requests into one
// write: the kernel applies them in order inside that write, answers only the failed ones
// (and the last one, which carries NLM_F_ACK), and the answers are matched back to the
// operations by sequence number.

// Generic netlink IPVS commands.
const (
	ipvsCmdNewService = 1
	ipvsCmdSetService = 2
	ipvsCmdDelService = 3
	ipvsCmdGetService = 4
	ipvsCmdNewDest    = 5
	ipvsCmdSetDest    = 6
	ipvsCmdDelDest    = 7
	ipvsCmdGetDest    = 8
)

// Command attributes.
const (
	ipvsCmdAttrService = 1
	ipvsCmdAttrDest    = 2
)

// Service attributes.
const (
	ipvsSvcAttrAF        = 1
	ipvsSvcAttrProtocol  = 2
	ipvsSvcAttrAddr      = 3
	ipvsSvcAttrPort      = 4
	ipvsSvcAttrFwmark    = 5
	ipvsSvcAttrSchedName = 6
	ipvsSvcAttrFlags     = 7
	ipvsSvcAttrTimeout   = 8
	ipvsSvcAttrNetmask   = 9
	ipvsSvcAttrStats     = 10
	ipvsSvcAttrStats64   = 12
)

// Destination attributes.
const (
	ipvsDestAttrAddr        = 1
	ipvsDestAttrPort        = 2
	ipvsDestAttrFwdMethod   = 3
	ipvsDestAttrWeight      = 4
	ipvsDestAttrUThresh     = 5
	ipvsDestAttrLThresh     = 6
	ipvsDestAttrActiveConns = 7
	ipvsDestAttrInactConns  = 8
	ipvsDestAttrStats       = 10
	ipvsDestAttrAddrFamily  = 11
	ipvsDestAttrStats64     = 12
)

// Statistics attributes (inside *_ATTR_STATS and *_ATTR_STATS64).
const (
	ipvsStatsConns    = 1
	ipvsStatsInPkts   = 2
	ipvsStatsOutPkts  = 3
	ipvsStatsInBytes  = 4
	ipvsStatsOutBytes = 5
)

const (
	ipvsGenlVersion = 1
	genlCtrlID      = 0x10 // GENL_ID_CTRL
	ctrlCmdGetFam   = 3    // CTRL_CMD_GETFAMILY
	ctrlAttrFamID   = 1    // CTRL_ATTR_FAMILY_ID
	ctrlAttrFamName = 2    // CTRL_ATTR_FAMILY_NAME
	nlaTypeMask     = 0x3fff
	nlmsgHdrLen     = 16
	genlHdrLen      = 4
	nlmsgErrorType  = 2 // NLMSG_ERROR
	nlmsgDoneType   = 3 // NLMSG_DONE
	nlmFRequest     = 0x1
	nlmFMulti       = 0x2
	nlmFAck         = 0x4
	nlmFDumpIntr    = 0x10
	nlmFDump        = 0x300
)

// Batch limits: one write carries at most this many messages or bytes, whichever comes first
// (a write bigger than the socket's send buffer fails whole with EMSGSIZE).
const (
	batchMaxMsgs  = 256
	batchMaxBytes = 128 << 10
)

// nlTransport is the socket under the client (a fake kernel in the unit tests).
type nlTransport interface {
	// send writes one datagram holding one or more netlink messages.
	send(b []byte) error
	// recv reads one datagram from the kernel into buf. With nonblock it returns EAGAIN when
	// nothing is queued.
	recv(buf []byte, nonblock bool) (int, error)
	// request writes a read request (a dump or a single get), whose answers the kernel
	// queues before the write returns (a dump's first part; the rest comes as it is read).
	request(b []byte) error
	// recvMany reads datagrams from the kernel into bufs, one each: it waits for the first
	// and takes those queued behind it. It returns how many it read, their lengths in ns (0
	// for a datagram that did not come from the kernel).
	recvMany(bufs [][]byte, ns []int) (int, error)
	close() error
}

// recvSegs is how many datagrams one read takes at most (recvMany): a real-server dump's
// answers and the NLMSG_DONE that the kernel queues while the first is read (it makes the next
// part of a dump in each recvmsg), or a single get's answer and its acknowledgement. A third
// would only cost the kernel an empty look at the queue. Each gets len(rbuf)/recvSegs bytes,
// well above the 32 KiB the kernel puts in one dump datagram.
const recvSegs = 2

// ipvsClient speaks generic netlink to the kernel's IPVS. It is safe for concurrent use (the
// calls are serialised: one socket).
type ipvsClient struct {
	mu     sync.Mutex
	t      nlTransport
	family uint16
	seq    uint32
	rbuf   []byte
	wbuf   []byte
	// segs splits rbuf for recvMany; lens are the lengths read.
	segs [recvSegs][]byte
	lens [recvSegs]int
	// dests collects a real-server dump before it is copied, at its size, into the service.
	dests []Dest
	// maxMsgs and maxBytes bound a batch (batchMaxMsgs, batchMaxBytes; smaller in tests).
	maxMsgs, maxBytes int
}

// openIPVSClient opens a generic netlink socket in the current network namespace and resolves
// the IPVS family. It returns ErrNoIPVS when the kernel has no IPVS.
func openIPVSClient() (*ipvsClient, error) {
	t, err := openNetlinkSocket()
	if err != nil {
		return nil, err
	}
	c := newIPVSClient(t)
	if err := c.resolveFamily(); err != nil {
		t.close()
		return nil, err
	}
	return c, nil
}

func newIPVSClient(t nlTransport) *ipvsClient {
	c := &ipvsClient{t: t, rbuf: make([]byte, 256<<10), maxMsgs: batchMaxMsgs, maxBytes: batchMaxBytes}
	seg := len(c.rbuf) / recvSegs
	for i := range c.segs {
		c.segs[i] = c.rbuf[i*seg : (i+1)*seg : (i+1)*seg]
	}
	return c
}

func (c *ipvsClient) close() error { return c.t.close() }

// resolveFamily asks the generic netlink controller for the id of the "IPVS" family.
func (c *ipvsClient) resolveFamily() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	seq := c.nextSeq(1)
	b := beginMsg(nil, genlCtrlID, nlmFRequest|nlmFAck, seq, ctrlCmdGetFam)
	b = appendAttrString(b, ctrlAttrFamName, "IPVS")
	finishMsg(b, 0)
	if err := c.t.send(b); err != nil {
		return fmt.Errorf("looking up the IPVS generic netlink family: %w", err)
	}
	var id uint16
	err := c.readUntil(seq, func(typ, _ uint16, payload []byte) (bool, error) {
		switch typ {
		case nlmsgErrorType:
			if errno := errnoOf(payload); errno != nil {
				return true, errno
			}
			return true, nil
		case genlCtrlID:
			if len(payload) < genlHdrLen {
				return false, fmt.Errorf("short generic netlink message")
			}
			return false, forAttrs(payload[genlHdrLen:], func(typ uint16, v []byte) error {
				if typ == ctrlAttrFamID && len(v) >= 2 {
					id = binary.NativeEndian.Uint16(v)
				}
				return nil
			})
		}
		return false, nil
	})
	if errors.Is(err, unix.ENOENT) {
		return ErrNoIPVS
	}
	if err != nil {
		return fmt.Errorf("looking up the IPVS generic netlink family: %w", err)
	}
	if id == 0 {
		return fmt.Errorf("looking up the IPVS generic netlink family: no family id in the answer")
	}
	c.family = id
	return nil
}

// nextSeq reserves n consecutive sequence numbers and returns the first (never 0).
func (c *ipvsClient) nextSeq(n int) uint32 {
	if c.seq == 0 || c.seq+uint32(n) < c.seq {
		c.seq = 1
	}
	s := c.seq
	c.seq += uint32(n)
	return s
}

// --- encoding -------------------------------------------------------------------------------

func align4(n int) int { return (n + 3) &^ 3 }

// beginMsg appends a netlink header (length filled in by finishMsg) and a genl header.
func beginMsg(b []byte, typ, flags uint16, seq uint32, cmd uint8) []byte {
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0) // port id: the kernel fills it in
	return append(b, cmd, ipvsGenlVersion, 0, 0)
}

// finishMsg writes the length of the message that starts at off.
func finishMsg(b []byte, off int) {
	binary.NativeEndian.PutUint32(b[off:], uint32(len(b)-off))
}

func appendAttr(b []byte, typ uint16, v []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(v)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func appendAttrU16(b []byte, typ, v uint16) []byte {
	return appendAttr(b, typ, binary.NativeEndian.AppendUint16(nil, v))
}

func appendAttrU32(b []byte, typ uint16, v uint32) []byte {
	return appendAttr(b, typ, binary.NativeEndian.AppendUint32(nil, v))
}

func appendAttrBE16(b []byte, typ, v uint16) []byte {
	return appendAttr(b, typ, binary.BigEndian.AppendUint16(nil, v))
}

func appendAttrString(b []byte, typ uint16, s string) []byte {
	return appendAttr(b, typ, append([]byte(s), 0))
}

// beginNest starts a nested attribute; endNest writes its length.
func beginNest(b []byte, typ uint16) ([]byte, int) {
	off := len(b)
	b = binary.NativeEndian.AppendUint16(b, 0)
	return binary.NativeEndian.AppendUint16(b, typ|unix.NLA_F_NESTED), off
}

func endNest(b []byte, off int) {
	binary.NativeEndian.PutUint16(b[off:], uint16(len(b)-off))
}

func afOf(a netip.Addr) uint16 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// appendServiceAttr appends IPVS_CMD_ATTR_SERVICE: the key, and with full the attributes too.
func appendServiceAttr(b []byte, s *VirtualService, full bool) []byte {
	b, off := beginNest(b, ipvsCmdAttrService)
	b = appendAttrU16(b, ipvsSvcAttrAF, afOf(s.Key.Addr))
	b = appendAttrU16(b, ipvsSvcAttrProtocol, s.Key.Protocol)
	b = appendAttr(b, ipvsSvcAttrAddr, s.Key.Addr.AsSlice())
	b = appendAttrBE16(b, ipvsSvcAttrPort, s.Key.Port)
	if full {
		b = appendAttrString(b, ipvsSvcAttrSchedName, s.Scheduler)
		flags := binary.NativeEndian.AppendUint32(nil, s.Flags&^flagHashed)
		flags = binary.NativeEndian.AppendUint32(flags, 0xffffffff) // mask: set every flag
		b = appendAttr(b, ipvsSvcAttrFlags, flags)
		b = appendAttrU32(b, ipvsSvcAttrTimeout, s.Timeout)
		// The kernel keeps the netmask as a __be32: an IPv4 mask in network byte order, an
		// IPv6 prefix length as the raw number.
		if s.Key.Addr.Is4() {
			b = appendAttr(b, ipvsSvcAttrNetmask, binary.BigEndian.AppendUint32(nil, s.Netmask))
		} else {
			b = appendAttrU32(b, ipvsSvcAttrNetmask, s.Netmask)
		}
	}
	endNest(b, off)
	return b
}

// appendDestAttr appends IPVS_CMD_ATTR_DEST: the address, and with full the attributes too.
func appendDestAttr(b []byte, d *Dest, full bool) []byte {
	b, off := beginNest(b, ipvsCmdAttrDest)
	b = appendAttr(b, ipvsDestAttrAddr, d.Addr.Addr().AsSlice())
	b = appendAttrBE16(b, ipvsDestAttrPort, d.Addr.Port())
	b = appendAttrU16(b, ipvsDestAttrAddrFamily, afOf(d.Addr.Addr()))
	if full {
		b = appendAttrU32(b, ipvsDestAttrFwdMethod, d.Fwd&FwdMask)
		b = appendAttrU32(b, ipvsDestAttrWeight, uint32(int32(d.Weight)))
		b = appendAttrU32(b, ipvsDestAttrUThresh, 0)
		b = appendAttrU32(b, ipvsDestAttrLThresh, 0)
	}
	endNest(b, off)
	return b
}

var ipvsCmdNames = map[uint8]string{
	ipvsCmdNewService: "IPVS_CMD_NEW_SERVICE", ipvsCmdSetService: "IPVS_CMD_SET_SERVICE",
	ipvsCmdDelService: "IPVS_CMD_DEL_SERVICE", ipvsCmdNewDest: "IPVS_CMD_NEW_DEST",
	ipvsCmdSetDest: "IPVS_CMD_SET_DEST", ipvsCmdDelDest: "IPVS_CMD_DEL_DEST",
	ipvsCmdGetService: "IPVS_CMD_GET_SERVICE", ipvsCmdGetDest: "IPVS_CMD_GET_DEST",
}

// opCommand maps an IPVS operation to its command; VIP operations have none.
func opCommand(k OpKind) (uint8, bool) {
	switch k {
	case OpAddService:
		return ipvsCmdNewService, true
	case OpUpdateService:
		return ipvsCmdSetService, true
	case OpDelService:
		return ipvsCmdDelService, true
	case OpAddDest:
		return ipvsCmdNewDest, true
	case OpUpdateDest:
		return ipvsCmdSetDest, true
	case OpDelDest:
		return ipvsCmdDelDest, true
	}
	return 0, false
}

// appendOp appends the request for op.
func appendOp(b []byte, family uint16, flags uint16, seq uint32, op *Op) ([]byte, error) {
	cmd, ok := opCommand(op.Kind)
	if !ok {
		return b, fmt.Errorf("%s is not an IPVS operation", op.Kind)
	}
	if !op.Service.Key.Addr.IsValid() {
		return b, fmt.Errorf("%s: the service has no address", op.Kind)
	}
	if cmd >= ipvsCmdNewDest && !op.Dest.Addr.Addr().IsValid() {
		return b, fmt.Errorf("%s: the real server has no address", op.Kind)
	}
	off := len(b)
	b = beginMsg(b, family, flags|nlmFRequest, seq, cmd)
	switch cmd {
	case ipvsCmdNewService, ipvsCmdSetService:
		b = appendServiceAttr(b, &op.Service, true)
	case ipvsCmdDelService:
		b = appendServiceAttr(b, &op.Service, false)
	default:
		b = appendServiceAttr(b, &op.Service, false)
		b = appendDestAttr(b, &op.Dest, cmd != ipvsCmdDelDest)
	}
	finishMsg(b, off)
	return b, nil
}

// opError wraps a kernel error with what the operation was.
func opError(op *Op, err error) error {
	cmd, _ := opCommand(op.Kind)
	name := ipvsCmdNames[cmd]
	if cmd >= ipvsCmdNewDest {
		return fmt.Errorf("%s %s -> %s: %w", name, op.Service.Key, op.Dest.Addr, err)
	}
	return fmt.Errorf("%s %s: %w", name, op.Service.Key, err)
}

// --- decoding -------------------------------------------------------------------------------

// nlMsg is one received netlink message.
type nlMsg struct {
	typ, flags uint16
	seq        uint32
	payload    []byte
}

// errno is the error of an NLMSG_ERROR message (0 for an acknowledgement).
func (m nlMsg) errno() error {
	if len(m.payload) < 4 {
		return fmt.Errorf("short netlink error message")
	}
	if e := int32(binary.NativeEndian.Uint32(m.payload)); e < 0 {
		return unix.Errno(-e)
	}
	return nil
}

// parseMsgs splits a datagram into netlink messages.
func parseMsgs(b []byte) ([]nlMsg, error) {
	var out []nlMsg
	for len(b) >= nlmsgHdrLen {
		l := int(binary.NativeEndian.Uint32(b))
		if l < nlmsgHdrLen || l > len(b) {
			return out, fmt.Errorf("bad netlink message length %d (%d bytes left)", l, len(b))
		}
		out = append(out, nlMsg{
			typ: binary.NativeEndian.Uint16(b[4:]), flags: binary.NativeEndian.Uint16(b[6:]),
			seq: binary.NativeEndian.Uint32(b[8:]), payload: b[nlmsgHdrLen:l],
		})
		b = b[min(align4(l), len(b)):]
	}
	return out, nil
}

// forAttrs calls f for each attribute in b (type without the nested/byte-order bits).
func forAttrs(b []byte, f func(typ uint16, v []byte) error) error {
	for len(b) >= 4 {
		typ, v, rest, err := nextAttr(b)
		if err != nil {
			return err
		}
		if err := f(typ, v); err != nil {
			return err
		}
		b = rest
	}
	return nil
}

// nextAttr splits the first attribute off b (at least 4 bytes): its type without the
// nested/byte-order bits, its value, and what follows it. The parsers of the read path loop
// with it rather than with forAttrs: no closure, nothing escapes.
func nextAttr(b []byte) (typ uint16, v, rest []byte, err error) {
	l := int(binary.NativeEndian.Uint16(b))
	if l < 4 || l > len(b) {
		return 0, nil, nil, fmt.Errorf("bad netlink attribute length %d (%d bytes left)", l, len(b))
	}
	return binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask, b[4:l], b[min((l+3)&^3, len(b)):], nil
}

func u16(v []byte) uint16 {
	if len(v) < 2 {
		return 0
	}
	return binary.NativeEndian.Uint16(v)
}

func u32(v []byte) uint32 {
	if len(v) < 4 {
		return 0
	}
	return binary.NativeEndian.Uint32(v)
}

func u64(v []byte) uint64 {
	if len(v) < 8 {
		return uint64(u32(v))
	}
	return binary.NativeEndian.Uint64(v)
}

func be16(v []byte) uint16 {
	if len(v) < 2 {
		return 0
	}
	return binary.BigEndian.Uint16(v)
}

// parseAddr reads an nf_inet_addr (16 bytes, IPv4 in the first 4) of family af.
func parseAddr(v []byte, af uint16) (netip.Addr, error) {
	switch {
	case af == unix.AF_INET && len(v) >= 4:
		return netip.AddrFrom4([4]byte(v[:4])), nil
	case af == unix.AF_INET6 && len(v) >= 16:
		return netip.AddrFrom16([16]byte(v[:16])), nil
	}
	return netip.Addr{}, fmt.Errorf("bad address attribute (family %d, %d bytes)", af, len(v))
}

// parseStats reads a stats nest; wide tells the 64-bit one (all counters u64) from the old one
// (connections and packets u32, bytes u64).
func parseStats(b []byte) (Stats, error) {
	var s Stats
	for len(b) >= 4 {
		typ, v, rest, err := nextAttr(b)
		if err != nil {
			return s, err
		}
		b = rest
		switch typ {
		case ipvsStatsConns:
			s.Conns = u64(v)
		case ipvsStatsInPkts:
			s.PacketsIn = u64(v)
		case ipvsStatsOutPkts:
			s.PacketsOut = u64(v)
		case ipvsStatsInBytes:
			s.BytesIn = u64(v)
		case ipvsStatsOutBytes:
			s.BytesOut = u64(v)
		}
	}
	return s, nil
}

// parseService reads the attributes of IPVS_CMD_ATTR_SERVICE. fwmark is non-zero for a
// firewall-mark service (whose Key is then empty).
func parseService(b []byte) (vs VirtualService, fwmark uint32, err error) {
	var af uint16
	var addr, netmask, stats, stats64 []byte
	for len(b) >= 4 {
		var typ uint16
		var v []byte
		if typ, v, b, err = nextAttr(b); err != nil {
			return vs, 0, err
		}
		switch typ {
		case ipvsSvcAttrAF:
			af = u16(v)
		case ipvsSvcAttrProtocol:
			vs.Key.Protocol = u16(v)
		case ipvsSvcAttrAddr:
			addr = v
		case ipvsSvcAttrPort:
			vs.Key.Port = be16(v)
		case ipvsSvcAttrFwmark:
			fwmark = u32(v)
		case ipvsSvcAttrSchedName:
			vs.Scheduler = schedulerName(v)
		case ipvsSvcAttrFlags:
			vs.Flags = u32(v) &^ flagHashed
		case ipvsSvcAttrTimeout:
			vs.Timeout = u32(v)
		case ipvsSvcAttrNetmask:
			netmask = v
		case ipvsSvcAttrStats:
			stats = v
		case ipvsSvcAttrStats64:
			stats64 = v
		}
	}
	if fwmark != 0 {
		return vs, fwmark, nil
	}
	if vs.Key.Addr, err = parseAddr(addr, af); err != nil {
		return vs, 0, fmt.Errorf("service: %w", err)
	}
	if len(netmask) >= 4 {
		if af == unix.AF_INET {
			vs.Netmask = binary.BigEndian.Uint32(netmask)
		} else {
			vs.Netmask = u32(netmask)
		}
	}
	if stats64 != nil {
		vs.Stats, err = parseStats(stats64)
	} else if stats != nil {
		vs.Stats, err = parseStats(stats)
	}
	return vs, 0, err
}

// parseDest reads the attributes of IPVS_CMD_ATTR_DEST of a service of family svcAF.
//
// Its counters go to slab, which must have room for them (one array for the counters of a
// service's real servers: an allocation per service, not per real server).
func parseDest(b []byte, svcAF uint16, slab *[]Stats) (Dest, error) {
	var d Dest
	af := svcAF
	var addr, stats, stats64 []byte
	var port uint16
	for len(b) >= 4 {
		typ, v, rest, err := nextAttr(b)
		if err != nil {
			return d, err
		}
		b = rest
		switch typ {
		case ipvsDestAttrAddr:
			addr = v
		case ipvsDestAttrPort:
			port = be16(v)
		case ipvsDestAttrFwdMethod:
			d.Fwd = u32(v) & FwdMask
		case ipvsDestAttrWeight:
			d.Weight = int32(u32(v))
		case ipvsDestAttrActiveConns:
			d.ActiveConns = u32(v)
		case ipvsDestAttrInactConns:
			d.InactiveConns = u32(v)
		case ipvsDestAttrAddrFamily:
			af = u16(v)
		case ipvsDestAttrStats:
			stats = v
		case ipvsDestAttrStats64:
			stats64 = v
		}
	}
	a, err := parseAddr(addr, af)
	if err != nil {
		return d, fmt.Errorf("real server: %w", err)
	}
	d.Addr = netip.AddrPortFrom(a, port)
	var st Stats
	if stats64 != nil {
		st, err = parseStats(stats64)
	} else if stats != nil {
		st, err = parseStats(stats)
	}
	if stats64 != nil || stats != nil {
		*slab = append(*slab, st)
		d.Stats = &(*slab)[len(*slab)-1]
	}
	return d, err
}

// schedulerName returns the NUL-terminated scheduler name in v; the kernel's own schedulers
// cost no allocation.
func schedulerName(v []byte) string {
	if i := bytes.IndexByte(v, 0); i >= 0 {
		v = v[:i]
	}
	switch string(v) {
	case "rr":
		return "rr"
	case "wrr":
		return "wrr"
	case "lc":
		return "lc"
	case "wlc":
		return "wlc"
	case "lblc":
		return "lblc"
	case "lblcr":
		return "lblcr"
	case "dh":
		return "dh"
	case "sh":
		return "sh"
	case "sed":
		return "sed"
	case "nq":
		return "nq"
	case "mh":
		return "mh"
	case "fo":
		return "fo"
	case "ovf":
		return "ovf"
	case "twos":
		return "twos"
	}
	return string(v)
}

// cmdAttr returns the nested command attribute typ of a generic netlink message payload.
func cmdAttr(payload []byte, typ uint16) ([]byte, error) {
	if len(payload) < genlHdrLen {
		return nil, fmt.Errorf("short generic netlink message")
	}
	var out []byte
	var err error
	for b := payload[genlHdrLen:]; len(b) >= 4; {
		var t uint16
		var v []byte
		if t, v, b, err = nextAttr(b); err != nil {
			break
		}
		if t == typ {
			out = v
		}
	}
	if err == nil && out == nil {
		err = fmt.Errorf("generic netlink message without attribute %d", typ)
	}
	return out, err
}

// --- I/O ------------------------------------------------------------------------------------

// readUntil reads messages and hands those with sequence number seq to f until f reports done
// or returns an error, or a dump ends (NLMSG_DONE). Messages with other numbers are stale
// answers and are dropped. It reads with recvMany (the answers of a request mostly come in
// one system call) and walks the datagrams in place.
func (c *ipvsClient) readUntil(seq uint32, f func(typ, flags uint16, payload []byte) (bool, error)) error {
	for {
		k, err := c.t.recvMany(c.segs[:], c.lens[:])
		if err != nil {
			return err
		}
		for i := 0; i < k; i++ {
			b := c.segs[i][:c.lens[i]]
			for len(b) >= nlmsgHdrLen {
				l := int(binary.NativeEndian.Uint32(b))
				if l < nlmsgHdrLen || l > len(b) {
					return fmt.Errorf("bad netlink message length %d (%d bytes left)", l, len(b))
				}
				typ, flags := binary.NativeEndian.Uint16(b[4:]), binary.NativeEndian.Uint16(b[6:])
				mseq, payload := binary.NativeEndian.Uint32(b[8:]), b[nlmsgHdrLen:l]
				b = b[min(align4(l), len(b)):]
				if mseq != seq {
					continue
				}
				if typ == nlmsgDoneType {
					return nil
				}
				done, err := f(typ, flags, payload)
				if err != nil || done {
					return err
				}
			}
		}
	}
}

// errnoOf is the error of an NLMSG_ERROR payload (nil for an acknowledgement).
func errnoOf(payload []byte) error { return nlMsg{payload: payload}.errno() }

// dump sends the dump request b (sequence number seq) and calls f for each answer.
func (c *ipvsClient) dump(b []byte, seq uint32, f func(payload []byte) error) error {
	if err := c.t.request(b); err != nil {
		return err
	}
	var ferr error
	err := c.readUntil(seq, func(typ, flags uint16, payload []byte) (bool, error) {
		switch {
		case typ == nlmsgErrorType:
			if errno := errnoOf(payload); errno != nil {
				return true, errno
			}
			return true, nil
		case typ != c.family:
			return false, nil
		case flags&nlmFDumpIntr != 0:
			return true, fmt.Errorf("the dump was interrupted by a concurrent change (NLM_F_DUMP_INTR)")
		}
		if ferr == nil {
			ferr = f(payload)
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	return ferr
}

// services dumps the virtual services and then, one dump each, their real servers
// (firewall-mark services are skipped: they are not the director's).
//
// This is the full read of a resync, at up to tens of thousands of services, so it is lean:
// each real-server dump is one write and (mostly) one read, made without the runtime's system
// call hand-off (see netlinkSocket.request), parsed in place, and copied once into a slice of
// its size.
func (c *ipvsClient) services() ([]VirtualService, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []VirtualService
	seq := c.nextSeq(1)
	b := beginMsg(c.wbuf[:0], c.family, nlmFRequest|nlmFDump, seq, ipvsCmdGetService)
	finishMsg(b, 0)
	c.wbuf = b
	err := c.dump(b, seq, func(p []byte) error {
		a, err := cmdAttr(p, ipvsCmdAttrService)
		if err != nil {
			return err
		}
		vs, fwmark, err := parseService(a)
		if err != nil {
			return err
		}
		if fwmark == 0 {
			out = append(out, vs)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s dump: %w", ipvsCmdNames[ipvsCmdGetService], err)
	}
	kept := out[:0]
	for i := range out {
		err := c.dumpDests(&out[i])
		if errors.Is(err, unix.ESRCH) {
			continue // the service went away between the two dumps
		}
		if err != nil {
			return nil, err
		}
		kept = append(kept, out[i])
	}
	clear(out[len(kept):])
	return kept, nil
}

// dumpDests reads the real servers of vs (sorted) into vs.Dests. The error wraps ESRCH when
// the kernel has no such service.
func (c *ipvsClient) dumpDests(vs *VirtualService) error {
	af := afOf(vs.Key.Addr)
	seq := c.nextSeq(1)
	b := beginMsg(c.wbuf[:0], c.family, nlmFRequest|nlmFDump, seq, ipvsCmdGetDest)
	b = appendServiceAttr(b, vs, false)
	finishMsg(b, 0)
	c.wbuf = b
	ds := append(c.dests[:0], vs.Dests...)
	var slab []Stats
	err := c.dump(b, seq, func(p []byte) error {
		a, err := cmdAttr(p, ipvsCmdAttrDest)
		if err != nil {
			return err
		}
		if len(slab) == cap(slab) {
			slab = make([]Stats, 0, max(16, 2*cap(slab)))
		}
		d, err := parseDest(a, af, &slab)
		if err != nil {
			return err
		}
		ds = append(ds, d)
		return nil
	})
	c.dests = ds[:0]
	if err != nil {
		return fmt.Errorf("%s dump of %s: %w", ipvsCmdNames[ipvsCmdGetDest], vs.Key, err)
	}
	if len(ds) > 0 {
		vs.Dests = sortedDests(ds)
	}
	return nil
}

// sortedDests returns a copy of ds, of its size, sorted by address (as sortDests). The kernel
// lists a service's real servers newest first, so a table programmed in order comes back in
// descending order: that is copied reversed, and then only checked, instead of moving every
// element (each move of a Dest, which holds a pointer, costs a write barrier while the
// collector runs).
func sortedDests(ds []Dest) []Dest {
	out := make([]Dest, len(ds))
	n := len(ds) - 1
	i := 0
	for i < n && ds[i].Addr.Compare(ds[i+1].Addr) > 0 {
		i++
	}
	if i == n {
		for j := range ds {
			out[n-j] = ds[j]
		}
		return out
	}
	copy(out, ds)
	for i := 0; i < n; i++ {
		if out[i].Addr.Compare(out[i+1].Addr) > 0 {
			slices.SortFunc(out, func(a, b Dest) int { return a.Addr.Compare(b.Addr) })
			break
		}
	}
	return out
}

// service reads one virtual service (one request) and its real servers (one dump); found is
// false when the kernel has no such service.
func (c *ipvsClient) service(key ServiceKey) (vs VirtualService, found bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := VirtualService{Key: key}
	seq := c.nextSeq(1)
	b := beginMsg(c.wbuf[:0], c.family, nlmFRequest|nlmFAck, seq, ipvsCmdGetService)
	b = appendServiceAttr(b, &q, false)
	finishMsg(b, 0)
	c.wbuf = b
	if err := c.t.request(b); err != nil {
		return vs, false, fmt.Errorf("%s %s: %w", ipvsCmdNames[ipvsCmdGetService], key, err)
	}
	var perr error
	err = c.readUntil(seq, func(typ, _ uint16, payload []byte) (bool, error) {
		switch {
		case typ == nlmsgErrorType:
			return true, errnoOf(payload) // the acknowledgement, or the error
		case typ != c.family:
			return false, nil
		}
		a, err := cmdAttr(payload, ipvsCmdAttrService)
		if err == nil {
			vs, _, err = parseService(a)
		}
		if err != nil {
			perr = err
		} else {
			found = true
		}
		return false, nil
	})
	if errors.Is(err, unix.ESRCH) {
		return VirtualService{}, false, nil
	}
	if err == nil {
		err = perr
	}
	if err == nil && found && vs.Key != key {
		err = fmt.Errorf("the kernel answered with service %s", vs.Key)
	}
	if err != nil {
		return VirtualService{}, false, fmt.Errorf("%s %s: %w", ipvsCmdNames[ipvsCmdGetService], key, err)
	}
	if !found {
		return VirtualService{}, false, nil
	}
	if err := c.dumpDests(&vs); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return VirtualService{}, false, nil // gone between the two requests
		}
		return VirtualService{}, false, err
	}
	return vs, true, nil
}

// errOutcomeLost marks operations whose answer the kernel could not deliver.
var errOutcomeLost = errors.New("outcome unknown: the kernel's answers overflowed the netlink receive buffer (the next sync re-reads the kernel)")

// apply sends ops in batches and returns each one's result.
func (c *ipvsClient) apply(ops []Op) []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	errs := make([]error, len(ops))
	perOp := false // after a lost answer: one acknowledged message at a time
	for i := 0; i < len(ops); {
		maxMsgs := c.maxMsgs
		if perOp {
			maxMsgs = 1
		}
		n, lost := c.applyChunk(ops[i:], errs[i:], maxMsgs)
		if lost {
			perOp = true
		}
		i += n
	}
	return errs
}

// applyChunk sends up to maxMsgs of ops in one write, fills errs for them and returns how many
// ops it consumed and whether answers were lost (ENOBUFS).
func (c *ipvsClient) applyChunk(ops []Op, errs []error, maxMsgs int) (int, bool) {
	seq := c.nextSeq(min(len(ops), maxMsgs))
	b := c.wbuf[:0]
	var idx []int // index in ops of each message sent
	n := 0
	for n < len(ops) && len(idx) < maxMsgs {
		off := len(b)
		var err error
		b, err = appendOp(b, c.family, 0, seq+uint32(len(idx)), &ops[n])
		if err != nil {
			errs[n] = err
			b = b[:off]
			n++
			continue
		}
		if len(b) > c.maxBytes && len(idx) > 0 {
			b = b[:off] // this op starts the next batch
			break
		}
		idx = append(idx, n)
		n++
	}
	c.wbuf = b
	if len(idx) == 0 {
		return n, false
	}
	// Only the last message asks for an acknowledgement: the kernel answers the failed ones
	// anyway, so every answer before the last one's is an error.
	last := len(idx) - 1
	lastOff := msgOffset(b, last)
	binary.NativeEndian.PutUint16(b[lastOff+6:], binary.NativeEndian.Uint16(b[lastOff+6:])|nlmFAck)
	if err := c.t.send(b); err != nil {
		if len(idx) > 1 {
			// Nothing was applied (e.g. EMSGSIZE): try again one at a time.
			end := idx[last] + 1
			for done := 0; done < end; {
				k, _ := c.applyChunk(ops[done:end], errs[done:end], 1)
				done += k
			}
			return n, false
		}
		errs[idx[0]] = opError(&ops[idx[0]], err)
		return n, false
	}
	answered := make([]bool, len(idx))
	lost := false
	nonblock := false
	for !answered[last] {
		k, err := c.t.recv(c.rbuf, nonblock)
		if errors.Is(err, unix.ENOBUFS) {
			// Answers were dropped. The kernel handled the whole write before send returned,
			// so whatever is left is queued already: drain it without blocking.
			lost, nonblock = true, true
			continue
		}
		if err != nil {
			if !(nonblock && errors.Is(err, unix.EAGAIN)) {
				lost = true
				for j := range idx {
					if !answered[j] {
						errs[idx[j]] = opError(&ops[idx[j]], fmt.Errorf("reading the answer: %w", err))
						answered[j] = true
					}
				}
			}
			break
		}
		msgs, perr := parseMsgs(c.rbuf[:k])
		if perr != nil {
			continue
		}
		for _, m := range msgs {
			j := int(m.seq - seq)
			if m.typ != nlmsgErrorType || m.seq < seq || j >= len(idx) {
				continue
			}
			answered[j] = true
			if errno := m.errno(); errno != nil {
				errs[idx[j]] = opError(&ops[idx[j]], errno)
			}
		}
	}
	if lost {
		// The kernel only answers failures (and the last message), in order, and a full
		// receive buffer drops every later answer of the write. So a message without an answer
		// before the last answered one succeeded; after it, its outcome is unknown.
		lastAnswered := -1
		for j := range idx {
			if answered[j] {
				lastAnswered = j
			}
		}
		for j := lastAnswered + 1; j < len(idx); j++ {
			errs[idx[j]] = opError(&ops[idx[j]], fmt.Errorf("%w: %w", errOutcomeLost, unix.ENOBUFS))
		}
	}
	return n, lost
}

// msgOffset returns the offset of the i-th message in b.
func msgOffset(b []byte, i int) int {
	off := 0
	for ; i > 0; i-- {
		off += align4(int(binary.NativeEndian.Uint32(b[off:])))
	}
	return off
}

// --- the socket -----------------------------------------------------------------------------

// netlinkSocket is a NETLINK_GENERIC socket.
type netlinkSocket struct {
	fd int
	// recvMany's arguments to recvmmsg, in the heap (see ipvsnl_raw_linux.go).
	msgs  [recvSegs]mmsghdr
	iovs  [recvSegs]unix.Iovec
	names [recvSegs]unix.RawSockaddrNetlink
}

// recvTimeout bounds a wait for the kernel's answer.
const recvTimeout = 60 * time.Second

func openNetlinkSocket() (*netlinkSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("opening a generic netlink socket: %w", err)
	}
	s := &netlinkSocket{fd: fd}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		s.close()
		return nil, fmt.Errorf("binding the generic netlink socket: %w", err)
	}
	// Room for many error answers of a batch (root may exceed rmem_max), small answers (no
	// copy of the request in error messages), and no endless wait.
	const rcvbuf = 8 << 20
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	tv := unix.NsecToTimeval(recvTimeout.Nanoseconds())
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return s, nil
}

func (s *netlinkSocket) send(b []byte) error {
	for {
		err := unix.Sendto(s.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		if err != unix.EINTR {
			return err
		}
	}
}

func (s *netlinkSocket) recv(buf []byte, nonblock bool) (int, error) {
	flags := 0
	if nonblock {
		flags = unix.MSG_DONTWAIT
	}
	for {
		n, _, rflags, from, err := unix.Recvmsg(s.fd, buf, nil, flags)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if err == unix.EAGAIN && !nonblock {
				return 0, fmt.Errorf("no answer from the kernel within %v: %w", recvTimeout, err)
			}
			return 0, err
		}
		if rflags&unix.MSG_TRUNC != 0 {
			return 0, fmt.Errorf("netlink message truncated (buffer %d bytes)", len(buf))
		}
		if sa, ok := from.(*unix.SockaddrNetlink); ok && sa.Pid != 0 {
			continue // not from the kernel
		}
		return n, nil
	}
}

func (s *netlinkSocket) close() error { return unix.Close(s.fd) }
