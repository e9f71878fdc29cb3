package director

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// bigDesired builds n services x m real servers.
func bigDesired(n, m int) []VirtualService {
	out := make([]VirtualService, n)
	for i := range out {
		vip := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		s := svc(vip, 80, "rr")
		for j := 0; j < m; j++ {
			s.Dests = append(s.Dests, Dest{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(j), byte(i >> 8), byte(i)}), 8080), Weight: 1})
		}
		out[i] = s
	}
	return out
}

func quietReconciler(k Kernel) *Reconciler {
	return NewReconciler(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), k,
		Settings{Interface: "lvs0", DrainTimeout: 30 * time.Second}, nil)
}

// BenchmarkColdSync10kx10: plan + apply of 10,000 services x 10 real servers into an empty fake.
func BenchmarkColdSync10kx10(b *testing.B) {
	desired := bigDesired(10000, 10)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		k := NewFakeKernel()
		r := quietReconciler(k)
		p, err := r.Sync(desired)
		if err != nil || len(p.Ops) != 10000*12 {
			b.Fatalf("ops %d err %v", len(p.Ops), err)
		}
	}
}

// BenchmarkOneChange10kx10: one real server added at 10,000 services: must be one operation.
func BenchmarkOneChange10kx10(b *testing.B) {
	desired := bigDesired(10000, 10)
	k := NewFakeKernel()
	r := quietReconciler(k)
	if _, err := r.Sync(desired); err != nil {
		b.Fatal(err)
	}
	extra := Dest{Addr: netip.MustParseAddrPort("10.99.0.1:8080"), Weight: 1}
	changed := append([]VirtualService(nil), desired...)
	changed[5000].Dests = append(append([]Dest(nil), desired[5000].Dests...), extra)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		want := changed
		if i%2 == 1 {
			want = desired // and back: the removal is one operation too (idle real server)
		}
		k.ResetCalls()
		p, err := r.Sync(want)
		if err != nil || len(p.Ops) != 1 || k.CallCount() != 1 {
			b.Fatalf("ops %v calls %v err %v", opStrings(p.Ops), k.Calls, err)
		}
	}
	b.ReportMetric(1, "kernel-ops/change")
}

// BenchmarkPlanInSync10kx10 is the cost of a periodic resync that finds nothing to do.
func BenchmarkPlanInSync10kx10(b *testing.B) {
	desired := bigDesired(10000, 10)
	k := NewFakeKernel()
	r := quietReconciler(k)
	if _, err := r.Sync(desired); err != nil {
		b.Fatal(err)
	}
	observed, _ := k.Services()
	vips, _ := k.Addrs("lvs0")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if p := MakePlan(PlanInput{Desired: desired, Observed: observed, VIPs: vips, Now: t0}); len(p.Ops) != 0 {
			b.Fatal(len(p.Ops))
		}
	}
}
