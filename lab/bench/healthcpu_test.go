//go:build lab

package bench

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lvs-director/lvs-director/lab/e2e"
)

const (
	hcServices = 100 // x 10 real servers = 1,000 TCP checks per second
	hcWindow   = 30 * time.Second
)

// hcRS is real server j of service i in the health-check run: all listen on :8080.
func hcRS(i, j int) string {
	k := i*realServersPerService + j + 1
	return fmt.Sprintf("10.202.%d.%d", k>>8, k&255)
}

// listeners puts the real servers' addresses on a dummy interface in ns and accepts (and
// closes) connections on each; it returns the counter of accepted connections.
func listeners(t *testing.T, ns *e2e.NS) *atomic.Int64 {
	t.Helper()
	lines := []string{"link add rs0 type dummy", "link set rs0 up"}
	for i := 0; i < hcServices; i++ {
		for j := 0; j < realServersPerService; j++ {
			lines = append(lines, "addr add "+hcRS(i, j)+"/32 dev rs0")
		}
	}
	cmd := exec.Command("ip", "-n", ns.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("addresses: %v %s", err, out)
	}
	var accepted atomic.Int64
	var lns []net.Listener
	err := inNS(ns, func() error {
		for i := 0; i < hcServices; i++ {
			for j := 0; j < realServersPerService; j++ {
				ln, err := net.Listen("tcp4", hcRS(i, j)+":8080")
				if err != nil {
					return err
				}
				lns = append(lns, ln)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ln := range lns {
		go func(ln net.Listener) {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				c.Close()
			}
		}(ln)
	}
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
	})
	return &accepted
}

// cpuTicks is the user+system time (clock ticks) of the processes.
func cpuTicks(pids []int) int64 {
	var sum int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		// after "pid (comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt
		// cmajflt utime stime
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		sum += u + st
	}
	return sum
}

// daemonChecks is the number of checks lvs-director has done (the count of its check duration
// histogram), read from its metrics endpoint in ns.
func daemonChecks(t *testing.T, ns *e2e.NS) int64 {
	t.Helper()
	var body []byte
	err := inNS(ns, func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.1:9813", 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
			return err
		}
		body, err = io.ReadAll(c)
		return err
	})
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	var n int64
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "lvs_director_healthcheck_duration_seconds_count") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			n += int64(v)
		}
	}
	return n
}

// TestBenchHealthCPU measures the CPU that TCP-checking 1,000 real servers every second costs
// lvs-director (tcp: a connect; tcp_half_open: a SYN from a raw socket) and keepalived
// (TCP_CHECK), on the same listeners, and the CPU per check of each. The listeners count the
// connect checks; half-open checks establish nothing, so lvs-director's own count of checks
// (its metrics) is their rate.
func TestBenchHealthCPU(t *testing.T) {
	benchEnabled(t)
	e2e.New(t)
	e2e.NeedDirector(t)
	type figure struct {
		cpu, rate float64 // % of one vCPU, checks/s
		up        int
	}
	results := map[string]figure{}
	runs := []struct{ name, prog, check string }{
		{"lvs-director", "lvs-director", "tcp"},
		{"keepalived", "keepalived", ""},
		{"lvs-director-half-open", "lvs-director", "tcp_half_open"},
	}
	for _, run := range runs {
		who := run.name
		if _, err := exec.LookPath(run.prog); err != nil {
			t.Logf("%s not in the VM: not measured", run.prog)
			continue
		}
		ns := freshNS(t, "bench-hc-"+who)
		accepted := listeners(t, ns)
		dir := t.TempDir()
		var b strings.Builder
		var d *proc
		if run.prog == "lvs-director" {
			fmt.Fprintf(&b, "director:\n  interface: lvs0\n  sync_period: 300s\napi: {socket: %q, metrics_listen: \"127.0.0.1:9813\"}\nservices:\n", filepath.Join(dir, "api.sock"))
			for i := 0; i < hcServices; i++ {
				fmt.Fprintf(&b, "  - name: s%d\n    vip: 10.200.0.%d\n    port: 80\n    health_check: {type: %s, interval: 1s}\n    real_servers:\n", i, i+1, run.check)
				for j := 0; j < realServersPerService; j++ {
					fmt.Fprintf(&b, "      - {address: %s, port: 8080}\n", hcRS(i, j))
				}
			}
			cfg := filepath.Join(dir, "director.yaml")
			writeFile(t, cfg, b.String())
			d = startDaemon(t, ns, filepath.Join(dir, "log"), "lvs-director", "run", "--config", cfg)
		} else {
			b.WriteString("global_defs {\n  router_id bench\n}\n")
			for i := 0; i < hcServices; i++ {
				fmt.Fprintf(&b, "virtual_server 10.200.0.%d 80 {\n  delay_loop 1\n  lb_algo wrr\n  lb_kind NAT\n  protocol TCP\n", i+1)
				for j := 0; j < realServersPerService; j++ {
					fmt.Fprintf(&b, "  real_server %s 8080 {\n    weight 1\n    TCP_CHECK {\n      connect_timeout 1\n    }\n  }\n", hcRS(i, j))
				}
				b.WriteString("}\n")
			}
			conf := filepath.Join(dir, "keepalived.conf")
			writeFile(t, conf, b.String())
			d = startDaemon(t, ns, filepath.Join(dir, "log"), "keepalived", "-l", "-G", "-n", "-C", "-f", conf,
				"-p", filepath.Join(dir, "k.pid"), "-c", filepath.Join(dir, "c.pid"), "-r", filepath.Join(dir, "v.pid"))
		}
		// Warm up (under emulation the VM may not keep up with 1,000 checks a second: the
		// figures then show how many checks it did and how many real servers stayed up).
		time.Sleep(20 * time.Second)
		if d.exited() {
			t.Fatalf("%s exited:\n%s", who, d.logTail())
		}
		// The checks done: for the connect checks, the connections the daemon opened (the
		// kernel's TcpActiveOpens in its namespace: the listeners open none), whether or not the
		// listeners (another process on the same vCPU) got to accept them; for half-open checks,
		// which open no connection, the daemon's own count.
		half := run.check == "tcp_half_open"
		count := func() int64 { return activeOpens(t, ns) }
		if half {
			count = func() int64 { return daemonChecks(t, ns) }
		}
		pids := d.pids()
		c0, n0, a0, t0 := cpuTicks(pids), count(), accepted.Load(), time.Now()
		time.Sleep(hcWindow)
		c1, n1, a1, el := cpuTicks(pids), count(), accepted.Load(), time.Since(t0)
		cpu := float64(c1-c0) / 100 / el.Seconds() * 100 // USER_HZ is 100
		rate := float64(n1-n0) / el.Seconds()
		_, up := tableCount(t, ns)
		seen := fmt.Sprintf("done (connections opened, TcpActiveOpens; the listeners accepted %.0f/s)", float64(a1-a0)/el.Seconds())
		if half {
			seen = "done (lvs-director's metrics; the listeners accept none)"
			if a := accepted.Load(); a != 0 {
				t.Errorf("half-open checks: the listeners accepted %d connections", a)
			}
			if log, err := os.ReadFile(filepath.Join(dir, "log")); err == nil && strings.Contains(string(log), "checking with a TCP connect instead") {
				t.Errorf("lvs-director fell back to connect checks:\n%s", d.logTail())
			}
		}
		report(t, "health-cpu."+who, fmt.Sprintf("%.1f%% of one vCPU, %.0f checks/s %s, %d of %d real servers up, %s CPU per check",
			cpu, rate, seen, up, hcServices*realServersPerService, perCheck(cpu, rate)))
		results[who] = figure{cpu, rate, up}
		d.kill()
		dropNS(t, ns)
	}
	row := func(who string) string {
		f, ok := results[who]
		if !ok {
			return "not measured"
		}
		return fmt.Sprintf("%.1f %% (%.0f checks/s, %d real servers up, %s/check)", f.cpu, f.rate, f.up, perCheck(f.cpu, f.rate))
	}
	// ratio compares CPU per check (the rates differ when the VM does not keep up).
	ratio := func(a, b string) string {
		fa, oka := results[a]
		fb, okb := results[b]
		if !oka || !okb || fa.rate <= 0 || fb.rate <= 0 || fb.cpu <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", fa.cpu/fa.rate/(fb.cpu/fb.rate))
	}
	for _, who := range []string{"lvs-director", "lvs-director-half-open"} {
		report(t, "health-cpu."+who+".per-check-ratio", ratio(who, "keepalived")+" of keepalived's CPU per check")
	}
	cpuRatio := "-"
	if a, b := results["lvs-director"], results["keepalived"]; a.cpu > 0 && b.cpu > 0 {
		cpuRatio = fmt.Sprintf("%.2f", a.cpu/b.cpu)
	}
	fmt.Printf("BENCHMD | CPU of TCP health checks, 1,000 real servers every 1 s (%v window, %% of one vCPU) | %s | - | %s | - | %s |\n",
		hcWindow, row("lvs-director"), row("keepalived"), cpuRatio)
	fmt.Printf("BENCHMD | CPU of TCP half-open health checks (tcp_half_open vs keepalived TCP_CHECK), 1,000 real servers every 1 s (%v window, %% of one vCPU; ratio of CPU per check) | %s | - | %s | - | %s |\n",
		hcWindow, row("lvs-director-half-open"), row("keepalived"), ratio("lvs-director-half-open", "keepalived"))
}

// activeOpens reads the kernel's TcpActiveOpens counter (connections opened) of ns.
func activeOpens(t *testing.T, ns *e2e.NS) int64 {
	t.Helper()
	out, err := ns.Exec("cat", "/proc/net/snmp")
	if err != nil {
		t.Fatalf("/proc/net/snmp: %v", err)
	}
	var head []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		for i, name := range head {
			if name == "ActiveOpens" && i < len(f) {
				n, err := strconv.ParseInt(f[i], 10, 64)
				if err != nil {
					t.Fatalf("/proc/net/snmp ActiveOpens %q: %v", f[i], err)
				}
				return n
			}
		}
	}
	t.Fatalf("no Tcp ActiveOpens in /proc/net/snmp:\n%s", out)
	return 0
}

// perCheck is the CPU per check, in ms, of cpu % of one vCPU at rate checks/s.
func perCheck(cpu, rate float64) string {
	if rate <= 0 {
		return "- ms"
	}
	return fmt.Sprintf("%.3f ms", cpu/100/rate*1000)
}

func orNot(s string) string {
	if s == "" {
		return "not measured"
	}
	return s
}
