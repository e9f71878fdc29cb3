package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-director/lvs-director/director"
	"github.com/lvs-director/lvs-director/healthcheck"
)

// benchConfig renders the lab benchmark's rule set (lab/bench: 10 services per VIP, 10 real
// servers each, all distinct, flow style); extra real servers go to service n/2. Each gen has
// other real-server ports (nothing of an earlier parse can be reused).
func benchConfig(dir string, n, extra, gen int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "director:\n  interface: lvs0\n  sync_period: 300s\n  min_sync_period: 100ms\n")
	fmt.Fprintf(&b, "api: {socket: %q, metrics_listen: \"127.0.0.1:9813\"}\nservices:\n", filepath.Join(dir, "api.sock"))
	for i := 0; i < n; i++ {
		v := i/10 + 1
		fmt.Fprintf(&b, "  - {name: s%d, vip: 10.200.%d.%d, port: %d, scheduler: wrr, real_servers: [", i, v>>8, v&255, 8000+i%10)
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			k := i*10 + j + 1
			fmt.Fprintf(&b, "{address: 10.%d.%d.%d, port: %d}", 201+k>>16, k>>8&255, k&255, 8080+gen)
		}
		if i == n/2 {
			for m := 1; m <= extra; m++ {
				fmt.Fprintf(&b, ", {address: 10.250.0.%d, port: %d}", m, 8080+gen)
			}
		}
		b.WriteString("]}\n")
	}
	return b.String()
}

type benchDaemon struct {
	d    *Daemon
	k    *director.FakeKernel
	path string
	dir  string
}

// startBenchDaemon does what `lvs-director run` does up to the end of the first sync, on a
// fake kernel: load, attach the health checker, sync.
func startBenchDaemon(tb testing.TB, dir string, n, gen int) *benchDaemon {
	tb.Helper()
	path := filepath.Join(dir, "director.yaml")
	if err := os.WriteFile(path, []byte(benchConfig(dir, n, 0, gen)), 0o644); err != nil {
		tb.Fatal(err)
	}
	k := director.NewFakeKernel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	d, err := New(log, reg, k, path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	checker, err := healthcheck.New(log, reg)
	if err != nil {
		tb.Fatal(err)
	}
	d.SetHealth(HealthFromChecker(checker))
	if err := d.firstSync(); err != nil {
		tb.Fatal(err)
	}
	d.announce(context.Background())
	return &benchDaemon{d: d, k: k, path: path, dir: dir}
}

// cpuTime is the process's user+system time (every thread, so the garbage collector's too):
// on a shared machine it is steadier than the wall clock.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchSizes(b *testing.B, f func(b *testing.B, n int)) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) { f(b, n) })
	}
}

// BenchmarkDaemonColdStart: config load, health checker, first sync of n services x 10 into an
// empty fake kernel (the daemon's own share of a cold start).
func BenchmarkDaemonColdStart(b *testing.B) {
	benchSizes(b, func(b *testing.B, n int) {
		dir := b.TempDir()
		b.ReportAllocs()
		c0 := cpuTime()
		for i := 0; i < b.N; i++ {
			startBenchDaemon(b, dir, n, i)
		}
		b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
	})
}

// BenchmarkDaemonReloadOneRS: the config gains one real server, Reload + Sync: one operation.
func BenchmarkDaemonReloadOneRS(b *testing.B) {
	benchSizes(b, func(b *testing.B, n int) {
		bd := startBenchDaemon(b, b.TempDir(), n, 0)
		b.ReportAllocs()
		b.ResetTimer()
		var cpu time.Duration
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			if err := os.WriteFile(bd.path, []byte(benchConfig(bd.dir, n, i%2+1, 0)), 0o644); err != nil {
				b.Fatal(err)
			}
			bd.k.ResetCalls()
			b.StartTimer()
			c0 := cpuTime()
			if err := bd.d.Reload(); err != nil {
				b.Fatal(err)
			}
			if err := bd.d.reloadSync(); err != nil {
				b.Fatal(err)
			}
			cpu += cpuTime() - c0
			b.StopTimer()
			if c := bd.k.CallCount(); c != 1 {
				b.Fatalf("%d kernel calls: %v", c, bd.k.Calls)
			}
			bd.d.afterSync() // Run collects the load's garbage once the kernel is changed
			b.StartTimer()
		}
		b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
	})
}
