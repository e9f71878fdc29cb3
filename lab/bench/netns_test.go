//go:build lab

package bench

import (
	"fmt"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lvs-director/lvs-director/director"
	"github.com/lvs-director/lvs-director/lab/e2e"
)

// openKernelIn opens the director's kernel handle inside the namespace: the netlink socket
// belongs to the namespace of the thread that creates it.
func openKernelIn(t testing.TB, ns *e2e.NS) *director.LinuxKernel {
	t.Helper()
	var k *director.LinuxKernel
	err := inNS(ns, func() error {
		var err error
		k, err = director.OpenKernel()
		return err
	})
	if err != nil {
		t.Fatalf("[%s] OpenKernel: %v", ns.Name, err)
	}
	t.Cleanup(k.Close)
	return k
}

// kernelIn is openKernelIn for a handle the caller closes (before its namespace is deleted: an
// open netlink socket keeps the namespace alive).
func kernelIn(t testing.TB, ns *e2e.NS) *director.LinuxKernel {
	t.Helper()
	var k *director.LinuxKernel
	if err := inNS(ns, func() (err error) { k, err = director.OpenKernel(); return err }); err != nil {
		t.Fatalf("[%s] OpenKernel: %v", ns.Name, err)
	}
	return k
}

// inNS runs f on a thread switched into ns; the thread is discarded afterwards.
func inNS(ns *e2e.NS, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		fd, err := unix.Open("/run/netns/"+ns.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("opening the namespace: %w", err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		errc <- f()
	}()
	return <-errc
}
