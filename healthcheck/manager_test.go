package healthcheck

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lvs-director/lvs-director/config"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type running struct {
	m      *Manager
	reg    *prometheus.Registry
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

func startManager(t *testing.T, targets []Target, tweak func(m *Manager)) *running {
	t.Helper()
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	m, err := New(slog.New(slog.NewTextHandler(logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(m)
	}
	m.Update(targets)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{m: m, reg: reg, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- m.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func (r *running) stop() {
	r.cancel()
	<-r.done
	r.done <- nil // let a second stop return
}

// waitFor polls cond every 10ms until it holds or 30s pass (the machine may be loaded).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func isUp(m *Manager, key string) bool {
	up, _, _ := m.State(key)
	return up
}

func TestManagerReloadKeepsState(t *testing.T) {
	okAddr, refused := acceptCloser(t), closedPort(t)
	a := target(okAddr, spec("tcp"))
	b := target(refused, spec("tcp"))
	b.Key = "web/b"
	r := startManager(t, []Target{a, b}, nil)
	m := r.m

	if up, reason, known := m.State(a.Key); up || reason != "initial state" || !known {
		t.Errorf("before any check: up=%v reason=%q known=%v", up, reason, known)
	}
	waitFor(t, "a up", func() bool { return isUp(m, a.Key) })
	select {
	case <-m.Changes():
	case <-time.After(5 * time.Second):
		t.Fatal("no change notification after a went up")
	}
	waitFor(t, "b checked", func() bool { return m.Snapshot()[b.Key].Checks >= 2 })
	if up, reason, _ := m.State(b.Key); up || reason != "initial state" {
		t.Errorf("b (refused, initially down) up=%v reason=%q", up, reason)
	}
	if got := m.Snapshot()[b.Key].LastReason; got != "connection refused" {
		t.Errorf("b last reason %q", got)
	}
	before := m.Snapshot()[a.Key]
	if before.Reason != "tcp connect ok" || before.Since.IsZero() {
		t.Errorf("a status %+v", before)
	}

	// A reload with equal targets (fresh copies) keeps state, schedule and counts.
	a2, b2 := a, b
	j := 0.0
	a2.Spec.Jitter = &j // another pointer to an equal value
	m.Update([]Target{b2, a2})
	after := m.Snapshot()[a.Key]
	if !after.Up || after.Since != before.Since || after.Checks < before.Checks {
		t.Errorf("reload changed a: before %+v after %+v", before, after)
	}
	waitFor(t, "more checks of a", func() bool { return m.Snapshot()[a.Key].Checks > before.Checks+2 })
	if got := testutil.ToFloat64(m.met.transitions.WithLabelValues("web", okAddr.String(), "up", "ok")); got != 1 {
		t.Errorf("transitions of a to up = %v, want 1", got)
	}
	if n := strings.Count(r.logs.String(), "msg=\"real server up\""); n != 1 {
		t.Errorf("logged %d up transitions, want 1:\n%s", n, r.logs.String())
	}

	// A changed spec restarts the check but keeps the verdict.
	a3 := a
	a3.Spec.Rise = 3
	m.Update([]Target{a3, b})
	st := m.Snapshot()[a.Key]
	if !st.Up || st.Since != before.Since || st.Checks >= after.Checks {
		t.Errorf("after a spec change a should be up with its old since and a fresh count: %+v", st)
	}

	// Removing b forgets it and its metrics; a new target starts in its initial state.
	c := target(refused, spec("tcp"))
	c.Key, c.Service = "web/c", "api"
	c.Spec.InitialState, c.Spec.Fall = "up", 2
	m.Update([]Target{a3, c})
	if _, _, known := m.State(b.Key); known {
		t.Error("b still known after removal")
	}
	if up, reason, known := m.State(c.Key); !up || reason != "initial state" || !known {
		t.Errorf("c: up=%v reason=%q known=%v, want up from initial_state", up, reason, known)
	}
	waitFor(t, "c down", func() bool { return !isUp(m, c.Key) })
	if _, reason, _ := m.State(c.Key); reason != "connection refused" {
		t.Errorf("c down reason %q", reason)
	}
	if got := testutil.ToFloat64(m.met.up.WithLabelValues("api", refused.String())); got != 0 {
		t.Errorf("up gauge of c = %v", got)
	}
	if got := testutil.ToFloat64(m.met.transitions.WithLabelValues("api", refused.String(), "down", "refused")); got != 1 {
		t.Errorf("transitions of c to down = %v, want 1", got)
	}
	// b's series are gone: the only up gauges are a's and c's.
	if n := testutil.CollectAndCount(m.met.up); n != 2 {
		t.Errorf("%d up gauges, want 2", n)
	}
	if !strings.Contains(r.logs.String(), `msg="real server down" service=api real_server=`+refused.String()+` check=tcp address=`+refused.String()+` reason="connection refused"`) {
		t.Errorf("down transition not logged as expected:\n%s", r.logs.String())
	}
}

func TestManagerNoneAndInvalid(t *testing.T) {
	none := target(closedPort(t), config.HealthCheck{Type: "none"})
	bad := target(closedPort(t), spec("udp")) // udp without expect
	bad.Key = "web/bad"
	r := startManager(t, []Target{none, bad}, nil)
	if up, reason, known := r.m.State(none.Key); !up || reason != "not checked" || !known {
		t.Errorf("none: %v %q %v", up, reason, known)
	}
	if up, reason, _ := r.m.State(bad.Key); up || !strings.HasPrefix(reason, "invalid health check: ") {
		t.Errorf("invalid: %v %q", up, reason)
	}
	if _, _, known := r.m.State("nope"); known {
		t.Error("unknown key is known")
	}
	if got := testutil.ToFloat64(r.m.met.up.WithLabelValues("web", none.RealServer.String())); got != 1 {
		t.Errorf("none up gauge %v", got)
	}
}

func TestManagerStuckCheckDoesNotDelayOthers(t *testing.T) {
	hang := newHangServer(t)
	stuck := target(hang.addr, spec("http"))
	stuck.Key = "stuck"
	stuck.Spec.Interval, stuck.Spec.Timeout = config.Duration(time.Minute), config.Duration(time.Minute)
	targets := []Target{stuck}
	okAddr := acceptCloser(t)
	for i := range 20 {
		tg := target(okAddr, spec("tcp"))
		tg.Key = fmt.Sprintf("ok%d", i)
		targets = append(targets, tg)
	}
	r := startManager(t, targets, func(m *Manager) {
		m.firstDelay = func(time.Duration) time.Duration { return 0 } // the stuck check starts first
	})
	waitFor(t, "the stuck check to connect", func() bool { return hang.count() > 0 })
	waitFor(t, "all quick targets up", func() bool {
		for _, tg := range targets[1:] {
			if !isUp(r.m, tg.Key) {
				return false
			}
		}
		return true
	})
	if st := r.m.Snapshot()["stuck"]; !st.LastCheck.IsZero() || st.Up {
		t.Errorf("the stuck check finished? %+v", st)
	}
	start := time.Now()
	r.stop()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stopping with a stuck check took %s", d)
	}
}

func TestManagerRunTwice(t *testing.T) {
	r := startManager(t, nil, nil)
	waitFor(t, "Run to start", func() bool {
		r.m.mu.Lock()
		defer r.m.mu.Unlock()
		return r.m.runCtx != nil
	})
	if err := r.m.Run(context.Background()); err == nil {
		t.Error("a second concurrent Run did not fail")
	}
}

func TestNewRegistersOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(nil, reg); err != nil {
		t.Fatal(err)
	}
	if _, err := New(nil, reg); err == nil || !strings.Contains(err.Error(), "registering health check metrics") {
		t.Errorf("second New on one registry: %v", err)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(es)
}

// TestManagerNoLeaks runs thousands of checks (ok, refused, timeouts, half-open ok, refused and
// timeouts, stuck http, udp timeouts, exec timeouts) and checks that goroutines and file descriptors come back to their
// baseline once the manager stops.
func TestManagerNoLeaks(t *testing.T) {
	okAddrs := []netip.AddrPort{acceptCloser(t), acceptCloser(t), acceptCloser(t)}
	refused := closedPort(t)
	hole := blackhole(t)
	hang := newHangServer(t)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	defer web.Close()
	webAddr := addrOf(t, web.Listener.Addr())
	silent := silentUDP(t)

	var targets []Target
	scale := 1
	if raceEnabled {
		scale = 10
	}
	add := func(n int, addr netip.AddrPort, s config.HealthCheck) {
		n = max(n/scale, 1)
		s.Interval, s.Timeout = config.Duration(time.Second), config.Duration(900*time.Millisecond)
		j := 0.5
		s.Jitter = &j
		for range n {
			tg := target(addr, s)
			tg.Key = fmt.Sprintf("t%d", len(targets))
			targets = append(targets, tg)
		}
	}
	for _, a := range okAddrs {
		add(200, a, spec("tcp"))
	}
	add(300, refused, spec("tcp"))
	add(150, hole, spec("tcp"))
	add(200, okAddrs[0], spec("tcp_half_open"))
	add(100, refused, spec("tcp_half_open"))
	add(100, hole, spec("tcp_half_open"))
	add(200, webAddr, spec("http"))
	add(150, hang.addr, spec("http"))
	udp := spec("udp")
	udp.Expect = "."
	add(150, silent, udp)
	ex := spec("exec")
	ex.Command = []string{"/bin/sh", "-c", "sleep 10 & wait"}
	add(5, refused, ex)

	wantReasons := []string{"tcp connect ok", "connection refused", "timeout after 900ms", "http status 200"}
	if l, err := newHalfOpenLoop(); err == nil {
		l.close()
		wantReasons = append(wantReasons, "tcp syn-ack received")
	} // else the half-open targets are checked with a connect

	runtime.GC()
	// No garbage collection: a connection left open must not be closed by its finalizer.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	baseG, baseFD := runtime.NumGoroutine(), countFDs(t)
	r := startManager(t, targets, nil)
	start := time.Now()
	// Every kind of result shows up (the machine may be loaded: wait for them rather than time).
	seen := map[string]bool{}
	waitFor(t, "thousands of checks with every kind of result", func() bool {
		for _, st := range r.m.Snapshot() {
			seen[st.LastReason] = true
		}
		for _, want := range wantReasons {
			if !seen[want] {
				if time.Since(start) > 20*time.Second {
					by := map[string]int{}
					for _, st := range r.m.Snapshot() {
						by[st.Address.String()+" "+st.Type+" "+st.LastReason]++
					}
					t.Logf("still waiting for %q; seen %v", want, by)
				}
				return false
			}
		}
		return histCount(t, r.reg) >= uint64(3000/scale)
	})
	t.Logf("%d checks, results seen: %v", histCount(t, r.reg), seen)
	r.stop()

	deadline := time.Now().Add(20 * time.Second)
	for {
		g, fd := runtime.NumGoroutine(), countFDs(t)
		if g <= baseG && fd <= baseFD {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("after stop: %d goroutines (baseline %d), %d fds (baseline %d)\n%s", g, baseG, fd, baseFD, buf[:n])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// histCount is the number of checks observed by the duration histogram.
func histCount(t *testing.T, reg *prometheus.Registry) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() != "lvs_director_healthcheck_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			n += m.GetHistogram().GetSampleCount()
		}
	}
	return n
}

func TestTargetsFor(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte(`services:
  - name: web
    vip: 10.0.0.1
    port: 80
    health_check:
      type: http
      port: 8080
    real_servers:
      - address: 10.1.0.1
      - address: 10.1.0.2
        port: 81
        health_check:
          type: tcp
  - name: dns
    vip: 10.0.0.2
    port: 53
    protocol: udp
    real_servers:
      - address: 10.2.0.1
`))
	if err != nil {
		t.Fatal(err)
	}
	got := TargetsFor(cfg.Services)
	if len(got) != 2 {
		t.Fatalf("got %d targets, want 2 (the dns service is not checked): %+v", len(got), got)
	}
	want := []struct{ key, addr, rs, typ string }{
		{"tcp/10.0.0.1:80/10.1.0.1:80", "10.1.0.1:8080", "10.1.0.1:80", "http"},
		{"tcp/10.0.0.1:80/10.1.0.2:81", "10.1.0.2:81", "10.1.0.2:81", "tcp"},
	}
	for i, w := range want {
		g := got[i]
		if g.Key != w.key || g.Address.String() != w.addr || g.RealServer.String() != w.rs || g.Spec.Type != w.typ ||
			g.Service != "web" || g.VIP.String() != "10.0.0.1:80" {
			t.Errorf("target %d = %+v, want %+v", i, g, w)
		}
	}
	if !reflect.DeepEqual(TargetsFor(cfg.Services), got) {
		t.Error("TargetsFor is not deterministic")
	}
}
