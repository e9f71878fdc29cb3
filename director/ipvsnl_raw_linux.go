package director

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The read path's system calls (request, recvMany) are made with RawSyscall, which does not
// tell the runtime, and without blocking. With the usual Syscall, the runtime's monitor hands
// the thread's P to another thread whenever a call takes over 20 µs, and taking it back costs
// more than the call: under emulation a dump request (the kernel writes the first part of the
// answer inside the sendto) and the read that makes the kernel write the rest both take longer
// than that, and a full read makes two such calls per service. Neither waits for anything but
// the kernel's own work: a netlink request to the kernel is handled inside the write, and the
// kernel queues the answers before the write returns. Only when nothing is queued yet does
// recvMany wait, then with Syscall (the runtime runs other goroutines meanwhile) and bounded
// by SO_RCVTIMEO. The write path (send, recv) keeps Syscall: a batch of 256 changes keeps the
// kernel busy far longer. Every pointer passed points into the heap.

// mmsghdr is struct mmsghdr (recvmmsg(2)).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// request implements nlTransport: sendto(2) to the kernel (the socket's default destination).
func (s *netlinkSocket) request(b []byte) error {
	for {
		_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(s.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
			unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return e
	}
}

// recvMany implements nlTransport with recvmmsg(2): what is queued, without blocking, or else
// a wait for the first datagram and what is queued behind it.
func (s *netlinkSocket) recvMany(bufs [][]byte, ns []int) (int, error) {
	n := min(len(bufs), len(s.msgs), len(ns))
	for i := 0; i < n; i++ {
		s.iovs[i].Base = &bufs[i][0]
		s.iovs[i].SetLen(len(bufs[i]))
		h := &s.msgs[i].hdr
		*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&s.names[i])), Namelen: unix.SizeofSockaddrNetlink, Iov: &s.iovs[i]}
		h.SetIovlen(1)
		s.msgs[i].n = 0
	}
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.msgs[0])), uintptr(n),
			unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN {
			r, _, e = unix.Syscall6(unix.SYS_RECVMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.msgs[0])), uintptr(n),
				unix.MSG_WAITFORONE, 0, 0)
			if e == unix.EAGAIN {
				return 0, fmt.Errorf("no answer from the kernel within %v: %w", recvTimeout, e)
			}
		}
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		for i := 0; i < int(r); i++ {
			if s.msgs[i].hdr.Flags&unix.MSG_TRUNC != 0 {
				return 0, fmt.Errorf("netlink message truncated (buffer %d bytes)", len(bufs[i]))
			}
			ns[i] = int(s.msgs[i].n)
			if s.names[i].Pid != 0 {
				ns[i] = 0 // not from the kernel
			}
		}
		return int(r), nil
	}
}
