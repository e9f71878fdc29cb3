//go:build lab

package bench

import (
	"fmt"
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

// TestBenchHealthCPU measures the CPU that TCP-checking 1,000 real servers every second costs
// lvs-director and keepalived (TCP_CHECK), on the same listeners.
func TestBenchHealthCPU(t *testing.T) {
	benchEnabled(t)
	e2e.New(t)
	e2e.NeedDirector(t)
	results := map[string]string{}
	for _, who := range []string{"lvs-director", "keepalived"} {
		if _, err := exec.LookPath(who); err != nil {
			t.Logf("%s not in the VM: not measured", who)
			continue
		}
		ns := freshNS(t, "bench-hc-"+who)
		accepted := listeners(t, ns)
		dir := t.TempDir()
		var b strings.Builder
		var d *proc
		if who == "lvs-director" {
			fmt.Fprintf(&b, "director:\n  interface: lvs0\n  sync_period: 300s\napi: {socket: %q, metrics_listen: \"127.0.0.1:9813\"}\nservices:\n", filepath.Join(dir, "api.sock"))
			for i := 0; i < hcServices; i++ {
				fmt.Fprintf(&b, "  - name: s%d\n    vip: 10.200.0.%d\n    port: 80\n    health_check: {type: tcp, interval: 1s}\n    real_servers:\n", i, i+1)
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
		pids := d.pids()
		c0, a0, t0 := cpuTicks(pids), accepted.Load(), time.Now()
		time.Sleep(hcWindow)
		c1, a1, el := cpuTicks(pids), accepted.Load(), time.Since(t0)
		cpu := float64(c1-c0) / 100 / el.Seconds() * 100 // USER_HZ is 100
		rate := float64(a1-a0) / el.Seconds()
		_, up := tableCount(t, ns)
		report(t, "health-cpu."+who, fmt.Sprintf("%.1f%% of one vCPU, %.0f checks/s seen by the listeners, %d of %d real servers up",
			cpu, rate, up, hcServices*realServersPerService))
		results[who] = fmt.Sprintf("%.1f %% (%.0f checks/s, %d real servers up)", cpu, rate, up)
		d.kill()
		dropNS(t, ns)
	}
	lvs, keep := results["lvs-director"], results["keepalived"]
	ratioStr := "-"
	if lvs != "" && keep != "" {
		var a, b float64
		fmt.Sscanf(lvs, "%f", &a)
		fmt.Sscanf(keep, "%f", &b)
		if b > 0 {
			ratioStr = fmt.Sprintf("%.2f", a/b)
		}
	}
	fmt.Printf("BENCHMD | CPU of TCP health checks, 1,000 real servers every 1 s (%v window, %% of one vCPU) | %s | - | %s | - | %s |\n",
		hcWindow, orNot(lvs), orNot(keep), ratioStr)
}

func orNot(s string) string {
	if s == "" {
		return "not measured"
	}
	return s
}
