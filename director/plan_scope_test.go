package director

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// randomPlanInput makes a kernel and a desired state that differ in every way a plan knows:
// services added, removed, changed; real servers added, removed (idle, busy, timed out),
// reweighted, absent; VIPs missing, surplus, foreign, excluded.
func randomPlanInput(r *rand.Rand) PlanInput {
	vips := make([]netip.Addr, 6)
	for i := range vips {
		vips[i] = netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + i)})
	}
	vips[5] = netip.MustParseAddr("10.255.0.5") // excluded
	dest := func() Dest {
		return Dest{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(r.IntN(6))}), 8080), Weight: int32(r.IntN(3)), Fwd: FwdMasq}
	}
	service := func(a netip.Addr, port uint16, observed bool) VirtualService {
		s := VirtualService{Key: ServiceKey{Protocol: ProtoTCP, Addr: a, Port: port}, Scheduler: []string{"rr", "wrr"}[r.IntN(2)], Netmask: 0xffffffff}
		if r.IntN(3) == 0 {
			s.Key.Protocol = ProtoUDP
		}
		seen := map[DestKey]bool{}
		for range r.IntN(4) {
			d := dest()
			if seen[d.Addr] {
				continue
			}
			seen[d.Addr] = true
			if observed {
				d.ActiveConns, d.InactiveConns = uint32(r.IntN(2)), uint32(r.IntN(2))
			} else {
				d.Absent = r.IntN(5) == 0
			}
			s.Dests = append(s.Dests, d)
		}
		s.sortDests()
		return s
	}
	var in PlanInput
	in.Now = t0.Add(time.Minute)
	in.DrainTimeout = 30 * time.Second
	in.Exclude = []netip.Prefix{netip.MustParsePrefix("10.255.0.0/16")}
	in.KeepUndesired = r.IntN(4) == 0
	in.Drain = DrainState{}
	for _, a := range vips {
		if r.IntN(3) > 0 {
			in.VIPs = append(in.VIPs, a)
		}
		for port := uint16(80); port < 83; port++ {
			if r.IntN(2) == 0 {
				in.Desired = append(in.Desired, service(a, port, false))
			}
			if r.IntN(2) == 0 {
				o := service(a, port, true)
				in.Observed = append(in.Observed, o)
				for _, d := range o.Dests {
					if r.IntN(2) == 0 {
						in.Drain.since(o.Key, d.Addr, t0.Add(time.Duration(r.IntN(60))*time.Second))
					}
				}
			}
		}
	}
	return in
}

// opVIP is the VIP an operation is about.
func opVIP(o Op) netip.Addr {
	if o.Kind == OpAddVIP || o.Kind == OpDelVIP {
		return o.VIP
	}
	return o.Service.Key.Addr
}

// TestMakePlanScope: a plan limited to some VIPs is exactly the whole plan's part about them,
// operations and drain state, on random inputs.
func TestMakePlanScope(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	nonEmpty := 0
	for n := range 3000 {
		in := randomPlanInput(r)
		whole := MakePlan(in)
		scope := map[netip.Addr]bool{}
		for i := range 6 {
			if r.IntN(2) == 0 {
				scope[netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + i)})] = true
			}
		}
		if r.IntN(4) == 0 {
			scope[netip.MustParseAddr("10.255.0.5")] = true
		}
		if r.IntN(4) == 0 { // a scope too large to compare with one by one (looked up in the map)
			for k := range 9 {
				scope[netip.AddrFrom4([4]byte{198, 51, 100, byte(k)})] = true
			}
		}
		var want []Op
		for _, o := range whole.Ops {
			if scope[opVIP(o)] {
				want = append(want, o)
			}
		}
		wantDrain := DrainState{}
		for k, m := range whole.Drain {
			if scope[k.Addr] {
				wantDrain[k] = m
			}
		}
		in.Scope = scope
		got := MakePlan(in)
		if !reflect.DeepEqual(opStrings(got.Ops), opStrings(want)) {
			t.Fatalf("case %d, scope %v:\ngot  %q\nwant %q\nwhole %q", n, scope, opStrings(got.Ops), opStrings(want), opStrings(whole.Ops))
		}
		if fmt.Sprint(got.Drain) != fmt.Sprint(wantDrain) {
			t.Fatalf("case %d: drain %v, want %v", n, got.Drain, wantDrain)
		}
		if len(want) > 0 {
			nonEmpty++
		}
	}
	if nonEmpty < 1000 {
		t.Fatalf("only %d of 3000 random cases had operations in scope", nonEmpty)
	}
}
