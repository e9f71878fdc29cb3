package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-director/lvs-director/config"
)

// These tests run real memberlist instances on 127.0.0.1 with kernel-chosen ports.

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

type node struct {
	*Cluster
	log *syncBuffer
	reg *prometheus.Registry
}

// clusterConfig parses a cluster section like a real config file would, so defaults come from
// config.setDefaults; then the port is set to 0 (ephemeral).
func clusterConfig(t *testing.T, extra string) *config.Cluster {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte("cluster:\n  bind_address: 127.0.0.1\n  rejoin_interval: 1s\n"+extra))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	cfg.Cluster.BindPort = 0
	return cfg.Cluster
}

func startNode(t *testing.T, name string, join []string, extra string, opts ...Option) *node {
	t.Helper()
	n := newNode(t, name, join, extra, opts...)
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("%s: Start: %v", name, err)
	}
	return n
}

func newNode(t *testing.T, name string, join []string, extra string, opts ...Option) *node {
	t.Helper()
	var y strings.Builder
	fmt.Fprintf(&y, "  node_name: %s\n", name)
	if len(join) > 0 {
		y.WriteString("  join:\n")
		for _, j := range join {
			fmt.Fprintf(&y, "    - %q\n", j)
		}
	}
	y.WriteString(extra)
	cfg := clusterConfig(t, y.String())
	buf := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	c, err := New(logger, reg, cfg, append([]Option{WithEligible(true)}, opts...)...)
	if err != nil {
		t.Fatalf("%s: New: %v", name, err)
	}
	n := &node{Cluster: c, log: buf, reg: reg}
	t.Cleanup(func() {
		_ = n.Shutdown()
		if t.Failed() {
			t.Logf("log of %s:\n%s", name, buf.String())
		}
	})
	return n
}

func (n *node) addr() string { return fmt.Sprintf("127.0.0.1:%d", n.Port()) }

func (n *node) member(name string) (Member, bool) { return find(n.Members(), name) }

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func liveNames(n *node) string { return names(n.Members()) }

// names lists the live members, comma-separated, in name order.
func names(ms []Member) string {
	var out []string
	for _, m := range ms {
		if m.State.Live() {
			out = append(out, m.Name)
		}
	}
	return strings.Join(out, ",")
}

// The assertions wait for views to converge instead of sampling them once: on a loaded
// machine sub-second failure detection can briefly suspect or even declare a healthy member
// dead before it refutes, and a single sample would then be flaky.
func TestClusterMembershipFailureAndLeave(t *testing.T) {
	a := startNode(t, "a", nil, "")
	b := startNode(t, "b", []string{a.addr()}, "")
	c := startNode(t, "c", []string{a.addr(), "127.0.0.1:1"}, "")
	nodes := []*node{a, b, c}

	for _, n := range nodes {
		waitFor(t, 5*time.Second, n.Name()+" to see a,b,c", func() bool { return liveNames(n) == "a,b,c" })
		waitFor(t, 5*time.Second, n.Name()+"'s gauge to count 3 alive", func() bool {
			return metricValue(t, n.reg, "lvs_director_cluster_members", "alive") == 3
		})
		if !n.HasQuorum() {
			t.Errorf("%s: no quorum with quorum: none", n.Name())
		}
	}

	// Every node computes the same owner for every key on its own, and exactly one node
	// takes the owner role, whenever their views hold the same members.
	ks := keys(200)
	waitFor(t, 5*time.Second, "three identical views", func() bool {
		snaps := make([][]Member, len(nodes))
		for i, n := range nodes {
			snaps[i] = n.Members()
			if names(snaps[i]) != "a,b,c" {
				return false
			}
		}
		for _, k := range ks {
			want, _ := Owner(snaps[0], k)
			owners := 0
			for i, n := range nodes {
				if got, _ := Owner(snaps[i], k); got != want {
					t.Fatalf("key %s: %s computes owner %s, a computes %s from the same members", k, n.Name(), got, want)
				}
				if RoleFor(n.Name(), snaps[i], k, ModeActiveStandby) == RoleOwner {
					owners++
				}
			}
			if owners != 1 {
				t.Fatalf("key %s: %d nodes think they own it, want 1", k, owners)
			}
		}
		return true
	})

	// Crash c: Shutdown without Leave. The others must declare it dead by failure detection.
	start := time.Now()
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*node{a, b} {
		waitFor(t, 5*time.Second, n.Name()+" to see c dead", func() bool {
			m, ok := n.member("c")
			return ok && m.State == StateDead
		})
	}
	t.Logf("crash of c detected by a and b after %s (probe 200ms, timeout 100ms, suspicion_mult 2)", time.Since(start).Round(time.Millisecond))
	waitFor(t, 5*time.Second, "a's gauge to count c dead", func() bool {
		return metricValue(t, a.reg, "lvs_director_cluster_members", "dead") == 1
	})
	// Only c's keys moved.
	var snap []Member
	waitFor(t, 5*time.Second, "a to see a,b live", func() bool { snap = a.Members(); return names(snap) == "a,b" })
	for _, k := range ks {
		before, _ := Owner([]Member{mem("a", 100), mem("b", 100), mem("c", 100)}, k)
		now, _ := Owner(snap, k)
		if before != "c" && now != before {
			t.Fatalf("key %s moved from %s to %s when c died", k, before, now)
		}
		if now == "c" {
			t.Fatalf("key %s still owned by dead c", k)
		}
	}

	// Graceful stop of b: a sees it left at once, without failure detection.
	waitFor(t, 5*time.Second, "a and b to see each other", func() bool { return liveNames(a) == "a,b" && liveNames(b) == "a,b" })
	start = time.Now()
	if err := b.Leave(time.Second); err != nil {
		t.Fatalf("b.Leave: %v", err)
	}
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "a to see b left", func() bool {
		m, ok := a.member("b")
		return ok && m.State == StateLeft
	})
	t.Logf("graceful leave of b seen by a %s after Leave was called", time.Since(start).Round(time.Millisecond))
	if got := liveNames(a); got != "a" {
		t.Errorf("a's live members = %s, want a", got)
	}
	for _, k := range ks {
		if a.Role(k, ModeActiveStandby) != RoleOwner {
			t.Fatalf("a, alone, does not own %s", k)
		}
	}
	if got := metricValue(t, a.reg, "lvs_director_cluster_member_changes_total", ""); got < 4 {
		t.Errorf("a: member_changes_total = %v, want at least 4 (b, c join; c dead; b left)", got)
	}
	// Leave and Shutdown twice are harmless.
	if err := b.Leave(time.Second); err != nil {
		t.Errorf("Leave after Shutdown: %v", err)
	}
	if err := b.Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

// metricValue reads a gauge or counter from reg; state selects the label value ("" for none).
func metricValue(t *testing.T, reg *prometheus.Registry, name, state string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if state != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != state) {
				continue
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s{state=%q}", name, state)
	return 0
}

func TestClusterEligibilityPropagates(t *testing.T) {
	a := startNode(t, "a", nil, "")
	b := startNode(t, "b", []string{a.addr()}, "")
	waitFor(t, 5*time.Second, "b to see a", func() bool { return liveNames(b) == "a,b" })
	key := "tcp/198.51.100.7:443"
	// Drain pending notifications, then flip a's eligibility.
	select {
	case <-b.Changes():
	default:
	}
	start := time.Now()
	if err := a.SetEligible(false); err != nil {
		t.Fatal(err)
	}
	if a.Eligible() {
		t.Fatal("Eligible() still true")
	}
	select {
	case <-b.Changes():
	case <-time.After(5 * time.Second):
		t.Fatal("b got no change notification")
	}
	waitFor(t, 5*time.Second, "b to see a ineligible", func() bool {
		m, ok := b.member("a")
		return ok && !m.Eligible
	})
	t.Logf("eligibility change reached b %s after SetEligible was called", time.Since(start).Round(time.Millisecond))
	for _, n := range []*node{a, b} {
		waitFor(t, 5*time.Second, n.Name()+" to make b the owner", func() bool {
			got, _ := Owner(n.Members(), key)
			return got == "b"
		})
	}
	if a.Role(key, ModeActiveActive) != RoleNotOwner {
		t.Errorf("ineligible a has role %v in active-active", a.Role(key, ModeActiveActive))
	}
	waitFor(t, 5*time.Second, "b to own the key in active-active", func() bool { return b.Role(key, ModeActiveActive) == RoleOwner })
	if err := a.SetEligible(true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b to see a eligible again", func() bool {
		m, ok := b.member("a")
		return ok && m.Eligible && m.Priority == config.DefaultClusterPriority
	})
}

func TestClusterPriorityGossiped(t *testing.T) {
	a := startNode(t, "a", nil, "  priority: 700\n")
	b := startNode(t, "b", []string{a.addr()}, "")
	waitFor(t, 5*time.Second, "b to see a's priority", func() bool {
		m, ok := b.member("a")
		return ok && m.Priority == 700 && m.Eligible
	})
	if m, _ := a.member("a"); m.Priority != 700 || m.Addr.String() != a.addr() {
		t.Errorf("a's own entry = %+v", m)
	}
}

func TestClusterMajorityQuorum(t *testing.T) {
	extra := "  quorum: majority\n  expected_members: 3\n"
	a := startNode(t, "a", nil, extra)
	if a.HasQuorum() || a.Role("k", ModeActiveActive) != RoleNotOwner {
		t.Fatalf("a alone has quorum with expected_members 3")
	}
	b := startNode(t, "b", []string{a.addr()}, extra)
	waitFor(t, 5*time.Second, "a and b to have quorum", func() bool { return a.HasQuorum() && b.HasQuorum() })
	if a.Role("k", ModeActiveActive) != RoleOwner {
		t.Errorf("a with quorum does not own k in active-active")
	}
}

func writeKey(t *testing.T, seed byte) string {
	t.Helper()
	k := make([]byte, 32)
	for i := range k {
		k[i] = seed + byte(i)
	}
	p := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClusterSecretKey(t *testing.T) {
	k1, k2 := writeKey(t, 1), writeKey(t, 100)
	a := startNode(t, "a", nil, "  secret_key_file: "+k1+"\n")
	good := startNode(t, "good", []string{a.addr()}, "  secret_key_file: "+k1+"\n")
	waitFor(t, 5*time.Second, "good to join a with the same key", func() bool { return liveNames(a) == "a,good" && liveNames(good) == "a,good" })

	bad := startNode(t, "bad", []string{a.addr()}, "  secret_key_file: "+k2+"\n")
	plain := startNode(t, "plain", []string{a.addr()}, "")
	waitFor(t, 5*time.Second, "the join attempts of bad and plain to fail", func() bool {
		return strings.Contains(bad.log.String(), "cannot join any cluster peer") &&
			strings.Contains(plain.log.String(), "cannot join any cluster peer")
	})
	time.Sleep(500 * time.Millisecond)
	// Whatever their state: the wrong key and no key must never get into anyone's view.
	for _, n := range []*node{a, good} {
		for _, intruder := range []string{"bad", "plain"} {
			if _, ok := n.member(intruder); ok {
				t.Errorf("%s knows %s", n.Name(), intruder)
			}
		}
	}
	for _, n := range []*node{bad, plain} {
		if ms := n.Members(); len(ms) != 1 {
			t.Errorf("%s knows %v, want only itself", n.Name(), ms)
		}
	}
	for _, want := range []string{
		`level=ERROR msg="failed to receive: no installed keys could decrypt the message`,
		`level=ERROR msg="failed to receive: encryption is configured but remote state is not encrypted`,
	} {
		if !strings.Contains(a.log.String(), want) {
			t.Errorf("a did not log %s", want)
		}
	}
	if !strings.Contains(plain.log.String(), "gossip encryption is OFF") {
		t.Errorf("plain did not warn about missing encryption")
	}
	if strings.Contains(a.log.String(), "gossip encryption is OFF") {
		t.Errorf("a warns about missing encryption although it has a key")
	}
}

func TestClusterGarbageMetaFromPeer(t *testing.T) {
	a := startNode(t, "a", nil, "")
	mc := memberlist.DefaultLocalConfig()
	mc.Name = "rogue"
	mc.BindAddr = "127.0.0.1"
	mc.BindPort = 0
	mc.Logger = newMemberlistLogger(slog.New(slog.DiscardHandler))
	raw := &rawMeta{meta: []byte{0xde, 0xad, 0xbe, 0xef, 0x00}}
	mc.Delegate = raw
	rogue, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rogue.Shutdown() })
	if _, err := rogue.Join([]string{a.addr()}); err != nil {
		t.Fatalf("rogue join: %v", err)
	}
	waitFor(t, 5*time.Second, "a to see rogue", func() bool { _, ok := a.member("rogue"); return ok })
	m, _ := a.member("rogue")
	if m.Eligible || !m.State.Live() {
		t.Errorf("rogue = %+v, want live and ineligible", m)
	}
	if l := a.log.String(); !strings.Contains(l, `level=ERROR msg="bad node meta from peer; treating it as ineligible"`) ||
		!strings.Contains(l, `peer=rogue addr=`+rogue.LocalNode().Address()+` err="node meta version 222, want 1"`) {
		t.Errorf("bad meta not logged:\n%s", a.log.String())
	}
	for _, k := range keys(100) {
		if o, _ := Owner(a.Members(), k); o != "a" {
			t.Fatalf("key %s owned by %s, want a", k, o)
		}
	}
	// Then meta that is too short, then none at all.
	for i, bad := range [][]byte{{1}, nil} {
		raw.set(bad)
		_ = rogue.UpdateNode(time.Second)
		waitFor(t, 5*time.Second, "a to see the update", func() bool {
			return strings.Count(a.log.String(), "bad node meta from peer") >= 2+i
		})
		if m, _ := a.member("rogue"); m.Eligible || !m.State.Live() {
			t.Errorf("rogue with meta %v = %+v, want live and ineligible", bad, m)
		}
	}
}

type rawMeta struct {
	mu   sync.Mutex
	meta []byte
}

func (r *rawMeta) set(b []byte) { r.mu.Lock(); r.meta = b; r.mu.Unlock() }
func (r *rawMeta) NodeMeta(int) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.meta
}
func (r *rawMeta) NotifyMsg([]byte)                {}
func (r *rawMeta) GetBroadcasts(int, int) [][]byte { return nil }
func (r *rawMeta) LocalState(bool) []byte          { return nil }
func (r *rawMeta) MergeRemoteState([]byte, bool)   {}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestClusterStartWithPeerDown(t *testing.T) {
	port := freePort(t)
	peer := fmt.Sprintf("127.0.0.1:%d", port)
	start := time.Now()
	a := startNode(t, "a", []string{peer}, "")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Start took %s with its only peer down", d)
	}
	waitFor(t, 5*time.Second, "a to log the failed join", func() bool {
		return strings.Contains(a.log.String(), "cannot join any cluster peer yet")
	})
	if got := liveNames(a); got != "a" {
		t.Fatalf("a's members = %s, want a", got)
	}
	// The peer comes up later on that port, without a join list of its own: a's retries find it.
	b := newNode(t, "b", nil, "", withMemberlistConfig(func(mc *memberlist.Config) {
		mc.BindPort, mc.AdvertisePort = port, port
	}))
	if err := b.Start(context.Background()); err != nil {
		t.Skipf("port %d was taken meanwhile: %v", port, err)
	}
	waitFor(t, 5*time.Second, "a to join b by retrying", func() bool { return liveNames(a) == "a,b" && liveNames(b) == "a,b" })
}

func TestNewNodeName(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	cfg := clusterConfig(t, "")
	c, err := New(logger, nil, cfg, WithHostname(func() (string, error) { return "host-x", nil }))
	if err != nil || c.Name() != "host-x" {
		t.Errorf("New with no node_name: name %q, %v; want host-x", c.Name(), err)
	}
	_, err = New(logger, nil, cfg, WithHostname(func() (string, error) { return "", fmt.Errorf("no uts") }))
	if err == nil || err.Error() != "cluster: node_name is not set and the host name is unknown: no uts" {
		t.Errorf("hostname error: %v", err)
	}
	named := clusterConfig(t, "  node_name: lvs-1\n")
	c, err = New(logger, nil, named, WithHostname(func() (string, error) { return "host-x", nil }))
	if err != nil || c.Name() != "lvs-1" {
		t.Errorf("node_name lvs-1: got %q, %v", c.Name(), err)
	}
	if len(c.Members()) != 0 || c.Port() != 0 {
		t.Errorf("before Start: members %v, port %d", c.Members(), c.Port())
	}
	if err := c.SetEligible(true); err != nil || !c.Eligible() {
		t.Errorf("SetEligible before Start: %v", err)
	}
	if err := c.Leave(time.Second); err != nil {
		t.Errorf("Leave before Start: %v", err)
	}
	if err := c.Shutdown(); err != nil {
		t.Errorf("Shutdown before Start: %v", err)
	}
	if err := c.Start(context.Background()); err == nil {
		t.Errorf("Start after Shutdown succeeded")
	}
}

func TestNewErrors(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	if _, err := New(logger, nil, nil); err == nil {
		t.Error("New(nil config) succeeded")
	}
	missing := clusterConfig(t, "  node_name: a\n  secret_key_file: /nonexistent/gossip.key\n")
	if _, err := New(logger, nil, missing); err == nil || !strings.HasPrefix(err.Error(), "cluster: gossip key: stat /nonexistent/gossip.key") {
		t.Errorf("missing key file: %v", err)
	}
	reg := prometheus.NewRegistry()
	cfg := clusterConfig(t, "  node_name: a\n")
	if _, err := New(logger, reg, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := New(logger, reg, cfg); err == nil || !strings.HasPrefix(err.Error(), "cluster: registering metrics: ") {
		t.Errorf("second registration: %v, want an error (not a panic)", err)
	}
}

func TestStartBindError(t *testing.T) {
	a := startNode(t, "a", nil, "")
	b := newNode(t, "b", nil, "", withMemberlistConfig(func(mc *memberlist.Config) {
		mc.BindPort = a.Port()
	}))
	err := b.Start(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "cluster: starting memberlist on 127.0.0.1:") {
		t.Errorf("Start on a taken port: %v", err)
	}
}

// BenchmarkFailureDetection measures how long two directors take to declare a crashed third
// one dead with the default timings (reported as ms/detect). Run with -benchtime=5x.
func BenchmarkFailureDetection(b *testing.B) {
	var total time.Duration
	for i := 0; i < b.N; i++ {
		detect := runCrash(b)
		total += detect
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/detect")
}

func runCrash(b *testing.B) time.Duration {
	b.Helper()
	logger := slog.New(slog.DiscardHandler)
	var nodes []*Cluster
	defer func() {
		for _, n := range nodes {
			_ = n.Shutdown()
		}
	}()
	var join []string
	for _, name := range []string{"a", "b", "c"} {
		cfg, err := config.Parse("bench.yaml", []byte("cluster:\n  bind_address: 127.0.0.1\n  node_name: "+name+"\n"))
		if err != nil {
			b.Fatal(err)
		}
		cfg.Cluster.BindPort = 0
		cfg.Cluster.Join = join
		c, err := New(logger, nil, cfg.Cluster, WithEligible(true))
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, c)
		join = []string{fmt.Sprintf("127.0.0.1:%d", nodes[0].Port())}
	}
	deadline := time.Now().Add(10 * time.Second)
	for LiveCount(nodes[0].Members()) != 3 || LiveCount(nodes[1].Members()) != 3 {
		if time.Now().After(deadline) {
			b.Fatal("cluster did not form")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // let the probe schedules settle
	start := time.Now()
	_ = nodes[2].Shutdown()
	for {
		ma, _ := find(nodes[0].Members(), "c")
		mb, _ := find(nodes[1].Members(), "c")
		if ma.State == StateDead && mb.State == StateDead {
			return time.Since(start)
		}
		if time.Since(start) > 10*time.Second {
			b.Fatal("crash not detected in 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestClusterCrashedMemberRestarts(t *testing.T) {
	a := startNode(t, "a", nil, "")
	c := startNode(t, "c", []string{a.addr()}, "")
	waitFor(t, 5*time.Second, "a to see c", func() bool { return liveNames(a) == "a,c" })
	port := c.Port()
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a to see c dead", func() bool { m, _ := a.member("c"); return m.State == StateDead })
	// The director comes back under the same name and address: it must be alive again, and
	// own exactly the keys it owned before.
	c2 := newNode(t, "c", []string{a.addr()}, "", withMemberlistConfig(func(mc *memberlist.Config) {
		mc.BindPort, mc.AdvertisePort = port, port
	}))
	if err := c2.Start(context.Background()); err != nil {
		t.Skipf("port %d was taken meanwhile: %v", port, err)
	}
	waitFor(t, 5*time.Second, "a to see c alive again", func() bool { return liveNames(a) == "a,c" && liveNames(c2) == "a,c" })
	want := []Member{mem("a", 100), mem("c", 100)}
	var snap []Member
	waitFor(t, 5*time.Second, "a to see a,c live", func() bool { snap = a.Members(); return names(snap) == "a,c" })
	for _, k := range keys(200) {
		w, _ := Owner(want, k)
		if got, _ := Owner(snap, k); got != w {
			t.Fatalf("key %s: owner %s after c came back, want %s", k, got, w)
		}
	}
}
