package config

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// mapMinSize is the smallest file Load maps instead of reading: below it a read is as cheap.
const mapMinSize = 256 << 10

// loadMapped parses a large config file through a read-only mapping of it instead of a copy
// in the heap. At 10,000 services the file is 4 MB: reading it copied 4 MB into a new buffer
// on every reload (in an emulated VM, a good part of the reload) and left it as garbage (the
// resident memory grew after reloads). The parse copies whatever it keeps (decoded values,
// the cache's hashes), so nothing points into the mapping once it is gone.
//
// A file truncated while it is mapped makes reading past its new end fault (SIGBUS): the
// parse then panics instead of crashing (SetPanicOnFault) and the file is read again the usual
// way. A file rewritten in place while it is parsed is read inconsistently, as a read would be.
// ok is false when the file is small or cannot be mapped: the caller reads it. unmap removes
// the mapping (nothing points into it once the parse has returned); it is never nil.
func loadMapped(path string) (cfg *Config, unmap func(), ok bool, err error) {
	unmap = func() {}
	f, err := os.Open(path)
	if err != nil {
		return nil, unmap, true, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() < mapMinSize || st.Size() > 1<<30 {
		return nil, unmap, false, nil
	}
	// MAP_POPULATE: the kernel maps every page at once. Faulting them in one by one as the
	// parse reads them cost 30-80 ms of a reload at 10,000 services in the lab VM (a fault is
	// expensive under emulation).
	data, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, unmap, false, nil
	}
	unmap = func() { _ = unix.Munmap(data) } // (nothing to do about an error)
	cfg, ok, err = parseFaulting(path, data)
	if !ok {
		unmap()
		return nil, func() {}, false, nil
	}
	return cfg, unmap, true, err
}

// parseFaulting is Parse with a fault on data turned into ok == false.
func parseFaulting(path string, data []byte) (cfg *Config, ok bool, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			var fault interface{ Addr() uintptr }
			if e, isErr := r.(error); !isErr || !errors.As(e, &fault) {
				panic(r) // not a fault on the mapping
			}
			cfg, ok, err = nil, false, nil
		}
	}()
	cfg, err = Parse(path, data)
	return cfg, true, err
}
