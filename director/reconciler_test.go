package director

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestReconciler(t *testing.T) (*Reconciler, *FakeKernel, *clock) {
	t.Helper()
	k := NewFakeKernel()
	c := &clock{t: t0}
	r := NewReconciler(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), k, Settings{
		Interface: "lvs0", DrainTimeout: 30 * time.Second,
		Exclude: []netip.Prefix{netip.MustParsePrefix("10.255.0.0/16")},
	}, c.now)
	return r, k, c
}

func mustSync(t *testing.T, r *Reconciler, desired []VirtualService) Plan {
	t.Helper()
	p, err := r.Sync(desired)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return p
}

func TestReconcilerIdempotent(t *testing.T) {
	r, k, _ := newTestReconciler(t)
	desired := []VirtualService{
		svc(vip1, 80, "wrr", rs("10.0.1.11:8080", 1), rs("10.0.1.12:8080", 2)),
		svc(vip6, 443, "rr", rs("[2001:db8:1::11]:8443", 1)),
	}
	if p := mustSync(t, r, desired); len(p.Ops) != 7 {
		t.Fatalf("first sync: %d ops, want 7: %v", len(p.Ops), opStrings(p.Ops))
	}
	k.ResetCalls()
	p := mustSync(t, r, desired)
	if len(p.Ops) != 0 || k.CallCount() != 0 {
		t.Fatalf("second sync changed the kernel: ops %v calls %v", opStrings(p.Ops), k.Calls)
	}
	// A restart is a new reconciler over the same kernel: it adopts, changes nothing.
	r2 := NewReconciler(r.log, prometheus.NewRegistry(), k, r.settings, nil)
	if p := mustSync(t, r2, desired); len(p.Ops) != 0 {
		t.Fatalf("restart changed the kernel: %v", opStrings(p.Ops))
	}
}

func TestReconcilerRepairsFlush(t *testing.T) {
	r, k, _ := newTestReconciler(t)
	desired := []VirtualService{svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1))}
	mustSync(t, r, desired)
	k.Flush()
	if err := k.DelAddr("lvs0", vip1); err != nil {
		t.Fatal(err)
	}
	p := mustSync(t, r, desired)
	if len(p.Ops) != 3 {
		t.Fatalf("repair: %v", opStrings(p.Ops))
	}
	if p := mustSync(t, r, desired); len(p.Ops) != 0 {
		t.Fatalf("after repair: %v", opStrings(p.Ops))
	}
}

func TestReconcilerDrainLifecycle(t *testing.T) {
	r, k, c := newTestReconciler(t)
	key := ServiceKey{ProtoTCP, vip1, 80}
	gone := netip.MustParseAddrPort("10.0.1.12:8080")
	mustSync(t, r, []VirtualService{svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1), rs("10.0.1.12:8080", 1))})
	k.SetConns(key, gone, 2, 0)

	after := []VirtualService{svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1))}
	mustSync(t, r, after)
	obs, _ := k.Services()
	if d, ok := obs[0].dest(gone); !ok || d.Weight != 0 {
		t.Fatalf("removed real server: %+v present=%v, want weight 0", d, ok)
	}
	if !r.Draining() {
		t.Fatal("Draining() = false while a real server drains")
	}
	c.t = c.t.Add(10 * time.Second)
	k.SetConns(key, gone, 0, 4)
	mustSync(t, r, after)
	obs, _ = k.Services()
	if _, ok := obs[0].dest(gone); ok {
		t.Fatal("real server still present after its connections ended")
	}
	if r.Draining() {
		t.Fatal("still draining after deletion")
	}
}

func TestReconcilerRemovedServiceDrainsThenGoes(t *testing.T) {
	r, k, c := newTestReconciler(t)
	key := ServiceKey{ProtoTCP, vip1, 80}
	mustSync(t, r, []VirtualService{svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1))})
	k.SetConns(key, netip.MustParseAddrPort("10.0.1.11:8080"), 1, 0)
	mustSync(t, r, nil)
	if vips, _ := k.Addrs("lvs0"); len(vips) != 1 {
		t.Fatalf("VIP removed while its service drains: %v", vips)
	}
	c.t = c.t.Add(31 * time.Second)
	p := mustSync(t, r, nil)
	want := []string{
		"del-dest tcp/203.0.113.10:80 -> 10.0.1.11:8080 (drain timeout with 1 connections)",
		"del-service tcp/203.0.113.10:80 (removed from config)",
		"del-vip 203.0.113.10 (no service uses it)",
	}
	if got := opStrings(p.Ops); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q want %q", got, want)
	}
	if svcs, _ := k.Services(); len(svcs) != 0 {
		t.Fatalf("services left: %v", svcs)
	}
}

func TestReconcilerContinuesAfterFailedOp(t *testing.T) {
	r, k, _ := newTestReconciler(t)
	boom := errors.New("boom")
	k.FailOn = map[string]error{"add-dest": boom}
	_, err := r.Sync([]VirtualService{svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1)), svc(vip2, 80, "rr")})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if svcs, _ := k.Services(); len(svcs) != 2 {
		t.Fatalf("other operations not applied: %v", svcs)
	}
	if r.Last().Err == "" {
		t.Fatal("last status has no error")
	}
}

func TestReconcilerCleanupLeavesForeign(t *testing.T) {
	r, k, _ := newTestReconciler(t)
	mustSync(t, r, []VirtualService{svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1))})
	// A hand-made service on another VIP, and one in the excluded range on our interface.
	if err := k.AddService(svc(vip2, 80, "rr")); err != nil {
		t.Fatal(err)
	}
	if err := k.AddService(svc(exVIP, 80, "rr")); err != nil {
		t.Fatal(err)
	}
	if err := k.AddAddr("lvs0", exVIP); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Cleanup(); err != nil {
		t.Fatal(err)
	}
	svcs, _ := k.Services()
	if len(svcs) != 2 || svcs[0].Key.Addr != exVIP || svcs[1].Key.Addr != vip2 {
		t.Fatalf("after cleanup: %v", svcs)
	}
	if vips, _ := k.Addrs("lvs0"); len(vips) != 1 || vips[0] != exVIP {
		t.Fatalf("VIPs after cleanup: %v", vips)
	}
}

func TestFakeKernelRefusesMisuse(t *testing.T) {
	k := NewFakeKernel()
	key := ServiceKey{ProtoTCP, vip1, 80}
	for name, err := range map[string]error{
		"del missing service": k.DelService(key),
		"dest on missing":     k.AddDest(key, rs("10.0.0.1:80", 1)),
		"addr on missing if":  k.AddAddr("lvs0", vip1),
	} {
		if !errors.Is(err, ErrFakeMisuse) {
			t.Errorf("%s: err = %v, want misuse", name, err)
		}
	}
	_ = k.AddService(svc(vip1, 80, "rr"))
	if err := k.AddService(svc(vip1, 80, "rr")); !errors.Is(err, ErrFakeMisuse) {
		t.Errorf("duplicate service: %v", err)
	}
	if err := k.AddDest(key, rs("[2001:db8::1]:80", 1)); !errors.Is(err, ErrFakeMisuse) {
		t.Errorf("family mismatch: %v", err)
	}
}

func TestReconcilerFullNAT(t *testing.T) {
	r, k, _ := newTestReconciler(t)
	a := svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1))
	a.FullNAT = true
	b := svc(vip2, 80, "rr")
	mustSync(t, r, []VirtualService{a, b})
	if got := k.FullNAT(); len(got) != 1 || got[0] != a.Key {
		t.Fatalf("full NAT = %v, want [%v]", got, a.Key)
	}
	k.ResetCalls()
	mustSync(t, r, []VirtualService{a, b})
	if k.CallCount() != 0 {
		t.Fatalf("unchanged full-NAT set rewritten: %v", k.Calls)
	}
	a.FullNAT = false
	mustSync(t, r, []VirtualService{a, b})
	if got := k.FullNAT(); len(got) != 0 {
		t.Fatalf("full NAT = %v, want none", got)
	}
}

// batchingKernel is a FakeKernel that takes IPVS operations in batches.
type batchingKernel struct {
	*FakeKernel
	batches []int
}

func (b *batchingKernel) ApplyBatch(ops []Op) []error {
	b.batches = append(b.batches, len(ops))
	errs := make([]error, len(ops))
	for i, op := range ops {
		switch op.Kind {
		case OpAddService:
			errs[i] = b.AddService(op.Service)
		case OpAddDest:
			errs[i] = b.AddDest(op.Service.Key, op.Dest)
		default:
			errs[i] = fmt.Errorf("unexpected %s in test", op.Kind)
		}
	}
	return errs
}

func TestReconcilerBatches(t *testing.T) {
	k := &batchingKernel{FakeKernel: NewFakeKernel()}
	r := NewReconciler(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), k,
		Settings{Interface: "lvs0", DrainTimeout: time.Second}, nil)
	desired := []VirtualService{svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1)), svc(vip2, 80, "rr", rs("10.0.1.12:8080", 1), rs("10.0.1.13:8080", 1))}
	if _, err := r.Sync(desired); err != nil {
		t.Fatal(err)
	}
	// two add-vip ops one by one, then the 5 IPVS operations in one batch
	if len(k.batches) != 1 || k.batches[0] != 5 {
		t.Fatalf("batches %v, want [5]", k.batches)
	}
	if p, _ := r.Plan(desired); len(p.Ops) != 0 {
		t.Fatalf("not converged: %v", opStrings(p.Ops))
	}
}

func TestReconcilerGuardsSchedulerChange(t *testing.T) {
	r, k, _ := newTestReconciler(t)
	mustSync(t, r, []VirtualService{svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1))})
	k.ResetCalls()
	mustSync(t, r, []VirtualService{svc(vip1, 80, "wlc", rs("10.0.1.11:8080", 2))})
	want := []string{"guard [203.0.113.10]", "update-service tcp/203.0.113.10:80 wlc", "guard []", "update-dest tcp/203.0.113.10:80 10.0.1.11:8080 2"}
	if strings.Join(k.Calls, "|") != strings.Join(want, "|") {
		t.Fatalf("calls %q, want %q", k.Calls, want)
	}
	// Other attribute changes need no guard.
	k.ResetCalls()
	s := svc(vip1, 80, "wlc", rs("10.0.1.11:8080", 2))
	s.Flags, s.Timeout = FlagPersistent, 60
	mustSync(t, r, []VirtualService{s})
	if len(k.Calls) != 1 || !strings.HasPrefix(k.Calls[0], "update-service") {
		t.Fatalf("calls %q", k.Calls)
	}
}

// TestReconcilerSyncScoped: a scoped sync plans only the services of the VIPs in scope and those
// draining; settings changes widen the next sync to every service.
func TestReconcilerSyncScoped(t *testing.T) {
	r, k, c := newTestReconciler(t)
	a, b := netip.MustParseAddrPort("10.0.1.11:8080"), netip.MustParseAddrPort("10.0.1.12:8080")
	desired := []VirtualService{
		svc(vip1, 80, "rr", rs(a.String(), 1), rs(b.String(), 1)),
		svc(vip2, 80, "rr", rs(a.String(), 1)),
	}
	mustSync(t, r, desired)
	scoped := func(d []VirtualService, vips ...netip.Addr) []string {
		t.Helper()
		scope := map[netip.Addr]bool{}
		for _, v := range vips {
			scope[v] = true
		}
		p, err := r.SyncScoped(d, scope)
		if err != nil {
			t.Fatal(err)
		}
		return opStrings(p.Ops)
	}
	want := func(got []string, want ...string) {
		t.Helper()
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("got %q\nwant %q", got, want)
		}
	}
	// vip1's service loses b, which has a connection: it drains. vip2's service changed too,
	// but the caller says only vip1 changed: vip2 is not planned.
	k.SetConns(desired[0].Key, b, 1, 0)
	d2 := []VirtualService{svc(vip1, 80, "rr", rs(a.String(), 1)), svc(vip2, 80, "rr", rs(a.String(), 5))}
	want(scoped(d2, vip1), "update-dest tcp/203.0.113.10:80 -> 10.0.1.12:8080 masq weight 0 (draining 1 connections)")
	// Scoped to vip2 now; vip1's draining service is planned as well: its drain ends.
	k.SetConns(desired[0].Key, b, 0, 0)
	c.t = c.t.Add(time.Second)
	want(scoped(d2, vip2),
		"update-dest tcp/203.0.113.20:80 -> 10.0.1.11:8080 masq weight 5 (was masq weight 1)",
		"del-dest tcp/203.0.113.10:80 -> 10.0.1.12:8080 (drained: no connections)")
	if r.Draining() {
		t.Fatal("still draining")
	}
	// A service that left the desired state with its VIP: in scope, it goes with its VIP.
	want(scoped(d2[:1], vip2), "del-dest tcp/203.0.113.20:80 -> 10.0.1.11:8080 (drained: no connections)",
		"del-service tcp/203.0.113.20:80 (removed from config)", "del-vip 203.0.113.20 (no service uses it)")
	// Nothing in scope: nothing planned, even though vip2 is desired again.
	want(scoped(d2))
	// New settings may concern any service: the next sync plans them all, the one after is
	// scoped again.
	s := r.settings
	s.DrainTimeout = time.Minute
	r.SetSettings(s)
	want(scoped(d2), "add-vip 203.0.113.20", "add-service tcp/203.0.113.20:80 rr", "add-dest tcp/203.0.113.20:80 -> 10.0.1.11:8080 masq weight 5")
	d3 := []VirtualService{d2[0], svc(vip2, 80, "rr", rs(a.String(), 7))}
	want(scoped(d3))
	want(scoped(d3, vip2), "update-dest tcp/203.0.113.20:80 -> 10.0.1.11:8080 masq weight 7 (was masq weight 5)")
}

// A scoped sync given stubs where it must plan every service (new settings here) changes
// nothing and says so; with the services whole it syncs.
func TestReconcilerScopedNeedsWhole(t *testing.T) {
	r, k, _ := newTestReconciler(t)
	web := svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1))
	api := svc(vip2, 80, "rr", rs("10.0.1.12:8080", 1))
	mustSync(t, r, []VirtualService{web, api})
	stub := web
	stub.Dests, stub.stub = nil, true
	api2 := svc(vip2, 80, "rr", rs("10.0.1.12:8080", 1), rs("10.0.1.13:8080", 1))
	if _, err := r.SyncScoped([]VirtualService{stub, api2}, map[netip.Addr]bool{vip2: true}); err != nil {
		t.Fatalf("scoped sync with a stub outside the scope: %v", err)
	}
	if _, err := r.SyncScoped([]VirtualService{stub, api2}, map[netip.Addr]bool{vip1: true}); !errors.Is(err, ErrNeedWhole) {
		t.Fatalf("a stub in the scope: %v, want ErrNeedWhole", err)
	}
	s := r.settings
	s.DrainTimeout = time.Minute
	r.SetSettings(s)
	k.ResetCalls()
	if _, err := r.SyncScoped([]VirtualService{stub, api}, map[netip.Addr]bool{vip2: true}); !errors.Is(err, ErrNeedWhole) || k.CallCount() != 0 {
		t.Fatalf("after new settings: %v, calls %v; want ErrNeedWhole and no change", err, k.Calls)
	}
	p, err := r.SyncChanged([]VirtualService{web, api})
	if err != nil || len(p.Ops) != 1 || r.Last().Err != "" {
		t.Fatalf("whole: %v %v, last %+v", opStrings(p.Ops), err, r.Last())
	}
}

// slowLinkKernel creates its interface slowly and notes whether two creations overlapped.
type slowLinkKernel struct {
	*FakeKernel
	inFlight, overlapped, calls atomic.Int32
}

func (k *slowLinkKernel) EnsureLink(name string) error {
	k.calls.Add(1)
	if k.inFlight.Add(1) > 1 {
		k.overlapped.Store(1)
	}
	defer k.inFlight.Add(-1)
	time.Sleep(50 * time.Millisecond)
	return k.FakeKernel.EnsureLink(name)
}

// TestPrepareLink: the interface is created in the background, and the first sync waits for it
// (its own EnsureLink does not run alongside) before it adds the VIPs.
func TestPrepareLink(t *testing.T) {
	k := &slowLinkKernel{FakeKernel: NewFakeKernel()}
	r := NewReconciler(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), k, Settings{Interface: "lvs0"}, nil)
	r.PrepareLink()
	r.PrepareLink() // (once)
	desired := []VirtualService{svc(vip1, 80, "wrr", rs("10.0.1.11:8080", 1))}
	if p := mustSync(t, r, desired); len(p.Ops) != 3 {
		t.Fatalf("first sync: %v", opStrings(p.Ops))
	}
	if k.overlapped.Load() != 0 {
		t.Fatal("the sync's EnsureLink ran alongside the background one")
	}
	if n := k.calls.Load(); n != 2 {
		t.Fatalf("%d EnsureLink calls, want 2 (the background one and the sync's)", n)
	}
	if k.Calls[0] != "add-link lvs0" {
		t.Fatalf("calls %v: the interface first", k.Calls)
	}
}

// logAtFullNAT notes what was logged when the full-NAT rules were set.
type logAtFullNAT struct {
	*FakeKernel
	log    *bytes.Buffer
	logged []string
}

func (k *logAtFullNAT) SetFullNAT(keys []ServiceKey) error {
	k.logged = append(k.logged, k.log.String())
	return k.FakeKernel.SetFullNAT(keys)
}

// TestSyncAppliedLoggedBeforeTheRest: "sync applied" is said as soon as the kernel has the
// operations, before the full-NAT rules (and the rest of the sync's bookkeeping).
func TestSyncAppliedLoggedBeforeTheRest(t *testing.T) {
	var buf bytes.Buffer
	k := &logAtFullNAT{FakeKernel: NewFakeKernel(), log: &buf}
	r := NewReconciler(slog.New(slog.NewTextHandler(&buf, nil)), prometheus.NewRegistry(), k, Settings{Interface: "lvs0"}, nil)
	s := svc(vip1, 80, "wrr", rs("10.0.1.11:8080", 1))
	s.FullNAT = true
	mustSync(t, r, []VirtualService{s})
	if len(k.logged) != 1 {
		t.Fatalf("SetFullNAT called %d times, want 1", len(k.logged))
	}
	if !strings.Contains(k.logged[0], `msg="sync applied" ops=3 failed=0`) {
		t.Fatalf("when the full-NAT rules were set, the log was:\n%s", k.logged[0])
	}
	if !strings.Contains(buf.String(), "full-NAT rules in place") {
		t.Fatalf("no full-NAT line after the sync:\n%s", buf.String())
	}
}
