package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-director/lvs-director/director"
)

// legacyIPVSCollector is the collector as it was before the real-server cap and the shared
// dump (every series, a kernel dump per scrape), kept as the benchmark's baseline.
type legacyIPVSCollector struct{ *ipvsCollector }

func (c legacyIPVSCollector) Collect(ch chan<- prometheus.Metric) {
	observed, _, err := c.d.rec.Observe()
	failed := 0.0
	if err != nil {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(c.err, prometheus.GaugeValue, failed)
	if err != nil {
		return
	}
	names := map[director.ServiceKey]string{}
	services := c.d.services()
	for i := range services {
		names[director.ServiceKeyOf(&services[i])] = services[i].Name
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	for _, s := range observed {
		name, ok := names[s.Key]
		if !ok {
			continue
		}
		counter(c.svcConns, s.Stats.Conns, name)
		counter(c.svcPackets, s.Stats.PacketsIn, name, "in")
		counter(c.svcPackets, s.Stats.PacketsOut, name, "out")
		counter(c.svcBytes, s.Stats.BytesIn, name, "in")
		counter(c.svcBytes, s.Stats.BytesOut, name, "out")
		for _, d := range s.Dests {
			rs := d.Addr.String()
			counter(c.rsConns, d.Counters().Conns, name, rs)
			counter(c.rsPackets, d.Counters().PacketsIn, name, rs, "in")
			counter(c.rsPackets, d.Counters().PacketsOut, name, rs, "out")
			counter(c.rsBytes, d.Counters().BytesIn, name, rs, "in")
			counter(c.rsBytes, d.Counters().BytesOut, name, rs, "out")
			gauge(c.rsActive, int(d.ActiveConns), name, rs)
			gauge(c.rsInactive, int(d.InactiveConns), name, rs)
			gauge(c.rsWeight, int(d.Weight), name, rs)
		}
	}
}

// scaleDaemon is a director with services x realServers in the in-memory kernel.
func scaleDaemon(b *testing.B, services, realServers int) (*Daemon, *countingKernel) {
	b.Helper()
	var cfg strings.Builder
	dir := b.TempDir()
	fmt.Fprintf(&cfg, "api: {socket: %s}\nservices:\n", filepath.Join(dir, "api.sock"))
	for i := range services {
		fmt.Fprintf(&cfg, "  - {name: s%d, vip: 10.%d.%d.1, port: 80, real_servers: [", i, 100+i/250, i%250)
		for j := range realServers {
			if j > 0 {
				cfg.WriteString(", ")
			}
			fmt.Fprintf(&cfg, "{address: 172.%d.%d.%d}", 16+i/4096, i/16%256, (i%16)*16+j)
		}
		cfg.WriteString("]}\n")
	}
	path := filepath.Join(dir, "director.yaml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	k := &countingKernel{FakeKernel: director.NewFakeKernel()}
	d, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), k, path, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		b.Fatal(err)
	}
	return d, k
}

// BenchmarkIPVSCollectorScale scrapes (Gather, as the /metrics handler does before encoding) a
// director with 10,000 services x 10 real servers in the in-memory kernel, with the old
// collector and the new one in the same run, interleaved:
//   - old: every series (850,000) and a kernel dump at each scrape;
//   - new-miss: the default cap (5,000 real servers) leaves per-service series only, and the
//     dump is older than scrapeMaxAge (a scrape every 15 s: every scrape dumps);
//   - new-hit: a scrape within scrapeMaxAge of another one (concurrent Prometheus servers).
//
// It reports ns and series per scrape of each, kernel dumps per scrape, and old/new ratios.
func BenchmarkIPVSCollectorScale(b *testing.B) {
	d, k := scaleDaemon(b, 10000, 10)
	base := newIPVSCollector(d)
	oldReg := prometheus.NewRegistry()
	oldReg.MustRegister(legacyIPVSCollector{base})
	clk := &clock{t: time.Unix(1700000000, 0)}
	newC := newIPVSCollector(d)
	newC.now = clk.Now
	newReg := prometheus.NewRegistry()
	newReg.MustRegister(newC)

	series := func(reg *prometheus.Registry) (time.Duration, int) {
		start := time.Now()
		mfs, err := reg.Gather()
		el := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for _, mf := range mfs {
			n += len(mf.GetMetric())
		}
		return el, n
	}
	var oldT, missT, hitT time.Duration
	var oldN, missN, hitN int
	var oldDumps, missDumps, hitDumps int64
	b.ResetTimer()
	for b.Loop() {
		k0 := k.dumps.Load()
		el, n := series(oldReg)
		oldT, oldN, oldDumps = oldT+el, n, oldDumps+k.dumps.Load()-k0

		clk.Add(2 * scrapeMaxAge)
		k0 = k.dumps.Load()
		el, n = series(newReg)
		missT, missN, missDumps = missT+el, n, missDumps+k.dumps.Load()-k0

		k0 = k.dumps.Load()
		el, n = series(newReg)
		hitT, hitN, hitDumps = hitT+el, n, hitDumps+k.dumps.Load()-k0
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
	b.ReportMetric(per(oldT), "old-ns/scrape")
	b.ReportMetric(per(missT), "new-miss-ns/scrape")
	b.ReportMetric(per(hitT), "new-hit-ns/scrape")
	b.ReportMetric(float64(oldN), "old-series")
	b.ReportMetric(float64(missN), "new-series")
	b.ReportMetric(float64(oldDumps)/float64(b.N), "old-dumps/scrape")
	b.ReportMetric(float64(missDumps)/float64(b.N), "new-miss-dumps/scrape")
	b.ReportMetric(float64(hitDumps)/float64(b.N), "new-hit-dumps/scrape")
	b.ReportMetric(float64(oldT)/float64(missT), "old/new-miss")
	b.ReportMetric(float64(oldT)/float64(hitT), "old/new-hit")
	if missN != hitN || oldN != 10000*(5+10*8)+1 || missN != 10000*7+2 {
		b.Fatalf("series: old %d, new %d (miss) / %d (hit)", oldN, missN, hitN)
	}
}
