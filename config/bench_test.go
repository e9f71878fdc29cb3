package config

import (
	"bytes"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// benchYAML renders the lab benchmark's rule set (lab/bench): n services, 10 per VIP, 10 real
// servers each, in flow style.
func benchYAML(n int) []byte {
	var b strings.Builder
	b.WriteString("director:\n  interface: lvs0\n  sync_period: 300s\n  min_sync_period: 100ms\n")
	b.WriteString("api: {socket: \"/run/lvs-director/api.sock\", metrics_listen: \"127.0.0.1:9813\"}\nservices:\n")
	for i := 0; i < n; i++ {
		v := i/10 + 1
		fmt.Fprintf(&b, "  - {name: s%d, vip: 10.200.%d.%d, port: %d, scheduler: wrr, real_servers: [", i, v>>8, v&255, 8000+i%10)
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			k := i*10 + j + 1
			fmt.Fprintf(&b, "{address: 10.%d.%d.%d, port: 8080}", 201+k>>16, k>>8&255, k&255)
		}
		b.WriteString("]}\n")
	}
	return []byte(b.String())
}

// BenchmarkParse: config.Parse of n services x 10 real servers.
func BenchmarkParse(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		data := benchYAML(n)
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			c0 := cpuTime()
			for i := 0; i < b.N; i++ {
				itemCache.set(nil, "") // a cold start: nothing parsed before
				cfg, err := Parse("bench.yaml", data)
				if err != nil || len(cfg.Services) != n {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the process's user+system time (every thread, so the garbage collector's too):
// on a shared machine it is steadier than the wall clock.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkReparse: Parse of a file that differs from the previous one by one real server
// (a reload).
func BenchmarkReparse(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		data := benchYAML(n)
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			if _, err := Parse("bench.yaml", data); err != nil {
				b.Fatal(err)
			}
			changed := bytes.Replace(data, []byte("port: 8080}]}"), []byte("port: 8080}, {address: 10.250.0.1, port: 8080}]}"), 1)
			b.ReportAllocs()
			b.ResetTimer()
			c0 := cpuTime()
			for i := 0; i < b.N; i++ {
				in := changed
				if i%2 == 1 {
					in = data
				}
				cfg, err := Parse("bench.yaml", in)
				if err != nil || len(cfg.Services) != n {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
		})
	}
}
