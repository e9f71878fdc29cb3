//go:build lab

package bench

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-director/lvs-director/director"
	"github.com/lvs-director/lvs-director/lab/e2e"
)

func svcKey(i int) director.ServiceKey {
	return director.ServiceKey{Protocol: director.ProtoTCP, Addr: netip.AddrFrom4([4]byte{10, 100, 50, byte(i)}), Port: 80}
}

func rs(i, j int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 100, byte(60 + j), byte(i)}), 8080)
}

// TestNetlinkBatchAgainstKernel applies batches with deliberately failing operations through
// the director's netlink client and checks, against ipvsadm, that exactly those failed and
// everything else was applied.
func TestNetlinkBatchAgainstKernel(t *testing.T) {
	l := e2e.New(t)
	ns := l.NS("nlbatch")
	k := openKernelIn(t, ns)

	var want []director.VirtualService
	var ops []director.Op
	for i := 1; i <= 50; i++ {
		s := director.VirtualService{Key: svcKey(i), Scheduler: "wrr", Netmask: 0xffffffff}
		if i == 7 {
			s.Scheduler, s.Flags, s.Timeout, s.Netmask = "sh", director.FlagPersistent, 300, 0xffffff00
		}
		ops = append(ops, director.Op{Kind: director.OpAddService, Service: s})
		want = append(want, s)
	}
	v6 := director.VirtualService{Key: director.ServiceKey{Protocol: director.ProtoUDP, Addr: netip.MustParseAddr("2001:db8::10"), Port: 53},
		Scheduler: "rr", Flags: director.FlagPersistent, Timeout: 60, Netmask: 64}
	ops = append(ops, director.Op{Kind: director.OpAddService, Service: v6})
	for i := 1; i <= 50; i++ {
		for j := 0; j < 10; j++ {
			d := director.Dest{Addr: rs(i, j), Weight: int32(1 + j)}
			ops = append(ops, director.Op{Kind: director.OpAddDest, Service: director.VirtualService{Key: svcKey(i)}, Dest: d})
			want[i-1].Dests = append(want[i-1].Dests, d)
		}
	}
	v6d := director.Dest{Addr: netip.MustParseAddrPort("[2001:db8::20]:5353"), Weight: 3}
	ops = append(ops, director.Op{Kind: director.OpAddDest, Service: director.VirtualService{Key: v6.Key}, Dest: v6d})
	v6.Dests = []director.Dest{v6d}
	want = append(want, v6)
	// A duplicate service in the middle of the second write (ops 256..511) and a real server
	// of a service that does not exist near the end.
	const dupAt, missingAt = 300, 540
	ops = insertOp(ops, dupAt, director.Op{Kind: director.OpAddService, Service: want[2]})
	ops = insertOp(ops, missingAt, director.Op{Kind: director.OpAddDest,
		Service: director.VirtualService{Key: svcKey(99)}, Dest: director.Dest{Addr: rs(99, 0), Weight: 1}})

	start := time.Now()
	errs := k.ApplyBatch(ops)
	t.Logf("ApplyBatch of %d ops: %v", len(ops), time.Since(start))
	wantErrs(t, ops, errs, map[int]syscall.Errno{dupAt: syscall.EEXIST, missingAt: syscall.ESRCH})

	checkKernel(t, ns, k, want)

	// Changes: weights, a scheduler, deletions, and a deletion of what is not there.
	ops = ops[:0]
	for i := 1; i <= 50; i++ {
		key := director.VirtualService{Key: svcKey(i)}
		switch {
		case i%5 == 0:
			ops = append(ops, director.Op{Kind: director.OpDelService, Service: key})
		case i%3 == 0:
			d := want[i-1].Dests[0]
			d.Weight = 0
			ops = append(ops, director.Op{Kind: director.OpUpdateDest, Service: key, Dest: d},
				director.Op{Kind: director.OpDelDest, Service: key, Dest: director.Dest{Addr: want[i-1].Dests[9].Addr}})
			want[i-1].Dests[0].Weight = 0
			want[i-1].Dests = want[i-1].Dests[:9]
		case i == 1:
			s := want[0]
			s.Dests, s.Scheduler = nil, "lc"
			ops = append(ops, director.Op{Kind: director.OpUpdateService, Service: s})
			want[0].Scheduler = "lc"
		}
	}
	const goneAt = 10
	ops = insertOp(ops, goneAt, director.Op{Kind: director.OpDelDest, Service: director.VirtualService{Key: svcKey(2)},
		Dest: director.Dest{Addr: rs(2, 77)}})
	errs = k.ApplyBatch(ops)
	wantErrs(t, ops, errs, map[int]syscall.Errno{goneAt: syscall.ENOENT})
	kept := want[:0]
	for i, s := range want {
		if i >= 50 || (i+1)%5 != 0 {
			kept = append(kept, s)
		}
	}
	checkKernel(t, ns, k, kept)

	// Single operations report their errors too.
	if err := k.AddService(kept[0]); !errors.Is(err, syscall.EEXIST) || !strings.Contains(err.Error(), "IPVS_CMD_NEW_SERVICE tcp/10.100.50.1:80") {
		t.Errorf("AddService of an existing service: %v", err)
	}
}

func insertOp(ops []director.Op, at int, op director.Op) []director.Op {
	return append(ops[:at], append([]director.Op{op}, ops[at:]...)...)
}

func wantErrs(t *testing.T, ops []director.Op, errs []error, want map[int]syscall.Errno) {
	t.Helper()
	if len(errs) != len(ops) {
		t.Fatalf("%d results for %d ops", len(errs), len(ops))
	}
	for i, err := range errs {
		w, fail := want[i]
		switch {
		case fail && !errors.Is(err, w):
			t.Errorf("errs[%d] (%s) = %v, want %v", i, ops[i], err, w)
		case !fail && err != nil:
			t.Errorf("errs[%d] (%s) = %v, want nil", i, ops[i], err)
		case fail:
			t.Logf("errs[%d] = %v", i, err)
		}
	}
}

// checkKernel compares the kernel's table, read by ipvsadm and by the client, with want.
func checkKernel(t *testing.T, ns *e2e.NS, k *director.LinuxKernel, want []director.VirtualService) {
	t.Helper()
	var wantLines, gotLines []string
	for _, s := range want {
		wantLines = append(wantLines, ipvsadmLine(s))
	}
	for _, s := range ns.IPVS() {
		line := s.Proto + " " + s.Addr + " " + s.Scheduler + " " + strings.Join(s.Flags, " ")
		var ds []string
		for _, d := range s.Dests {
			ds = append(ds, fmt.Sprintf("%s %s %d", d.Addr, d.Forward, d.Weight))
		}
		sort.Strings(ds)
		gotLines = append(gotLines, strings.TrimSpace(line)+" | "+strings.Join(ds, ", "))
	}
	sort.Strings(wantLines)
	sort.Strings(gotLines)
	if !reflect.DeepEqual(gotLines, wantLines) {
		t.Errorf("ipvsadm -Ln --exact:\n%s\nwant:\n%s", strings.Join(gotLines, "\n"), strings.Join(wantLines, "\n"))
	}
	got, err := k.Services()
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[director.ServiceKey]director.VirtualService{}
	for _, s := range got {
		for i := range s.Dests {
			s.Dests[i].Stats = nil
		}
		s.Stats = director.Stats{}
		byKey[s.Key] = s
	}
	if len(got) != len(want) {
		t.Errorf("Services() returned %d services, want %d", len(got), len(want))
	}
	for _, w := range want {
		w.Dests = append([]director.Dest(nil), w.Dests...)
		sort.Slice(w.Dests, func(i, j int) bool { return w.Dests[i].Addr.Compare(w.Dests[j].Addr) < 0 })
		if g := byKey[w.Key]; !reflect.DeepEqual(g, w) {
			t.Errorf("Services() %s:\n got %+v\nwant %+v", w.Key, g, w)
		}
	}
}

// ipvsadmLine renders a service as the test reads ipvsadm's output.
func ipvsadmLine(s director.VirtualService) string {
	proto := strings.ToUpper(director.ProtocolName(s.Key.Protocol))
	line := proto + " " + netip.AddrPortFrom(s.Key.Addr, s.Key.Port).String() + " " + s.Scheduler
	if s.Flags&director.FlagPersistent != 0 {
		line += fmt.Sprintf(" persistent %d", s.Timeout)
		if s.Key.Addr.Is4() && s.Netmask != 0xffffffff {
			m := s.Netmask
			line += fmt.Sprintf(" mask %d.%d.%d.%d", m>>24, m>>16&255, m>>8&255, m&255)
		} else if s.Key.Addr.Is6() && s.Netmask != 128 {
			line += fmt.Sprintf(" mask %d", s.Netmask)
		}
	}
	var ds []string
	for _, d := range s.Dests {
		ds = append(ds, fmt.Sprintf("%s Masq %d", d.Addr, d.Weight))
	}
	sort.Strings(ds)
	return line + " | " + strings.Join(ds, ", ")
}
