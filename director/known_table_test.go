package director

import (
	"maps"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

// TestKnownTableApplyOps: recording a plan's operations at once (applyOps, runs of added real
// servers appended together) leaves the table exactly as recording them one by one (apply),
// and reserve (which counts runs of additions) makes the same room as counting each one.
func TestKnownTableApplyOps(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	key := func(n int) ServiceKey {
		return ServiceKey{Protocol: ProtoTCP, Addr: netip.AddrFrom4([4]byte{10, 200, 0, byte(n / 3)}), Port: uint16(80 + n%3)}
	}
	dest := func(n int) Dest {
		return Dest{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(n >> 8), byte(n)}), 8080), Weight: int32(1 + n%3), Fwd: FwdMasq | 0x100}
	}
	runs := 0
	for round := range 300 {
		var observed []VirtualService
		for n := range r.IntN(6) {
			vs := VirtualService{Key: key(n), Scheduler: "wrr"}
			for m := range r.IntN(4) {
				vs.Dests = append(vs.Dests, dest(1000*n+m))
			}
			observed = append(observed, vs)
		}
		var ops []Op
		for range 1 + r.IntN(40) {
			n := r.IntN(12)
			switch r.IntN(7) {
			case 0:
				ops = append(ops, Op{Kind: OpAddService, Service: VirtualService{Key: key(n), Scheduler: "rr", FullNAT: true}})
			case 1, 2, 3: // a run of additions to one service (maybe unknown)
				for m := range 1 + r.IntN(5) {
					ops = append(ops, Op{Kind: OpAddDest, Service: VirtualService{Key: key(n)}, Dest: dest(1000*n + 10 + r.IntN(50) + m)})
				}
				runs++
			case 4:
				ops = append(ops, Op{Kind: OpDelService, Service: VirtualService{Key: key(n)}})
			case 5:
				ops = append(ops, Op{Kind: OpUpdateDest, Service: VirtualService{Key: key(n)}, Dest: dest(1000 * n)})
			case 6:
				ops = append(ops, Op{Kind: OpDelDest, Service: VirtualService{Key: key(n)}, Dest: dest(1000 * n)})
			}
		}
		results := make([]error, len(ops))
		one, all := newKnownTable(cloneServices(observed)), newKnownTable(cloneServices(observed))
		known := map[ServiceKey]bool{}
		for _, vs := range observed {
			known[vs.Key] = true
		}
		one.reserve(ops, results)
		wantRoom := roomByCounting(ops)
		all.reserve(ops, results)
		room := maps.Clone(all.room)
		for i := range ops {
			one.apply(&ops[i])
		}
		all.applyOps(ops)
		if !reflect.DeepEqual(one, all) {
			t.Fatalf("round %d: ops %v\none by one: %+v\nat once:    %+v", round, ops, one, all)
		}
		for k, n := range wantRoom {
			if !known[k] && room[k] != n {
				t.Fatalf("round %d: room of %v %d, want %d", round, k, room[k], n)
			}
		}
	}
	if runs < 300 {
		t.Fatalf("only %d runs of additions", runs)
	}
}

// roomByCounting counts the real servers added to each service, one operation at a time.
func roomByCounting(ops []Op) map[ServiceKey]int {
	out := map[ServiceKey]int{}
	for _, op := range ops {
		if op.Kind == OpAddDest {
			out[op.Service.Key]++
		}
	}
	return out
}

func cloneServices(vs []VirtualService) []VirtualService {
	out := slices.Clone(vs)
	for i := range out {
		out[i].Dests = slices.Clone(out[i].Dests)
	}
	return out
}
