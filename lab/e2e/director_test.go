//go:build lab

package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// directorLab is the NAT topology with the director under test in the director namespace.
type directorLab struct {
	*natTopology
	lab *Lab
	d   *Director
}

// rsAddrPort is real server i's address:8080.
func (dl *directorLab) rsAddrPort(i int) string { return net.JoinHostPort(dl.rsAddr[i], "8080") }

// vipPort is the VIP's address:80.
func (dl *directorLab) vipPort() string { return net.JoinHostPort(dl.vip, "80") }

func (dl *directorLab) url(path string) string { return "http://" + dl.vipPort() + path }

// realServers renders YAML flow items for real servers by index with weights.
func (dl *directorLab) realServers(weights map[int]int) string {
	var b strings.Builder
	for i := range dl.rs {
		if w, ok := weights[i]; ok {
			fmt.Fprintf(&b, "      - {address: %q, port: 8080, weight: %d}\n", dl.rsAddr[i], w)
		}
	}
	return b.String()
}

const directorHead = `director:
  interface: lvs0
  sync_period: 2s
  min_sync_period: 100ms
  drain_timeout: %s
  exclude_cidrs: [10.255.0.0/16, "2001:db8:ffff::/48"]
api: {socket: "%%SOCK%%", metrics_listen: "127.0.0.1:9813"}
`

// webConfig is a config with one service "web" on the VIP:80 over the given real servers.
func (dl *directorLab) webConfig(sched string, weights map[int]int, extra string) string {
	return fmt.Sprintf(directorHead, "20s") + fmt.Sprintf(`services:
  - name: web
    vip: %q
    port: 80
    scheduler: %s
%s    real_servers:
%s`, dl.vip, sched, extra, dl.realServers(weights))
}

// newDirectorLab builds the topology, starts the real servers' HTTP servers and waits for them.
func newDirectorLab(t *testing.T, v6 bool, nrs int) *directorLab {
	t.Helper()
	l := New(t)
	NeedLabnode(t)
	NeedDirector(t)
	tp := buildTopology(t, l, v6, nrs, false)
	dl := &directorLab{natTopology: tp, lab: l}
	for i, rs := range tp.rs {
		rs.Start("labnode", "serve", "--name", fmt.Sprintf("rs%d", i+1), "--listen", dl.rsAddrPort(i))
	}
	for i := range tp.rs {
		url := "http://" + dl.rsAddrPort(i) + "/"
		want := fmt.Sprintf("rs%d", i+1)
		Eventually(t, 10*time.Second, 100*time.Millisecond, want+" to answer on "+url, func() (bool, string) {
			out, err := tp.director.Exec("labnode", "client", "--url", url, "--timeout", "1s")
			return err == nil && strings.Contains(out, `"`+want+`":1`), out
		})
	}
	return dl
}

func (dl *directorLab) requests(t *testing.T, n int) ClientSummary {
	t.Helper()
	return Labnode(t, dl.client, "client", "--url", dl.url("/"), "--count", strconv.Itoa(n), "--timeout", "2s")
}

// wantSpread asserts an exact spread of n requests.
func (dl *directorLab) wantSpread(t *testing.T, n int, want map[string]int) {
	t.Helper()
	s := dl.requests(t, n)
	if s.OK != n || s.Failed != 0 || !reflect.DeepEqual(s.ByName, want) {
		dl.d.Fatalf("%d requests through %s: want by_name=%v and no failure, got ok=%d failed=%d by_name=%v errors=%q\nIPVS:\n%s",
			n, dl.vipPort(), want, s.OK, s.Failed, s.ByName, s.Errors, FormatServices(dl.director.IPVS()))
	}
}

// waitIPVS waits until the director namespace's IPVS table satisfies cond.
// waitHolder waits until one real server of the web service shows an active connection in
// streak reads of the kernel table in a row (pause before each) and returns its address: the
// one holding a test's long-lived connection.
func (dl *directorLab) waitHolder(t *testing.T, timeout time.Duration, streak int, pause time.Duration) string {
	t.Helper()
	var holder string
	seen := map[string]int{}
	dl.waitIPVS(t, timeout, "the long-lived connection to show as active", func(svcs []IPVSService) bool {
		time.Sleep(pause)
		if s := findSvc(svcs, dl.vipPort()); s != nil {
			for _, d := range s.Dests {
				if d.ActiveConn > 0 {
					seen[d.Addr]++
				} else {
					seen[d.Addr] = 0
				}
				if seen[d.Addr] >= streak {
					holder = d.Addr
				}
			}
		}
		return holder != ""
	})
	return holder
}

func (dl *directorLab) waitIPVS(t *testing.T, timeout time.Duration, what string, cond func([]IPVSService) bool) []IPVSService {
	t.Helper()
	var last []IPVSService
	deadline := time.Now().Add(timeout)
	for {
		last = dl.director.IPVS()
		if cond(last) {
			return last
		}
		if time.Now().After(deadline) {
			dl.d.Fatalf("timed out after %v waiting for IPVS: %s; ipvsadm -Ln shows:\n%s", timeout, what, FormatServices(last))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tableShape is the IPVS table without its traffic counters.
func tableShape(svcs []IPVSService) string {
	var b strings.Builder
	for _, s := range svcs {
		fmt.Fprintf(&b, "%s %s %s %v\n", s.Proto, s.Addr, s.Scheduler, s.Flags)
		for _, d := range s.Dests {
			fmt.Fprintf(&b, "  -> %s %s %d\n", d.Addr, d.Forward, d.Weight)
		}
	}
	return b.String()
}

func findSvc(svcs []IPVSService, addr string) *IPVSService {
	for i := range svcs {
		if svcs[i].Addr == addr {
			return &svcs[i]
		}
	}
	return nil
}

// weights returns real server address -> weight of the service at addr (nil if absent).
func weights(svcs []IPVSService, addr string) map[string]int {
	s := findSvc(svcs, addr)
	if s == nil {
		return nil
	}
	m := map[string]int{}
	for _, d := range s.Dests {
		m[d.Addr] = d.Weight
	}
	return m
}

func testRoundRobin(t *testing.T, v6 bool) {
	dl := newDirectorLab(t, v6, 3)
	dl.d = StartDirector(t, dl.director, dl.webConfig("rr", map[int]int{0: 1, 1: 1, 2: 1}, ""))

	svcs := dl.director.IPVS()
	s := findSvc(svcs, dl.vipPort())
	if len(svcs) != 1 || s == nil || s.Scheduler != "rr" || len(s.Dests) != 3 {
		dl.d.Fatalf("ipvsadm -Ln: want one rr service %s with 3 real servers, got:\n%s", dl.vipPort(), FormatServices(svcs))
	}
	for i := range dl.rs {
		d := s.Dest(dl.rsAddrPort(i))
		if d == nil || d.Forward != "Masq" || d.Weight != 1 {
			dl.d.Fatalf("ipvsadm -Ln: want %s Masq weight 1, got:\n%s", dl.rsAddrPort(i), FormatServices(svcs))
		}
	}
	if out := dl.director.MustRun("ip", "-o", "addr", "show", "dev", "lvs0"); !strings.Contains(out, dl.vip) {
		dl.d.Fatalf("VIP %s not on lvs0: %s", dl.vip, out)
	}
	dl.wantSpread(t, 30, map[string]int{"rs1": 10, "rs2": 10, "rs3": 10})

	// wrr 1:2:3 spreads proportionally.
	dl.d.WriteConfig(dl.webConfig("wrr", map[int]int{0: 1, 1: 2, 2: 3}, ""))
	dl.waitIPVS(t, 10*time.Second, "wrr with weights 1:2:3", func(svcs []IPVSService) bool {
		s := findSvc(svcs, dl.vipPort())
		return s != nil && s.Scheduler == "wrr" && reflect.DeepEqual(weights(svcs, dl.vipPort()),
			map[string]int{dl.rsAddrPort(0): 1, dl.rsAddrPort(1): 2, dl.rsAddrPort(2): 3})
	})
	dl.wantSpread(t, 60, map[string]int{"rs1": 10, "rs2": 20, "rs3": 30})

	// plan agrees that nothing is left to do.
	if out := dl.director.MustRun("lvs-director", "plan", "--config", dl.d.Config); !strings.Contains(out, "No changes") {
		dl.d.Fatalf("plan after convergence: %s", out)
	}
}

// TestDirectorRoundRobin: VIP:80 -> real servers :8080, rr spreads evenly, wrr 1:2:3 proportionally.
func TestDirectorRoundRobin(t *testing.T) { testRoundRobin(t, false) }

// TestDirectorIPv6: the same with an IPv6 VIP and IPv6 real servers.
func TestDirectorIPv6(t *testing.T) { testRoundRobin(t, true) }

// TestDirectorEditsUnderLoad: add a real server, remove one that holds a long-lived connection
// (weight 0 while it lasts, then removal), change the scheduler; a client runs throughout and
// sees no failure.
func TestDirectorEditsUnderLoad(t *testing.T) {
	dl := newDirectorLab(t, false, 3)
	dl.d = StartDirector(t, dl.director, dl.webConfig("rr", map[int]int{0: 1, 1: 1}, ""))
	bg := StartClient(t, dl.client, dl.url("/"), 20*time.Millisecond)

	// Add rs3.
	dl.d.WriteConfig(dl.webConfig("rr", map[int]int{0: 1, 1: 1, 2: 1}, ""))
	dl.waitIPVS(t, 10*time.Second, "rs3 added", func(svcs []IPVSService) bool { return len(weights(svcs, dl.vipPort())) == 3 })

	// A long-lived connection: find which real server holds it (active in 5 samples in a row:
	// the background client's short requests come and go).
	hold := dl.client.Start("labnode", "client", "--url", dl.url("/hold"), "--timeout", "120s")
	holder := dl.waitHolder(t, 15*time.Second, 5, 150*time.Millisecond)
	keep := map[int]int{}
	for i := range dl.rs {
		if dl.rsAddrPort(i) != holder {
			keep[i] = 1
		}
	}
	dl.d.WriteConfig(dl.webConfig("rr", keep, ""))
	dl.waitIPVS(t, 10*time.Second, holder+" draining at weight 0", func(svcs []IPVSService) bool {
		w, ok := weights(svcs, dl.vipPort())[holder]
		return ok && w == 0
	})
	time.Sleep(3 * time.Second) // more than a sync period: still there while the connection lasts
	if w, ok := weights(dl.director.IPVS(), dl.vipPort())[holder]; !ok || w != 0 {
		dl.d.Fatalf("%s removed while its connection was open (present=%v weight=%d)", holder, ok, w)
	}
	hold.Stop()
	dl.waitIPVS(t, 10*time.Second, holder+" removed after its connection ended", func(svcs []IPVSService) bool {
		_, ok := weights(svcs, dl.vipPort())[holder]
		return !ok && len(weights(svcs, dl.vipPort())) == 2
	})

	// Change the scheduler.
	dl.d.WriteConfig(dl.webConfig("wlc", keep, ""))
	dl.waitIPVS(t, 10*time.Second, "scheduler wlc", func(svcs []IPVSService) bool {
		s := findSvc(svcs, dl.vipPort())
		return s != nil && s.Scheduler == "wlc"
	})
	time.Sleep(500 * time.Millisecond)
	sum := bg.Stop()
	if sum.Failed != 0 || sum.OK < 50 {
		dl.d.Fatalf("client during the edits: want no failure (and at least 50 requests), got ok=%d failed=%d errors=%q", sum.OK, sum.Failed, sum.Errors)
	}
	t.Logf("client during edits: %d requests, 0 failed, by real server %v", sum.OK, sum.ByName)
}

// TestDirectorRestartHitless: a restart with an unchanged config changes nothing in the kernel
// and the client sees no failure.
func TestDirectorRestartHitless(t *testing.T) {
	dl := newDirectorLab(t, false, 3)
	dl.d = StartDirector(t, dl.director, dl.webConfig("rr", map[int]int{0: 1, 1: 2, 2: 3}, ""))
	before := tableShape(dl.director.IPVS())
	bg := StartClient(t, dl.client, dl.url("/"), 20*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	dl.d.Stop()
	if !strings.Contains(dl.d.Log(), "kernel state stays in place") {
		dl.d.Fatalf("no stop message")
	}
	if after := tableShape(dl.director.IPVS()); after != before {
		dl.d.Fatalf("SIGTERM changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	time.Sleep(500 * time.Millisecond) // serving without a daemon
	dl.d.Start()
	time.Sleep(3 * time.Second) // past a full sync period
	log := dl.d.Log()
	if strings.Contains(log, "msg=applied") || strings.Contains(log, "sync applied") {
		dl.d.Fatalf("restart with an unchanged config changed the kernel")
	}
	if after := tableShape(dl.director.IPVS()); after != before {
		dl.d.Fatalf("restart changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	sum := bg.Stop()
	if sum.Failed != 0 || sum.OK < 50 {
		dl.d.Fatalf("client across the restart: want no failure, got ok=%d failed=%d errors=%q", sum.OK, sum.Failed, sum.Errors)
	}
	t.Logf("client across the restart: %d requests, 0 failed", sum.OK)
}

// TestDirectorRepairsDrift: `ipvsadm -C`, a deleted VIP and the interface set down are repaired
// within sync_period. Creating the interface asks the kernel for no module: looking a missing
// interface up by ioctl makes the kernel run modprobe for "netdev-<name>" (0.14-0.22 s of a cold
// start in this VM); a modprobe that logs its arguments sees the director ask for nothing of
// the kind, and sees a lookup by ioctl ask for it (so the check can fail).
func TestDirectorRepairsDrift(t *testing.T) {
	dl := newDirectorLab(t, false, 2)
	modprobeLog := logModprobe(t)
	ioctlIndex(t, dl.director, "zzctl0") // the control: must ask for netdev-zzctl0
	dl.d = StartDirector(t, dl.director, dl.webConfig("rr", map[int]int{0: 1, 1: 1}, ""))
	asked := readFile(t, modprobeLog)
	if !strings.Contains(asked, "netdev-zzctl0") {
		t.Fatalf("the logging modprobe did not see the control lookup by ioctl; it saw:\n%s", asked)
	}
	if strings.Contains(asked, "netdev-lvs0") {
		dl.d.Fatalf("starting the director made the kernel run modprobe for its interface:\n%s", asked)
	}
	if out := dl.director.MustRun("ip", "-d", "-o", "link", "show", "dev", "lvs0"); !strings.Contains(out, ",UP") || !strings.Contains(out, "dummy") {
		dl.d.Fatalf("lvs0 is not an up dummy interface: %s", out)
	}
	want := weights(dl.director.IPVS(), dl.vipPort())
	dl.director.MustRun("ipvsadm", "-C")
	dl.director.MustRun("ip", "addr", "del", dl.vip+"/32", "dev", "lvs0")
	dl.director.MustRun("ip", "link", "set", "dev", "lvs0", "down")
	start := time.Now()
	dl.waitIPVS(t, 5*time.Second, "the table repaired", func(svcs []IPVSService) bool {
		return reflect.DeepEqual(weights(svcs, dl.vipPort()), want)
	})
	Eventually(t, 5*time.Second, 100*time.Millisecond, "the VIP back on lvs0, and lvs0 up", func() (bool, string) {
		addrs := dl.director.MustRun("ip", "-o", "addr", "show", "dev", "lvs0")
		link := dl.director.MustRun("ip", "-o", "link", "show", "dev", "lvs0")
		return strings.Contains(addrs, dl.vip+"/32") && strings.Contains(link, ",UP"), addrs + link
	})
	t.Logf("drift repaired in %v (sync_period 2s)", time.Since(start).Round(10*time.Millisecond))
	dl.wantSpread(t, 10, map[string]int{"rs1": 5, "rs2": 5})
}

// logModprobe makes the kernel's modprobe (kernel.modprobe) a script that logs its arguments
// to the returned file and runs the real one, until the test ends.
func logModprobe(t *testing.T) string {
	t.Helper()
	const knob = "/proc/sys/kernel/modprobe"
	old := strings.TrimSpace(readFile(t, knob))
	dir := t.TempDir()
	log, script := filepath.Join(dir, "asked"), filepath.Join(dir, "modprobe")
	body := fmt.Sprintf("#!/bin/sh\necho \"$*\" >> %s\nexec %s \"$@\"\n", log, old)
	if err := os.WriteFile(log, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(knob, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(knob, []byte(old), 0o644); err != nil {
			t.Errorf("restoring %s: %v", knob, err)
		}
	})
	return log
}

// ioctlIndex looks the interface name up with the SIOCGIFINDEX ioctl in ns (the kernel's
// dev_load path: it asks for the module netdev-<name> when the name is unknown).
func ioctlIndex(t *testing.T, ns *NS, name string) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		f, err := os.Open("/run/netns/" + ns.Name)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns.Name, err)
			return
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			errc <- err
			return
		}
		errc <- unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr)
	}()
	if err := <-errc; !errors.Is(err, unix.ENODEV) {
		t.Fatalf("SIOCGIFINDEX %s in %s: want ENODEV, got %v", name, ns.Name, err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDirectorLeavesForeignRules: a hand-made virtual service and one inside exclude_cidrs
// (even with its VIP on lvs0) survive reloads, the removal of every service, and cleanup.
func TestDirectorLeavesForeignRules(t *testing.T) {
	dl := newDirectorLab(t, false, 2)
	d := dl.director
	dl.d = StartDirector(t, d, dl.webConfig("rr", map[int]int{0: 1, 1: 1}, ""))
	d.MustRun("ipvsadm", "-A", "-t", "10.100.0.99:80", "-s", "wlc")
	d.MustRun("ipvsadm", "-a", "-t", "10.100.0.99:80", "-r", dl.rsAddrPort(0), "-m", "-w", "7")
	d.MustRun("ip", "addr", "add", "10.255.0.5/32", "dev", "lvs0")
	d.MustRun("ipvsadm", "-A", "-u", "10.255.0.5:53", "-s", "sh")
	d.MustRun("ipvsadm", "-a", "-u", "10.255.0.5:53", "-r", dl.rsAddr[1]+":53", "-m", "-w", "3")
	foreign := func() string {
		var b strings.Builder
		for _, s := range d.IPVS() {
			if s.Addr != dl.vipPort() {
				b.WriteString(s.String())
			}
		}
		return b.String()
	}
	before := foreign()
	if !strings.Contains(before, "10.100.0.99:80") || !strings.Contains(before, "10.255.0.5:53") {
		t.Fatalf("foreign services not set up:\n%s", before)
	}
	check := func(step string) {
		t.Helper()
		if got := foreign(); got != before {
			dl.d.Fatalf("after %s the foreign services changed:\nbefore:\n%s\nafter:\n%s", step, before, got)
		}
		if out := d.MustRun("ip", "-o", "addr", "show", "dev", "lvs0"); !strings.Contains(out, "10.255.0.5/32") {
			dl.d.Fatalf("after %s the excluded VIP left lvs0: %s", step, out)
		}
	}
	dl.d.WriteConfig(dl.webConfig("wrr", map[int]int{0: 2, 1: 1}, ""))
	dl.waitIPVS(t, 10*time.Second, "wrr applied", func(svcs []IPVSService) bool {
		s := findSvc(svcs, dl.vipPort())
		return s != nil && s.Scheduler == "wrr"
	})
	time.Sleep(2500 * time.Millisecond) // a periodic sync too
	check("a reload")
	dl.d.WriteConfig(fmt.Sprintf(directorHead, "20s") + "services: []\n")
	dl.waitIPVS(t, 10*time.Second, "web removed", func(svcs []IPVSService) bool { return findSvc(svcs, dl.vipPort()) == nil })
	check("removing every service")
	dl.d.Stop()
	dl.d.WriteConfig(dl.webConfig("rr", map[int]int{0: 1, 1: 1}, ""))
	dl.d.Start()
	dl.waitIPVS(t, 10*time.Second, "web back", func(svcs []IPVSService) bool { return findSvc(svcs, dl.vipPort()) != nil })
	dl.d.Stop()
	out := d.MustRun("lvs-director", "cleanup", "--config", dl.d.Config)
	if !strings.Contains(out, "del-service tcp/"+dl.vipPort()) {
		t.Fatalf("cleanup output: %s", out)
	}
	if findSvc(d.IPVS(), dl.vipPort()) != nil {
		t.Fatalf("cleanup left the director's service:\n%s", FormatServices(d.IPVS()))
	}
	check("cleanup")
}

// TestDirectorInvalidReload: a bad file on reload keeps the old config serving and the error
// (file, line, field) is logged and shown in status.
func TestDirectorInvalidReload(t *testing.T) {
	dl := newDirectorLab(t, false, 2)
	dl.d = StartDirector(t, dl.director, dl.webConfig("rr", map[int]int{0: 1, 1: 1}, ""))
	good := dl.director.MustRun("ipvsadm", "-Ln")
	bad := dl.webConfig("rr", map[int]int{0: 1, 1: 1}, "    sheduler: wrr\n")
	dl.d.WriteConfig(bad)
	dl.d.Reload()
	wantErr := dl.d.Config + ":13: services[0].sheduler: unknown field \"sheduler\""
	Eventually(t, 10*time.Second, 100*time.Millisecond, "the reload error in status", func() (bool, string) {
		st := dl.d.Status()
		return !st.Reload.OK && len(st.Reload.Errors) == 1 && st.Reload.Errors[0] == wantErr, fmt.Sprintf("%+v", st.Reload)
	})
	if !strings.Contains(dl.d.Log(), "keeping the running config") || !strings.Contains(dl.d.Log(), "sheduler") {
		dl.d.Fatalf("the error is not in the log")
	}
	if got := dl.director.MustRun("ipvsadm", "-Ln"); got != good {
		dl.d.Fatalf("a bad reload changed the kernel:\n%s\nwas:\n%s", got, good)
	}
	dl.wantSpread(t, 10, map[string]int{"rs1": 5, "rs2": 5})
	metrics := dl.director.MustRun("busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:9813/metrics")
	for _, want := range []string{"lvs_director_config_last_reload_successful 0", `lvs_director_config_reloads_total{result="error"} `} {
		if !strings.Contains(metrics, want) {
			dl.d.Fatalf("metrics lack %q:\n%s", want, metrics)
		}
	}
}

// TestDirectorFullNAT: real servers with no route back through the director still answer
// when the service has full_nat.
func TestDirectorFullNAT(t *testing.T) {
	dl := newDirectorLab(t, false, 2)
	for _, rs := range dl.rs {
		rs.IP("route", "del", "default")
	}
	dl.d = StartDirector(t, dl.director, dl.webConfig("rr", map[int]int{0: 1, 1: 1}, "    full_nat: true\n"))
	dl.wantSpread(t, 10, map[string]int{"rs1": 5, "rs2": 5})
	if out := dl.director.MustRun("nft", "list", "table", "inet", "lvs_director"); !strings.Contains(out, "masquerade") {
		dl.d.Fatalf("nft table: %s", out)
	}
	// Back to plain NAT: the table goes, and the real servers (no route back) stop answering.
	dl.d.WriteConfig(dl.webConfig("rr", map[int]int{0: 1, 1: 1}, ""))
	Eventually(t, 10*time.Second, 100*time.Millisecond, "the nft table removed", func() (bool, string) {
		out, err := dl.director.Exec("nft", "list", "tables")
		return err == nil && !strings.Contains(out, "lvs_director"), out
	})
	s := Labnode(t, dl.client, "client", "--url", dl.url("/"), "--count", "2", "--timeout", "1s")
	if s.OK != 0 {
		dl.d.Fatalf("without full NAT the real servers have no route back, yet %d requests succeeded", s.OK)
	}
}
