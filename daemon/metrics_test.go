package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/lvs-director/lvs-director/director"
)

// countingKernel counts the kernel dumps (what a scrape costs).
type countingKernel struct {
	*director.FakeKernel
	dumps atomic.Int64
}

func (k *countingKernel) Services() ([]director.VirtualService, error) {
	k.dumps.Add(1)
	return k.FakeKernel.Services()
}

// clock is a manual clock for the collector's cache.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// metricsConfig has 3 services of 2 real servers each, and the given api section line.
func metricsConfig(api string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "api: {socket: %%SOCK%%%s}\nservices:\n", api)
	for i := range 3 {
		fmt.Fprintf(&b, "  - name: s%d\n    vip: 203.0.113.%d\n    port: 80\n    real_servers: [{address: 10.0.%d.1}, {address: 10.0.%d.2}]\n", i, i+1, i, i)
	}
	return b.String()
}

type collectorFixture struct {
	*fixture
	k     *countingKernel
	c     *ipvsCollector
	clock *clock
	reg   *prometheus.Registry
	logs  *bytes.Buffer
}

func newCollectorFixture(t *testing.T, cfg string) *collectorFixture {
	t.Helper()
	f := newFixture(t, cfg)
	k := &countingKernel{FakeKernel: f.k}
	var logs bytes.Buffer
	// A daemon over the counting kernel, with its own registry, and a collector on a manual clock.
	d, err := New(slog.New(slog.NewTextHandler(&logs, nil)), prometheus.NewRegistry(), k, f.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.d = d
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	logs.Reset() // the sync's own lines
	cf := &collectorFixture{fixture: f, k: k, c: newIPVSCollector(d), clock: &clock{t: time.Unix(1700000000, 0)},
		reg: prometheus.NewRegistry(), logs: &logs}
	cf.c.now = cf.clock.Now
	cf.reg.MustRegister(cf.c)
	return cf
}

// scrape gathers and returns the series by metric name.
func (f *collectorFixture) scrape(t *testing.T) map[string][]*dto.Metric {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]*dto.Metric{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf.GetMetric()
	}
	return out
}

func gaugeValue(t *testing.T, m map[string][]*dto.Metric, name string) float64 {
	t.Helper()
	if len(m[name]) != 1 {
		t.Fatalf("%s: %d series, want 1", name, len(m[name]))
	}
	return m[name][0].GetGauge().GetValue()
}

func TestIPVSCollectorRealServerCap(t *testing.T) {
	f := newCollectorFixture(t, metricsConfig(", metrics_max_real_servers: 6"))
	// At the cap: every series, per real server too.
	m := f.scrape(t)
	if n := len(m["lvs_director_ipvs_realserver_weight"]); n != 6 {
		t.Fatalf("at the cap: %d real-server weight series, want 6", n)
	}
	if n := len(m["lvs_director_ipvs_realserver_packets_total"]); n != 12 {
		t.Errorf("at the cap: %d real-server packet series, want 12", n)
	}
	if v := gaugeValue(t, m, "lvs_director_ipvs_realservers_unexported"); v != 0 {
		t.Errorf("unexported = %v, want 0", v)
	}
	if f.logs.Len() != 0 {
		t.Errorf("logged under the cap: %s", f.logs)
	}
	perService := func(m map[string][]*dto.Metric) {
		t.Helper()
		for name, want := range map[string]int{
			"lvs_director_ipvs_service_connections_total":    3,
			"lvs_director_ipvs_service_packets_total":        6,
			"lvs_director_ipvs_service_bytes_total":          6,
			"lvs_director_ipvs_service_active_connections":   3,
			"lvs_director_ipvs_service_inactive_connections": 3,
		} {
			if n := len(m[name]); n != want {
				t.Errorf("%s: %d series, want %d", name, n, want)
			}
		}
	}
	perService(m)

	// One under: only per-service series, the gauge says 6 real servers were left out, and a
	// single warning however many scrapes.
	write(t, f.path, strings.ReplaceAll(metricsConfig(", metrics_max_real_servers: 5"), "%SOCK%", f.d.Config().API.Socket))
	if err := f.d.Reload(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		f.clock.Add(2 * scrapeMaxAge)
		m = f.scrape(t)
	}
	for name := range m {
		if strings.HasPrefix(name, "lvs_director_ipvs_realserver_") {
			t.Errorf("over the cap, %s is exported (%d series)", name, len(m[name]))
		}
	}
	perService(m)
	if v := gaugeValue(t, m, "lvs_director_ipvs_realservers_unexported"); v != 6 {
		t.Errorf("unexported = %v, want 6", v)
	}
	if n := strings.Count(f.logs.String(), "exporting per-service IPVS metrics only"); n != 1 {
		t.Errorf("%d warnings over 3 capped scrapes, want 1:\n%s", n, f.logs)
	}
	if !strings.Contains(f.logs.String(), "real_servers=6 metrics_max_real_servers=5") {
		t.Errorf("the warning lacks the numbers: %s", f.logs)
	}

	// Back under the cap: the series return, and that is logged once.
	write(t, f.path, strings.ReplaceAll(metricsConfig(", metrics_max_real_servers: 100"), "%SOCK%", f.d.Config().API.Socket))
	if err := f.d.Reload(); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(2 * scrapeMaxAge)
	m = f.scrape(t)
	if n := len(m["lvs_director_ipvs_realserver_weight"]); n != 6 {
		t.Errorf("back under the cap: %d weight series, want 6", n)
	}
	if n := strings.Count(f.logs.String(), "exporting per-real-server IPVS metrics again"); n != 1 {
		t.Errorf("%d notices of the series coming back, want 1:\n%s", n, f.logs)
	}

	// 0: never per real server, and no warning (the operator chose it).
	f2 := newCollectorFixture(t, metricsConfig(", metrics_max_real_servers: 0"))
	m = f2.scrape(t)
	if n := len(m["lvs_director_ipvs_realserver_weight"]); n != 0 || gaugeValue(t, m, "lvs_director_ipvs_realservers_unexported") != 6 {
		t.Errorf("metrics_max_real_servers 0: %d weight series, unexported %v", n, gaugeValue(t, m, "lvs_director_ipvs_realservers_unexported"))
	}
	if f2.logs.Len() != 0 {
		t.Errorf("logged with metrics_max_real_servers 0: %s", f2.logs)
	}
}

// TestIPVSCollectorDefaultCap: without the setting, a small director exports every series.
func TestIPVSCollectorDefaultCap(t *testing.T) {
	f := newCollectorFixture(t, metricsConfig(""))
	if n := len(f.scrape(t)["lvs_director_ipvs_realserver_weight"]); n != 6 {
		t.Errorf("default cap: %d weight series, want 6", n)
	}
}

func TestIPVSCollectorSharesDumps(t *testing.T) {
	f := newCollectorFixture(t, metricsConfig(""))
	dumps := func() int64 { return f.k.dumps.Load() }
	base := dumps()
	// weight returns the weight series of a real server, -1 when there is none.
	weight := func(m map[string][]*dto.Metric, rs string) float64 {
		for _, s := range m["lvs_director_ipvs_realserver_weight"] {
			for _, l := range s.GetLabel() {
				if l.GetName() == "real_server" && l.GetValue() == rs {
					return s.GetGauge().GetValue()
				}
			}
		}
		return -1
	}
	if w := weight(f.scrape(t), "10.0.0.1:80"); w != 1 || dumps() != base+1 {
		t.Fatalf("first scrape: weight %v, %d dumps; want 1 and 1", w, dumps()-base)
	}

	// The kernel changes (a drained real server without connections goes at once); scrapes
	// within scrapeMaxAge still answer from the first dump, without reading the kernel.
	if err := f.d.SetDrained("s0", netip.MustParseAddrPort("10.0.0.1:80"), true); err != nil {
		t.Fatal(err)
	}
	if err := f.d.Sync(); err != nil {
		t.Fatal(err)
	}
	base = dumps()
	f.clock.Add(scrapeMaxAge - time.Millisecond)
	if w := weight(f.scrape(t), "10.0.0.1:80"); w != 1 || dumps() != base {
		t.Errorf("scrape within %v: weight %v after %d dumps; want the cached 1 and no dump", scrapeMaxAge, w, dumps()-base)
	}
	if n := len(f.k.Calls); n == 0 || f.k.Calls[n-1] != "del-dest tcp/203.0.113.1:80 10.0.0.1:80" {
		t.Fatalf("the drain did not remove the real server: %q", f.k.Calls)
	}
	// Past it: a new dump, without the real server.
	f.clock.Add(time.Millisecond)
	if w := weight(f.scrape(t), "10.0.0.1:80"); w != -1 || dumps() != base+1 {
		t.Errorf("scrape at %v: weight %v after %d dumps; want no series and 1 dump", scrapeMaxAge, w, dumps()-base)
	}

	// Concurrent scrapes once the dump is stale: one of them reads the kernel, the others wait
	// for it and share its dump.
	f.clock.Add(scrapeMaxAge)
	base = dumps()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := f.reg.Gather(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := dumps() - base; n != 1 {
		t.Errorf("8 concurrent scrapes made %d kernel dumps, want 1", n)
	}

	// A clock that went back does not make an old dump look fresh forever.
	f.clock.Add(-time.Hour)
	base = dumps()
	f.scrape(t)
	if n := dumps() - base; n != 1 {
		t.Errorf("after the clock went back: %d dumps, want 1", n)
	}
}

func TestIPVSCollectorReadErrorIsNotCached(t *testing.T) {
	f := newCollectorFixture(t, metricsConfig(""))
	f.k.FailOn = map[string]error{"dump": errors.New("netlink: no buffer space")}
	m := f.scrape(t)
	if v := gaugeValue(t, m, "lvs_director_ipvs_read_errors"); v != 1 || len(m["lvs_director_ipvs_service_connections_total"]) != 0 {
		t.Fatalf("failed read: read_errors %v, %d service series", v, len(m["lvs_director_ipvs_service_connections_total"]))
	}
	// Same instant: the failure is not served from the cache, the kernel is asked again.
	f.k.FailOn = nil
	base := f.k.dumps.Load()
	m = f.scrape(t)
	if v := gaugeValue(t, m, "lvs_director_ipvs_read_errors"); v != 0 || f.k.dumps.Load() != base+1 || len(m["lvs_director_ipvs_service_connections_total"]) != 3 {
		t.Errorf("after the failure: read_errors %v, %d dumps, %d service series", v, f.k.dumps.Load()-base, len(m["lvs_director_ipvs_service_connections_total"]))
	}
}

// TestIPVSCollectorLint: the new series pass the linter behind `promtool check metrics`.
func TestIPVSCollectorLint(t *testing.T) {
	f := newCollectorFixture(t, metricsConfig(", metrics_max_real_servers: 1"))
	problems, err := testutil.CollectAndLint(f.c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}
