//go:build lab

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Lab tracks the namespaces and processes a test made and removes them all
// in t.Cleanup.
type Lab struct {
	t      testing.TB
	prefix string

	mu    sync.Mutex
	nss   []*NS
	procs []*Proc
}

var labSeq atomic.Int32

// InLab reports whether we run inside the lab VM (labexec sets LVS_LAB=1).
func InLab() bool { return os.Getenv("LVS_LAB") == "1" }

// New returns a Lab for t. Outside the lab VM the test is skipped: the lab
// tests need root, IPVS and a private kernel.
func New(t testing.TB) *Lab {
	t.Helper()
	if !InLab() {
		t.Skip("lab test: run inside the lab VM (go test -tags lab -exec labexec), see lab/README.md")
	}
	l := &Lab{t: t, prefix: fmt.Sprintf("l%d-", labSeq.Add(1))}
	t.Cleanup(l.cleanup)
	return l
}

func (l *Lab) cleanup() {
	l.mu.Lock()
	procs, nss := l.procs, l.nss
	l.procs, l.nss = nil, nil
	l.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop()
		if l.t.Failed() {
			l.t.Logf("output of %s:\n%s", procs[i], indent(procs[i].Output()))
		}
	}
	if len(nss) == 0 {
		return
	}
	var lines []string
	for i := len(nss) - 1; i >= 0; i-- {
		lines = append(lines, "netns del "+nss[i].Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "-force", "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Errorf("cleanup: ip netns del: %v\n%s", err, indent(string(out)))
	}
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "    (no output)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// cmdTimeout bounds every helper command.
const cmdTimeout = 30 * time.Second

func run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

// Run runs a command in the VM's root namespace and returns its combined
// output; the test fails (Fatal) if it does not exit 0.
func (l *Lab) Run(args ...string) string {
	l.t.Helper()
	out, err := run(context.Background(), args[0], args[1:]...)
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, indent(out))
	}
	return out
}

// NS is a network namespace made by the lab.
type NS struct {
	lab  *Lab
	Name string // the real name (with the test's prefix), for ip netns
}

func (ns *NS) String() string { return ns.Name }

// NS creates a network namespace (removed at cleanup) with lo up.
func (l *Lab) NS(name string) *NS {
	l.t.Helper()
	ns := &NS{lab: l, Name: l.prefix + name}
	l.Run("ip", "netns", "add", ns.Name)
	l.mu.Lock()
	l.nss = append(l.nss, ns)
	l.mu.Unlock()
	ns.MustRun("ip", "link", "set", "lo", "up")
	return ns
}

// NSs creates several namespaces at once (one "ip -batch" call, then lo up
// in each): cheaper than NS in a loop, as every command costs ~80 ms in the
// emulated VM.
func (l *Lab) NSs(names ...string) []*NS {
	l.t.Helper()
	var lines []string
	var nss []*NS
	for _, name := range names {
		ns := &NS{lab: l, Name: l.prefix + name}
		lines = append(lines, "netns add "+ns.Name)
		nss = append(nss, ns)
	}
	l.mu.Lock()
	l.nss = append(l.nss, nss...) // registered first: cleanup must see them
	l.mu.Unlock()
	l.IPBatch(lines...)
	for _, ns := range nss {
		ns.IP("link", "set", "lo", "up")
	}
	return nss
}

// IPBatch runs several ip commands (without the leading "ip") in the root
// namespace with one "ip -batch -" call; it stops at the first failing line.
func (l *Lab) IPBatch(lines ...string) string {
	l.t.Helper()
	return ipBatch(l.t, "", lines)
}

// IPBatch runs several ip commands (without the leading "ip") in the
// namespace with one "ip -n NS -batch -" call.
func (ns *NS) IPBatch(lines ...string) string {
	ns.lab.t.Helper()
	return ipBatch(ns.lab.t, ns.Name, lines)
}

func ipBatch(t testing.TB, ns string, lines []string) string {
	t.Helper()
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("[%s] ip -batch: %v\n%s\ncommands:\n%s", ns, err, indent(string(out)), indent(strings.Join(lines, "\n")))
	}
	return string(out)
}

// Exec runs a command inside the namespace and returns its combined output
// and error (no test failure).
func (ns *NS) Exec(args ...string) (string, error) {
	return run(context.Background(), "ip", append([]string{"netns", "exec", ns.Name}, args...)...)
}

// MustRun runs a command inside the namespace; the test fails (Fatal) if it
// does not exit 0.
func (ns *NS) MustRun(args ...string) string {
	ns.lab.t.Helper()
	out, err := ns.Exec(args...)
	if err != nil {
		ns.lab.t.Fatalf("[%s] %s: %v\n%s", ns.Name, strings.Join(args, " "), err, indent(out))
	}
	return out
}

// IP runs "ip ARGS" in the namespace (fatal on error).
func (ns *NS) IP(args ...string) string {
	ns.lab.t.Helper()
	out, err := run(context.Background(), "ip", append([]string{"-n", ns.Name}, args...)...)
	if err != nil {
		ns.lab.t.Fatalf("[%s] ip %s: %v\n%s", ns.Name, strings.Join(args, " "), err, indent(out))
	}
	return out
}

// Sysctl sets sysctls in the namespace:
// Sysctl("net.ipv4.ip_forward=1", "net.ipv4.vs.conntrack=1").
func (ns *NS) Sysctl(keyValues ...string) {
	ns.lab.t.Helper()
	ns.MustRun(append([]string{"sysctl", "-q", "-w"}, keyValues...)...)
}

// EnableForwarding turns on IPv4 and IPv6 forwarding.
func (ns *NS) EnableForwarding() {
	ns.lab.t.Helper()
	ns.Sysctl("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
}

// AddAddr adds an address (CIDR) to dev. IPv6 addresses get "nodad" so they
// are usable at once.
func (ns *NS) AddAddr(dev, cidr string) {
	ns.lab.t.Helper()
	args := []string{"addr", "add", cidr, "dev", dev}
	if strings.Contains(cidr, ":") {
		args = append([]string{"-6"}, append(args, "nodad")...)
	}
	ns.IP(args...)
}

// AddRoute adds a route: AddRoute("default", "via", "10.0.0.1").
func (ns *NS) AddRoute(args ...string) {
	ns.lab.t.Helper()
	fam := "-4"
	for _, a := range args {
		if strings.Contains(a, ":") {
			fam = "-6"
		}
	}
	ns.IP(append([]string{fam, "route", "add"}, args...)...)
}

// Dummy creates an up dummy interface (e.g. lvs0 for VIPs) in the namespace.
func (ns *NS) Dummy(dev string) {
	ns.lab.t.Helper()
	ns.IP("link", "add", dev, "type", "dummy")
	ns.IP("link", "set", dev, "up")
}

// Veth connects two namespaces with a veth pair (aDev in a, bDev in b),
// both up.
func (l *Lab) Veth(a *NS, aDev string, b *NS, bDev string) {
	l.t.Helper()
	l.Run("ip", "link", "add", aDev, "netns", a.Name, "type", "veth",
		"peer", "name", bDev, "netns", b.Name)
	a.IP("link", "set", aDev, "up")
	b.IP("link", "set", bDev, "up")
}

// Proc is a background process started in a namespace.
type Proc struct {
	ns   *NS
	args []string
	cmd  *exec.Cmd
	out  lockedBuffer
	done chan struct{}
	err  error
}

func (p *Proc) String() string {
	return fmt.Sprintf("[%s] %s", p.ns.Name, strings.Join(p.args, " "))
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// StartCmd starts cmd from one OS thread that lives as long as the test binary. Pdeathsig
// (SIGKILL to the lab's processes if the test binary dies) is sent when the *thread* that
// forked the child ends, not the process: started from an arbitrary goroutine, a process was
// killed as soon as a goroutine that had locked that same thread (to enter a namespace, like
// StartProber's) returned, and the thread with it (seen as a director that vanished, "signal:
// killed", right after a prober stopped).
func StartCmd(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread forks every lab process
			for r := range spawnCh {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawnCh <- spawnReq{cmd: cmd, done: done}
	return <-done
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
)

// Start starts a background process in the namespace; it is stopped at
// cleanup (SIGTERM, then SIGKILL after 3 s) and its output is logged if the
// test failed.
func (ns *NS) Start(args ...string) *Proc {
	ns.lab.t.Helper()
	p := &Proc{ns: ns, args: args, done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	p.cmd.Stdout = &p.out
	p.cmd.Stderr = &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := StartCmd(p.cmd); err != nil {
		ns.lab.t.Fatalf("start %s: %v", p, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	ns.lab.mu.Lock()
	ns.lab.procs = append(ns.lab.procs, p)
	ns.lab.mu.Unlock()
	return p
}

// Output returns what the process printed so far (stdout and stderr).
func (p *Proc) Output() string { return p.out.String() }

// Wait waits up to timeout for the process to exit and returns its output.
func (p *Proc) Wait(timeout time.Duration) (string, error) {
	select {
	case <-p.done:
		return p.Output(), p.err
	case <-time.After(timeout):
		return p.Output(), fmt.Errorf("%s still running after %v", p, timeout)
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process (and its process group).
func (p *Proc) Signal(sig syscall.Signal) {
	if !p.Exited() {
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// Stop stops the process (SIGTERM, SIGKILL after 3 s) and waits for it.
func (p *Proc) Stop() error {
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		p.Signal(syscall.SIGKILL)
		<-p.done
	}
	return p.err
}

// Eventually polls cond every interval until it returns true or timeout
// passes; then the test fails with the last description cond gave (say
// what was expected and what was seen).
func Eventually(t testing.TB, timeout, interval time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last seen: %s", timeout, what, seen)
		}
		time.Sleep(interval)
	}
}
