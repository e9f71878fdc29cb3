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
	"strconv"
	"strings"
	"sync/atomic"
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
// served by a child process, two ways in the same run and in turns (rounds times each, figures
// averaged): the portable way ("dialer-": one goroutine and timer per target, net.Dialer; the
// Manager without a checkLoop, as on other systems and as before the loop existed) and with the
// Manager's checkLoop (unprefixed figures: non-blocking connects on epoll loops). It reports the
// sustained check rate; the CPU used by this process (the checker) as a fraction of one core
// and per check; the CPU per check of the checker and the listeners together (on loopback the
// kernel's TCP work of both ends is split between the two processes depending on timing, so
// the sum is the steadier figure); late checks (started more than half an interval after
// their schedule); timeouts (checks that did not connect within their 500ms); and targets down
// at the end. cpu-ratio is the loop's CPU per check over the dialer's, both-cpu-ratio the same
// for the sum. floor-cpu-us/check is a reference taken in the same run: the checker's CPU for
// a plain blocking connect and reset, one after the other, 10,000 a second, without any Go
// networking or scheduling (floor-both-: with the listeners').
// Run: go test -run '^$' -bench TCP10k -benchtime 1x ./healthcheck/
func BenchmarkManagerTCP10k(b *testing.B) {
	const rounds = 2
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < 20000 && lim.Max >= 20000 {
		lim.Cur = 20000
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	addrs, child := benchListeners(b)
	b.ResetTimer()
	var dialer, loop []tcpBenchFigures
	for range rounds {
		dialer = append(dialer, benchTCP10k(b, addrs, child, false))
		time.Sleep(500 * time.Millisecond) // let the listeners drain their queues
		loop = append(loop, benchTCP10k(b, addrs, child, true))
		time.Sleep(500 * time.Millisecond)
	}
	floor, floorBoth := benchFloor(b, addrs, child)
	b.StopTimer()

	d, l := meanFigures(dialer), meanFigures(loop)
	for _, f := range []struct {
		name string
		r    tcpBenchFigures
	}{{"dialer-", d}, {"", l}} {
		b.ReportMetric(f.r.checksPerSec, f.name+"checks/s")
		b.ReportMetric(f.r.cores, f.name+"cpu-cores")
		// CPU per check is the figure that holds when the machine is shared: cores at 10,000/s
		// is it in ms divided by 100.
		b.ReportMetric(f.r.usPerCheck, f.name+"cpu-us/check")
		b.ReportMetric(f.r.bothUsPerCheck, f.name+"both-cpu-us/check")
		b.ReportMetric(f.r.late, f.name+"late")
		b.ReportMetric(f.r.timeouts, f.name+"timeouts")
		b.ReportMetric(f.r.down, f.name+"down-targets")
		b.ReportMetric(f.r.goroutines, f.name+"goroutines")
	}
	if d.usPerCheck > 0 && d.bothUsPerCheck > 0 {
		b.ReportMetric(l.usPerCheck/d.usPerCheck, "cpu-ratio")
		b.ReportMetric(l.bothUsPerCheck/d.bothUsPerCheck, "both-cpu-ratio")
	}
	b.ReportMetric(floor, "floor-cpu-us/check")
	b.ReportMetric(floorBoth, "floor-both-cpu-us/check")
}

// BenchmarkManagerTCP10kHalfOpen checks the same 10,000 targets as BenchmarkManagerTCP10k
// (every second, 100 loopback listeners served by a child process), in turns (rounds times
// each, figures averaged) with the tcp checkLoop (connect figures, "tcp-" prefixed) and with
// tcp_half_open (SYN from a raw socket, SYN-ACK passes; unprefixed figures), and reports the
// same figures for both; cpu-ratio is the half-open CPU per check over the connect one,
// both-cpu-ratio the same with the listeners' CPU added.
// Run: go test -run '^$' -bench TCP10k -benchtime 1x ./healthcheck/ (both benchmarks)
func BenchmarkManagerTCP10kHalfOpen(b *testing.B) {
	const rounds = 2
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < 20000 && lim.Max >= 20000 {
		lim.Cur = 20000
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	if l, err := newHalfOpenLoop(); err != nil {
		b.Skipf("no half-open loop: %v", err)
	} else {
		l.close()
	}
	addrs, child := benchListeners(b)
	b.ResetTimer()
	var tcp, half []tcpBenchFigures
	for range rounds {
		tcp = append(tcp, benchChecks10k(b, addrs, child, true, config.CheckTCP))
		time.Sleep(500 * time.Millisecond)
		half = append(half, benchChecks10k(b, addrs, child, true, config.CheckTCPHalfOpen))
		time.Sleep(500 * time.Millisecond)
	}
	b.StopTimer()
	t, h := meanFigures(tcp), meanFigures(half)
	for _, f := range []struct {
		name string
		r    tcpBenchFigures
	}{{"tcp-", t}, {"", h}} {
		b.ReportMetric(f.r.checksPerSec, f.name+"checks/s")
		b.ReportMetric(f.r.cores, f.name+"cpu-cores")
		b.ReportMetric(f.r.usPerCheck, f.name+"cpu-us/check")
		b.ReportMetric(f.r.bothUsPerCheck, f.name+"both-cpu-us/check")
		b.ReportMetric(f.r.late, f.name+"late")
		b.ReportMetric(f.r.timeouts, f.name+"timeouts")
		b.ReportMetric(f.r.down, f.name+"down-targets")
	}
	if t.usPerCheck > 0 && t.bothUsPerCheck > 0 {
		b.ReportMetric(h.usPerCheck/t.usPerCheck, "cpu-ratio")
		b.ReportMetric(h.bothUsPerCheck/t.bothUsPerCheck, "both-cpu-ratio")
	}
}

// benchListeners starts the child process serving the listeners and returns their addresses
// and its pid.
func benchListeners(b *testing.B) ([]netip.AddrPort, int) {
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
	b.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
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
	return addrs, cmd.Process.Pid
}

// procCPU is the user and system time of process pid so far (/proc ticks are 1/100 s).
func procCPU(b *testing.B, pid int) time.Duration {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+2:]))
	var ticks int64
	for _, i := range []int{11, 12} { // utime, stime: fields 14 and 15 of stat
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			b.Fatalf("/proc/%d/stat: %v", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// benchFloor connects to addrs one after the other with blocking sockets, 10,000 a second
// for 2 seconds, closing each connection with a reset, and returns this process's CPU per
// connection in microseconds, and that of both processes.
func benchFloor(b *testing.B, addrs []netip.AddrPort, child int) (us, both float64) {
	const n = 20000
	cpu0, ccpu0 := cpuTime(), procCPU(b, child)
	for i := range n {
		a := addrs[i%len(addrs)]
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		_ = syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1})
		if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().As4()}); err != nil {
			b.Fatalf("floor connect: %v", err)
		}
		syscall.Close(fd)
		if i%100 == 99 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond) // the listeners accept the last ones
	cpu1, ccpu1 := cpuTime(), procCPU(b, child)
	us = float64((cpu1 - cpu0).Microseconds()) / n
	both = float64((cpu1 - cpu0 + ccpu1 - ccpu0).Microseconds()) / n
	b.Logf("%-30s %.1f us/connection (%.1f with the listeners')", "floor (blocking, one by one)", us, both)
	return us, both
}

func meanFigures(fs []tcpBenchFigures) tcpBenchFigures {
	var m tcpBenchFigures
	for _, f := range fs {
		m.checksPerSec += f.checksPerSec / float64(len(fs))
		m.cores += f.cores / float64(len(fs))
		m.usPerCheck += f.usPerCheck / float64(len(fs))
		m.bothUsPerCheck += f.bothUsPerCheck / float64(len(fs))
		m.late += f.late / float64(len(fs))
		m.timeouts += f.timeouts / float64(len(fs))
		m.down += f.down / float64(len(fs))
		m.goroutines += f.goroutines / float64(len(fs))
	}
	return m
}

type tcpBenchFigures struct {
	checksPerSec, cores, usPerCheck, bothUsPerCheck, late, timeouts, down, goroutines float64
}

// benchTCP10k runs 10,000 targets over addrs for a warm-up and a measured window.
func benchTCP10k(b *testing.B, addrs []netip.AddrPort, child int, withLoop bool) tcpBenchFigures {
	return benchChecks10k(b, addrs, child, withLoop, config.CheckTCP)
}

// benchChecks10k runs 10,000 targets of check type typ (tcp or tcp_half_open) over addrs for a
// warm-up and a measured window; withLoop false takes the Manager's checkLoops away.
func benchChecks10k(b *testing.B, addrs []netip.AddrPort, child int, withLoop bool, typ string) tcpBenchFigures {
	const targets, window = 10000, 5 * time.Second
	reg := prometheus.NewRegistry()
	m, err := New(nil, reg)
	if err != nil {
		b.Fatal(err)
	}
	if !withLoop {
		m.newLoop, m.newHalfLoop = nil, nil
	}
	var timeouts atomic.Int64
	m.onResult = func(r Result) {
		if r.Kind == KindTimeout {
			timeouts.Add(1)
		}
	}
	j := config.DefaultCheckJitter
	s := config.HealthCheck{Type: typ, Interval: config.Duration(time.Second), Timeout: config.Duration(500 * time.Millisecond),
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
	if withLoop {
		m.mu.Lock()
		running := m.tcp != nil
		if typ == config.CheckTCPHalfOpen {
			running = m.half != nil
		}
		m.mu.Unlock()
		if !running {
			b.Fatal("the manager runs no checkLoop")
		}
	}

	checks0, to0 := histCountB(b, reg), timeouts.Load()
	late0, cpu0, ccpu0, t0 := testutil.ToFloat64(m.met.late), cpuTime(), procCPU(b, child), time.Now()
	time.Sleep(window)
	checks1, to1 := histCountB(b, reg), timeouts.Load()
	late1, cpu1, ccpu1, t1 := testutil.ToFloat64(m.met.late), cpuTime(), procCPU(b, child), time.Now()
	goroutines := runtime.NumGoroutine()
	down, reasons := 0, map[string]int{}
	for _, st := range m.Snapshot() {
		if !st.Up {
			down++
		}
		reasons[st.LastReason]++
	}
	cancel()
	<-done

	wall := t1.Sub(t0).Seconds()
	f := tcpBenchFigures{
		checksPerSec: float64(checks1-checks0) / wall,
		cores:        (cpu1 - cpu0).Seconds() / wall,
		late:         late1 - late0,
		timeouts:     float64(to1 - to0),
		down:         float64(down),
		goroutines:   float64(goroutines),
	}
	if checks1 > checks0 {
		f.usPerCheck = float64((cpu1 - cpu0).Microseconds()) / float64(checks1-checks0)
		f.bothUsPerCheck = float64((cpu1 - cpu0 + ccpu1 - ccpu0).Microseconds()) / float64(checks1-checks0)
	}
	name := "dialer (goroutine per target)"
	switch {
	case withLoop && typ == config.CheckTCPHalfOpen:
		name = "half-open loop (raw SYNs)"
	case withLoop:
		name = "checkLoop (epoll)"
	}
	b.Logf("%-30s %6.0f checks/s, %.3f cores, %.1f us/check (%.1f with the listeners'), %.0f late, %.0f timeouts, %d goroutines; last results: %v",
		name, f.checksPerSec, f.cores, f.usPerCheck, f.bothUsPerCheck, f.late, f.timeouts, goroutines, reasons)
	return f
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
