package director

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// inNewNetns runs f on a thread in a new network namespace (needs root; skipped where the
// sandbox forbids it).
func inNewNetns(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	var skip error
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			skip = err
			return
		}
		f()
	}()
	<-done
	if skip != nil {
		t.Skipf("no network namespace here: %v", skip)
	}
}

// Address batches: many operations (more than one write), each with its own result.
func TestApplyAddrBatch(t *testing.T) {
	inNewNetns(t, func() {
		var ops []Op
		for i := 0; i < 300; i++ {
			ops = append(ops, Op{Kind: OpAddVIP, VIP: netip.AddrFrom4([4]byte{10, 77, byte(i >> 8), byte(i)})})
		}
		ops = append(ops, Op{Kind: OpAddVIP, VIP: netip.MustParseAddr("2001:db8::7")})
		ops = append(ops, Op{Kind: OpAddVIP, VIP: netip.AddrFrom4([4]byte{10, 77, 0, 5})}) // again
		errs := applyAddrBatch("lo", ops)
		for i, err := range errs[:301] {
			if err != nil {
				t.Errorf("op %d %s: %v", i, ops[i].VIP, err)
			}
		}
		if !errors.Is(errs[301], unix.EEXIST) {
			t.Errorf("adding an address twice: %v, want EEXIST", errs[301])
		}
		have := loAddrs(t)
		for _, op := range ops {
			if !have[op.VIP] {
				t.Errorf("%s not on lo", op.VIP)
			}
		}
		del := []Op{{Kind: OpDelVIP, VIP: netip.MustParseAddr("10.77.1.1")}, {Kind: OpDelVIP, VIP: netip.MustParseAddr("10.99.0.1")},
			{Kind: OpDelVIP, VIP: netip.MustParseAddr("2001:db8::7")}, {Kind: OpAddService}}
		errs = applyAddrBatch("lo", del)
		if errs[0] != nil || errs[2] != nil || !errors.Is(errs[1], unix.EADDRNOTAVAIL) || errs[3] == nil {
			t.Errorf("deletes: %v", errs)
		}
		have = loAddrs(t)
		if have[del[0].VIP] || have[del[2].VIP] || !have[netip.MustParseAddr("10.77.1.2")] {
			t.Errorf("after the deletes: %v", have)
		}
		if errs := applyAddrBatch("no-such-if", ops[:2]); errs[0] == nil || errs[1] == nil {
			t.Errorf("unknown interface: %v", errs)
		}
	})
}

func loAddrs(t *testing.T) map[netip.Addr]bool {
	ifi, err := net.InterfaceByName("lo")
	if err != nil {
		panic(fmt.Sprint(err))
	}
	as, err := ifi.Addrs()
	if err != nil {
		panic(fmt.Sprint(err))
	}
	m := map[netip.Addr]bool{}
	for _, a := range as {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			m[p.Addr()] = true
		}
	}
	return m
}

// The interface's addresses, read with one filtered dump, are those the standard library lists
// (but link-local ones), IPv4 and IPv6, beyond one read buffer; another index has none of them.
func TestDumpAddrs(t *testing.T) {
	inNewNetns(t, func() {
		ifi, err := net.InterfaceByName("lo")
		if err != nil {
			t.Error(err)
			return
		}
		var ops []Op
		for i := 0; i < 1200; i++ { // more than fits in one 64 KiB read
			ops = append(ops, Op{Kind: OpAddVIP, VIP: netip.AddrFrom4([4]byte{10, 78, byte(i >> 8), byte(i)})})
		}
		ops = append(ops, Op{Kind: OpAddVIP, VIP: netip.MustParseAddr("2001:db8::8")})
		for i, err := range applyAddrBatch("lo", ops) {
			if err != nil {
				t.Errorf("op %d: %v", i, err)
				return
			}
		}
		fd, err := openRouteSocket(unix.NETLINK_GET_STRICT_CHK)
		if err != nil {
			t.Error(err)
			return
		}
		defer unix.Close(fd)
		got, err := dumpAddrsOn(fd, ifi.Index)
		if err != nil {
			t.Error(err)
			return
		}
		want := loAddrs(t)
		for a := range want {
			if a.IsLinkLocalUnicast() {
				delete(want, a)
			}
		}
		gotSet := map[netip.Addr]bool{}
		for _, a := range got {
			gotSet[a] = true
		}
		if len(got) != len(want) || len(gotSet) != len(want) {
			t.Errorf("dumpAddrs: %d addresses (%d distinct), the standard library lists %d", len(got), len(gotSet), len(want))
		}
		for a := range want {
			if !gotSet[a] {
				t.Errorf("%s missing", a)
			}
		}
		if !gotSet[netip.MustParseAddr("10.78.4.175")] || !gotSet[netip.MustParseAddr("2001:db8::8")] {
			t.Errorf("expected addresses missing from %d", len(got))
		}
		if other, err := dumpAddrsOn(fd, ifi.Index+1000); err != nil || len(other) != 0 {
			t.Errorf("another interface index: %d addresses, %v", len(other), err)
		}
	})
}

// TestLinkState: the index and up flag read by getLink are the standard library's; a missing
// interface is not found (no error), a name too long for the kernel is an error.
func TestLinkState(t *testing.T) {
	inNewNetns(t, func() {
		fd, err := openRouteSocket(unix.NETLINK_GET_STRICT_CHK)
		if err != nil {
			t.Error(err)
			return
		}
		defer unix.Close(fd)
		linkState := func(name string) (int, bool, bool, error) { return getLink(fd, name) }
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			t.Error(err)
			return
		}
		for _, up := range []bool{false, true} {
			if up {
				l, err := netlink.LinkByName("lo")
				if err == nil {
					err = netlink.LinkSetUp(l)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
			index, isUp, found, err := linkState("lo")
			if err != nil || !found || index != lo.Index || isUp != up {
				t.Errorf("lo: index %d up %v found %v err %v; want index %d up %v", index, isUp, found, err, lo.Index, up)
			}
		}
		if _, _, found, err := linkState("nosuch0"); found || err != nil {
			t.Errorf("nosuch0: found %v err %v", found, err)
		}
		if _, _, _, err := linkState("a-name-longer-than-ifnamsiz"); err == nil {
			t.Error("a name too long: no error")
		}
	})
}
