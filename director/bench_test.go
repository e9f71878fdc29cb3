package director

import (
	"fmt"
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

func benchSizes(b *testing.B, f func(b *testing.B, n int)) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) { f(b, n) })
	}
}

// nopKernel accepts everything at no cost (a batching kernel with an empty table): the
// director's own share of a sync.
type nopKernel struct{ FakeKernel }

func (*nopKernel) Services() ([]VirtualService, error)       { return nil, nil }
func (*nopKernel) Addrs(string) ([]netip.Addr, error)        { return nil, nil }
func (*nopKernel) EnsureLink(string) error                   { return nil }
func (*nopKernel) AddAddr(string, netip.Addr) error          { return nil }
func (*nopKernel) SetFullNAT([]ServiceKey) error             { return nil }
func (*nopKernel) SetSysctl(string, string) error            { return nil }
func (*nopKernel) ApplyBatch(ops []Op) []error               { return make([]error, len(ops)) }
func (*nopKernel) ApplyAddrs(_ string, ops []Op) (e []error) { return make([]error, len(ops)) }

// BenchmarkColdSyncOwnWork: plan and hand over n services x 10 (one VIP per 10 services, as in
// the lab) to a kernel that costs nothing.
func BenchmarkColdSyncOwnWork(b *testing.B) {
	benchSizes(b, func(b *testing.B, n int) {
		desired := bigDesired(n, 10)
		for i := range desired {
			desired[i].Key.Addr = netip.AddrFrom4([4]byte{198, 18, byte(i / 10 >> 8), byte(i / 10)})
			desired[i].Key.Port = uint16(8000 + i%10)
		}
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			r := quietReconciler(&nopKernel{})
			if p, err := r.Sync(desired); err != nil || len(p.Ops) != n*11+n/10 {
				b.Fatalf("ops %d err %v", len(p.Ops), err)
			}
		}
	})
}

// BenchmarkChangeSync: one real server added at n services x 10, through Sync (reads the
// whole table: what every sync did before SyncChanged) and through SyncChanged.
func BenchmarkChangeSync(b *testing.B) {
	for _, changed := range []bool{false, true} {
		name := "Sync"
		if changed {
			name = "SyncChanged"
		}
		b.Run(name, func(b *testing.B) {
			benchSizes(b, func(b *testing.B, n int) {
				desired := bigDesired(n, 10)
				k := NewFakeKernel()
				r := quietReconciler(k)
				if _, err := r.Sync(desired); err != nil {
					b.Fatal(err)
				}
				more := append([]VirtualService(nil), desired...)
				more[n/2].Dests = append(append([]Dest(nil), desired[n/2].Dests...), Dest{Addr: netip.MustParseAddrPort("10.99.0.1:8080"), Weight: 1})
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					want := more
					if i%2 == 1 {
						want = desired
					}
					k.ResetCalls()
					sync := r.Sync
					if changed {
						sync = syncChanged(r)
					}
					if p, err := sync(want); err != nil || len(p.Ops) != 1 || k.CallCount() != 1 {
						b.Fatalf("ops %v calls %v err %v", opStrings(p.Ops), k.Calls, err)
					}
				}
			})
		})
	}
}
