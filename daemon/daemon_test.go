package daemon

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lvs-director/lvs-director/config"
	"github.com/lvs-director/lvs-director/director"
)

const baseConfig = `
director: {drain_timeout: 30s}
api: {socket: %SOCK%}
services:
  - name: web
    vip: 203.0.113.10
    port: 80
    real_servers:
      - {address: 10.0.1.11, port: 8080}
      - {address: 10.0.1.12, port: 8080}
`

type fixture struct {
	d    *Daemon
	k    *director.FakeKernel
	reg  *prometheus.Registry
	path string
	dir  string
}

func newFixture(t *testing.T, cfg string) *fixture {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "director.yaml")
	write(t, path, strings.ReplaceAll(cfg, "%SOCK%", filepath.Join(dir, "api.sock")))
	k := director.NewFakeKernel()
	reg := prometheus.NewRegistry()
	d, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), reg, k, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{d: d, k: k, reg: reg, path: path, dir: dir}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func kernelDests(t *testing.T, k *director.FakeKernel) map[string]int {
	t.Helper()
	svcs, _ := k.Services()
	out := map[string]int{}
	for _, s := range svcs {
		for _, d := range s.Dests {
			out[s.Key.String()+" "+d.Addr.String()] = int(d.Weight)
		}
	}
	return out
}

func TestBadReloadKeepsRunningConfig(t *testing.T) {
	f := newFixture(t, baseConfig)
	if err := f.d.Sync(); err != nil {
		t.Fatal(err)
	}
	write(t, f.path, "services:\n  - name: web\n    vip: 203.0.113.10\n    port: 80\n    sheduler: rr\n")
	err := f.d.Reload()
	if err == nil {
		t.Fatal("bad reload accepted")
	}
	st := f.d.LastReload()
	want := f.path + ":5: services[0].sheduler: unknown field \"sheduler\""
	if st.OK || len(st.Errors) != 1 || st.Errors[0] != want {
		t.Fatalf("reload status %+v, want error %q", st, want)
	}
	if got := testutil.ToFloat64(f.d.reloadOK); got != 0 {
		t.Fatalf("reload gauge = %v", got)
	}
	f.k.ResetCalls()
	if err := f.d.Sync(); err != nil || f.k.CallCount() != 0 {
		t.Fatalf("sync after bad reload changed the kernel: %v %v", f.k.Calls, err)
	}
	if len(kernelDests(t, f.k)) != 2 {
		t.Fatalf("kernel: %v", kernelDests(t, f.k))
	}
}

func TestReloadAppliesOnlyTheChange(t *testing.T) {
	f := newFixture(t, baseConfig)
	if err := f.d.Sync(); err != nil {
		t.Fatal(err)
	}
	write(t, f.path, strings.ReplaceAll(baseConfig, "%SOCK%", filepath.Join(f.dir, "api.sock"))+"      - {address: 10.0.1.13, port: 8080}\n")
	if err := f.d.Reload(); err != nil {
		t.Fatal(err)
	}
	f.k.ResetCalls()
	if err := f.d.Sync(); err != nil {
		t.Fatal(err)
	}
	if len(f.k.Calls) != 1 || f.k.Calls[0] != "add-dest tcp/203.0.113.10:80 10.0.1.13:8080 1" {
		t.Fatalf("calls %v", f.k.Calls)
	}
}

func TestRunReloadsOnFileChange(t *testing.T) {
	f := newFixture(t, strings.Replace(baseConfig, "director: {drain_timeout: 30s}", "director: {drain_timeout: 30s, min_sync_period: 10ms}", 1))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.d.Run(ctx, nil) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { return len(kernelDests(t, f.k)) == 2 })
	cfg := strings.ReplaceAll(baseConfig, "%SOCK%", filepath.Join(f.dir, "api.sock"))
	cfg = strings.Replace(cfg, "director: {drain_timeout: 30s}", "director: {drain_timeout: 30s, min_sync_period: 10ms}", 1)
	write(t, f.path, cfg+"      - {address: 10.0.1.13, port: 8080}\n")
	waitFor(t, func() bool { return len(kernelDests(t, f.k)) == 3 })
}

// TestRunSyncsOnceAfterAReload: a reload is followed by one sync, not by a second one
// min_sync_period later for the reload's own request of a sync.
func TestRunSyncsOnceAfterAReload(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real", "director.yaml") // (written behind a symlink: the file watch does not fire)
	if err := os.MkdirAll(filepath.Dir(real), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := strings.ReplaceAll(baseConfig, "%SOCK%", filepath.Join(dir, "api.sock"))
	cfg = strings.Replace(cfg, "director: {drain_timeout: 30s}", "director: {drain_timeout: 30s, min_sync_period: 10ms}", 1)
	write(t, real, cfg)
	path := filepath.Join(dir, "director.yaml")
	if err := os.Symlink(real, path); err != nil {
		t.Fatal(err)
	}
	k := director.NewFakeKernel()
	reg := prometheus.NewRegistry()
	d, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), reg, k, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	reload := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx, reload) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { return len(kernelDests(t, k)) == 2 })
	syncs0 := syncCount(t, reg)
	write(t, real, cfg+"      - {address: 10.0.1.13, port: 8080}\n")
	reload <- struct{}{}
	waitFor(t, func() bool { return len(kernelDests(t, k)) == 3 })
	time.Sleep(300 * time.Millisecond) // (30 min_sync_periods)
	if n := syncCount(t, reg) - syncs0; n != 1 {
		t.Fatalf("%d syncs after one reload, want 1", n)
	}
}

// syncCount is how many syncs the reconciler has timed.
func syncCount(t *testing.T, reg *prometheus.Registry) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "lvs_director_reconcile_duration_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatal("no lvs_director_reconcile_duration_seconds")
	return 0
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDrainAPI(t *testing.T) {
	f := newFixture(t, baseConfig)
	if err := f.d.Sync(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f.d.Handler(false))
	defer srv.Close()
	post := func(path, body string) (int, string) {
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("/v1/drain", `{"service":"web","real_server":"10.0.1.99:8080"}`); code != 404 || !strings.Contains(body, `service \"web\" has no real server 10.0.1.99:8080`) {
		t.Fatalf("unknown real server: %d %s", code, body)
	}
	if code, body := post("/v1/drain", `{"service":"web","real_server":"nope"}`); code != 400 || !strings.Contains(body, `invalid real server \"nope\": want address:port`) {
		t.Fatalf("bad address: %d %s", code, body)
	}
	if code, body := post("/v1/drain", `{"service":"web","real_server":"10.0.1.12:8080"}`); code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	if err := f.d.Sync(); err != nil {
		t.Fatal(err)
	}
	// No connections in the fake: the drained real server is gone at once.
	if _, ok := kernelDests(t, f.k)["tcp/203.0.113.10:80 10.0.1.12:8080"]; ok {
		t.Fatalf("drained real server still in the kernel: %v", kernelDests(t, f.k))
	}
	// It stays drained across a reload and a restart (the drain file).
	if err := f.d.Reload(); err != nil {
		t.Fatal(err)
	}
	d2, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), f.k, f.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := d2.Status()
	if err != nil {
		t.Fatal(err)
	}
	rs := rep.Services[0].RealServers
	if rs[1].Address != "10.0.1.12:8080" || rs[1].Drain != "operator" || rs[1].KernelWeight != nil {
		t.Fatalf("status after restart: %+v", rs[1])
	}
	if code, body := post("/v1/undrain", `{"service":"web","real_server":"10.0.1.12:8080"}`); code != 200 {
		t.Fatalf("undrain: %d %s", code, body)
	}
	if err := f.d.Sync(); err != nil {
		t.Fatal(err)
	}
	if w, ok := kernelDests(t, f.k)["tcp/203.0.113.10:80 10.0.1.12:8080"]; !ok || w != 1 {
		t.Fatalf("undrained real server: %v", kernelDests(t, f.k))
	}
	ro := httptest.NewServer(f.d.Handler(true))
	defer ro.Close()
	resp, err := http.Post(ro.URL+"/v1/drain", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("read-only drain: %d", resp.StatusCode)
	}
	resp, err = http.Get(ro.URL + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var rep2 Report
	_ = json.NewDecoder(resp.Body).Decode(&rep2)
	resp.Body.Close()
	if len(rep2.Services) != 1 || rep2.Services[0].RealServers[0].KernelWeight == nil || *rep2.Services[0].RealServers[0].KernelWeight != 1 {
		t.Fatalf("read-only status: %+v", rep2)
	}
}

func TestIPVSMetrics(t *testing.T) {
	f := newFixture(t, baseConfig)
	if err := f.d.Sync(); err != nil {
		t.Fatal(err)
	}
	// A foreign service must not show up.
	if err := f.k.AddService(director.VirtualService{Key: director.ServiceKey{Protocol: director.ProtoTCP, Addr: netip.MustParseAddr("192.0.2.99"), Port: 80}, Scheduler: "rr"}); err != nil {
		t.Fatal(err)
	}
	f.k.SetConns(director.ServiceKey{Protocol: director.ProtoTCP, Addr: netip.MustParseAddr("203.0.113.10"), Port: 80}, netip.MustParseAddrPort("10.0.1.11:8080"), 3, 7)
	want := `
# HELP lvs_director_ipvs_realserver_active_connections Active connections of the real server.
# TYPE lvs_director_ipvs_realserver_active_connections gauge
lvs_director_ipvs_realserver_active_connections{real_server="10.0.1.11:8080",service="web"} 3
lvs_director_ipvs_realserver_active_connections{real_server="10.0.1.12:8080",service="web"} 0
# HELP lvs_director_ipvs_realserver_weight Weight of the real server in the kernel.
# TYPE lvs_director_ipvs_realserver_weight gauge
lvs_director_ipvs_realserver_weight{real_server="10.0.1.11:8080",service="web"} 1
lvs_director_ipvs_realserver_weight{real_server="10.0.1.12:8080",service="web"} 1
`
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "lvs_director_ipvs_realserver_active_connections", "lvs_director_ipvs_realserver_weight"); err != nil {
		t.Fatal(err)
	}
	n, err := testutil.GatherAndCount(f.reg, "lvs_director_ipvs_service_connections_total")
	if err != nil || n != 1 {
		t.Fatalf("service series: %d %v", n, err)
	}
}

func TestTokenHandler(t *testing.T) {
	f := newFixture(t, baseConfig)
	if err := f.d.Sync(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f.d.TokenHandler("0123456789abcdef0123"))
	defer srv.Close()
	drain := func(auth string) int {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/drain", strings.NewReader(`{"service":"web","real_server":"10.0.1.12:8080"}`))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := drain(""); c != http.StatusForbidden {
		t.Fatalf("no token: %d", c)
	}
	if c := drain("Bearer wrong"); c != http.StatusForbidden {
		t.Fatalf("wrong token: %d", c)
	}
	if c := drain("Bearer 0123456789abcdef0123"); c != http.StatusOK {
		t.Fatalf("right token: %d", c)
	}
	resp, err := http.Get(srv.URL + "/v1/status")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("status without token: %v %v", resp, err)
	}
	resp.Body.Close()
}

// fakeSource is a ServiceSource under the test's control.
type fakeSource struct {
	svcs    []config.Service
	synced  bool
	changes chan struct{}
}

func (f *fakeSource) Services() []config.Service { return f.svcs }
func (f *fakeSource) Synced() bool               { return f.synced }
func (f *fakeSource) Changes() <-chan struct{}   { return f.changes }
func (f *fakeSource) Stale() (time.Time, bool)   { return time.Time{}, false }
func (f *fakeSource) Problems() []string         { return nil }

func TestSourceMergeAndKeepUntilSynced(t *testing.T) {
	f := newFixture(t, baseConfig)
	kube, err := config.Parse("k.yaml", []byte(`
services:
  - {name: k8s.default.shop.80, vip: 203.0.113.50, port: 80, real_servers: [{address: 10.0.5.1, port: 30080}]}
  - {name: k8s.default.clash.80, vip: 203.0.113.10, port: 80, real_servers: [{address: 10.0.5.2, port: 30081}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{svcs: kube.Services, changes: make(chan struct{}, 1)}
	f.d.SetSource(src)
	// A kube-sourced service left in the kernel by a previous run.
	shop := director.ServiceKey{Protocol: director.ProtoTCP, Addr: netip.MustParseAddr("203.0.113.50"), Port: 80}
	if err := f.k.EnsureLink("lvs0"); err != nil {
		t.Fatal(err)
	}
	_ = f.k.AddAddr("lvs0", shop.Addr)
	_ = f.k.AddService(director.VirtualService{Key: shop, Scheduler: "rr", Netmask: 0xffffffff})
	_ = f.k.AddDest(shop, director.Dest{Addr: netip.MustParseAddrPort("10.0.5.1:30080"), Weight: 1})
	if err := f.d.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, ok := kernelDests(t, f.k)["tcp/203.0.113.50:80 10.0.5.1:30080"]; !ok {
		t.Fatalf("not synced yet, but the kube service was removed: %v", kernelDests(t, f.k))
	}
	src.synced = true
	if err := f.d.Sync(); err != nil {
		t.Fatal(err)
	}
	got := kernelDests(t, f.k)
	if _, ok := got["tcp/203.0.113.50:80 10.0.5.1:30080"]; !ok {
		t.Fatalf("kube service missing after sync: %v", got)
	}
	if _, ok := got["tcp/203.0.113.10:80 10.0.5.2:30081"]; ok {
		t.Fatalf("a kube service overrode the file's on the same VIP:port: %v", got)
	}
	_, conflicts := f.d.mergedServices()
	if len(conflicts) != 1 || !strings.Contains(conflicts[0], "k8s.default.clash.80") || !strings.Contains(conflicts[0], "web") {
		t.Fatalf("conflicts %q", conflicts)
	}
	// The API goes away: the source keeps its last state, so does the kernel.
	src.svcs = kube.Services
	if err := f.d.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, ok := kernelDests(t, f.k)["tcp/203.0.113.50:80 10.0.5.1:30080"]; !ok {
		t.Fatal("kube service lost")
	}
}
