package healthcheck

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lvs-director/lvs-director/config"
)

// helperEnv makes the test binary serve loopback listeners for the benchmark instead of testing
// (see TestMain), so that the benchmark's CPU figure is the checker's alone.
const helperEnv = "LVS_HC_BENCH_LISTENERS"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(serveListeners())
	}
	os.Exit(m.Run())
}

// serveListeners listens on 127.0.0.1-10, 10 ports each, accepting and closing every
// connection; it prints the addresses and "ready", then serves until stdin closes.
func serveListeners() int {
	var ls []net.Listener
	for host := 1; host <= 10; host++ {
		for range 10 {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:0", host))
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			ls = append(ls, l)
			fmt.Println(l.Addr())
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, l := range ls {
		l.Close()
	}
	return 0
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkManagerTCP10k checks 10,000 TCP targets every second against 100 loopback listeners
// served by a child process, and reports the sustained check rate, the CPU used by this process
// (the checker) as a fraction of one core and per check, late checks, and targets down at the end
// (timeouts: the child could not accept in time). Run: go test -run '^$' -bench . ./healthcheck/
func BenchmarkManagerTCP10k(b *testing.B) {
	const targets, window = 10000, 5 * time.Second
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < 20000 && lim.Max >= 20000 {
		lim.Cur = 20000
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	var addrs []netip.AddrPort
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "ready" {
		a, err := netip.ParseAddrPort(strings.TrimSpace(sc.Text()))
		if err != nil {
			b.Fatalf("helper said %q", sc.Text())
		}
		addrs = append(addrs, a)
	}
	if len(addrs) == 0 {
		b.Fatal("helper listened on nothing")
	}

	reg := prometheus.NewRegistry()
	m, err := New(nil, reg)
	if err != nil {
		b.Fatal(err)
	}
	j := config.DefaultCheckJitter
	s := config.HealthCheck{Type: "tcp", Interval: config.Duration(time.Second), Timeout: config.Duration(500 * time.Millisecond),
		Rise: 1, Fall: 1, InitialState: "down", Jitter: &j}
	ts := make([]Target, targets)
	for i := range ts {
		a := addrs[i%len(addrs)]
		ts[i] = Target{Key: fmt.Sprint(i), Service: fmt.Sprintf("svc%d", i/100), Address: a, RealServer: a, Spec: s}
	}
	m.Update(ts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	time.Sleep(1500 * time.Millisecond) // first checks are spread over the first interval

	b.ResetTimer()
	checks0, late0, cpu0, t0 := histCountB(b, reg), testutil.ToFloat64(m.met.late), cpuTime(), time.Now()
	time.Sleep(window)
	checks1, late1, cpu1, t1 := histCountB(b, reg), testutil.ToFloat64(m.met.late), cpuTime(), time.Now()
	b.StopTimer()
	goroutines := runtime.NumGoroutine()
	down, reasons := 0, map[string]int{}
	for _, st := range m.Snapshot() {
		if !st.Up {
			down++
		}
		reasons[st.LastReason]++
	}
	b.Logf("last results: %v", reasons)
	cancel()
	<-done

	wall := t1.Sub(t0).Seconds()
	b.ReportMetric(float64(checks1-checks0)/wall, "checks/s")
	b.ReportMetric((cpu1-cpu0).Seconds()/wall, "cpu-cores")
	if checks1 > checks0 {
		// CPU per check is the figure that holds when the machine is shared: cores at 10,000/s
		// is it in ms divided by 100 (on loopback it includes the kernel's TCP work of both ends).
		b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(checks1-checks0), "cpu-us/check")
	}
	b.ReportMetric(late1-late0, "late")
	b.ReportMetric(float64(down), "down-targets")
	b.ReportMetric(float64(goroutines), "goroutines")
}

func histCountB(b *testing.B, reg *prometheus.Registry) uint64 {
	b.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() == "lvs_director_healthcheck_duration_seconds" {
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return n
}
