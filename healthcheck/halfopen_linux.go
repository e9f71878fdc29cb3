//go:build linux

package healthcheck

import (
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// halfLoop is the Linux checkLoop of tcp_half_open targets: one goroutine checks them all
// with two raw IPPROTO_TCP sockets (IPv4 and IPv6) and no socket per check. A check sends one
// SYN from a reserved local port with a random initial sequence number (ISN); a SYN-ACK
// acknowledging ISN+1 passes it, a RST acknowledging ISN+1 is "connection refused", nothing
// before the deadline a timeout. The local kernel has no socket for the 4-tuple, so it
// answers the SYN-ACK with a RST itself and the real server drops its half-open request:
// nothing is accepted and nothing is left behind on either end.
//
// The due SYNs of a pass go out in batches with sendmmsg, the replies come in with recvmmsg,
// and a classic BPF filter on each raw socket lets through only SYN-ACKs and RSTs to the
// reserved ports, so other TCP traffic never wakes the loop. The reserved ports are ordinary
// TCP sockets bound to the wildcard address (dual-stack where IPv6 exists), neither listening
// nor connected: no other local socket can take those ports, and the kernel resets whatever
// reaches them. Two checks in flight never share a 4-tuple: a check takes the next reserved
// port (in turn, so that a target's consecutive checks vary their port) that no check to the
// same address and port is using, and the pool grows when all are (up to maxHalfPorts).
//
// IPv4 packets are built whole (IP_HDRINCL): the TCP checksum covers the source address, which
// is the configured source or the one the kernel's route to the target gives (looked up once
// and again after a timeout). IPv6 leaves the source to the kernel (IPV6_PKTINFO when
// configured) and has the kernel fill the checksum (IPV6_CHECKSUM).
//
// Scheduling, deadlines and the inbox work as in epollLoop: one heap of jobs keyed by their
// next check or, in flight, their deadline; the goroutine parks in Go's poller on an epoll
// descriptor watching an eventfd (the inbox). The raw sockets are not watched: while checks are
// in flight the loop wakes at least every halfQuantum and reads their queued replies then, so
// that replies arriving one by one (from a real network) do not wake it one by one.
type halfLoop struct {
	epfd int
	loopInbox
	raw4, raw6 int   // raw6 is -1 when IPv6 is not available
	err6       error // why raw6 is -1
	route4     int   // UDP socket connected to a target to learn the kernel's source address
	portFamily int   // family of the reservation sockets

	// Owned by the loop goroutine.
	jobs     jobHeap
	flying   map[flightKey]*tcpJob // checks in flight by their 4-tuple
	flying6  int                   // how many of them are IPv6
	ports    []uint16              // reserved local ports
	portFDs  []int                 // their sockets
	nextPort int                   // index in ports of the next check's port
	events   [1]unix.EpollEvent
	file     *os.File
	raw      syscall.RawConn
	out4     synBatch
	out6     synBatch
	in       replyBatch
}

// halfState is a job's state in a halfLoop; only the loop goroutine touches it.
type halfState struct {
	dst        [16]byte // addr's address, IPv4 mapped into IPv6
	src4       [4]byte  // IPv4: the source address of the SYNs
	needSource bool     // src4 (or the configured source) is to be looked up again before the next check
	name4      unix.RawSockaddrInet4
	name6      unix.RawSockaddrInet6
	pktinfo    []byte // IPv6 with a source: the IPV6_PKTINFO control message
	isn        uint32 // initial sequence number of the check in flight
	sport      uint16 // local port of the check in flight; 0 when idle
}

// flightKey names a check in flight by the remote address and port and the local port (the
// local ports are reserved on every address, so the local address adds nothing).
type flightKey struct {
	addr         [16]byte
	rport, lport uint16
}

// halfQuantum rounds up the loop's sleeps (see wakeQuantum), and bounds them while checks are in
// flight: the replies are read at the next wake-up, not as each arrives.
const halfQuantum = 20 * time.Millisecond

const (
	halfBatch       = 64  // SYNs per sendmmsg, replies per recvmmsg
	minHalfPorts    = 4   // ports reserved at start
	maxHalfPorts    = 128 // ports reserved at most
	halfReplyBuf    = 128 // bytes read of a reply (headers only)
	halfRecvBufSize = 4 << 20

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10

	synLen = 24 // TCP header with one option (MSS)
)

// synBatch is the SYNs of one family going out in one sendmmsg.
type synBatch struct {
	n    int
	jobs [halfBatch]*tcpJob
	msgs [halfBatch]unix.Mmsghdr
	iov  [halfBatch]unix.Iovec
	pkts [halfBatch][20 + synLen]byte
}

// replyBatch is the buffers of one recvmmsg.
type replyBatch struct {
	msgs  [halfBatch]unix.Mmsghdr
	iov   [halfBatch]unix.Iovec
	names [halfBatch]unix.RawSockaddrInet6
	bufs  [halfBatch][halfReplyBuf]byte
}

// newHalfOpenLoop starts the Linux checkLoop of tcp_half_open targets. It fails when the raw
// IPv4 socket cannot be opened (no CAP_NET_RAW); without IPv6, only IPv6 targets fail.
func newHalfOpenLoop() (checkLoop, error) {
	l := &halfLoop{epfd: -1, loopInbox: loopInbox{evfd: -1, done: make(chan struct{})}, raw4: -1, raw6: -1, route4: -1,
		flying: map[flightKey]*tcpJob{}}
	if err := l.open(); err != nil {
		l.closeAll()
		l.closeEventfd()
		return nil, err
	}
	file := os.NewFile(uintptr(l.epfd), "epoll")
	raw, err := file.SyscallConn()
	if err != nil {
		l.epfd = -1 // owned by file
		file.Close()
		l.closeAll()
		l.closeEventfd()
		return nil, fmt.Errorf("epoll descriptor: %w", err)
	}
	l.file, l.raw = file, raw
	l.initBatches()
	go l.run()
	return l, nil
}

func (l *halfLoop) open() error {
	var err error
	l.raw4, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		l.raw4 = -1
		return fmt.Errorf("raw IPv4 TCP socket: %w", os.NewSyscallError("socket", err))
	}
	if err := unix.SetsockoptInt(l.raw4, unix.IPPROTO_IP, unix.IP_HDRINCL, 1); err != nil {
		return fmt.Errorf("raw IPv4 TCP socket: %w", os.NewSyscallError("setsockopt IP_HDRINCL", err))
	}
	if fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP); err != nil {
		l.err6 = os.NewSyscallError("socket", err)
	} else if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_CHECKSUM, 16); err != nil {
		unix.Close(fd)
		l.err6 = os.NewSyscallError("setsockopt IPV6_CHECKSUM", err)
	} else {
		l.raw6 = fd
	}
	for _, fd := range []int{l.raw4, l.raw6} {
		if fd < 0 {
			continue
		}
		// A burst of replies (on loopback every reply of a batch arrives during its
		// sendmmsg) must not overflow the queue: a lost reply is a false timeout.
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, halfRecvBufSize) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, halfRecvBufSize)
		}
	}
	if l.route4, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
		l.route4 = -1
		return os.NewSyscallError("socket", err)
	}
	l.portFamily = unix.AF_INET6
	for range minHalfPorts {
		if _, err := l.reservePort(); err != nil {
			return err
		}
	}
	if err := l.attachFilters(); err != nil {
		return err
	}
	if l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		l.epfd = -1
		return os.NewSyscallError("epoll_create1", err)
	}
	if l.evfd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		l.evfd = -1
		return os.NewSyscallError("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeSlot}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, l.evfd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	if err := unix.SetNonblock(l.epfd, true); err != nil {
		return os.NewSyscallError("fcntl", err)
	}
	return nil
}

// reservePort binds one more TCP socket to the wildcard address and returns its port.
func (l *halfLoop) reservePort() (uint16, error) {
	for {
		fd, err := unix.Socket(l.portFamily, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		if err != nil && l.portFamily == unix.AF_INET6 && len(l.ports) == 0 {
			l.portFamily = unix.AF_INET // no IPv6 at all: the IPv4 wildcard
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("reserving a source port: %w", os.NewSyscallError("socket", err))
		}
		var sa unix.Sockaddr = &unix.SockaddrInet4{}
		if l.portFamily == unix.AF_INET6 {
			_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
			sa = &unix.SockaddrInet6{}
		}
		if err := unix.Bind(fd, sa); err != nil {
			unix.Close(fd)
			return 0, fmt.Errorf("reserving a source port: %w", os.NewSyscallError("bind", err))
		}
		got, err := unix.Getsockname(fd)
		if err != nil {
			unix.Close(fd)
			return 0, fmt.Errorf("reserving a source port: %w", os.NewSyscallError("getsockname", err))
		}
		var port int
		switch a := got.(type) {
		case *unix.SockaddrInet4:
			port = a.Port
		case *unix.SockaddrInet6:
			port = a.Port
		}
		l.ports, l.portFDs = append(l.ports, uint16(port)), append(l.portFDs, fd)
		return uint16(port), nil
	}
}

// attachFilters (re)attaches the filter of the current ports to both raw sockets.
func (l *halfLoop) attachFilters() error {
	for _, s := range []struct {
		fd  int
		ip4 bool
	}{{l.raw4, true}, {l.raw6, false}} {
		if s.fd < 0 {
			continue
		}
		prog := replyFilter(s.ip4, l.ports)
		fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
		if err := unix.SetsockoptSockFprog(s.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
			return os.NewSyscallError("setsockopt SO_ATTACH_FILTER", err)
		}
	}
	return nil
}

// replyFilter is the classic BPF program that passes (the first bytes of) TCP segments with
// RST, or with SYN and ACK, to one of ports. An IPv4 raw socket sees the IP header first, an
// IPv6 one the TCP header.
func replyFilter(ip4 bool, ports []uint16) []unix.SockFilter {
	const (
		ldxMSH  = unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH // X = 4*(P[k]&0xf)
		ldxImm  = unix.BPF_LDX | unix.BPF_W | unix.BPF_IMM
		ldbInd  = unix.BPF_LD | unix.BPF_B | unix.BPF_IND
		ldhInd  = unix.BPF_LD | unix.BPF_H | unix.BPF_IND
		jset    = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		jeq     = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		andK    = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
		retK    = unix.BPF_RET | unix.BPF_K
		keepLen = halfReplyBuf
	)
	first := unix.SockFilter{Code: ldxImm, K: 0} // X = 0: the TCP header is first
	if ip4 {
		first = unix.SockFilter{Code: ldxMSH, K: 0} // X = IP header length
	}
	n := len(ports)
	// 0 X; 1 flags; 2 RST?; 3-4 SYN+ACK?; 5 port; 6..5+n one test per port; reject; accept.
	reject := 6 + n
	prog := []unix.SockFilter{
		first,
		{Code: ldbInd, K: 13},
		{Code: jset, K: tcpRST, Jt: 2, Jf: 0},
		{Code: andK, K: tcpSYN | tcpACK},
		{Code: jeq, K: tcpSYN | tcpACK, Jt: 0, Jf: uint8(reject - 5)},
		{Code: ldhInd, K: 2},
	}
	for i, p := range ports {
		at := 6 + i
		prog = append(prog, unix.SockFilter{Code: jeq, K: uint32(p), Jt: uint8(reject + 1 - at - 1), Jf: 0})
	}
	return append(prog, unix.SockFilter{Code: retK, K: 0}, unix.SockFilter{Code: retK, K: keepLen})
}

func (l *halfLoop) initBatches() {
	for _, b := range []*synBatch{&l.out4, &l.out6} {
		for i := range b.msgs {
			b.iov[i].Base = &b.pkts[i][0]
			b.msgs[i].Hdr.Iov = &b.iov[i]
			b.msgs[i].Hdr.SetIovlen(1)
		}
	}
	in := &l.in
	for i := range in.msgs {
		in.iov[i].Base = &in.bufs[i][0]
		in.iov[i].SetLen(halfReplyBuf)
		in.msgs[i].Hdr.Iov = &in.iov[i]
		in.msgs[i].Hdr.SetIovlen(1)
		in.msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&in.names[i]))
	}
}

func (l *halfLoop) run() {
	defer close(l.done)
	for {
		timeout := -1
		if len(l.jobs) > 0 {
			timeout = 0
			if d := time.Duration(l.jobs[0].wake - mono(time.Now())); d > 0 {
				timeout = int((d + halfQuantum - 1) / halfQuantum * halfQuantum / time.Millisecond)
			}
		}
		if len(l.flying) > 0 && (timeout < 0 || timeout > int(halfQuantum/time.Millisecond)) {
			timeout = int(halfQuantum / time.Millisecond)
		}
		n, err := parkedWait(l.epfd, l.file, l.raw, l.events[:], timeout)
		if err != nil {
			n = 0
			if err != unix.EINTR {
				time.Sleep(time.Millisecond) // never seen: do not spin
			}
		}
		now := time.Now()
		for i := range n {
			if l.events[i].Fd == wakeSlot && l.apply(l, now) {
				l.closeAll()
				return
			}
		}
		// Every reply is taken before any deadline is enforced.
		if len(l.flying) > 0 {
			l.receive(l.raw4, true)
		}
		if l.flying6 > 0 {
			l.receive(l.raw6, false)
		}
		l.due(time.Now())
	}
}

func (l *halfLoop) insert(j *tcpJob, now time.Time) {
	if j.inLoop {
		return
	}
	j.inLoop, j.bad, j.sport, j.needSource = true, nil, 0, true
	j.family, j.sa, j.src = unix.AF_INET, nil, nil
	if err := j.prepareHalf(l); err != nil {
		r := fail(KindOther, "%v", err)
		j.bad = &r
	}
	j.next = now.Add(j.first)
	j.wake = mono(j.next)
	heap.Push(&l.jobs, j)
}

// prepareHalf builds j's addresses (see prepare).
func (j *tcpJob) prepareHalf(l *halfLoop) error {
	if err := j.prepare(); err != nil {
		return err
	}
	addr := j.addr.Addr().Unmap()
	j.dst = addr.As16()
	j.pktinfo = nil
	if j.family == unix.AF_INET {
		j.name4 = j.raw.in4
		j.name4.Port = 0 // a raw socket's destination has no port
		return nil
	}
	if l.raw6 < 0 {
		return fmt.Errorf("no raw IPv6 socket: %w", l.err6)
	}
	j.name6 = j.raw.in6
	j.name6.Port = 0
	if src, ok := j.src.(*unix.SockaddrInet6); ok {
		j.pktinfo = make([]byte, unix.CmsgSpace(unix.SizeofInet6Pktinfo))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&j.pktinfo[0]))
		h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
		pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&j.pktinfo[unix.CmsgLen(0)]))
		pi.Addr, pi.Ifindex = src.Addr, src.ZoneId
	}
	return nil
}

// source checks that j's configured source is a local address or, for IPv4 without one,
// looks up the source address of the kernel's route to the target.
func (l *halfLoop) source(j *tcpJob) error {
	if j.src != nil {
		fd, err := unix.Socket(j.family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return os.NewSyscallError("socket", err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, j.src); err != nil {
			return fmt.Errorf("bind to source %s: %w", j.source, err)
		}
		if s4, ok := j.src.(*unix.SockaddrInet4); ok {
			j.src4 = s4.Addr
		}
		return nil
	}
	if j.family != unix.AF_INET {
		return nil // the kernel picks the source and fills the checksum
	}
	if err := unix.Connect(l.route4, j.sa); err != nil {
		return os.NewSyscallError("connect", err)
	}
	sa, err := unix.Getsockname(l.route4)
	if err != nil {
		return os.NewSyscallError("getsockname", err)
	}
	s4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return fmt.Errorf("route to %s: no IPv4 source address", j.addr)
	}
	j.src4 = s4.Addr
	return nil
}

func (l *halfLoop) drop(j *tcpJob) {
	if !j.inLoop {
		return
	}
	l.land(j)
	heap.Remove(&l.jobs, j.idx)
	j.inLoop = false
}

// land forgets j's check in flight, if any.
func (l *halfLoop) land(j *tcpJob) {
	if j.sport != 0 {
		delete(l.flying, flightKey{j.dst, j.addr.Port(), j.sport})
		j.sport = 0
		if j.family == unix.AF_INET6 {
			l.flying6--
		}
	}
}

// closeAll closes every descriptor the loop holds.
// closeEventfd closes the eventfd of a loop that never started (close() does it otherwise).
func (l *halfLoop) closeEventfd() {
	if l.evfd >= 0 {
		unix.Close(l.evfd)
		l.evfd = -1
	}
}

func (l *halfLoop) closeAll() {
	for _, j := range l.jobs {
		j.sport, j.inLoop = 0, false
	}
	l.jobs, l.flying = nil, nil
	for _, fd := range append([]int{l.raw4, l.raw6, l.route4}, l.portFDs...) {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	l.raw4, l.raw6, l.route4, l.ports, l.portFDs = -1, -1, -1, nil, nil // the eventfd: close()
	if l.file != nil {
		l.file.Close() // closes epfd
	} else if l.epfd >= 0 {
		unix.Close(l.epfd)
	}
	l.epfd = -1
}

// due starts the checks that are due, in batches, and times out those past their deadline.
func (l *halfLoop) due(now time.Time) {
	for {
		for len(l.jobs) > 0 && l.out4.n < halfBatch && l.out6.n < halfBatch {
			j := l.jobs[0]
			if j.wake > mono(now) {
				break
			}
			if j.sport != 0 {
				l.land(j)
				j.needSource = true // the route may have changed
				l.finish(j, fail(KindTimeout, "timeout after %s", j.reasonTimeout), now)
				continue
			}
			l.start(j, now)
		}
		full := l.out4.n == halfBatch || l.out6.n == halfBatch
		l.flush(&l.out4, l.raw4)
		l.flush(&l.out6, l.raw6)
		if !full {
			return
		}
		// More are due: take the replies to this batch first (on loopback they are all
		// queued already), then go on.
		l.receive(l.raw4, true)
		if l.flying6 > 0 {
			l.receive(l.raw6, false)
		}
		now = time.Now()
	}
}

// start prepares j's SYN in its family's batch; now is the time of the pass (the SYN goes out
// with the batch, microseconds later).
func (l *halfLoop) start(j *tcpJob, now time.Time) {
	next, late := startSlot(now, j.next, j.interval)
	j.next, j.start = next, now
	if late {
		j.late()
	}
	if j.bad != nil {
		l.finish(j, *j.bad, now)
		return
	}
	if j.needSource {
		if err := l.source(j); err != nil {
			l.finish(j, errResult(context.Background(), err, j.reasonTimeout), now)
			return
		}
		j.needSource = false
	}
	port := l.pickPort(j)
	if port == 0 {
		l.finish(j, fail(KindOther, "no free source port for %s", j.addr), now)
		return
	}
	j.sport, j.isn = port, rand.Uint32()
	l.flying[flightKey{j.dst, j.addr.Port(), port}] = j
	j.wake = mono(now) + int64(j.timeout)
	heap.Fix(&l.jobs, j.idx)
	if j.family == unix.AF_INET {
		l.out4.add(j)
	} else {
		l.flying6++
		l.out6.add(j)
	}
}

// pickPort returns the next reserved port not in flight to j's address and port, reserving
// one more if all are; 0 if none is free.
func (l *halfLoop) pickPort(j *tcpJob) uint16 {
	for i := range l.ports {
		k := (l.nextPort + i) % len(l.ports)
		if _, busy := l.flying[flightKey{j.dst, j.addr.Port(), l.ports[k]}]; !busy {
			l.nextPort = (k + 1) % len(l.ports)
			return l.ports[k]
		}
	}
	if len(l.ports) >= maxHalfPorts {
		return 0
	}
	p, err := l.reservePort()
	if err != nil {
		return 0
	}
	if err := l.attachFilters(); err != nil {
		return 0
	}
	return p
}

// add writes j's SYN into the batch.
func (b *synBatch) add(j *tcpJob) {
	i := b.n
	b.n++
	b.jobs[i] = j
	m := &b.msgs[i].Hdr
	pkt := b.pkts[i][:]
	if j.family == unix.AF_INET {
		ip := pkt[:20]
		ip[0], ip[1] = 0x45, 0
		binary.BigEndian.PutUint16(ip[2:], 20+synLen)
		binary.BigEndian.PutUint16(ip[4:], 0)      // the kernel numbers it
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // don't fragment
		ip[8], ip[9] = 64, unix.IPPROTO_TCP
		binary.BigEndian.PutUint16(ip[10:], 0) // the kernel fills the checksum
		copy(ip[12:16], j.src4[:])
		copy(ip[16:20], j.dst[12:])
		putSYN(pkt[20:20+synLen], j, 1460)
		sum := pseudoSum(j.src4[:], j.dst[12:], synLen)
		binary.BigEndian.PutUint16(pkt[20+16:], checksum(pkt[20:20+synLen], sum))
		b.iov[i].SetLen(20 + synLen)
		m.Name = (*byte)(unsafe.Pointer(&j.name4))
		m.Namelen = unix.SizeofSockaddrInet4
		m.Control = nil
		m.SetControllen(0)
		return
	}
	putSYN(pkt[:synLen], j, 1440) // IPV6_CHECKSUM: the kernel fills the checksum
	b.iov[i].SetLen(synLen)
	m.Name = (*byte)(unsafe.Pointer(&j.name6))
	m.Namelen = unix.SizeofSockaddrInet6
	if j.pktinfo != nil {
		m.Control = &j.pktinfo[0]
		m.SetControllen(len(j.pktinfo))
	} else {
		m.Control = nil
		m.SetControllen(0)
	}
}

// putSYN writes the TCP header of j's SYN, with a zero checksum.
func putSYN(h []byte, j *tcpJob, mss uint16) {
	binary.BigEndian.PutUint16(h[0:], j.sport)
	binary.BigEndian.PutUint16(h[2:], j.addr.Port())
	binary.BigEndian.PutUint32(h[4:], j.isn)
	binary.BigEndian.PutUint32(h[8:], 0)
	h[12], h[13] = synLen/4<<4, tcpSYN
	binary.BigEndian.PutUint16(h[14:], 64240) // window
	binary.BigEndian.PutUint16(h[16:], 0)     // checksum
	binary.BigEndian.PutUint16(h[18:], 0)     // urgent pointer
	h[20], h[21] = 2, 4                       // MSS option
	binary.BigEndian.PutUint16(h[22:], mss)
}

// pseudoSum is the unfolded sum of the IPv4 pseudo-header.
func pseudoSum(src, dst []byte, length int) uint32 {
	return uint32(binary.BigEndian.Uint16(src[0:])) + uint32(binary.BigEndian.Uint16(src[2:])) +
		uint32(binary.BigEndian.Uint16(dst[0:])) + uint32(binary.BigEndian.Uint16(dst[2:])) +
		unix.IPPROTO_TCP + uint32(length)
}

// checksum is the Internet checksum of b (even length) on top of sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// flush sends the batch; a SYN the kernel refuses fails its check at once.
func (l *halfLoop) flush(b *synBatch, fd int) {
	for sent := 0; sent < b.n; {
		n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.msgs[sent])),
			uintptr(b.n-sent), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			n = 0
			j := b.jobs[sent]
			l.land(j)
			l.finish(j, sysResult("sendmmsg", e, j.reasonTimeout), time.Now())
			sent++
		}
		sent += int(n)
	}
	for i := range b.n {
		b.jobs[i] = nil
	}
	b.n = 0
}

// receive reads the queued replies of a raw socket and ends the checks they answer.
func (l *halfLoop) receive(fd int, ip4 bool) {
	in := &l.in
	for {
		for i := range in.msgs {
			in.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
			in.msgs[i].Len = 0
		}
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&in.msgs[0])),
			halfBatch, unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 || n == 0 {
			return // EAGAIN: nothing more
		}
		now := time.Now()
		for i := range int(n) {
			b := in.bufs[i][:min(int(in.msgs[i].Len), halfReplyBuf)]
			var from [16]byte
			if ip4 {
				if len(b) < 20 || b[0]>>4 != 4 || b[9] != unix.IPPROTO_TCP {
					continue
				}
				ihl := int(b[0]&0xf) * 4
				if ihl < 20 || len(b) < ihl {
					continue
				}
				from[10], from[11] = 0xff, 0xff
				copy(from[12:], b[12:16])
				b = b[ihl:]
			} else {
				from = in.names[i].Addr
			}
			l.reply(from, b, now)
		}
		if int(n) < halfBatch {
			return
		}
	}
}

// reply ends the check that segment tcp (from address from) answers, if any.
func (l *halfLoop) reply(from [16]byte, tcp []byte, now time.Time) {
	if len(tcp) < 20 {
		return
	}
	k := flightKey{from, binary.BigEndian.Uint16(tcp[0:]), binary.BigEndian.Uint16(tcp[2:])}
	j := l.flying[k]
	if j == nil || binary.BigEndian.Uint32(tcp[8:]) != j.isn+1 {
		return // not a check in flight (late, or another's traffic)
	}
	flags := tcp[13]
	var res Result
	switch {
	case flags&(tcpRST|tcpACK) == tcpRST|tcpACK:
		res = fail(KindRefused, "connection refused")
	case flags&(tcpSYN|tcpACK|tcpRST|tcpFIN) == tcpSYN|tcpACK:
		res = ok("tcp syn-ack received")
	default:
		return
	}
	l.land(j)
	l.finish(j, res, now)
}

// finish reports res for j's check and schedules the next one.
func (l *halfLoop) finish(j *tcpJob, res Result, end time.Time) {
	j.report(res, j.start, end)
	j.next = j.next.Add(jittered(j.interval, j.jitter))
	j.wake = mono(j.next)
	heap.Fix(&l.jobs, j.idx)
}

// parkedWait collects ready events of epfd like epoll_wait(timeout ms; -1 = none) without
// blocking a thread: the goroutine parks in Go's poller (raw, of file, which owns epfd) until
// epfd is readable or the deadline passes.
func parkedWait(epfd int, file *os.File, raw syscall.RawConn, events []unix.EpollEvent, timeout int) (int, error) {
	n, err := unix.EpollWait(epfd, events, 0)
	if n > 0 || err != nil || timeout == 0 {
		return n, err
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(time.Duration(timeout) * time.Millisecond)
	}
	if err := file.SetReadDeadline(deadline); err != nil {
		return 0, err
	}
	rerr := raw.Read(func(fd uintptr) bool {
		n, err = unix.EpollWait(int(fd), events, 0)
		return n > 0 || err != nil && err != unix.EINTR
	})
	if errors.Is(rerr, os.ErrDeadlineExceeded) {
		return 0, nil
	}
	if rerr != nil {
		return 0, rerr
	}
	return n, err
}
