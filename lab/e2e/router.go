//go:build lab

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BGPPeer is one BGP session of a lab router: Name is the BIRD protocol name, Local the
// router's address on the link, Neighbor the director's.
type BGPPeer struct {
	Name, Local, Neighbor string
	LocalASN, PeerASN     uint32
}

// Router is a BIRD 2 daemon in a namespace: it learns routes over eBGP (import all, export
// none) and installs them into the namespace's kernel table (protocol kernel, ECMP merged),
// so the namespace forwards traffic by what BGP taught it.
type Router struct {
	t    testing.TB
	NS   *NS
	Dir  string
	Sock string
	Proc *Proc
}

// NeedBird fails the test when bird or birdc is not in the VM (lab/setup.sh puts them there).
func NeedBird(t testing.TB) {
	t.Helper()
	for _, b := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s not in the VM (%v): rerun lab/setup.sh (it copies BIRD 2 into the initramfs)", b, err)
		}
	}
}

// StartRouter starts BIRD in ns with the given sessions and waits until its control socket
// answers (not for the sessions: use WaitEstablished).
func StartRouter(t testing.TB, ns *NS, routerID string, peers []BGPPeer) *Router {
	t.Helper()
	NeedBird(t)
	dir, err := os.MkdirTemp("", "bird-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var b strings.Builder
	fmt.Fprintf(&b, `router id %s;
log stderr { info, remote, warning, error, auth, fatal, bug, trace };
protocol device { scan time 10; }
protocol kernel {
  ipv4 { import none; export all; };
  merge paths on;
}
`, routerID)
	for _, p := range peers {
		// Short error/connect delays: the scenarios kill and restart directors on purpose.
		fmt.Fprintf(&b, `protocol bgp %s {
  local %s as %d;
  neighbor %s as %d;
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 2;
  debug { states, routes };
  ipv4 { import all; export none; };
}
`, p.Name, p.Local, p.LocalASN, p.Neighbor, p.PeerASN)
	}
	conf := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &Router{t: t, NS: ns, Dir: dir, Sock: filepath.Join(dir, "bird.ctl")}
	r.Proc = ns.Start("bird", "-f", "-c", conf, "-s", r.Sock, "-P", filepath.Join(dir, "bird.pid"))
	Eventually(t, 15*time.Second, 50*time.Millisecond, "BIRD's control socket", func() (bool, string) {
		if r.Proc.Exited() {
			t.Fatalf("bird exited:\n%s\nconfig:\n%s", indent(r.Proc.Output()), indent(b.String()))
		}
		out, err := r.Birdc("show status")
		return err == nil && strings.Contains(out, "Daemon is up"), out
	})
	return r
}

// Birdc runs birdc against the router's control socket (from the root namespace: the socket
// is a file) and returns its output without the banner line.
func (r *Router) Birdc(args ...string) (string, error) {
	out, err := run(context.Background(), "birdc", append([]string{"-s", r.Sock}, args...)...)
	if first, rest, ok := strings.Cut(out, "\n"); ok && strings.HasPrefix(first, "BIRD ") {
		out = rest
	}
	return out, err
}

// Log is BIRD's log so far (with "debug { states, routes }": route changes and session states).
func (r *Router) Log() string { return r.Proc.Output() }

// Established reports which of the named BGP protocols are established.
func (r *Router) Established(names ...string) (map[string]bool, string) {
	out, err := r.Birdc("show protocols")
	st := map[string]bool{}
	if err != nil {
		return st, out
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[1] == "BGP" {
			st[f[0]] = f[5] == "Established"
		}
	}
	return st, out
}

// WaitEstablished waits until every named session is established.
func (r *Router) WaitEstablished(timeout time.Duration, names ...string) {
	r.t.Helper()
	Eventually(r.t, timeout, 100*time.Millisecond, "BGP sessions "+strings.Join(names, ",")+" established", func() (bool, string) {
		st, out := r.Established(names...)
		for _, n := range names {
			if !st[n] {
				return false, out
			}
		}
		return true, out
	})
}

// RouterRoute is one route BIRD holds for a prefix.
type RouterRoute struct {
	Proto   string // BIRD protocol it came from
	Best    bool   // the selected route ("*")
	NextHop []string
	ASPath  string
	MED     string // "" = none
}

// Routes returns BIRD's routes for prefix (empty when it has none); out is birdc's output.
func (r *Router) Routes(prefix string) ([]RouterRoute, string, error) {
	out, err := r.Birdc("show route", prefix, "all")
	if err != nil {
		return nil, out, err
	}
	return parseBirdRoutes(out), out, nil
}

// parseBirdRoutes parses "show route PREFIX all".
func parseBirdRoutes(out string) []RouterRoute {
	var rs []RouterRoute
	for _, line := range strings.Split(out, "\n") {
		tl := strings.TrimSpace(line)
		switch {
		case strings.Contains(line, " unicast ["):
			proto := ""
			if _, after, ok := strings.Cut(line, " unicast ["); ok {
				proto = strings.Fields(after)[0]
			}
			rs = append(rs, RouterRoute{Proto: proto, Best: strings.Contains(line, "] * ")})
		case len(rs) > 0 && strings.HasPrefix(tl, "via "):
			rs[len(rs)-1].NextHop = append(rs[len(rs)-1].NextHop, strings.Fields(tl)[1])
		case len(rs) > 0 && strings.HasPrefix(tl, "BGP.med:"):
			rs[len(rs)-1].MED = strings.TrimSpace(strings.TrimPrefix(tl, "BGP.med:"))
		case len(rs) > 0 && strings.HasPrefix(tl, "BGP.as_path:"):
			rs[len(rs)-1].ASPath = strings.TrimSpace(strings.TrimPrefix(tl, "BGP.as_path:"))
		}
	}
	return rs
}

// BestNextHop is the next hop of BIRD's selected route for prefix ("" when there is none).
func (r *Router) BestNextHop(prefix string) (string, string) {
	rs, out, err := r.Routes(prefix)
	if err != nil {
		return "", out
	}
	for _, x := range rs {
		if x.Best && len(x.NextHop) > 0 {
			return x.NextHop[0], out
		}
	}
	return "", out
}

// KernelRoute is "ip route show ADDR" in the router's namespace (empty: no route).
func (r *Router) KernelRoute(addr string) string {
	r.t.Helper()
	return strings.TrimSpace(r.NS.IP("-4", "route", "show", addr))
}

// Probe is one request of a Prober.
type Probe struct {
	At   time.Time // when the request started
	Took time.Duration
	Name string // the answering labnode's name
	Err  string // "" = success
}

// Prober sends HTTP requests on fresh TCP connections from inside a namespace, from the test
// process itself (a goroutine locked to a thread moved into the namespace), and keeps the
// time and result of each: failover times are read from it with ~interval resolution.
type Prober struct {
	mu     sync.Mutex
	probes []Probe
	stop   chan struct{}
	done   chan struct{}
	err    error
}

// StartProber probes http://addr/ from ns every interval with the given per-request timeout
// until Stop (also stopped at cleanup).
func StartProber(t testing.TB, ns *NS, addr string, interval, timeout time.Duration) *Prober {
	t.Helper()
	p := &Prober{stop: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		defer close(p.done)
		// The thread is never unlocked: it ends with the goroutine, so no other goroutine
		// ever runs in the namespace.
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + ns.Name)
		if err == nil {
			if e := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); e != nil {
				err = fmt.Errorf("setns %s: %w", ns.Name, e)
			}
			f.Close()
		}
		ready <- err
		if err != nil {
			return
		}
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			pr := probeOnce(addr, timeout)
			p.mu.Lock()
			p.probes = append(p.probes, pr)
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-time.After(interval):
			}
		}
	}()
	if err := <-ready; err != nil {
		t.Fatalf("prober: %v", err)
	}
	t.Cleanup(func() { p.Stop() })
	return p
}

// probeOnce does one GET / on a new connection. It dials in the calling goroutine (a literal
// address: no resolver, no parallel dial goroutines), so the socket is made in the namespace.
func probeOnce(addr string, timeout time.Duration) Probe {
	pr := Probe{At: time.Now()}
	defer func() { pr.Took = time.Since(pr.At) }()
	c, err := (&net.Dialer{Timeout: timeout}).Dial("tcp", addr)
	if err != nil {
		pr.Err = err.Error()
		return pr
	}
	defer c.Close()
	_ = c.SetDeadline(pr.At.Add(timeout))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n", addr); err != nil {
		pr.Err = err.Error()
		return pr
	}
	body, err := io.ReadAll(io.LimitReader(c, 8192))
	if err != nil {
		pr.Err = err.Error()
		return pr
	}
	status, _ := bufio.NewReader(strings.NewReader(string(body))).ReadString('\n')
	if f := strings.Fields(status); len(f) < 2 || f[1] != "200" {
		pr.Err = fmt.Sprintf("bad answer %q", strings.TrimSpace(status))
		return pr
	}
	_, b, _ := strings.Cut(string(body), "\r\n\r\n")
	pr.Name = strings.TrimSpace(b)
	return pr
}

// Stop ends the prober and returns every probe.
func (p *Prober) Stop() []Probe {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
	return p.Probes()
}

// Probes returns the probes so far.
func (p *Prober) Probes() []Probe {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Probe(nil), p.probes...)
}

// ProbeStats summarizes probes in a time window.
type ProbeStats struct {
	OK, Failed  int
	ByName      map[string]int
	FirstFail   time.Time // zero: no failure
	LastFail    time.Time // start of the last failed probe
	LastFailEnd time.Time // end of the last failed probe
	Errors      []string  // up to 5 distinct errors
}

// Window summarizes the probes that started in [from, to) (to zero: no end).
func (p *Prober) Window(from, to time.Time) ProbeStats {
	s := ProbeStats{ByName: map[string]int{}}
	seen := map[string]bool{}
	for _, x := range p.Probes() {
		if x.At.Before(from) || (!to.IsZero() && !x.At.Before(to)) {
			continue
		}
		if x.Err == "" {
			s.OK++
			s.ByName[x.Name]++
			continue
		}
		s.Failed++
		if s.FirstFail.IsZero() {
			s.FirstFail = x.At
		}
		s.LastFail, s.LastFailEnd = x.At, x.At.Add(x.Took)
		if !seen[x.Err] && len(s.Errors) < 5 {
			seen[x.Err] = true
			s.Errors = append(s.Errors, x.Err)
		}
	}
	return s
}

func (s ProbeStats) String() string {
	return fmt.Sprintf("ok=%d failed=%d by_name=%v errors=%q", s.OK, s.Failed, s.ByName, s.Errors)
}
