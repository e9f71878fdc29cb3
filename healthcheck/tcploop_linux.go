//go:build linux

package healthcheck

import (
	"container/heap"
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// epollLoop runs part of the Linux checkLoop (see loopSet). One goroutine owns everything: a
// min-heap of jobs keyed by when each next needs attention (its next check while idle, its
// deadline while a check is in flight) and an epoll instance on which every connecting socket
// waits for writability. A check is socket(SOCK_NONBLOCK) [+ bind to the source] + connect +
// epoll_ctl; its outcome is the first event (or the deadline), read with SO_ERROR only on an
// error event, and the socket has SO_LINGER 0, so that closing it resets the connection (no
// TIME_WAIT left behind). Nothing in the loop blocks except epoll_wait, whose timeout is the
// heap's minimum (rounded up to wakeQuantum), so a silent target costs nothing until its
// deadline and never delays another check. Other goroutines add and remove jobs through an
// inbox guarded by mu and wake the loop with an eventfd.
type epollLoop struct {
	epfd int
	loopInbox

	// Owned by the loop goroutine.
	jobs   jobHeap
	slots  []*tcpJob // a job's slot names it in epoll events
	free   []int32
	gen    int32 // numbers the checks
	events [256]unix.EpollEvent
	file   *os.File        // owns epfd; registered with Go's poller
	raw    syscall.RawConn // waits for epfd in Go's poller
}

type loopOp struct {
	j      *tcpJob
	remove bool
}

// loopInbox hands jobs to a check loop's goroutine and wakes it through an eventfd (evfd, in
// the loop's epoll set); done is closed when the loop has ended.
type loopInbox struct {
	evfd   int
	mu     sync.Mutex
	ops    []loopOp
	closed bool
	done   chan struct{}
}

func (b *loopInbox) add(j *tcpJob)    { b.post(loopOp{j: j}) }
func (b *loopInbox) remove(j *tcpJob) { b.post(loopOp{j: j, remove: true}) }

func (b *loopInbox) post(op loopOp) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.ops = append(b.ops, op)
	wake := len(b.ops) == 1 // else a wake-up is pending already
	b.mu.Unlock()
	if wake {
		b.wake()
	}
}

func (b *loopInbox) wake() {
	one := [8]byte{1}
	_, _ = unix.Write(b.evfd, one[:]) // EAGAIN: the counter is full, the loop is woken anyway
}

// close tells the loop to stop and waits until it has. The eventfd is closed here, once the
// loop has ended: closed by the loop, it raced with this wake-up's write (whose descriptor
// number could by then belong to another file).
func (b *loopInbox) close() {
	b.mu.Lock()
	already := b.closed
	b.closed = true
	b.mu.Unlock()
	if !already {
		b.wake()
	}
	<-b.done
	if !already {
		unix.Close(b.evfd)
	}
}

// loopJobs is what a check loop does with the jobs its inbox hands over.
type loopJobs interface {
	insert(j *tcpJob, now time.Time)
	drop(j *tcpJob)
}

// apply hands the inbox's jobs to the loop s; it returns true when the loop is to stop.
func (b *loopInbox) apply(s loopJobs, now time.Time) bool {
	ops, closed := b.take()
	if closed {
		return true
	}
	for _, op := range ops {
		if op.remove {
			s.drop(op.j)
		} else {
			s.insert(op.j, now)
		}
	}
	return false
}

// take empties the inbox (and resets the eventfd); closed tells the loop to stop.
func (b *loopInbox) take() (ops []loopOp, closed bool) {
	var buf [8]byte
	_, _ = unix.Read(b.evfd, buf[:])
	b.mu.Lock()
	defer b.mu.Unlock()
	ops, b.ops = b.ops, nil
	return ops, b.closed
}

// wakeSlot is the event data of the eventfd; job slots are 0 and up.
const wakeSlot = -1

// loopState is a job's state in an epollLoop; only the loop goroutine touches it.
type loopState struct {
	owner  *epollLoop // set by loopSet.add
	inLoop bool
	sa     unix.Sockaddr   // addr
	raw    *rawAddr        // addr in the kernel's layout, for rawConnect
	ev     unix.EpollEvent // the epoll registration of the check in flight (in the heap: see rawEpollAdd)
	src    unix.Sockaddr   // source with port 0; nil: none
	family int
	bad    *Result   // set when addr or source cannot be used: every check reports it
	next   time.Time // when the current (or coming) check is due
	start  time.Time // when the check in flight started
	wake   int64     // heap key (see mono): next while idle, the deadline while a check is in flight
	fd     int       // the socket of the check in flight, -1 when idle
	slot   int32
	gen    int32 // the check in flight: an event about an earlier check's socket is ignored
	idx    int   // position in the heap
}

// loopSet is the Linux checkLoop: it spreads jobs over a few epollLoops, one per CPU the Go
// runtime uses (at most maxLoops). One loop can keep up with 10,000 loopback checks a second
// (about half a core, most of it the kernel's TCP work), but a single thread gets only its
// fair share of a busy machine.
type loopSet struct {
	loops []*epollLoop
	next  atomic.Uint32
}

const maxLoops = 4

// newTCPLoop starts the Linux checkLoop.
func newTCPLoop() (checkLoop, error) {
	s := &loopSet{}
	for range min(max(runtime.GOMAXPROCS(0), 1), maxLoops) {
		l, err := newEpollLoop()
		if err != nil {
			s.close()
			return nil, err
		}
		s.loops = append(s.loops, l)
	}
	return s, nil
}

// add gives j to the next loop in turn; remove must not be called before add has returned.
func (s *loopSet) add(j *tcpJob) {
	l := s.loops[s.next.Add(1)%uint32(len(s.loops))]
	j.owner = l
	l.add(j)
}

func (s *loopSet) remove(j *tcpJob) {
	if j.owner != nil {
		j.owner.remove(j)
	}
}

func (s *loopSet) close() {
	for _, l := range s.loops {
		l.close()
	}
}

// newEpollLoop starts an epollLoop.
func newEpollLoop() (*epollLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeSlot}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(evfd)
		unix.Close(epfd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	// The loop waits for its epoll descriptor in Go's own poller (an epoll descriptor is
	// readable while it has events) instead of blocking a thread in epoll_wait: a blocking
	// system call makes the runtime hand the thread's P over and back at every wake-up, which
	// costs more than the checks themselves under emulation.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(evfd)
		unix.Close(epfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	file := os.NewFile(uintptr(epfd), "epoll")
	raw, err := file.SyscallConn()
	if err != nil {
		unix.Close(evfd)
		file.Close()
		return nil, fmt.Errorf("epoll descriptor: %w", err)
	}
	l := &epollLoop{epfd: epfd, loopInbox: loopInbox{evfd: evfd, done: make(chan struct{})}, file: file, raw: raw}
	go l.run()
	return l, nil
}

func (l *epollLoop) run() {
	defer close(l.done)
	for {
		timeout := -1
		if len(l.jobs) > 0 {
			timeout = 0
			if d := time.Duration(l.jobs[0].wake - mono(time.Now())); d > 0 {
				timeout = int((d + wakeQuantum - 1) / wakeQuantum * wakeQuantum / time.Millisecond)
			}
		}
		// Every ready event is taken before any deadline is enforced: a check whose answer
		// came in time is not timed out because the process was slow to look.
		for {
			n, err := l.wait(timeout)
			if err != nil {
				n = 0
				if err != unix.EINTR {
					// Never seen: the descriptors are the loop's own. Do not spin; deadlines
					// and schedules still run below.
					time.Sleep(time.Millisecond)
				}
			}
			now := time.Now()
			for i := range n {
				ev := &l.events[i]
				if ev.Fd == wakeSlot {
					if l.apply(l, now) {
						l.shutdown()
						return
					}
					continue
				}
				l.complete(ev, now)
			}
			if n < len(l.events) {
				break
			}
			timeout = 0
		}
		l.due(time.Now())
	}
}

// wait collects ready events like epoll_wait(timeout ms; -1 = none) without blocking a thread:
// the goroutine parks in Go's poller until epfd is readable or the deadline passes.
func (l *epollLoop) wait(timeout int) (int, error) {
	return parkedWait(l.epfd, l.file, l.raw, l.events[:], timeout)
}

func (l *epollLoop) insert(j *tcpJob, now time.Time) {
	if j.inLoop {
		return
	}
	j.inLoop, j.fd, j.bad = true, -1, nil
	j.family, j.sa, j.src = unix.AF_INET, nil, nil
	if err := j.prepare(); err != nil {
		r := fail(KindOther, "%v", err)
		j.bad = &r
	}
	if n := len(l.free); n > 0 {
		j.slot, l.free = l.free[n-1], l.free[:n-1]
		l.slots[j.slot] = j
	} else {
		j.slot = int32(len(l.slots))
		l.slots = append(l.slots, j)
	}
	j.next = now.Add(j.first)
	j.wake = mono(j.next)
	heap.Push(&l.jobs, j)
}

// prepare builds the socket addresses of j.
func (j *tcpJob) prepare() error {
	addr := j.addr.Addr().Unmap()
	if !addr.IsValid() {
		return fmt.Errorf("invalid address %s", j.addr)
	}
	if addr.Is4() {
		j.family = unix.AF_INET
		j.sa = &unix.SockaddrInet4{Port: int(j.addr.Port()), Addr: addr.As4()}
		j.raw = newRawAddr(addr.As16(), true, j.addr.Port(), 0)
	} else {
		zone, err := zoneIndex(addr.Zone())
		if err != nil {
			return err
		}
		j.family = unix.AF_INET6
		j.sa = &unix.SockaddrInet6{Port: int(j.addr.Port()), Addr: addr.As16(), ZoneId: zone}
		j.raw = newRawAddr(addr.As16(), false, j.addr.Port(), zone)
	}
	if !j.source.IsValid() {
		return nil
	}
	src := j.source.Unmap()
	switch {
	case src.Is4() && j.family == unix.AF_INET:
		j.src = &unix.SockaddrInet4{Addr: src.As4()}
	case src.Is6() && j.family == unix.AF_INET6:
		zone, err := zoneIndex(src.Zone())
		if err != nil {
			return err
		}
		j.src = &unix.SockaddrInet6{Addr: src.As16(), ZoneId: zone}
	default:
		return fmt.Errorf("source %s and address %s are of different families", j.source, addr)
	}
	return nil
}

func zoneIndex(zone string) (uint32, error) {
	if zone == "" {
		return 0, nil
	}
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n), nil
	}
	ifi, err := net.InterfaceByName(zone)
	if err != nil {
		return 0, fmt.Errorf("zone %q: %v", zone, err)
	}
	return uint32(ifi.Index), nil
}

func (l *epollLoop) drop(j *tcpJob) {
	if !j.inLoop {
		return
	}
	if j.fd >= 0 {
		rawClose(j.fd)
		j.fd = -1
	}
	heap.Remove(&l.jobs, j.idx)
	l.slots[j.slot] = nil
	l.free = append(l.free, j.slot)
	j.inLoop = false
}

func (l *epollLoop) shutdown() {
	for _, j := range l.jobs {
		if j.fd >= 0 {
			rawClose(j.fd)
			j.fd = -1
		}
		j.inLoop = false
	}
	l.jobs, l.slots, l.free = nil, nil, nil
	l.file.Close() // closes epfd; close() closes the eventfd
}

// wakeQuantum rounds up the loop's sleeps: a check starts (or times out) up to this much after
// its time, and one wake-up handles every check falling due in that span. Waking for each
// check of 10,000 a second instead costs about a fifth more CPU.
const wakeQuantum = 5 * time.Millisecond

// maxStarts bounds the checks one pass of due starts, so that results are taken (and their
// durations measured) between the starts of a long backlog.
const maxStarts = 256

// due starts the checks that are due and times out those past their deadline.
func (l *epollLoop) due(now time.Time) {
	for starts := 0; len(l.jobs) > 0 && starts < maxStarts; {
		j := l.jobs[0]
		if j.wake > mono(now) {
			return
		}
		if j.fd >= 0 {
			rawClose(j.fd)
			j.fd = -1
			l.finish(j, fail(KindTimeout, "timeout after %s", j.reasonTimeout), now)
			continue
		}
		l.start(j)
		starts++
	}
}

func (l *epollLoop) start(j *tcpJob) {
	now := time.Now()
	next, late := startSlot(now, j.next, j.interval)
	j.next, j.start = next, now
	if late {
		j.late()
	}
	if j.bad != nil {
		l.finish(j, *j.bad, now)
		return
	}
	fd, err := rawSocket(j.family)
	if err != nil {
		l.finish(j, sysResult("socket", err, j.reasonTimeout), now)
		return
	}
	// Whenever it is closed, established or not, the socket sends a reset (or nothing): no FIN
	// exchange and no TIME_WAIT socket left behind, even when a check is removed or times out
	// just as its connection is established.
	_ = rawLinger0(fd)
	if j.src != nil {
		// Let connect pick the port with the whole 4-tuple in view, so that many checks from
		// one source address do not exhaust its ports (Linux 4.2+; harmless where unknown).
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		if err := unix.Bind(fd, j.src); err != nil {
			rawClose(fd)
			l.finish(j, fail(KindOther, "bind to source %s: %v", j.source, err), now)
			return
		}
	}
	switch err := rawConnect(fd, j.raw); err {
	case nil: // established at once
		rawClose(fd)
		l.finish(j, ok("tcp connect ok"), now)
	case unix.EINPROGRESS, unix.EINTR:
		l.gen++
		j.gen = l.gen
		j.ev = unix.EpollEvent{Events: unix.EPOLLOUT, Fd: j.slot, Pad: j.gen}
		if err := rawEpollAdd(l.epfd, fd, &j.ev); err != nil {
			rawClose(fd)
			l.finish(j, sysResult("epoll_ctl", err, j.reasonTimeout), now)
			return
		}
		j.fd = fd
		j.wake = mono(now) + int64(j.timeout)
		heap.Fix(&l.jobs, j.idx)
	default:
		rawClose(fd)
		l.finish(j, sysResult("connect", err, j.reasonTimeout), now)
	}
}

// complete ends the check an epoll event is about.
func (l *epollLoop) complete(ev *unix.EpollEvent, now time.Time) {
	if ev.Fd < 0 || int(ev.Fd) >= len(l.slots) {
		return
	}
	j := l.slots[ev.Fd]
	if j == nil || j.fd < 0 || j.gen != ev.Pad {
		return // the check ended already (timed out, removed) and this is its socket's echo
	}
	fd := j.fd
	j.fd = -1
	res := ok("tcp connect ok")
	if ev.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		switch soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); {
		case err != nil:
			res = sysResult("getsockopt", err, j.reasonTimeout)
		case soErr != 0:
			res = sysResult("connect", syscall.Errno(soErr), j.reasonTimeout)
		case ev.Events&unix.EPOLLOUT == 0:
			res = fail(KindReset, "connection reset")
		}
	}
	rawClose(fd)
	l.finish(j, res, now)
}

// finish reports res for j's check and schedules the next one.
func (l *epollLoop) finish(j *tcpJob, res Result, end time.Time) {
	j.report(res, j.start, end)
	j.next = j.next.Add(jittered(j.interval, j.jitter))
	j.wake = mono(j.next)
	heap.Fix(&l.jobs, j.idx)
}

func sysResult(call string, err error, timeout time.Duration) Result {
	return errResult(context.Background(), os.NewSyscallError(call, err), timeout)
}

// monoBase is the origin of mono.
var monoBase = time.Now()

// mono is t on the monotonic clock, in nanoseconds: heap keys compare as plain integers.
func mono(t time.Time) int64 { return int64(t.Sub(monoBase)) }

// jobHeap is a min-heap of jobs by wake.
type jobHeap []*tcpJob

func (h jobHeap) Len() int           { return len(h) }
func (h jobHeap) Less(a, b int) bool { return h[a].wake < h[b].wake }
func (h jobHeap) Swap(a, b int) {
	h[a], h[b] = h[b], h[a]
	h[a].idx, h[b].idx = a, b
}
func (h *jobHeap) Push(x any) {
	j := x.(*tcpJob)
	j.idx = len(*h)
	*h = append(*h, j)
}
func (h *jobHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return j
}
