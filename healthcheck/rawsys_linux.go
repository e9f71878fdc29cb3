package healthcheck

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The check loop's per-check system calls (socket, setsockopt, connect, epoll_ctl, close) never
// block: the socket is non-blocking and SO_LINGER 0 makes close send a reset at once. They are
// made with RawSyscall, which does not tell the runtime: with the usual Syscall, the runtime's
// monitor hands the thread's P to another thread whenever a call takes over 20 µs (a loopback
// connect, which runs the whole handshake, does under emulation), and taking it back costs more
// than the call. Every pointer passed points into the heap (the job) or to a package variable.

// rawAddr is a socket address in the kernel's layout, built once per job.
type rawAddr struct {
	in4 unix.RawSockaddrInet4
	in6 unix.RawSockaddrInet6
	six bool
}

func newRawAddr(addr [16]byte, four bool, port uint16, zone uint32) *rawAddr {
	r := &rawAddr{six: !four}
	p := [2]byte{byte(port >> 8), byte(port)} // network byte order
	if four {
		r.in4.Family = unix.AF_INET
		r.in4.Port = *(*uint16)(unsafe.Pointer(&p))
		copy(r.in4.Addr[:], addr[12:])
	} else {
		r.in6.Family = unix.AF_INET6
		r.in6.Port = *(*uint16)(unsafe.Pointer(&p))
		r.in6.Addr = addr
		r.in6.Scope_id = zone
	}
	return r
}

// linger0 is SO_LINGER with a zero timeout.
var linger0 = unix.Linger{Onoff: 1, Linger: 0}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func rawSocket(family int) (int, error) {
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
}

func rawLinger0(fd int) error {
	_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_LINGER,
		uintptr(unsafe.Pointer(&linger0)), unsafe.Sizeof(linger0), 0)
	return errnoErr(e)
}

func rawConnect(fd int, a *rawAddr) error {
	var e syscall.Errno
	if a.six {
		_, _, e = unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&a.in6)), unsafe.Sizeof(a.in6))
	} else {
		_, _, e = unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&a.in4)), unsafe.Sizeof(a.in4))
	}
	return errnoErr(e)
}

// rawEpollAdd registers fd; ev must live in the heap.
func rawEpollAdd(epfd, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), unix.EPOLL_CTL_ADD, uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return errnoErr(e)
}

func rawClose(fd int) { _, _, _ = unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0) }
