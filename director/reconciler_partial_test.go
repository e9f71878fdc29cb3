package director

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestReconcilerSyncPartialEqualsScoped: a partial sync given only the services of the VIPs in
// scope and of those draining does to the kernel exactly what a scoped sync given the whole
// desired state does (operations, drains, full-NAT rules, sysctls), over random sequences of
// changes, drains and settings changes; where it cannot (new settings) it changes nothing and
// says ErrNeedWhole.
func TestReconcilerSyncPartialEqualsScoped(t *testing.T) {
	vips := []netip.Addr{
		netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("203.0.113.11"), netip.MustParseAddr("203.0.113.12"),
		netip.MustParseAddr("203.0.113.13"), netip.MustParseAddr("2001:db8::10"),
	}
	needWhole := 0
	for seed := uint64(0); seed < 300; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		service := func(a netip.Addr, port uint16) VirtualService {
			s := svc(a, port, []string{"rr", "wrr"}[r.IntN(2)])
			s.FullNAT = r.IntN(4) == 0
			seen := map[int]bool{}
			for range r.IntN(4) {
				n := r.IntN(6)
				if seen[n] {
					continue
				}
				seen[n] = true
				d := rs(fmt.Sprintf("10.0.1.%d:8080", n), int32(r.IntN(3)))
				if a.Is6() {
					d = rs(fmt.Sprintf("[2001:db8:1::%d]:8080", n), int32(r.IntN(3)))
				}
				d.Fwd = FwdMasq
				s.Dests = append(s.Dests, d)
			}
			s.sortDests()
			return s
		}
		servicesOf := func(a netip.Addr) []VirtualService {
			var out []VirtualService
			for port := uint16(80); port < 83; port++ {
				if r.IntN(2) == 0 {
					out = append(out, service(a, port))
				}
			}
			return out
		}
		byVIP := map[netip.Addr][]VirtualService{}
		for _, a := range vips {
			if a.Is4() || r.IntN(2) == 0 {
				byVIP[a] = servicesOf(a)
			}
		}
		desired := func() []VirtualService {
			var out []VirtualService
			for _, a := range vips {
				out = append(out, byVIP[a]...)
			}
			slices.SortFunc(out, func(a, b VirtualService) int { return a.Key.compare(b.Key) })
			return out
		}
		c := &clock{t: t0}
		newRec := func() (*Reconciler, *FakeKernel) {
			k := NewFakeKernel()
			return NewReconciler(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), k, Settings{Interface: "lvs0", DrainTimeout: 30 * time.Second}, c.now), k
		}
		ra, ka := newRec()
		rb, kb := newRec()
		for _, rr := range []*Reconciler{ra, rb} {
			if _, err := rr.Sync(desired()); err != nil {
				t.Fatal(err)
			}
		}
		for step := 0; step < 12; step++ {
			scope := map[netip.Addr]bool{}
			for _, a := range vips {
				if r.IntN(3) == 0 {
					scope[a] = true
					if r.IntN(5) == 0 {
						delete(byVIP, a)
					} else {
						byVIP[a] = servicesOf(a)
					}
				}
			}
			// Connections on some real servers, the same in both kernels: removals drain.
			if ks, _ := ka.Services(); len(ks) > 0 {
				s := ks[r.IntN(len(ks))]
				if len(s.Dests) > 0 {
					d := s.Dests[r.IntN(len(s.Dests))]
					n := uint32(r.IntN(2))
					ka.SetConns(s.Key, d.Addr, n, 0)
					kb.SetConns(s.Key, d.Addr, n, 0)
				}
			}
			if r.IntN(8) == 0 {
				for _, rr := range []*Reconciler{ra, rb} {
					s := rr.settings
					s.DrainTimeout += time.Second
					rr.SetSettings(s)
				}
			}
			c.t = c.t.Add(time.Duration(r.IntN(20)) * time.Second)
			whole := desired()
			pa, errA := ra.SyncScoped(whole, scope)
			pscope := cloneScope(scope)
			for a := range rb.DrainingVIPs() {
				pscope[a] = true
			}
			var part []VirtualService
			for _, s := range whole {
				if pscope[s.Key.Addr] {
					part = append(part, s)
				}
			}
			kb.ResetCalls()
			pb, errB := rb.SyncPartial(part, pscope)
			if errors.Is(errB, ErrNeedWhole) {
				if kb.CallCount() != 0 {
					t.Fatalf("seed %d step %d: ErrNeedWhole after changes %v", seed, step, kb.Calls)
				}
				needWhole++
				pb, errB = rb.SyncChanged(whole)
			}
			if errA != nil || errB != nil {
				t.Fatalf("seed %d step %d: %v / %v", seed, step, errA, errB)
			}
			ga, gb := opStrings(pa.Ops), opStrings(pb.Ops)
			slices.Sort(ga)
			slices.Sort(gb)
			if !reflect.DeepEqual(ga, gb) {
				t.Fatalf("seed %d step %d scope %v:\nscoped  %q\npartial %q", seed, step, scope, ga, gb)
			}
			sa, _ := ka.Services()
			sb, _ := kb.Services()
			if !reflect.DeepEqual(sa, sb) || !reflect.DeepEqual(ka.FullNAT(), kb.FullNAT()) || ra.drain.Len() != rb.drain.Len() {
				t.Fatalf("seed %d step %d: kernels differ:\n%v\n%v\nfull NAT %v / %v", seed, step, sa, sb, ka.FullNAT(), kb.FullNAT())
			}
			for _, name := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv4.vs.conntrack"} {
				if ka.Sysctl(name) != kb.Sysctl(name) {
					t.Fatalf("seed %d step %d: sysctl %s %q / %q", seed, step, name, ka.Sysctl(name), kb.Sysctl(name))
				}
			}
		}
	}
	if needWhole == 0 {
		t.Fatal("no partial sync needed the whole state: the settings changes were not exercised")
	}
}

func cloneScope(m map[netip.Addr]bool) map[netip.Addr]bool {
	out := make(map[netip.Addr]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
