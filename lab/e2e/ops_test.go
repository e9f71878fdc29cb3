//go:build lab

package e2e

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metricSample is one sample line of the Prometheus text format.
type metricSample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

var (
	sampleRe = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)`)
	labelRe  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// parseMetrics parses the Prometheus text exposition format (samples only).
func parseMetrics(text string) []metricSample {
	var out []metricSample
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			continue
		}
		s := metricSample{Name: m[1], Labels: map[string]string{}, Value: v}
		for _, l := range labelRe.FindAllStringSubmatch(m[2], -1) {
			s.Labels[l[1]] = l[2]
		}
		out = append(out, s)
	}
	return out
}

// TestOpsDrainStatusMetrics (issue 9): `lvs-director drain` under client load sets weight 0,
// lets the open connection finish, then removes the real server, with no failed request;
// `undrain` brings it back; `status` (table and JSON) shows health with reasons, the drain,
// the BGP neighbor and the cluster; the metrics endpoint has the real-server and reconcile
// series after real traffic.
func TestOpsDrainStatusMetrics(t *testing.T) {
	bl := newBGPLab(t, "rs1", "rs2", "rs3")
	all := map[int]int{0: 1, 1: 1, 2: 1}
	clusterSection := "cluster:\n  node_name: d1\n  bind_address: 10.100.1.1\n  join: [\"10.100.1.1:7946\"]\n"
	bl.d = StartDirector(t, bl.director, bl.webConfig("rr", all, healthCheck+"    failover: active-standby\n")+bgpSection+clusterSection)
	sock := bl.d.Socket
	cli := func(args ...string) string {
		t.Helper()
		argv := []string{"lvs-director", args[0], "--socket", sock}
		return bl.director.MustRun(append(argv, args[1:]...)...)
	}
	bl.waitIPVS(t, 10*time.Second, "every real server up", func(svcs []IPVSService) bool { return len(weights(svcs, bl.vipPort())) == 3 })
	bl.waitRoute(t, 20*time.Second, "10.100.1.1")

	// A slow request (10 s) on one real server, before any other traffic: that is the one to drain.
	slow := bl.user.Start("labnode", "client", "--url", bl.url("/slow?ms=10000"), "--timeout", "15s")
	var holder string
	bl.waitIPVS(t, 10*time.Second, "the slow connection active", func(svcs []IPVSService) bool {
		if s := findSvc(svcs, bl.vipPort()); s != nil {
			for _, d := range s.Dests {
				if d.ActiveConn > 0 {
					holder = d.Addr
				}
			}
		}
		return holder != ""
	})
	holderName := ""
	for i := range bl.rs {
		if bl.rsAddrPort(i) == holder {
			holderName = bl.names[i]
		}
	}
	pr := StartProber(t, bl.user, bl.vipPort(), 30*time.Millisecond, 2*time.Second)
	time.Sleep(300 * time.Millisecond)

	tDrain := time.Now()
	if out := cli("drain", "web", holder); !strings.Contains(out, "draining "+holder) {
		bl.d.Fatalf("drain output: %q", out)
	}
	tZero := bl.pollWeights(t, 5*time.Second, holder+" at weight 0 while its connection lasts",
		map[string]int{bl.rsAddrPort(0): 1, bl.rsAddrPort(1): 1, bl.rsAddrPort(2): 1, holder: 0})
	t.Logf("drain: %s (%s) at weight 0 after %v", holder, holderName, tZero.Sub(tDrain).Round(time.Millisecond))
	// Status while draining: JSON and table.
	st := bl.d.Status()
	var drainSeen string
	for _, r := range st.Services[0].RealServers {
		if r.Address == holder {
			drainSeen = r.Drain
		}
	}
	if drainSeen != "operator" {
		bl.d.Fatalf("status --json while drained: want drain \"operator\" for %s, got %+v", holder, st.Services[0].RealServers)
	}
	table := cli("status")
	if !regexp.MustCompile(regexp.QuoteMeta(holder) + `\s+0\s+1\s.*operator`).MatchString(table) {
		bl.d.Fatalf("status table while drained: want %s with kernel weight 0, config 1 and \"operator\":\n%s", holder, table)
	}
	out, err := slow.Wait(15 * time.Second)
	var s ClientSummary
	if err != nil || json.Unmarshal([]byte(strings.TrimSpace(out)), &s) != nil || s.OK != 1 || s.ByName[holderName] != 1 {
		bl.d.Fatalf("the slow request through the drain: want it answered by %s, got %v: %s", holderName, err, out)
	}
	tEnd := time.Now()
	tRemoved := bl.pollWeights(t, 10*time.Second, holder+" removed after its connection ended", func() map[string]int {
		m := bl.weightsOf(all)
		delete(m, holder)
		return m
	}())
	t.Logf("drain: slow request finished after %v; %s removed %v later", tEnd.Sub(tDrain).Round(time.Millisecond), holder, tRemoved.Sub(tEnd).Round(time.Millisecond))
	w, after := pr.Window(tDrain, time.Now()), pr.Window(tZero, time.Now())
	if w.Failed != 0 || after.ByName[holderName] != 0 || after.OK == 0 {
		bl.d.Fatalf("client during the drain: want no failure and no new request to %s once it showed weight 0, got %s (after weight 0: %s)", holderName, w, after)
	}

	// Undrain.
	if out := cli("undrain", "web", holder); !strings.Contains(out, "undrained "+holder) {
		bl.d.Fatalf("undrain output: %q", out)
	}
	tUndrain := time.Now()
	tBack := bl.pollWeights(t, 5*time.Second, holder+" back", bl.weightsOf(all))
	time.Sleep(time.Second)
	if w := pr.Window(tUndrain, time.Now()); w.Failed != 0 || w.ByName[holderName] == 0 {
		bl.d.Fatalf("after undrain: want answers from %s and no failure, got %s", holderName, w)
	}
	t.Logf("undrain: back at weight 1 after %v; client over drain+undrain: %s", tBack.Sub(tUndrain).Round(time.Millisecond), pr.Window(tDrain, time.Now()))

	// A real server down, for the health reasons in status.
	down := 2
	if bl.rsAddrPort(down) == holder {
		down = 1
	}
	bl.stopServer(down)
	bl.waitIPVS(t, 10*time.Second, "the stopped real server removed", func(svcs []IPVSService) bool {
		_, ok := weights(svcs, bl.vipPort())[bl.rsAddrPort(down)]
		return !ok
	})
	if w := pr.Stop(); len(w) == 0 {
		t.Fatal("no probes")
	}
	jsonOut := cli("status", "--json")
	var rep struct {
		Services []struct {
			Name, Announce string
			Role           string `json:"cluster_role"`
			Healthy        bool
			RealServers    []struct{ Address, Health, Reason, Drain string } `json:"real_servers"`
		}
		Extensions struct {
			BGP struct {
				Neighbors []struct {
					Address, State string
				}
				Routes []string
			}
			Cluster struct {
				Self    string
				Quorum  bool
				Members []struct{ Name, State string }
			}
		}
	}
	if err := json.Unmarshal([]byte(jsonOut), &rep); err != nil || len(rep.Services) != 1 {
		bl.d.Fatalf("status --json: %v\n%s", err, jsonOut)
	}
	sv := rep.Services[0]
	healthOK := true
	for _, r := range sv.RealServers {
		want := "up"
		if r.Address == bl.rsAddrPort(down) {
			want = "down"
			healthOK = healthOK && strings.Contains(r.Reason, "connection refused")
		}
		healthOK = healthOK && r.Health == want && r.Drain == ""
	}
	bgpExt, clusterExt := rep.Extensions.BGP, rep.Extensions.Cluster
	if !healthOK || !sv.Healthy || sv.Announce != "announced" || sv.Role != "owner" ||
		len(bgpExt.Neighbors) != 1 || bgpExt.Neighbors[0].Address != "10.100.1.2" || bgpExt.Neighbors[0].State != "established" ||
		len(bgpExt.Routes) != 1 || !strings.Contains(bgpExt.Routes[0], bl.vipPrefix()) ||
		clusterExt.Self != "d1" || !clusterExt.Quorum || len(clusterExt.Members) != 1 || clusterExt.Members[0].State != "alive" {
		bl.d.Fatalf("status --json: want %s down (connection refused), the others up and undrained, healthy, announced, owner, "+
			"one established neighbor 10.100.1.2 with the VIP route, cluster self d1 alone and alive; got:\n%s", bl.rsAddrPort(down), jsonOut)
	}
	table = cli("status")
	for _, want := range []string{"down (connection refused)", "up (http status 200)", "announced", "cluster role owner", "established", "d1"} {
		if !strings.Contains(table, want) {
			bl.d.Fatalf("status table lacks %q:\n%s", want, table)
		}
	}
	t.Logf("status table:\n%s", indent(table))

	// Metrics after real traffic.
	text := bl.director.MustRun("busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:9813/metrics")
	samples := parseMetrics(text)
	byName := map[string][]metricSample{}
	for _, s := range samples {
		byName[s.Name] = append(byName[s.Name], s)
	}
	up := map[string]float64{}
	for _, s := range byName["lvs_director_realserver_up"] {
		if s.Labels["service"] == "web" {
			up[s.Labels["real_server"]] = s.Value
		}
	}
	wantUp := map[string]float64{}
	for i := range bl.rs {
		wantUp[bl.rsAddrPort(i)] = 1
	}
	wantUp[bl.rsAddrPort(down)] = 0
	if fmt.Sprint(up) != fmt.Sprint(wantUp) {
		bl.d.Fatalf("lvs_director_realserver_up{service=\"web\"}: want %v, got %v", wantUp, up)
	}
	var ops float64
	kinds := map[string]float64{}
	for _, s := range byName["lvs_director_reconcile_operations_total"] {
		ops += s.Value
		kinds[s.Labels["kind"]+"/"+s.Labels["result"]] += s.Value
	}
	// At least: add-vip, add-service, 3 add-dest, the drain's update + delete, the undrain's
	// add, the health removal.
	if ops < 9 {
		bl.d.Fatalf("lvs_director_reconcile_operations_total: want at least 9 operations in all, got %v (%v)", ops, kinds)
	}
	t.Logf("reconcile operations by kind/result: %v", kinds)
	for name, want := range map[string]float64{"lvs_director_bgp_routes_announced": 1} {
		if s := byName[name]; len(s) != 1 || s[0].Value != want {
			bl.d.Fatalf("%s: want %v, got %+v", name, want, s)
		}
	}
	// Per-real-server IPVS traffic counters (connections, packets, bytes): report what exists.
	var names []string
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	var ipvs []string
	for _, n := range names {
		if strings.Contains(n, "connection") || strings.Contains(n, "ipvs") || strings.Contains(n, "_bytes") || strings.Contains(n, "packets") {
			ipvs = append(ipvs, n)
		}
	}
	var own []string
	for _, n := range names {
		if strings.HasPrefix(n, "lvs_director_") {
			own = append(own, n)
		}
	}
	t.Logf("lvs_director_* series: %s", strings.Join(own, " "))
	if len(ipvs) == 0 {
		t.Logf("MISSING: no per-real-server IPVS connection/packet/byte series (e.g. lvs_director_realserver_connections_total, lvs_director_realserver_active_connections)")
	} else {
		t.Logf("IPVS traffic series: %s", strings.Join(ipvs, " "))
	}
}
