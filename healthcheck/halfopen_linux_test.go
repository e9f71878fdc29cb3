//go:build linux

package healthcheck

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"
)

// startHalfLoop starts a tcp_half_open loop; the test is skipped without CAP_NET_RAW.
func startHalfLoop(t *testing.T) checkLoop {
	t.Helper()
	l, err := newHalfOpenLoop()
	if errors.Is(err, syscall.EPERM) {
		t.Skipf("no raw socket (CAP_NET_RAW needed): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.close)
	return l
}

// firstHalfResult runs one job in a fresh half-open loop and returns its first result.
func firstHalfResult(t *testing.T, addr netip.AddrPort, source netip.Addr, timeout time.Duration) Result {
	t.Helper()
	r := newLoopRecorder()
	j := r.job(addr, time.Minute, timeout)
	j.source = source
	l := startHalfLoop(t)
	l.add(j)
	defer l.remove(j)
	select {
	case res := <-r.ch:
		return res
	case <-time.After(30 * time.Second):
		t.Fatal("no result within 30s")
	}
	return Result{}
}

// countingListener listens on addr (port 0) and counts the connections it accepts (and
// closes).
func countingListener(t *testing.T, addr string) (netip.AddrPort, *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	var n atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return addrOf(t, l.Addr()), &n
}

func TestHalfOpenLoopResults(t *testing.T) {
	open, accepted := countingListener(t, "127.0.0.1:0")
	var v6, v6closed netip.AddrPort
	var accepted6 *atomic.Int64
	if l, err := net.Listen("tcp", "[::1]:0"); err == nil {
		l.Close()
		v6, accepted6 = countingListener(t, "[::1]:0")
		l, _ := net.Listen("tcp", "[::1]:0")
		v6closed = addrOf(t, l.Addr())
		l.Close()
	}
	tests := []struct {
		name   string
		addr   netip.AddrPort
		source netip.Addr
		ok     bool
		kind   string
		reason string
	}{
		{"open port", open, netip.Addr{}, true, KindOK, "tcp syn-ack received"},
		{"open port, 4in6 address", netip.AddrPortFrom(netip.AddrFrom16(open.Addr().As16()), open.Port()), netip.Addr{}, true, KindOK, "tcp syn-ack received"},
		{"open port from a source", open, netip.MustParseAddr("127.0.0.2"), true, KindOK, "tcp syn-ack received"},
		{"refused", closedPort(t), netip.Addr{}, false, KindRefused, "connection refused"},
		{"timeout", blackhole(t), netip.Addr{}, false, KindTimeout, "timeout after 200ms"},
		{"source of another family", open, netip.MustParseAddr("::1"), false, KindOther, "source ::1 and address 127.0.0.1 are of different families"},
		{"source not local", open, netip.MustParseAddr("192.0.2.1"), false, KindOther, "bind to source 192.0.2.1: cannot assign requested address"},
		{"invalid address", netip.AddrPort{}, netip.Addr{}, false, KindOther, "invalid address"},
		{"unknown zone", netip.MustParseAddrPort("[fe80::1%no-such-if]:80"), netip.Addr{}, false, KindOther, `zone "no-such-if"`},
		{"ipv6 open port", v6, netip.Addr{}, true, KindOK, "tcp syn-ack received"},
		{"ipv6 with source", v6, netip.MustParseAddr("::1"), true, KindOK, "tcp syn-ack received"},
		{"ipv6 refused", v6closed, netip.Addr{}, false, KindRefused, "connection refused"},
		{"ipv6 source not local", v6, netip.MustParseAddr("2001:db8::1"), false, KindOther, "bind to source 2001:db8::1: cannot assign requested address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if strings.HasPrefix(tc.name, "ipv6") && !v6.IsValid() {
				t.Skip("no IPv6 loopback")
			}
			checkResult(t, firstHalfResult(t, tc.addr, tc.source, 200*time.Millisecond), tc.ok, tc.kind, tc.reason)
		})
	}
	// Half-open: the listeners never had a connection to accept.
	time.Sleep(100 * time.Millisecond)
	if n := accepted.Load(); n != 0 {
		t.Errorf("the IPv4 listener accepted %d connections", n)
	}
	if accepted6 != nil && accepted6.Load() != 0 {
		t.Errorf("the IPv6 listener accepted %d connections", accepted6.Load())
	}
}

// TestHalfOpenSource: the SYNs come from the configured source address (seen by a raw socket
// of the test's own).
func TestHalfOpenSource(t *testing.T) {
	open, _ := countingListener(t, "127.0.0.1:0")
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		t.Skipf("no raw socket: %v", err)
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Usec: 100000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	checkResult(t, firstHalfResult(t, open, netip.MustParseAddr("127.0.0.2"), 5*time.Second), true, KindOK, "tcp syn-ack received")
	buf := make([]byte, 256)
	syns := 0
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			break // nothing more queued
		}
		p := buf[:n]
		ihl := int(p[0]&0xf) * 4
		if n < ihl+20 || binary.BigEndian.Uint16(p[ihl+2:]) != open.Port() || p[ihl+13] != tcpSYN {
			continue
		}
		syns++
		if from := netip.AddrFrom4([4]byte(p[12:16])); from != netip.MustParseAddr("127.0.0.2") {
			t.Errorf("SYN from %s, want the source 127.0.0.2", from)
		}
	}
	if syns != 1 {
		t.Errorf("%d SYNs to the listener, want 1", syns)
	}
}

// TestHalfOpenSameTarget: many checks of one address in flight together each have a 4-tuple of
// their own (the port pool grows), so that every reply finds its check: all pass.
func TestHalfOpenSameTarget(t *testing.T) {
	open, _ := countingListener(t, "127.0.0.1:0")
	const jobs = 3 * minHalfPorts
	r := newLoopRecorder()
	l := startHalfLoop(t)
	var js []*tcpJob
	for range jobs {
		// All due at once and in flight together: one batch.
		j := r.job(open, 20*time.Millisecond, 15*time.Millisecond)
		js = append(js, j)
		l.add(j)
	}
	waitFor(t, "10 results of every job", func() bool {
		for _, j := range js {
			if len(r.of(j)) < 10 {
				return false
			}
		}
		return true
	})
	for _, j := range js {
		l.remove(j)
	}
	for i, j := range js {
		for _, res := range r.of(j) {
			if !res.OK {
				t.Errorf("job %d: %+v", i, res)
			}
		}
	}
}

// TestHalfOpenStuckDoesNotDelayOthers: a check waiting for its (long) timeout lets the others
// run meanwhile.
func TestHalfOpenStuckDoesNotDelayOthers(t *testing.T) {
	r := newLoopRecorder()
	l := startHalfLoop(t)
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

func TestReplyFilter(t *testing.T) {
	// The jumps of the program land inside it whatever the number of ports.
	for _, n := range []int{1, minHalfPorts, maxHalfPorts} {
		ports := make([]uint16, n)
		for _, ip4 := range []bool{true, false} {
			prog := replyFilter(ip4, ports)
			if len(prog) != 8+n {
				t.Errorf("%d ports: %d instructions", n, len(prog))
			}
			for i, ins := range prog {
				if ins.Code&0x07 == unix.BPF_JMP && (i+1+int(ins.Jt) >= len(prog) || i+1+int(ins.Jf) >= len(prog)) {
					t.Errorf("%d ports: instruction %d jumps out", n, i)
				}
			}
			if last := prog[len(prog)-1]; last.Code != unix.BPF_RET|unix.BPF_K || last.K != halfReplyBuf {
				t.Errorf("%d ports: last instruction %+v", n, last)
			}
		}
	}
}

func TestChecksum(t *testing.T) {
	// RFC 1071's example: 0001 f203 f4f5 f6f7 sums to ddf2, checksum 220d.
	if got := checksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, 0); got != 0x220d {
		t.Errorf("checksum = %#04x, want 0x220d", got)
	}
}

// TestHalfOpenLoopNoLeaks runs thousands of half-open checks (ok, refused, timeouts; removals
// with checks in flight) and checks that file descriptors and goroutines come back to their
// baseline, that the listener accepted nothing and that no half-open request is left on it.
func TestHalfOpenLoopNoLeaks(t *testing.T) {
	open, accepted := countingListener(t, "127.0.0.1:0")
	refused, hole := closedPort(t), blackhole(t)
	const synRecv = "03"
	runtime.GC()
	baseG, baseFD := runtime.NumGoroutine(), countFDs(t)

	r := newLoopRecorder()
	l, err := newHalfOpenLoop()
	if errors.Is(err, syscall.EPERM) {
		t.Skipf("no raw socket: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	var jobs []*tcpJob
	for i := range 60 {
		addr := []netip.AddrPort{open, open, refused, hole}[i%4]
		j := r.job(addr, 10*time.Millisecond, 5*time.Millisecond)
		j.first = time.Duration(i) * 100 * time.Microsecond
		j.jitter = 0.5
		jobs = append(jobs, j)
		l.add(j)
	}
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
	for _, want := range []string{"tcp syn-ack received", "connection refused", "timeout after 5ms"} {
		if kinds[want] == 0 {
			t.Errorf("no %q among the results", want)
		}
	}
	if len(kinds) != 3 {
		t.Errorf("unexpected results: %v", kinds)
	}
	// The open port's checks all passed: a reply lost or matched to the wrong check would
	// have timed one out.
	for i, j := range jobs {
		if i%4 > 1 {
			continue
		}
		for _, res := range r.of(j) {
			if !res.OK {
				t.Errorf("check of the open port: %+v", res)
				break
			}
		}
	}
	for _, j := range jobs {
		l.remove(j)
	}
	l.remove(longs[0])
	time.Sleep(100 * time.Millisecond) // the removals are applied
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
	for deadline := time.Now().Add(20 * time.Second); runtime.NumGoroutine() > baseG; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("after close: %d goroutines (baseline %d)\n%s", runtime.NumGoroutine(), baseG, buf[:n])
		}
	}
	time.Sleep(50 * time.Millisecond)
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
	if n := accepted.Load(); n != 0 {
		t.Errorf("the listener accepted %d connections", n)
	}
	if n := socketsTo(t, open, synRecv); n != 0 {
		t.Errorf("%d half-open requests left on the listener (the kernel's reset did not clear them)", n)
	}
}

// TestManagerHalfOpen: rise and fall through the Manager's half-open loop, the reasons, the
// transition metric, and a reload that keeps an unchanged target's state and schedule.
func TestManagerHalfOpen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := addrOf(t, ln.Addr())
	a := target(addr, spec("tcp_half_open"))
	var checks atomic.Int64
	r := startManager(t, []Target{a}, func(m *Manager) {
		m.onResult = func(Result) { checks.Add(1) }
	})
	waitFor(t, "a up", func() bool { return isUp(r.m, a.Key) })
	st := r.m.Snapshot()[a.Key]
	if st.Checks != 2 || st.Reason != "tcp syn-ack received" || st.Type != "tcp_half_open" {
		t.Errorf("up after %d checks (rise 2), reason %q, type %q", st.Checks, st.Reason, st.Type)
	}
	r.m.mu.Lock()
	half := r.m.half
	r.m.mu.Unlock()
	if half == nil {
		t.Fatal("no half-open loop runs")
	}
	if _, ok := half.(*halfLoop); !ok {
		t.Fatalf("the half-open loop is a %T", half)
	}
	// A reload with the same target keeps it (state and count of checks go on).
	n := r.m.Snapshot()[a.Key].Checks
	r.m.Update([]Target{a})
	waitFor(t, "more checks", func() bool { return r.m.Snapshot()[a.Key].Checks >= n+3 })
	if !isUp(r.m, a.Key) {
		t.Error("down after a reload")
	}
	ln.Close()
	waitFor(t, "a down", func() bool { return !isUp(r.m, a.Key) })
	st = r.m.Snapshot()[a.Key]
	if st.Reason != "connection refused" || st.LastReason != "connection refused" {
		t.Errorf("down with reason %q (last %q)", st.Reason, st.LastReason)
	}
	if got := testutil.ToFloat64(r.m.met.transitions.WithLabelValues("web", addr.String(), "down", KindRefused)); got != 1 {
		t.Errorf("transitions to down (refused) = %v, want 1", got)
	}
	if c := strings.Count(r.logs.String(), "real server down"); c != 1 {
		t.Errorf("%d down lines logged:\n%s", c, r.logs.String())
	}
	if strings.Contains(r.logs.String(), "level=WARN") {
		t.Errorf("warning logged:\n%s", r.logs.String())
	}
}

// TestManagerHalfOpenFallback: without the raw socket, tcp_half_open targets are checked with a
// connect (by the tcp loop, or by their Prober without one), after one warning.
func TestManagerHalfOpenFallback(t *testing.T) {
	for _, withLoop := range []bool{true, false} {
		t.Run(fmt.Sprintf("tcp loop %v", withLoop), func(t *testing.T) {
			a, b := target(acceptCloser(t), spec("tcp_half_open")), target(closedPort(t), spec("tcp_half_open"))
			b.Key = "web/b"
			calls := 0
			r := startManager(t, []Target{a, b}, func(m *Manager) {
				m.newHalfLoop = func() (checkLoop, error) {
					calls++
					return nil, fmt.Errorf("raw IPv4 TCP socket: %w", syscall.EPERM)
				}
				if !withLoop {
					m.newLoop = nil
				}
			})
			waitFor(t, "a up and b checked", func() bool {
				s := r.m.Snapshot()
				return s[a.Key].Up && s[b.Key].Checks >= 2
			})
			s := r.m.Snapshot()
			if s[a.Key].LastReason != "tcp connect ok" || s[b.Key].LastReason != "connection refused" {
				t.Errorf("a: %+v\nb: %+v", s[a.Key], s[b.Key])
			}
			if c := strings.Count(r.logs.String(), "level=WARN"); c != 1 || calls != 1 ||
				!strings.Contains(r.logs.String(), "checking with a TCP connect instead") {
				t.Errorf("%d tries, %d warnings:\n%s", calls, c, r.logs.String())
			}
		})
	}
}
