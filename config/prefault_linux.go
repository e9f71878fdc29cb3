package config

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// prefault asks the kernel to map the pages of a new array of services at once
// (MADV_POPULATE_WRITE, Linux 5.14) before a reload fills it. A reload at 10,000 services
// fills 2 MB of memory the runtime has just taken back from the system (it hands a reload's
// memory back once reloads are quiet): faulting its 500 pages in one by one took 4-16 ms of
// the reload in the lab's emulated VM, where each fault is expensive. Only whole pages inside
// the array are asked for; on an older kernel the call fails and the pages fault as usual.
func prefault(s []Service) {
	if len(s) == 0 {
		return
	}
	size := uintptr(len(s)) * unsafe.Sizeof(s[0])
	if size < 64<<10 {
		return
	}
	const page = 4096
	all := unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), size)
	off := (page - uintptr(unsafe.Pointer(&s[0]))%page) % page // to the first page boundary
	if size < off+page {
		return
	}
	b := all[off : off+(size-off)/page*page]
	_ = unix.Madvise(b, unix.MADV_POPULATE_WRITE)
}
