package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/lvs-director/lvs-director/bgp"
	"github.com/lvs-director/lvs-director/cluster"
	"github.com/lvs-director/lvs-director/daemon"
	"github.com/lvs-director/lvs-director/director"
	"github.com/lvs-director/lvs-director/healthcheck"
)

// TestMetricsLint registers every component's metrics as `run` does and checks the scrape with
// promlint, the linter behind `promtool check metrics`.
func TestMetricsLint(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "director.yaml")
	os.WriteFile(path, []byte(`
api: {socket: `+filepath.Join(dir, "api.sock")+`}
bgp:
  asn: 65001
  router_id: 192.0.2.1
  neighbors: [{address: 127.0.0.2, asn: 65000}]
cluster: {node_name: a, bind_address: 127.0.0.1, bind_port: 17946}
services:
  - name: web
    vip: 203.0.113.10
    port: 80
    health_check: {type: tcp, interval: 1s}
    real_servers: [{address: 127.0.0.1, port: 1}]
  - name: plain
    vip: 203.0.113.11
    port: 80
    real_servers: [{address: 10.0.0.1}]
`), 0o644)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	reg.MustRegister(runtimeCollectors()...)
	d, err := daemon.New(log, reg, director.NewFakeKernel(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := d.Config()
	checker, err := healthcheck.New(log, reg)
	if err != nil {
		t.Fatal(err)
	}
	d.SetHealth(daemon.HealthFromChecker(checker))
	if _, err := bgp.New(log, reg, cfg.BGP); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.New(log, reg, cfg.Cluster); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	seen := map[string]bool{}
	for _, mf := range mfs {
		n := mf.GetName()
		seen[n] = true
		if !strings.HasPrefix(n, "lvs_director_") && !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") {
			t.Errorf("metric %s lacks the lvs_director_ prefix", n)
		}
	}
	for _, want := range []string{"lvs_director_build_info", "lvs_director_reconcile_duration_seconds", "lvs_director_config_last_reload_successful", "lvs_director_ipvs_realserver_weight", "lvs_director_ipvs_realservers_unexported", "lvs_director_ipvs_service_active_connections"} {
		if !seen[want] {
			t.Errorf("missing %s", want)
		}
	}
	t.Logf("%d metric families lint clean", len(mfs))
}

// runtimeCollectors registers what package collectors' constructors give (they wrap the same
// functions of package prometheus), without linking package collectors into the binary.
func TestRuntimeCollectorsAsPackageCollectors(t *testing.T) {
	describe := func(cs ...prometheus.Collector) []string {
		var out []string
		for _, c := range cs {
			ch := make(chan *prometheus.Desc, 1000)
			c.Describe(ch)
			close(ch)
			for d := range ch {
				out = append(out, d.String())
			}
		}
		slices.Sort(out)
		return out
	}
	got := describe(runtimeCollectors()...)
	want := describe(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo())
	if !slices.Equal(got, want) || len(got) < 10 {
		t.Errorf("runtime collectors describe\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(runtimeCollectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_resident_memory_bytes", "process_start_time_seconds", "lvs_director_build_info"} {
		if !names[n] {
			t.Errorf("missing %s", n)
		}
	}
}
