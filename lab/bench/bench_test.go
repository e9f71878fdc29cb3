//go:build lab

package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/lvs-director/lvs-director/director"
	"github.com/lvs-director/lvs-director/lab/e2e"
)

// The benchmark (scripts/bench-lab.sh, `make bench-lab`) runs only with LAB_BENCH=1: it takes
// minutes. It prints its results as lines "BENCH key value" and a Markdown table as lines
// "BENCHMD ..." which the script turns into docs/benchmarks.md.
//
//	LAB_BENCH_SIZES  virtual services per run (default 1000,10000), 10 real servers each
//	LAB_BENCH_REPS   repetitions of each cold start per size (default 3; the median is
//	                 reported), e.g. 3,1: three at the first size, one at the others

const realServersPerService = 10

// servicesPerVIP: the generated rule set puts 10 services (ports 8000-8009) on each VIP.
const servicesPerVIP = 10

func benchEnabled(t *testing.T) {
	t.Helper()
	if os.Getenv("LAB_BENCH") != "1" {
		t.Skip("benchmark: set LAB_BENCH=1 (scripts/bench-lab.sh does)")
	}
}

func envInts(name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// ruleSet is the generated rule set: n services with 10 real servers each.
type ruleSet struct{ n int }

func (r ruleSet) vip(i int) string {
	v := i/servicesPerVIP + 1
	return fmt.Sprintf("10.200.%d.%d", v>>8, v&255)
}

func (r ruleSet) port(i int) int { return 8000 + i%servicesPerVIP }

func (r ruleSet) vipPort(i int) string { return fmt.Sprintf("%s:%d", r.vip(i), r.port(i)) }

// rs is real server j of service i (all distinct).
func (r ruleSet) rs(i, j int) string {
	k := i*realServersPerService + j + 1
	return fmt.Sprintf("10.%d.%d.%d", 201+k>>16, k>>8&255, k&255)
}

// extraRS is the real server added by the incremental change number m.
func (r ruleSet) extraRS(m int) string { return fmt.Sprintf("10.250.0.%d", m) }

// lvsConfig renders the lvs-director config; extra adds real servers to service i.
func (r ruleSet) lvsConfig(dir string, extra map[int][]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "director:\n  interface: lvs0\n  sync_period: 300s\n  min_sync_period: 100ms\n")
	fmt.Fprintf(&b, "api: {socket: %q, metrics_listen: \"127.0.0.1:9813\"}\nservices:\n", filepath.Join(dir, "api.sock"))
	for i := 0; i < r.n; i++ {
		fmt.Fprintf(&b, "  - {name: s%d, vip: %s, port: %d, scheduler: wrr, real_servers: [", i, r.vip(i), r.port(i))
		for j := 0; j < realServersPerService; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "{address: %s, port: 8080}", r.rs(i, j))
		}
		for _, a := range extra[i] {
			fmt.Fprintf(&b, ", {address: %s, port: 8080}", a)
		}
		b.WriteString("]}\n")
	}
	return b.String()
}

// ipvsadmRules renders the same rule set for ipvsadm --restore.
func (r ruleSet) ipvsadmRules() string {
	var b strings.Builder
	for i := 0; i < r.n; i++ {
		fmt.Fprintf(&b, "-A -t %s -s wrr\n", r.vipPort(i))
		for j := 0; j < realServersPerService; j++ {
			fmt.Fprintf(&b, "-a -t %s -r %s:8080 -m -w 1\n", r.vipPort(i), r.rs(i, j))
		}
	}
	return b.String()
}

// keepalivedConfig renders the same rule set for keepalived (no health checks: a real server
// without a checker is up).
func (r ruleSet) keepalivedConfig(extra map[int][]string) string {
	var b strings.Builder
	b.WriteString("global_defs {\n  router_id bench\n  child_wait_time 600\n}\n")
	for i := 0; i < r.n; i++ {
		fmt.Fprintf(&b, "virtual_server %s %d {\n  lb_algo wrr\n  lb_kind NAT\n  protocol TCP\n", r.vip(i), r.port(i))
		rss := []string{}
		for j := 0; j < realServersPerService; j++ {
			rss = append(rss, r.rs(i, j))
		}
		rss = append(rss, extra[i]...)
		for _, a := range rss {
			fmt.Fprintf(&b, "  real_server %s 8080 {\n    weight 1\n  }\n", a)
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// daemon is a process started in a namespace (in its own process group).
type proc struct {
	t    testing.TB
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startDaemon(t testing.TB, ns *e2e.NS, logFile string, args ...string) *proc {
	t.Helper()
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	d := &proc{t: t, log: logFile, done: make(chan struct{})}
	// ip netns exec execs the program: the process is the daemon itself.
	d.cmd = exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	d.cmd.Stdout, d.cmd.Stderr = f, f
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := e2e.StartCmd(d.cmd); err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	go func() { d.cmd.Wait(); f.Close(); close(d.done) }()
	t.Cleanup(d.kill)
	return d
}

// pollTicks paces a poll of the kernel: a tick whenever the daemon writes to its log (a line
// may follow a change of the kernel: the poll then looks at once), but never sooner than
// pollGap after the last one, and a tick every interval when the log is silent. Both daemons
// get the same pacing.
//
// Each poll costs the one vCPU 2-4 ms (the bench's wake-up, two netlink requests, the answer's
// parse) that the daemon being measured does not get: with a tick every 10 ms, the polls took
// 8-63 ms of reloads that took 44-167 ms in the lab VM (and at that cost, a cold start polled
// every 20 ms gave a tenth to a fifth of the vCPU away). So the timer is slow (coldPoll,
// reloadPoll) and the log makes the poll prompt.
func (d *proc) pollTicks(t testing.TB, interval time.Duration) (tick <-chan struct{}, stop func()) {
	t.Helper()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(d.log); err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		every := time.NewTicker(interval)
		defer every.Stop()
		var last time.Time
		var gap <-chan time.Time // a logged line within pollGap of the last tick: tick at its end
		send := func() {
			select {
			case ch <- struct{}{}:
			default:
			}
			last, gap = time.Now(), nil
		}
		for {
			select {
			case <-done:
				return
			case <-w.Events:
				if wait := pollGap - time.Since(last); wait > 0 {
					if gap == nil {
						gap = time.After(wait)
					}
					continue
				}
				send()
			case <-gap:
				send()
			case <-w.Errors:
			case <-every.C:
				send()
			}
		}
	}()
	return ch, func() { close(done); w.Close() }
}

// quietGC collects the bench's own garbage and holds its collector until the returned func
// is called: around each timed part, so that the bench does not collect (on the one vCPU) the
// configs and operations it has just generated while a program is being measured.
func quietGC() (resume func()) {
	runtime.GC()
	old := debug.SetGCPercent(-1)
	return func() { debug.SetGCPercent(old) }
}

func (d *proc) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func (d *proc) signal(sig syscall.Signal) { _ = syscall.Kill(d.cmd.Process.Pid, sig) }

// kill ends the whole process group at once (parent and children).
func (d *proc) kill() {
	if d.exited() {
		return
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	<-d.done
}

func (d *proc) logTail() string {
	b, _ := os.ReadFile(d.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// pids returns the daemon's pid and its descendants'.
func (d *proc) pids() []int {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		if i := bytes.LastIndexByte(st, ')'); i > 0 {
			f := strings.Fields(string(st[i+1:]))
			if len(f) > 1 {
				parent[pid], _ = strconv.Atoi(f[1])
			}
		}
	}
	out := []int{d.cmd.Process.Pid}
	for changed := true; changed; {
		changed = false
		for pid, pp := range parent {
			if contains(out, pp) && !contains(out, pid) {
				out = append(out, pid)
				changed = true
			}
		}
	}
	return out
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// rssKB is the summed VmRSS of the daemon's processes; parts says how much of it is anonymous
// memory (heap, stacks) and how much file pages (the binary and libraries mapped).
func (d *proc) rssKB() (total int, each []int, parts string) {
	var anon, file int
	for _, pid := range d.pids() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 {
				continue
			}
			kb, _ := strconv.Atoi(f[1])
			switch f[0] {
			case "VmRSS:":
				total += kb
				each = append(each, kb)
			case "RssAnon:":
				anon += kb
			case "RssFile:":
				file += kb
			}
		}
	}
	return total, each, fmt.Sprintf("anon %d kB, file %d kB", anon, file)
}

// hasRS tells whether the kernel shows service i with n real servers, or with the real server
// addr when addr is set. It reads the one service over netlink with k (opened in the daemon's
// namespace: about a millisecond under emulation, where running ipvsadm -Ln -t costs tens of
// milliseconds of the one vCPU the daemons being measured need).
func hasRS(k *director.LinuxKernel, r ruleSet, i, n int, addr string) bool {
	key := director.ServiceKey{Protocol: director.ProtoTCP, Addr: netip.MustParseAddr(r.vip(i)), Port: uint16(r.port(i))}
	vs, found, err := k.Service(key)
	if err != nil || !found {
		return false
	}
	if addr != "" {
		want := netip.AddrPortFrom(netip.MustParseAddr(addr), 8080)
		for _, d := range vs.Dests {
			if d.Addr == want {
				return true
			}
		}
		return false
	}
	return len(vs.Dests) == n
}

// tableCount reads /proc/net/ip_vs of the namespace: services and real servers.
func tableCount(t testing.TB, ns *e2e.NS) (svcs, dests int) {
	t.Helper()
	out, err := ns.Exec("cat", "/proc/net/ip_vs")
	if err != nil {
		t.Fatalf("/proc/net/ip_vs: %v", err)
	}
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "TCP ") || strings.HasPrefix(line, "UDP "):
			svcs++
		case strings.HasPrefix(line, "  -> ") && !strings.HasPrefix(line, "  -> RemoteAddress"):
			dests++
		}
	}
	return svcs, dests
}

// waitComplete polls at each tick until the last service has all its real servers and then
// checks the whole table; it returns the time from start to the first poll that saw it complete.
func waitComplete(t testing.TB, ns *e2e.NS, k *director.LinuxKernel, r ruleSet, start time.Time, timeout time.Duration, tick <-chan struct{}, alive func() error) time.Duration {
	t.Helper()
	for {
		if hasRS(k, r, r.n-1, realServersPerService, "") {
			took := time.Since(start)
			s, d := tableCount(t, ns)
			if s == r.n && d == r.n*realServersPerService {
				return took
			}
			t.Logf("last service complete after %v but the table has %d services, %d real servers: polling the whole table", took, s, d)
			for {
				s, d := tableCount(t, ns)
				if s == r.n && d == r.n*realServersPerService {
					return time.Since(start)
				}
				if time.Since(start) > timeout {
					t.Fatalf("table incomplete after %v: %d services, %d real servers", timeout, s, d)
				}
			}
		}
		if err := alive(); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) > timeout {
			t.Fatalf("table incomplete after %v", timeout)
		}
		<-tick
	}
}

// coldPoll and reloadPoll pace the polls of the kernel that detect the end of a cold start and
// of a reload (pollTicks). The table of a cold start is polled by reading its last service
// (about a millisecond under emulation).
const (
	coldPoll   = 50 * time.Millisecond
	reloadPoll = 50 * time.Millisecond
	pollGap    = 10 * time.Millisecond // (the quickest polls follow each other)
)

// settle waits until the (single) CPU is idle, so that the kernel's cleanup of the previous
// namespace does not count against the next measurement.
func settle() {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		i0, t0 := cpuTimes()
		time.Sleep(300 * time.Millisecond)
		i1, t1 := cpuTimes()
		if t1 > t0 && float64(i1-i0)/float64(t1-t0) > 0.9 {
			return
		}
	}
}

func cpuTimes() (idle, total uint64) {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		total += n
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return idle, total
}

// freshNS creates a network namespace with lo up; dropNS (or the test's cleanup) deletes it.
// Only the namespace's name is used (Exec), so it is not registered with the e2e Lab.
func freshNS(t testing.TB, name string) *e2e.NS {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v %s", name, err, out)
	}
	t.Cleanup(func() {
		if _, err := os.Stat("/run/netns/" + name); err == nil {
			_ = exec.Command("ip", "netns", "del", name).Run()
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up in %s: %v %s", name, err, out)
	}
	return &e2e.NS{Name: name}
}

// dropNS empties IPVS of the namespace and deletes it, then waits for the CPU to settle.
func dropNS(t testing.TB, ns *e2e.NS) {
	t.Helper()
	_, _ = ns.Exec("ipvsadm", "-C")
	if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
		t.Logf("ip netns del %s: %v %s", ns.Name, err, out)
	}
	settle()
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

func secs(d time.Duration) string { return seconds(d) + " s" }

// seconds formats d in seconds, to the millisecond below a second (a reload's 50 ms goal).
func seconds(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.3f", d.Seconds())
	}
	return fmt.Sprintf("%.2f", d.Seconds())
}

func fmtDurations(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, seconds(d))
	}
	return strings.Join(s, ", ")
}

// symlinkedConfig returns dir/director.yaml, a symlink to the file real/director.yaml in a
// directory of its own: writing the real file does not wake the director's file watch (it
// watches the link's directory), so a reload happens on SIGHUP only and is timed from it.
func symlinkedConfig(t testing.TB, dir, content string) string {
	t.Helper()
	real := filepath.Join(dir, "real")
	if err := os.MkdirAll(real, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(real, "director.yaml"), content)
	link := filepath.Join(dir, "director.yaml")
	if err := os.Symlink(filepath.Join(real, "director.yaml"), link); err != nil {
		t.Fatal(err)
	}
	return link
}

// opsLogged sums ops=N of the "sync applied" lines the director logged after offset bytes.
func opsLogged(t testing.TB, log string, offset int) int {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if offset > len(b) {
		offset = len(b)
	}
	sum := 0
	for _, line := range strings.Split(string(b[offset:]), "\n") {
		if !strings.Contains(line, `msg="sync applied"`) {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "ops="); ok {
				n, _ := strconv.Atoi(v)
				sum += n
			}
		}
	}
	return sum
}

// logLines returns the lines of the log after offset that contain one of the strings.
func logLines(t testing.TB, log string, offset int, any ...string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b[min(offset, len(b)):]), "\n") {
		for _, a := range any {
			if strings.Contains(line, a) {
				out = append(out, line)
				break
			}
		}
	}
	return out
}

func logSize(log string) int {
	st, err := os.Stat(log)
	if err != nil {
		return 0
	}
	return int(st.Size())
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// figures are the measurements of one run.
type figures struct {
	cold     map[int]map[string][]time.Duration // size -> tool -> repetitions
	reload   map[string][]time.Duration         // tool -> each reload
	ops      []int                              // lvs-director's kernel operations per reload
	rss0     map[string]int                     // kB after the cold start
	rss2     map[string]int                     // kB after the reloads
	start    map[string][]time.Duration         // tool -> runs of its version command (exec to exit)
	incrSize int
}

func medOr0(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return median(ds)
}

func ratio(a, b time.Duration) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a.Seconds()/b.Seconds())
}

func dur(ds []time.Duration) string {
	if len(ds) == 0 {
		return "not measured"
	}
	return secs(median(ds))
}

func mb(kb int) string {
	if kb <= 0 {
		return "not measured"
	}
	return fmt.Sprintf("%.1f MB", float64(kb)/1024)
}

func ratioKB(a, b int) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

func (f *figures) markdown(sizes []int, reps []int) []string {
	out := []string{
		"| measurement | lvs-director | ipvsadm -R (floor) | keepalived | lvs-director / floor | lvs-director / keepalived |",
		"| --- | --- | --- | --- | --- | --- |",
	}
	for si, n := range sizes {
		c := f.cold[n]
		lvs, base, keep := c["lvs-director"], c["ipvsadm"], c["keepalived"]
		med := func(ds []time.Duration) time.Duration {
			if len(ds) == 0 {
				return 0
			}
			return median(ds)
		}
		out = append(out, fmt.Sprintf("| cold start, %d services x 10 real servers (median of %d) | %s | %s | %s | %s | %s |",
			n, reps[si], dur(lvs), dur(base), dur(keep), ratio(med(lvs), med(base)), ratio(med(lvs), med(keep))))
	}
	if len(f.start["lvs-director"]) > 0 {
		out = append(out, fmt.Sprintf("| starting the program alone: exec to exit of `lvs-director version` / `keepalived --version` (median of 3) | %s | - | %s | - | %s |",
			dur(f.start["lvs-director"]), dur(f.start["keepalived"]), ratio(medOr0(f.start["lvs-director"]), medOr0(f.start["keepalived"]))))
	}
	for si, n := range sizes {
		c := f.cold[n]
		out = append(out, fmt.Sprintf("| cold start against the batched-netlink floor as a program (`ipvsbatch`: the director's netlink client, started like the daemons, reading the ipvsadm -R rule file), %d services (medians of %d) | %s | %s | - | %s | - |",
			n, reps[si], dur(c["lvs-director"]), dur(c["batchproc"]), ratio(medOr0(c["lvs-director"]), medOr0(c["batchproc"]))))
	}
	for si, n := range sizes {
		c := f.cold[n]
		out = append(out, fmt.Sprintf("| cold start against the batched-netlink floor without a program's start (the client's ApplyBatch below), %d services (medians of %d) | %s | %s | - | %s | - |",
			n, reps[si], dur(c["lvs-director"]), dur(c["client"]), ratio(medOr0(c["lvs-director"]), medOr0(c["client"]))))
	}
	for si, n := range sizes {
		c := f.cold[n]
		out = append(out, fmt.Sprintf("| kernel part only: the director's netlink client, ApplyBatch (writes of 256 requests), %d services (median of %d) | %s | %s | - | %s | - |",
			n, reps[si], dur(c["client"]), dur(c["ipvsadm"]), ratio(medOr0(c["client"]), medOr0(c["ipvsadm"]))))
		if len(c["client1"]) > 0 {
			out = append(out, fmt.Sprintf("| same, one acknowledged request per operation, %d services (1 run) | %s | %s | - | %s | - |",
				n, dur(c["client1"]), dur(c["ipvsadm"]), ratio(medOr0(c["client1"]), medOr0(c["ipvsadm"]))))
		}
		out = append(out, fmt.Sprintf("| read back the whole table with the client (1 service dump + 1 real-server dump per service), %d services; the baseline column is reading /proc/net/ip_vs in the same namespace | %s | %s | - | %s | - |",
			n, dur(c["read"]), dur(c["proc"]), ratio(medOr0(c["read"]), medOr0(c["proc"]))))
	}
	if f.incrSize > 0 {
		n := f.incrSize
		lvs, keep := f.reload["lvs-director"], f.reload["keepalived"]
		ml, mk := time.Duration(0), time.Duration(0)
		if len(lvs) > 0 {
			ml = median(lvs)
		}
		if len(keep) > 0 {
			mk = median(keep)
		}
		out = append(out,
			fmt.Sprintf("| one real server added, SIGHUP to kernel, %d services (median and each of %d reloads: %s / %s) | %s | - | %s | - | %s |",
				n, benchReloads(), fmtDurations(lvs), fmtDurations(keep), secs(ml), dur(keep), ratio(ml, mk)),
			fmt.Sprintf("| kernel operations for that change (per reload, from the log's 'sync applied ops=N') | %v | - | not observable | - | - |", f.ops),
			fmt.Sprintf("| resident memory (VmRSS, all processes) at %d services | %s | - | %s | - | %s |",
				n, mb(f.rss0["lvs-director"]), mb(f.rss0["keepalived"]), ratioKB(f.rss0["lvs-director"], f.rss0["keepalived"])),
			fmt.Sprintf("| resident memory after %d reloads | %s | - | %s | - | %s |", benchReloads(),
				mb(f.rss2["lvs-director"]), mb(f.rss2["keepalived"]), ratioKB(f.rss2["lvs-director"], f.rss2["keepalived"])))
	}
	return out
}

func report(t *testing.T, key, value string) {
	t.Helper()
	fmt.Printf("BENCH %s %s\n", key, value)
}

// TestBenchLab measures cold programming, an incremental change and memory of lvs-director,
// ipvsadm --restore and keepalived on identical rule sets, each repetition in a fresh network
// namespace.
func TestBenchLab(t *testing.T) {
	benchEnabled(t)
	l := e2e.New(t)
	e2e.NeedDirector(t)
	_, keepErr := exec.LookPath("keepalived")
	if keepErr != nil {
		t.Logf("keepalived not in the VM (%v): not measured", keepErr)
	}
	sizes := envInts("LAB_BENCH_SIZES", []int{1000, 10000})
	// LAB_BENCH_ONLY=lvs-director measures lvs-director alone (no baselines, no table): for
	// quick checks while working on it; the published figures come from whole runs.
	only := os.Getenv("LAB_BENCH_ONLY") == "lvs-director"
	repsList := envInts("LAB_BENCH_REPS", []int{3})
	repsOf := func(i int) int { return repsList[min(i, len(repsList)-1)] }
	uname, _ := exec.Command("uname", "-r").Output()
	report(t, "kernel", strings.TrimSpace(string(uname)))
	cpus, _ := exec.Command("nproc").Output()
	report(t, "vcpus", strings.TrimSpace(string(cpus)))
	if v, err := exec.Command("keepalived", "--version").CombinedOutput(); err == nil {
		first, _, _ := strings.Cut(string(v), "\n")
		report(t, "keepalived", strings.TrimSpace(first))
	}

	f := &figures{cold: map[int]map[string][]time.Duration{}, reload: map[string][]time.Duration{},
		rss0: map[string]int{}, rss2: map[string]int{}, start: map[string][]time.Duration{}}
	// What starting the program alone costs (part of every cold start; the batched floor is a
	// call inside the test process and has none).
	for _, cmd := range [][]string{{"lvs-director", "version"}, {"keepalived", "--version"}} {
		if _, err := exec.LookPath(cmd[0]); err != nil {
			continue
		}
		for range 3 {
			start := time.Now()
			if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v %s", cmd, err, out)
			}
			f.start[cmd[0]] = append(f.start[cmd[0]], time.Since(start))
		}
		report(t, "start."+cmd[0], fmtDurations(f.start[cmd[0]]))
	}
	_ = l
	seq := 0
	newNS := func(name string) *e2e.NS {
		seq++
		return freshNS(t, fmt.Sprintf("bench-%s%d", name, seq))
	}
	for si, n := range sizes {
		r := ruleSet{n: n}
		reps := repsOf(si)
		largest := si == len(sizes)-1
		f.cold[n] = map[string][]time.Duration{}
		dir := t.TempDir()
		rules := filepath.Join(dir, "rules")
		writeFile(t, rules, r.ipvsadmRules())
		timeout := time.Duration(n/1000+1) * 60 * time.Second

		// timed runs a program that programs the whole rule set in a fresh namespace (started
		// with ip netns exec, as the daemons are), timed from its start to its exit, and checks
		// the table it left; the time goes to f.cold[n][key].
		timed := func(key string, args ...string) {
			ns := newNS(key)
			resume := quietGC()
			start := time.Now()
			out, err := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...).CombinedOutput()
			took := time.Since(start)
			resume()
			if err != nil {
				t.Fatalf("%s: %v %s", key, err, out)
			}
			if s, d := tableCount(t, ns); s != n || d != n*realServersPerService {
				t.Fatalf("%s: table has %d services, %d real servers", key, s, d)
			}
			f.cold[n][key] = append(f.cold[n][key], took)
			dropNS(t, ns)
		}
		// ipvsadm --restore: the floor the issue names.
		restore := func() { timed("ipvsadm", "sh", "-c", "ipvsadm -R < "+rules) }
		// The batched floor as a program: ipvsbatch (the director's netlink client in a program
		// of its own, reading the rule file ipvsadm -R reads). It pays for a start as a daemon
		// does; the call inside the test process below does not (ip netns exec and a Go
		// program's start alone took 0.06-0.1 s in this VM).
		batchProc := func() { timed("batchproc", "ipvsbatch", rules) }

		// The director's netlink client alone: the kernel part of lvs-director's cold start.
		client := func() {
			ns := newNS("client")
			apply, read := clientRun(t, ns, r, false)
			f.cold[n]["client"] = append(f.cold[n]["client"], apply)
			f.cold[n]["read"] = append(f.cold[n]["read"], read)
			resume := quietGC()
			f.cold[n]["proc"] = append(f.cold[n]["proc"], procRead(t, ns))
			resume()
			dropNS(t, ns)
		}

		lvs := func(rep int) {
			ns := newNS("lvs")
			k := kernelIn(t, ns)
			ddir := t.TempDir()
			cfg := symlinkedConfig(t, ddir, r.lvsConfig(ddir, nil))
			resume := quietGC()
			start := time.Now()
			d := startDaemon(t, ns, filepath.Join(ddir, "log"), "lvs-director", "run", "--config", cfg)
			tick, stopTicks := d.pollTicks(t, coldPoll)
			took := waitComplete(t, ns, k, r, start, timeout, tick, func() error {
				if d.exited() {
					return fmt.Errorf("lvs-director exited:\n%s", d.logTail())
				}
				return nil
			})
			stopTicks()
			resume()
			f.cold[n]["lvs-director"] = append(f.cold[n]["lvs-director"], took)
			if rep == reps-1 { // where the time went: the first sync's own duration
				for _, line := range logLines(t, d.log, 0, `msg="sync applied"`) {
					report(t, fmt.Sprintf("cold-log.%d.lvs-director", n), line)
					break
				}
			}
			if largest && rep == reps-1 {
				incremental(t, f, r, ns, k, d, cfg, ddir, "lvs-director")
			}
			d.signal(syscall.SIGTERM)
			select {
			case <-d.done:
			case <-time.After(30 * time.Second):
				d.kill()
			}
			k.Close()
			dropNS(t, ns)
		}

		keep := func(rep int) {
			ns := newNS("keep")
			k := kernelIn(t, ns)
			kdir := t.TempDir()
			conf := filepath.Join(kdir, "keepalived.conf")
			writeFile(t, conf, r.keepalivedConfig(nil))
			resume := quietGC()
			start := time.Now()
			d := startDaemon(t, ns, filepath.Join(kdir, "log"), "keepalived", "-l", "-G", "-n", "-C", "-f", conf,
				"-p", filepath.Join(kdir, "k.pid"), "-c", filepath.Join(kdir, "c.pid"), "-r", filepath.Join(kdir, "v.pid"))
			tick, stopTicks := d.pollTicks(t, coldPoll)
			took := waitComplete(t, ns, k, r, start, timeout, tick, func() error {
				if d.exited() {
					return fmt.Errorf("keepalived exited:\n%s", d.logTail())
				}
				return nil
			})
			stopTicks()
			resume()
			f.cold[n]["keepalived"] = append(f.cold[n]["keepalived"], took)
			if largest && rep == reps-1 {
				incremental(t, f, r, ns, k, d, conf, kdir, "keepalived")
			}
			d.kill() // on SIGTERM it would remove its table, slowly
			k.Close()
			dropNS(t, ns)
		}

		// Each repetition runs every program once, one after the other: the load of the shared
		// host drifts over minutes, and the ratios compare programs measured close together.
		for rep := 0; rep < reps; rep++ {
			if !only {
				restore()
				client()
			}
			batchProc() // (in quick runs too: the goal's floor)
			lvs(rep)
			if keepErr == nil && !only {
				keep(rep)
			}
		}
		if n <= 1000 && !only {
			ns := newNS("client1")
			apply, _ := clientRun(t, ns, r, true)
			f.cold[n]["client1"] = append(f.cold[n]["client1"], apply)
			dropNS(t, ns)
		}
		for _, name := range []string{"ipvsadm", "lvs-director", "keepalived"} {
			report(t, fmt.Sprintf("cold.%d.%s", n, name), fmtDurations(f.cold[n][name]))
		}
		report(t, fmt.Sprintf("batch-proc.%d", n), fmtDurations(f.cold[n]["batchproc"]))
		report(t, fmt.Sprintf("client-batch.%d", n), fmtDurations(f.cold[n]["client"]))
		report(t, fmt.Sprintf("client-read.%d", n), fmtDurations(f.cold[n]["read"]))
		report(t, fmt.Sprintf("proc-read.%d", n), fmtDurations(f.cold[n]["proc"]))
		if len(f.cold[n]["client1"]) > 0 {
			report(t, fmt.Sprintf("client-per-op.%d", n), fmtDurations(f.cold[n]["client1"]))
		}
	}
	if only {
		return
	}
	var allReps []int
	for i := range sizes {
		allReps = append(allReps, repsOf(i))
	}
	for _, line := range f.markdown(sizes, allReps) {
		fmt.Println("BENCHMD " + line)
	}
}

// clientRun programs the rule set with the director's netlink client in ns (in batches, or
// with perOp one acknowledged request at a time), checks the table and reads it back; it
// returns the time to apply and the time to read.
func clientRun(t *testing.T, ns *e2e.NS, r ruleSet, perOp bool) (apply, read time.Duration) {
	t.Helper()
	var ops []director.Op
	for i := 0; i < r.n; i++ {
		key := director.ServiceKey{Protocol: director.ProtoTCP, Addr: netip.MustParseAddr(r.vip(i)), Port: uint16(r.port(i))}
		ops = append(ops, director.Op{Kind: director.OpAddService, Service: director.VirtualService{Key: key, Scheduler: "wrr", Netmask: 0xffffffff}})
		for j := 0; j < realServersPerService; j++ {
			ops = append(ops, director.Op{Kind: director.OpAddDest, Service: director.VirtualService{Key: key},
				Dest: director.Dest{Addr: netip.AddrPortFrom(netip.MustParseAddr(r.rs(i, j)), 8080), Weight: 1}})
		}
	}
	var k *director.LinuxKernel
	if err := inNS(ns, func() (err error) { k, err = director.OpenKernel(); return err }); err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	resume := quietGC()
	start := time.Now()
	failed := 0
	if perOp {
		for _, op := range ops {
			var err error
			if op.Kind == director.OpAddService {
				err = k.AddService(op.Service)
			} else {
				err = k.AddDest(op.Service.Key, op.Dest)
			}
			if err != nil {
				failed++
			}
		}
	} else {
		for _, err := range k.ApplyBatch(ops) {
			if err != nil {
				failed++
			}
		}
	}
	apply = time.Since(start)
	resume()
	if failed > 0 {
		t.Fatalf("%d of %d ops failed", failed, len(ops))
	}
	if s, d := tableCount(t, ns); s != r.n || d != r.n*realServersPerService {
		t.Fatalf("client: table has %d services, %d real servers", s, d)
	}
	resume = quietGC()
	start = time.Now()
	svcs, err := k.Services()
	read = time.Since(start)
	resume()
	if err != nil || len(svcs) != r.n {
		t.Fatalf("Services(): %d services, %v", len(svcs), err)
	}
	return apply, read
}

// benchReloads is how many reloads incremental measures: LAB_BENCH_RELOADS, default 5 (the
// first reload after a start pays for memory and code touched the first time; a median of
// several is steadier than one of two).
func benchReloads() int {
	if n := envInts("LAB_BENCH_RELOADS", nil); len(n) > 0 && n[0] < 200 {
		return n[0]
	}
	return 5
}

// incremental adds one real server to a service at each of benchReloads reloads, measuring the
// time from SIGHUP to the kernel showing it, the operations (lvs-director) and the memory
// before and after.
func incremental(t *testing.T, f *figures, r ruleSet, ns *e2e.NS, k *director.LinuxKernel, d *proc, cfg, dir, who string) {
	t.Helper()
	f.incrSize = r.n
	time.Sleep(3 * time.Second) // let the start-up's follow-ups end
	rss0, each0, parts0 := d.rssKB()
	f.rss0[who] = rss0
	report(t, fmt.Sprintf("rss.%d.%s", r.n, who), fmt.Sprintf("%d kB %v", rss0, each0))
	report(t, fmt.Sprintf("rss-parts.%d.%s", r.n, who), parts0)
	target := r.n / 2
	extra := map[int][]string{}
	reloads := benchReloads()
	tick, stopTicks := d.pollTicks(t, reloadPoll)
	defer stopTicks()
	for m := 1; m <= reloads; m++ {
		extra[target] = append(extra[target], r.extraRS(m))
		before := logSize(d.log)
		if who == "lvs-director" {
			writeFile(t, filepath.Join(dir, "real", "director.yaml"), r.lvsConfig(dir, extra))
		} else {
			writeFile(t, cfg, r.keepalivedConfig(extra))
		}
		select {
		case <-tick: // (a stale one)
		default:
		}
		resume := quietGC()
		start := time.Now()
		d.signal(syscall.SIGHUP)
		for !hasRS(k, r, target, 0, r.extraRS(m)) {
			if d.exited() {
				t.Fatalf("%s exited:\n%s", who, d.logTail())
			}
			if time.Since(start) > 10*time.Minute {
				t.Fatalf("%s: real server %s not in the kernel after 10 min", who, r.extraRS(m))
			}
			<-tick
		}
		f.reload[who] = append(f.reload[who], time.Since(start))
		resume()
		time.Sleep(3 * time.Second)
		if who == "lvs-director" {
			f.ops = append(f.ops, opsLogged(t, d.log, before))
			for _, line := range logLines(t, d.log, before, `msg="config reloaded"`, `msg="sync applied"`) {
				report(t, fmt.Sprintf("reload-log.%d.%s", r.n, who), line) // where the time went
			}
		}
	}
	rss2, each2, parts2 := d.rssKB()
	f.rss2[who] = rss2
	report(t, fmt.Sprintf("rss-parts-after-%d-reloads.%d.%s", reloads, r.n, who), parts2)
	if who == "lvs-director" { // where the memory is, for the record (after measuring: a scrape allocates)
		if out, err := ns.Exec("wget", "-qO-", "http://127.0.0.1:9813/metrics"); err == nil {
			var parts []string
			for _, line := range strings.Split(out, "\n") {
				for _, m := range []string{"go_memstats_heap_inuse_bytes ", "go_memstats_stack_inuse_bytes ", "go_memstats_sys_bytes ", "go_goroutines "} {
					if strings.HasPrefix(line, m) {
						parts = append(parts, strings.TrimSpace(line))
					}
				}
			}
			report(t, fmt.Sprintf("memstats.%d.lvs-director", r.n), strings.Join(parts, ", "))
		}
	}
	report(t, fmt.Sprintf("reload.%d.%s", r.n, who), fmtDurations(f.reload[who]))
	report(t, fmt.Sprintf("rss-after-%d-reloads.%d.%s", reloads, r.n, who), fmt.Sprintf("%d kB %v", rss2, each2))
	if who == "lvs-director" {
		report(t, fmt.Sprintf("reload-ops.%d.%s", r.n, who), fmt.Sprint(f.ops))
		for _, o := range f.ops {
			if o != 1 {
				t.Errorf("lvs-director applied %v kernel operations for one added real server, want 1", o)
			}
		}
	}
	if s, dd := tableCount(t, ns); s != r.n || dd != r.n*realServersPerService+reloads {
		t.Errorf("%s: after %d reloads the table has %d services, %d real servers", who, reloads, s, dd)
	}
}
