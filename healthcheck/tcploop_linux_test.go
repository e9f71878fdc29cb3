//go:build linux

package healthcheck

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// loopRecorder collects the results a checkLoop reports, per job.
type loopRecorder struct {
	mu      sync.Mutex
	results map[*tcpJob][]Result
	late    int
	ch      chan Result // every result, when not nil (buffered)
}

func newLoopRecorder() *loopRecorder {
	return &loopRecorder{results: map[*tcpJob][]Result{}, ch: make(chan Result, 1024)}
}

// job returns a job to addr, checked every interval with the given timeout, first at once.
func (r *loopRecorder) job(addr netip.AddrPort, interval, timeout time.Duration) *tcpJob {
	j := &tcpJob{addr: addr, interval: interval, timeout: timeout, reasonTimeout: timeout}
	j.report = func(res Result, start, end time.Time) {
		if end.Before(start) {
			res = fail("bad", "ended before it started")
		}
		r.mu.Lock()
		r.results[j] = append(r.results[j], res)
		r.mu.Unlock()
		select {
		case r.ch <- res:
		default:
		}
	}
	j.late = func() {
		r.mu.Lock()
		r.late++
		r.mu.Unlock()
	}
	return j
}

func (r *loopRecorder) of(j *tcpJob) []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Result(nil), r.results[j]...)
}

func startLoop(t *testing.T) checkLoop {
	t.Helper()
	l, err := newTCPLoop()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.close)
	return l
}

// firstResult runs one job in a fresh loop and returns its first result.
func firstResult(t *testing.T, j *tcpJob) Result {
	t.Helper()
	r := newLoopRecorder()
	j2 := r.job(j.addr, j.interval, j.timeout)
	j2.source = j.source
	l := startLoop(t)
	l.add(j2)
	defer l.remove(j2)
	select {
	case res := <-r.ch:
		return res
	case <-time.After(30 * time.Second):
		t.Fatal("no result within 30s")
	}
	return Result{}
}

func TestTCPLoopResults(t *testing.T) {
	v6 := netip.AddrPort{}
	if l, err := net.Listen("tcp", "[::1]:0"); err == nil {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		t.Cleanup(func() { l.Close() })
		v6 = addrOf(t, l.Addr())
	}
	open := acceptCloser(t)
	tests := []struct {
		name   string
		addr   netip.AddrPort
		source netip.Addr
		ok     bool
		kind   string
		reason string
	}{
		{"open port", open, netip.Addr{}, true, KindOK, "tcp connect ok"},
		{"open port, 4in6 address", netip.AddrPortFrom(netip.AddrFrom16(open.Addr().As16()), open.Port()), netip.Addr{}, true, KindOK, "tcp connect ok"},
		{"refused", closedPort(t), netip.Addr{}, false, KindRefused, "connection refused"},
		{"timeout", blackhole(t), netip.Addr{}, false, KindTimeout, "timeout after 200ms"},
		{"source of another family", open, netip.MustParseAddr("::1"), false, KindOther, "source ::1 and address 127.0.0.1 are of different families"},
		{"source not local", open, netip.MustParseAddr("192.0.2.1"), false, KindOther, "bind to source 192.0.2.1: "},
		{"invalid address", netip.AddrPort{}, netip.Addr{}, false, KindOther, "invalid address"},
		{"unknown zone", netip.MustParseAddrPort("[fe80::1%no-such-if]:80"), netip.Addr{}, false, KindOther, `zone "no-such-if"`},
		{"ipv6 open port", v6, netip.Addr{}, true, KindOK, "tcp connect ok"},
		{"ipv6 with source", v6, netip.MustParseAddr("::1"), true, KindOK, "tcp connect ok"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if strings.HasPrefix(tc.name, "ipv6") && !v6.IsValid() {
				t.Skip("no IPv6 loopback")
			}
			j := &tcpJob{addr: tc.addr, source: tc.source, interval: time.Minute, timeout: 200 * time.Millisecond}
			checkResult(t, firstResult(t, j), tc.ok, tc.kind, tc.reason)
		})
	}
}

func TestTCPLoopSource(t *testing.T) {
	l, from := sourceListener(t)
	j := &tcpJob{addr: addrOf(t, l.Addr()), source: netip.MustParseAddr("127.0.0.2"), interval: time.Minute, timeout: 5 * time.Second}
	checkResult(t, firstResult(t, j), true, KindOK, "tcp connect ok")
	if got := <-from; got != "127.0.0.2" {
		t.Errorf("connection came from %s, want the source 127.0.0.2", got)
	}
}

// TestTCPLoopStuckDoesNotDelayOthers: a check waiting for its (long) timeout lets the others
// run and report many times meanwhile.
func TestTCPLoopStuckDoesNotDelayOthers(t *testing.T) {
	r := newLoopRecorder()
	l := startLoop(t)
	stuck := r.job(blackhole(t), time.Hour, time.Hour)
	l.add(stuck)
	quick := r.job(acceptCloser(t), 5*time.Millisecond, time.Second)
	l.add(quick)
	waitFor(t, "20 results of the quick job", func() bool { return len(r.of(quick)) >= 20 })
	if got := r.of(stuck); len(got) != 0 {
		t.Errorf("the stuck check reported %v", got)
	}
	for _, res := range r.of(quick) {
		if !res.OK {
			t.Errorf("quick job: %+v", res)
		}
	}
}

// socketsTo counts the IPv4 TCP sockets in state (hex, as in /proc/net/tcp) with addr at one
// end.
func socketsTo(t *testing.T, addr netip.AddrPort, state string) int {
	t.Helper()
	a4 := addr.Addr().As4()
	end := fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(a4[:]), addr.Port())
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		fs := strings.Fields(line)
		if len(fs) >= 4 && fs[3] == state && (fs[1] == end || fs[2] == end) {
			n++
		}
	}
	return n
}

// TestTCPLoopNoLeaks runs thousands of checks (ok, refused, timeouts; removals with checks in
// flight) and checks that file descriptors and goroutines come back to their baseline, and
// that the connections were reset rather than left in TIME_WAIT.
func TestTCPLoopNoLeaks(t *testing.T) {
	open, refused, hole := acceptCloser(t), closedPort(t), blackhole(t)
	const timeWait = "06"
	runtime.GC()
	baseG, baseFD := runtime.NumGoroutine(), countFDs(t)
	baseTW := socketsTo(t, open, timeWait)

	r := newLoopRecorder()
	l, err := newTCPLoop()
	if err != nil {
		t.Fatal(err)
	}
	loopFD := countFDs(t) // its epoll instances and eventfds
	var jobs []*tcpJob
	for i := range 60 {
		addr := []netip.AddrPort{open, open, refused, hole}[i%4]
		j := r.job(addr, 10*time.Millisecond, 5*time.Millisecond)
		j.first = time.Duration(i) * 100 * time.Microsecond
		j.jitter = 0.5
		jobs = append(jobs, j)
		l.add(j)
	}
	// Checks that will still be in flight when they are removed, and when the loop closes.
	longs := []*tcpJob{r.job(hole, time.Hour, time.Hour), r.job(hole, time.Hour, time.Hour)}
	for _, j := range longs {
		l.add(j)
	}
	total := func() int {
		n := 0
		for _, j := range jobs {
			n += len(r.of(j))
		}
		return n
	}
	want := 3000
	if raceEnabled {
		want = 1000
	}
	waitFor(t, fmt.Sprintf("%d checks", want), func() bool { return total() >= want })
	kinds := map[string]int{}
	for _, j := range jobs {
		for _, res := range r.of(j) {
			kinds[res.Reason]++
		}
	}
	t.Logf("%d checks: %v", total(), kinds)
	for _, want := range []string{"tcp connect ok", "connection refused", "timeout after 5ms"} {
		if kinds[want] == 0 {
			t.Errorf("no %q among the results", want)
		}
	}
	if len(kinds) != 3 {
		t.Errorf("unexpected results: %v", kinds)
	}
	for _, j := range jobs {
		l.remove(j)
	}
	l.remove(longs[0])
	// After removal no job is in flight but longs[1]: the loop holds its own descriptors and
	// that one socket.
	waitFor(t, "removed checks to release their sockets", func() bool { return countFDs(t) == loopFD+1 })
	done := map[*tcpJob]int{}
	for _, j := range jobs {
		done[j] = len(r.of(j))
	}
	l.close()
	l.close() // twice is fine
	l.add(r.job(open, time.Millisecond, time.Second))
	if fd := countFDs(t); fd != baseFD {
		t.Errorf("after close: %d fds (baseline %d)", fd, baseFD)
	}
	// The loop's goroutine has signalled that it is done; it may take a moment to return.
	for deadline := time.Now().Add(20 * time.Second); runtime.NumGoroutine() > baseG; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("after close: %d goroutines (baseline %d)\n%s", runtime.NumGoroutine(), baseG, buf[:n])
		}
	}
	for _, j := range jobs {
		if n := len(r.of(j)); n != done[j] {
			t.Errorf("a removed job reported %d more results", n-done[j])
		}
	}
	for _, j := range longs {
		if got := r.of(j); len(got) != 0 {
			t.Errorf("a job removed in flight reported %v", got)
		}
	}
	if tw := socketsTo(t, open, timeWait); tw > baseTW {
		t.Errorf("%d connections to the open port in TIME_WAIT: not reset", tw-baseTW)
	}
}

func TestManagerWithoutLoop(t *testing.T) {
	// The portable path (one goroutine per target, net.Dialer) gives the same results.
	okAddr, refused := acceptCloser(t), closedPort(t)
	a, b := target(okAddr, spec("tcp")), target(refused, spec("tcp"))
	b.Key = "web/b"
	r := startManager(t, []Target{a, b}, func(m *Manager) { m.newLoop = nil })
	waitFor(t, "a up and b checked", func() bool {
		s := r.m.Snapshot()
		return s[a.Key].Up && s[b.Key].Checks >= 2
	})
	r.m.mu.Lock()
	loop := r.m.tcp
	r.m.mu.Unlock()
	if loop != nil {
		t.Error("a loop runs")
	}
	if got := r.m.Snapshot()[b.Key]; got.Up || got.LastReason != "connection refused" {
		t.Errorf("b: %+v", got)
	}
}

func TestManagerRunAgain(t *testing.T) {
	// Targets checked by the loop keep their state across two Runs, and are checked again.
	a := target(acceptCloser(t), spec("tcp"))
	r := startManager(t, []Target{a}, nil)
	waitFor(t, "a up", func() bool { return isUp(r.m, a.Key) })
	r.m.mu.Lock()
	loop := r.m.tcp
	r.m.mu.Unlock()
	if loop == nil {
		t.Fatal("no loop runs on Linux")
	}
	r.stop()
	n := r.m.Snapshot()[a.Key].Checks
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "checks again", func() bool { return r.m.Snapshot()[a.Key].Checks > n+2 })
	if !isUp(r.m, a.Key) {
		t.Error("a went down across Runs")
	}
}
