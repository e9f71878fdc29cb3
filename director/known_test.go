package director

import (
	"errors"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func mustSyncChanged(t *testing.T, r *Reconciler, desired []VirtualService) Plan {
	t.Helper()
	p, err := r.SyncChanged(desired)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return p
}

func withDest(desired []VirtualService, i int, d Dest) []VirtualService {
	out := slices.Clone(desired)
	out[i].Dests = append(slices.Clone(desired[i].Dests), d)
	out[i].sortDests()
	return out
}

// After a full sync, a change reads the one service it touches and makes one operation.
func TestSyncChangedReadsOnlyWhatItChanges(t *testing.T) {
	r, k, _ := newTestReconciler(t)
	desired := bigDesired(100, 3)
	mustSync(t, r, desired)
	k.ResetCalls()
	dumps0, reads0 := k.ReadCounts()

	p := mustSyncChanged(t, r, desired)
	if len(p.Ops) != 0 || k.CallCount() != 0 {
		t.Fatalf("unchanged: ops %v calls %v", opStrings(p.Ops), k.Calls)
	}
	if d, rd := k.ReadCounts(); d != dumps0 || rd != reads0 {
		t.Errorf("unchanged: %d dumps, %d reads of services, want none", d-dumps0, rd-reads0)
	}

	changed := withDest(desired, 42, rs("10.99.0.1:8080", 1))
	p = mustSyncChanged(t, r, changed)
	if len(p.Ops) != 1 || p.Ops[0].Kind != OpAddDest || k.CallCount() != 1 {
		t.Fatalf("one real server added: ops %v calls %v", opStrings(p.Ops), k.Calls)
	}
	if d, rd := k.ReadCounts(); d != dumps0 || rd != reads0+1 {
		t.Errorf("one real server added: %d dumps, %d reads of services, want 0 and 1", d-dumps0, rd-reads0)
	}
	// The kernel now equals the desired state, and what the reconciler knows equals the kernel.
	if p := mustSync(t, r, changed); len(p.Ops) != 0 {
		t.Errorf("a full sync after the change: %v", opStrings(p.Ops))
	}
	assertKnownIsKernel(t, r, k)
}

// A change is planned against what the kernel has now for the services it touches: a real
// server someone else added in the meantime is not added twice.
func TestSyncChangedRereadsTouchedServices(t *testing.T) {
	r, k, _ := newTestReconciler(t)
	desired := bigDesired(10, 2)
	mustSync(t, r, desired)
	extra := rs("10.99.0.1:8080", 1)
	if err := k.AddDest(desired[3].Key, extra); err != nil {
		t.Fatal(err)
	}
	k.ResetCalls()
	if p := mustSyncChanged(t, r, withDest(desired, 3, extra)); len(p.Ops) != 0 || k.CallCount() != 0 {
		t.Errorf("ops %v calls %v", opStrings(p.Ops), k.Calls)
	}
}

// SyncChanged does not see drift in services it does not touch; Sync repairs it.
func TestSyncRepairsDriftSyncChangedDoesNotLookFor(t *testing.T) {
	r, k, _ := newTestReconciler(t)
	desired := bigDesired(10, 2)
	mustSync(t, r, desired)
	k.Flush()
	k.ResetCalls()
	if p := mustSyncChanged(t, r, desired); len(p.Ops) != 0 {
		t.Errorf("SyncChanged without a change: %v", opStrings(p.Ops))
	}
	if p := mustSync(t, r, desired); len(p.Ops) != 10*3 {
		t.Errorf("Sync after a flush: %d ops, want %d", len(p.Ops), 10*3)
	}
	if p := mustSyncChanged(t, r, desired); len(p.Ops) != 0 {
		t.Errorf("after the repair: %v", opStrings(p.Ops))
	}
	assertKnownIsKernel(t, r, k)
}

// After a failed operation nothing is assumed: the next SyncChanged reads the whole table.
func TestSyncChangedAfterFailureReadsAll(t *testing.T) {
	r, k, _ := newTestReconciler(t)
	desired := bigDesired(10, 2)
	mustSync(t, r, desired)
	k.FailOn = map[string]error{"add-dest": errors.New("boom")}
	changed := withDest(desired, 1, rs("10.99.0.1:8080", 1))
	if _, err := r.SyncChanged(changed); err == nil {
		t.Fatal("no error")
	}
	k.FailOn = nil
	dumps0, _ := k.ReadCounts()
	if p := mustSyncChanged(t, r, changed); len(p.Ops) != 1 {
		t.Errorf("retry: %v", opStrings(p.Ops))
	}
	if d, _ := k.ReadCounts(); d != dumps0+1 {
		t.Errorf("the retry made %d dumps, want 1", d-dumps0)
	}
	// A failed read of a service also falls back to a whole read.
	k.FailOn = map[string]error{"read": errors.New("boom")}
	if p := mustSyncChanged(t, r, desired); len(p.Ops) != 1 || p.Ops[0].Kind != OpDelDest {
		t.Errorf("with a failing read: %v", opStrings(p.Ops))
	}
	assertKnownIsKernel(t, r, k)
}

// Draining real servers are read again at each SyncChanged: their connections decide.
func TestSyncChangedDrains(t *testing.T) {
	r, k, c := newTestReconciler(t)
	desired := bigDesired(5, 2)
	mustSync(t, r, desired)
	gone := desired[2].Dests[1].Addr
	k.SetConns(desired[2].Key, gone, 3, 0)
	less := slices.Clone(desired)
	less[2].Dests = desired[2].Dests[:1]
	p := mustSyncChanged(t, r, less)
	if len(p.Ops) != 1 || p.Ops[0].Kind != OpUpdateDest || p.Ops[0].Dest.Weight != 0 {
		t.Fatalf("drain start: %v", opStrings(p.Ops))
	}
	c.t = c.t.Add(time.Second)
	if p := mustSyncChanged(t, r, less); len(p.Ops) != 0 || !r.Draining() {
		t.Fatalf("still draining: %v", opStrings(p.Ops))
	}
	k.SetConns(desired[2].Key, gone, 0, 0)
	c.t = c.t.Add(time.Second)
	if p := mustSyncChanged(t, r, less); len(p.Ops) != 1 || p.Ops[0].Kind != OpDelDest || r.Draining() {
		t.Fatalf("drained: %v", opStrings(p.Ops))
	}
	assertKnownIsKernel(t, r, k)
}

// Services removed, added and changed in one SyncChanged keep the known table equal to the
// kernel.
func TestSyncChangedMixed(t *testing.T) {
	r, k, _ := newTestReconciler(t)
	desired := bigDesired(20, 3)
	mustSync(t, r, desired)
	next := slices.Clone(desired[5:])
	next[0].Scheduler = "wrr"
	next[1].Dests = []Dest{next[1].Dests[0], {Addr: next[1].Dests[1].Addr, Weight: 7}}
	next = append(next, svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1)))
	mustSyncChanged(t, r, next)
	assertKnownIsKernel(t, r, k)
	if p := mustSync(t, r, next); len(p.Ops) != 0 {
		t.Errorf("a full sync after: %v", opStrings(p.Ops))
	}
}

func assertKnownIsKernel(t *testing.T, r *Reconciler, k *FakeKernel) {
	t.Helper()
	want, _ := k.Services()
	if r.known == nil {
		return // nothing assumed
	}
	got := slices.Clone(r.known.list)
	slices.SortFunc(got, func(a, b VirtualService) int {
		if a.Key.Less(b.Key) {
			return -1
		}
		return 1
	})
	for i := range got {
		got[i].sortDests()
		if len(got[i].Dests) == 0 {
			got[i].Dests = nil
		}
	}
	for i := range want {
		if len(want[i].Dests) == 0 {
			want[i].Dests = nil
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("known table:\n%+v\nkernel:\n%+v", got, want)
	}
	for k, i := range r.known.idx {
		if r.known.list[i].Key != k {
			t.Errorf("index of %s points to %s", k, r.known.list[i].Key)
		}
	}
}

// basicKernel hides the optional interfaces (batches, single reads) of the fake.
type basicKernel struct{ Kernel }

// Without AddrBatcher and ServiceReader: VIPs one by one, SyncChanged reads the whole table.
func TestReconcilerWithoutOptionalInterfaces(t *testing.T) {
	k := NewFakeKernel()
	r := NewReconciler(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), basicKernel{k},
		Settings{Interface: "lvs0", DrainTimeout: 30 * time.Second}, nil)
	desired := []VirtualService{svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1)), svc(vip2, 80, "rr")}
	mustSync(t, r, desired)
	if vips, _ := k.Addrs("lvs0"); !reflect.DeepEqual(vips, []netip.Addr{vip1, vip2}) {
		t.Errorf("VIPs %v", vips)
	}
	dumps0, _ := k.ReadCounts()
	if p := mustSyncChanged(t, r, desired[:1]); len(p.Ops) != 2 {
		t.Errorf("ops %v", opStrings(p.Ops))
	}
	if d, _ := k.ReadCounts(); d != dumps0+1 {
		t.Errorf("%d dumps, want 1", d-dumps0)
	}
	if vips, _ := k.Addrs("lvs0"); !reflect.DeepEqual(vips, []netip.Addr{vip1}) {
		t.Errorf("VIPs %v", vips)
	}
}

// A cold start's plan is one array in the order of the kinds, as flatten would make it.
func TestColdPlanLayout(t *testing.T) {
	desired := bigDesired(100, 3)
	desired[7].Dests[1].Absent = true
	in := PlanInput{Desired: desired, Now: t0}
	p := MakePlan(in)
	if len(p.Ops) != 100*5-1 {
		t.Errorf("%d ops, want %d", len(p.Ops), 100*5-1)
	}
	assertPlanOrder(t, p.Ops)
	// With some services already there, and a VIP to delete, the buckets are copied.
	in.Observed = []VirtualService{desired[3], svc(vip1, 80, "rr")}
	in.VIPs = []netip.Addr{vip1}
	p = MakePlan(in)
	if n := p.Count(); n[OpDelService] != 1 || n[OpDelVIP] != 1 || n[OpAddService] != 99 || n[OpAddDest] != 99*3-1 {
		t.Errorf("counts %v", n)
	}
	assertPlanOrder(t, p.Ops)
	// A real server added to a service already there waits for the new services.
	in.Observed = []VirtualService{desired[3]}
	in.Observed[0].Dests = in.Observed[0].Dests[:1]
	in.VIPs = nil
	p = MakePlan(in)
	assertPlanOrder(t, p.Ops)
	if last := p.Ops[len(p.Ops)-1]; last.Kind != OpAddDest || last.Service.Key != desired[3].Key {
		t.Errorf("last op %s, want a real server of %s", last, desired[3].Key)
	}
}

// assertPlanOrder checks the order of a plan's operations: by kind (the order of OpKind), except
// that the real servers of a service the plan adds follow that service at once.
func assertPlanOrder(t *testing.T, ops []Op) {
	t.Helper()
	added := map[ServiceKey]bool{}
	var b opBuckets
	var last ServiceKey // the service added last
	for i, op := range ops {
		k := op.Kind
		switch {
		case op.Kind == OpAddService:
			added[op.Service.Key] = true
			last = op.Service.Key
		case op.Kind == OpAddDest && added[op.Service.Key]:
			if op.Service.Key != last {
				t.Fatalf("op %d (%s) is not right after its service", i, op)
			}
			k = OpAddService
		}
		b[k] = append(b[k], op)
	}
	if !reflect.DeepEqual(ops, b.flatten()) {
		t.Errorf("%d ops, not in the order of their kinds", len(ops))
	}
}

// A cold start records its real servers in slices of their exact size (reserve), and a later
// addition to an existing service still lands in what the reconciler knows.
func TestKnownTableReservesRoom(t *testing.T) {
	r, k, _ := newTestReconciler(t)
	desired := bigDesired(50, 10)
	mustSync(t, r, desired)
	assertKnownIsKernel(t, r, k)
	for _, s := range r.known.list {
		if len(s.Dests) != 10 || cap(s.Dests) != 10 {
			t.Fatalf("%s: %d real servers in a slice of %d, want 10 in 10", s.Key, len(s.Dests), cap(s.Dests))
		}
	}
	if r.known.room != nil || r.known.grown != nil {
		t.Errorf("left after the sync: room %v grown %v", r.known.room, r.known.grown)
	}
	changed := withDest(withDest(desired, 7, rs("10.99.0.1:8080", 1)), 7, rs("10.99.0.2:8080", 1))
	mustSyncChanged(t, r, changed)
	assertKnownIsKernel(t, r, k)
}

// TestKnownTableApplyOps: recording a plan's operations at once (applyOps, runs of added real
// servers appended together) leaves the table exactly as recording them one by one (apply, and
// addDestOneByOne for the added real servers),
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
			if ops[i].Kind == OpAddDest {
				addDestOneByOne(one, &ops[i])
			} else {
				one.apply(&ops[i])
			}
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

// addDestOneByOne records one added real server as the table did before it took runs at
// once (the reference for applyOps).
func addDestOneByOne(t *knownTable, op *Op) {
	k := op.Service.Key
	i, ok := t.idx[k]
	t.last.ok = false
	if !ok {
		return
	}
	s := &t.list[i]
	if len(s.Dests) == cap(s.Dests) { // append reallocates, leaving room unused
		if t.grown == nil {
			t.grown = map[int]bool{}
		}
		t.grown[i] = true
	}
	s.Dests = append(s.Dests, Dest{Addr: op.Dest.Addr, Weight: op.Dest.Weight, Fwd: op.Dest.Fwd & FwdMask})
	t.last.key, t.last.i, t.last.ok = k, i, true
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
