package config

import (
	"reflect"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestPrefault: after prefault every whole page of the array is resident (mincore), and the
// array is still all zero.
func TestPrefault(t *testing.T) {
	s := make([]Service, 20000)
	prefault(s)
	size := uintptr(len(s)) * unsafe.Sizeof(s[0])
	const page = 4096
	off := (page - uintptr(unsafe.Pointer(&s[0]))%page) % page
	b := unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), size)[off : off+(size-off)/page*page]
	vec := make([]byte, len(b)/page)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Skipf("mincore: %v", e)
	}
	for i, v := range vec {
		if v&1 == 0 {
			t.Fatalf("page %d of %d not resident after prefault", i, len(vec))
		}
	}
	for i := range s {
		if !reflect.DeepEqual(s[i], Service{}) {
			t.Fatalf("service %d is not zero", i)
		}
	}
}
