package daemon

import (
	"context"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-director/lvs-director/director"
)

// A reload's sync reads only the service it changes; the periodic one reads the whole table
// and repairs drift.
func TestReloadSyncReadsOnlyTheChange(t *testing.T) {
	f := newFixture(t, baseConfig)
	if err := f.d.Sync(); err != nil {
		t.Fatal(err)
	}
	write(t, f.path, strings.ReplaceAll(strings.Replace(baseConfig, "      - {address: 10.0.1.12, port: 8080}\n",
		"      - {address: 10.0.1.12, port: 8080}\n      - {address: 10.0.1.13, port: 8080}\n", 1), "%SOCK%", f.dir+"/api.sock"))
	if err := f.d.Reload(); err != nil {
		t.Fatal(err)
	}
	f.k.ResetCalls()
	dumps0, reads0 := f.k.ReadCounts()
	if err := f.d.sync(false); err != nil {
		t.Fatal(err)
	}
	if dumps, reads := f.k.ReadCounts(); f.k.CallCount() != 1 || dumps != dumps0 || reads != reads0+1 {
		t.Errorf("calls %v, %d dumps, %d service reads", f.k.Calls, dumps-dumps0, reads-reads0)
	}
	f.k.Flush()
	if err := f.d.sync(false); err != nil || f.k.CallCount() != 1 {
		t.Errorf("a change-only sync looked for drift: %v %v", f.k.Calls, err)
	}
	if err := f.d.sync(true); err != nil || len(kernelDests(t, f.k)) != 3 {
		t.Errorf("the full sync did not repair the flush: %v %v", kernelDests(t, f.k), err)
	}
}

// Reloads and drains synced with change-only syncs (scoped to the VIPs that changed) leave the
// kernel exactly as a full sync would: the full sync after each finds nothing to do.
func TestScopedSyncsEqualFullSync(t *testing.T) {
	const two = `
director: {drain_timeout: 30s}
api: {socket: %SOCK%}
services:
  - {name: web, vip: 203.0.113.10, port: 80, real_servers: [{address: 10.0.1.11, port: 8080}, {address: 10.0.1.12, port: 8080}]}
  - {name: api, vip: 203.0.113.20, port: 443, real_servers: [{address: 10.0.2.11, port: 8443}]}
`
	f := newFixture(t, two)
	if err := f.d.Sync(); err != nil {
		t.Fatal(err)
	}
	step := func(what string, change func(), want map[string]int) {
		t.Helper()
		change()
		f.k.ResetCalls()
		if err := f.d.sync(false); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := kernelDests(t, f.k); !sameDests(got, want) {
			t.Fatalf("%s: kernel %v, want %v", what, got, want)
		}
		f.k.ResetCalls()
		if err := f.d.sync(true); err != nil || f.k.CallCount() != 0 {
			t.Fatalf("%s: the full sync after it changed %v (%v)", what, f.k.Calls, err)
		}
	}
	reload := func(cfg string) func() {
		return func() {
			write(t, f.path, strings.ReplaceAll(cfg, "%SOCK%", f.dir+"/api.sock"))
			if err := f.d.Reload(); err != nil {
				t.Fatal(err)
			}
		}
	}
	web := map[string]int{"tcp/203.0.113.10:80 10.0.1.11:8080": 1, "tcp/203.0.113.10:80 10.0.1.12:8080": 1}
	withAPI := func(m map[string]int, apis ...string) map[string]int {
		out := map[string]int{}
		for k, v := range m {
			out[k] = v
		}
		for _, a := range apis {
			out["tcp/203.0.113.20:443 "+a] = 1
		}
		return out
	}
	added := strings.Replace(two, "[{address: 10.0.2.11, port: 8443}]", "[{address: 10.0.2.11, port: 8443}, {address: 10.0.2.12, port: 8443}]", 1)
	step("a real server added to api", reload(added), withAPI(web, "10.0.2.11:8443", "10.0.2.12:8443"))
	moved := strings.Replace(added, "vip: 203.0.113.20, port: 443", "vip: 203.0.113.10, port: 443", 1)
	step("api moved to web's VIP", reload(moved), map[string]int{
		"tcp/203.0.113.10:80 10.0.1.11:8080": 1, "tcp/203.0.113.10:80 10.0.1.12:8080": 1,
		"tcp/203.0.113.10:443 10.0.2.11:8443": 1, "tcp/203.0.113.10:443 10.0.2.12:8443": 1})
	if vips, _ := f.k.Addrs("lvs0"); len(vips) != 1 {
		t.Fatalf("VIPs %v, want only 203.0.113.10", vips)
	}
	step("api back, web removed", reload(strings.Replace(added, "  - {name: web,", "  - {name: gone, vip: 203.0.113.30, port: 1, real_servers: []}\n#", 1)),
		withAPI(nil, "10.0.2.11:8443", "10.0.2.12:8443"))
	// New settings make the reconciler plan every service: the stubs of the desired state are
	// built whole and the sync is done at once.
	settings := strings.Replace(strings.Replace(added, "  - {name: web,", "  - {name: gone, vip: 203.0.113.30, port: 1, real_servers: []}\n#", 1),
		"drain_timeout: 30s", "drain_timeout: 45s", 1)
	step("new drain_timeout", reload(strings.Replace(settings, "{address: 10.0.2.12, port: 8443}]", "{address: 10.0.2.12, port: 8443}, {address: 10.0.2.13, port: 8443}]", 1)),
		withAPI(nil, "10.0.2.11:8443", "10.0.2.12:8443", "10.0.2.13:8443"))
	step("back", reload(settings), withAPI(nil, "10.0.2.11:8443", "10.0.2.12:8443"))
	step("operator drain", func() {
		if err := f.d.SetDrained("api", netip.MustParseAddrPort("10.0.2.12:8443"), true); err != nil {
			t.Fatal(err)
		}
	}, withAPI(nil, "10.0.2.11:8443"))
	step("undrain", func() {
		if err := f.d.SetDrained("api", netip.MustParseAddrPort("10.0.2.12:8443"), false); err != nil {
			t.Fatal(err)
		}
	}, withAPI(nil, "10.0.2.11:8443", "10.0.2.12:8443"))
}

func sameDests(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestHoldGC: while held, the collector runs only past the memory limit holdGC sets (the
// process's memory now plus the room); release restores both settings.
func TestHoldGC(t *testing.T) {
	pct0, lim0 := debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	defer debug.SetGCPercent(pct0)
	release := holdGC(0, holdGCRoom)
	pct, lim := debug.SetGCPercent(-1), debug.SetMemoryLimit(-1)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if pct != math.MaxInt32 || lim <= 0 || lim > int64(ms.Sys)+holdGCRoom || lim < holdGCRoom {
		t.Fatalf("held: GC percent %d, limit %d (Sys %d)", pct, lim, ms.Sys)
	}
	release()
	if p, l := debug.SetGCPercent(100), debug.SetMemoryLimit(-1); p != 100 || l != lim0 {
		t.Fatalf("released: GC percent %d, limit %d; want 100, %d", p, l, lim0)
	}
}

// gcKernel records the collector's GC percent each time the reconciler dumps the table.
type gcKernel struct {
	*director.FakeKernel
	mu       sync.Mutex
	percents []uint64
}

func (k *gcKernel) Services() ([]director.VirtualService, error) {
	k.mu.Lock()
	k.percents = append(k.percents, gcPercent())
	k.mu.Unlock()
	return k.FakeKernel.Services()
}

func gcPercent() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestRunHoldsGCDuringFirstSync: Run's first sync (which reads the whole table) runs with the
// collector held, and the setting is back when Run reports ready.
func TestRunHoldsGCDuringFirstSync(t *testing.T) {
	for _, tc := range []struct {
		name      string
		startHold bool // a hold taken before New (HoldGCForStart), handed to Run
	}{{"Run's own hold", false}, {"a hold from before New", true}} {
		t.Run(tc.name, func(t *testing.T) {
			defer debug.SetGCPercent(debug.SetGCPercent(100))
			dir := t.TempDir()
			path := filepath.Join(dir, "director.yaml")
			write(t, path, strings.ReplaceAll(baseConfig, "%SOCK%", filepath.Join(dir, "api.sock")))
			k := &gcKernel{FakeKernel: director.NewFakeKernel()}
			ready := make(chan uint64, 1)
			notify := func(s string) {
				if s == "READY=1" {
					select {
					case ready <- gcPercent():
					default:
					}
				}
			}
			var held func()
			if tc.startHold {
				held = HoldGCForStart()
				if p := gcPercent(); p != math.MaxInt32 {
					t.Fatalf("GC percent after HoldGCForStart: %d, want %d", p, math.MaxInt32)
				}
			}
			d, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), k, path, notify)
			if err != nil {
				t.Fatal(err)
			}
			if held != nil {
				if p := gcPercent(); p != math.MaxInt32 {
					t.Fatalf("GC percent after New: %d, want the hold's %d", p, math.MaxInt32)
				}
				d.SetStartGCHold(held)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- d.Run(ctx, nil) }()
			after := <-ready
			cancel()
			<-done
			k.mu.Lock()
			defer k.mu.Unlock()
			if len(k.percents) == 0 || k.percents[0] != math.MaxInt32 {
				t.Fatalf("GC percent during the first sync's dump: %v, want %d", k.percents, math.MaxInt32)
			}
			if after != 100 {
				t.Fatalf("GC percent when ready: %d, want 100", after)
			}
			if len(kernelDests(t, k.FakeKernel)) == 0 {
				t.Fatal("the first sync programmed nothing")
			}
		})
	}
}

// TestReleaseParseMemory: a large sync hands its memory back at once; a small one leaves that
// to Run, once reloads are quiet.
func TestReleaseParseMemory(t *testing.T) {
	if releaseParseMemory(releaseOps) || !releaseParseMemory(1) {
		t.Fatal("large syncs release at once, small ones later")
	}
	if memoryInUse() <= 0 {
		t.Fatal("memoryInUse: nothing")
	}
}

// TestReloadUnmapsAfterTheSync: a reload of a large file leaves it mapped until the sync that
// follows is done (afterSync); a second reload before that sync unmaps the first one's file, and
// a failed reload leaves no mapping.
func TestReloadUnmapsAfterTheSync(t *testing.T) {
	bd := startBenchDaemon(t, t.TempDir(), 1000, 0) // (430 kB: mapped, not read)
	mappings := func() int {
		b, err := os.ReadFile("/proc/self/maps")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), bd.path)
	}
	if n := mappings(); n != 0 {
		t.Fatalf("%d mappings after the start", n)
	}
	for i := 1; i <= 2; i++ {
		if err := os.WriteFile(bd.path, []byte(benchConfig(bd.dir, 1000, i, 0)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := bd.d.Reload(); err != nil {
			t.Fatal(err)
		}
		if n := mappings(); n != 1 {
			t.Fatalf("after reload %d: %d mappings of the file, want 1 (until the sync)", i, n)
		}
	}
	if err := bd.d.reloadSync(); err != nil {
		t.Fatal(err)
	}
	bd.d.afterSync()
	if n := mappings(); n != 0 {
		t.Fatalf("%d mappings after the sync", n)
	}
	bad := benchConfig(bd.dir, 1000, 3, 0) + "  - {name: s0, vip: 10.200.0.1, port: 8000}\n" // (a duplicate)
	if err := os.WriteFile(bd.path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := bd.d.Reload(); err == nil {
		t.Fatal("a duplicate service reloaded")
	}
	if n := mappings(); n != 0 {
		t.Fatalf("%d mappings after a failed reload", n)
	}
}
