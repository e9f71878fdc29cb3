#!/usr/bin/env bash
# bench-lab.sh: measures lvs-director against `ipvsadm --restore` (the floor) and keepalived in
# the lab VM (lab/bench: TestBenchLab, TestBenchHealthCPU) and writes docs/benchmarks.md from that one run.
#
# Assumes lab/setup.sh and `make lab-bins` ran (bin/labexec, bin/vm/lvs-director; keepalived
# comes with the lab's base image).
#
# Environment:
#   LAB_BENCH_SIZES  services per run, comma separated (default 1000,10000), 10 real servers each
#   LAB_BENCH_REPS   repetitions of each cold start per size, median reported (default 3,1:
#                    three at 1,000 services, one at 10,000, which takes minutes per run)
#   LAB_MEM          VM memory in MB (default 2048: 10,000 services need more than 1024)
#   LAB_TIMEOUT      VM time limit (default 90m)
#   BENCH_OUT        the report (default docs/benchmarks.md); the raw log goes to bin/bench-lab.log
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=${BIN:-$root/bin}
out=${BENCH_OUT:-$root/docs/benchmarks.md}
log=$bin/bench-lab.log
for f in "$bin/labexec" "$bin/vm/lvs-director"; do
	[[ -x $f ]] || { echo "bench-lab: $f missing: run make lab-bins first" >&2; exit 1; }
done
export LAB_BENCH=1 LAB_MEM=${LAB_MEM:-2048} LAB_TIMEOUT=${LAB_TIMEOUT:-90m}
export LAB_BIN_DIR=${LAB_BIN_DIR:-$bin/vm}
export LAB_BENCH_SIZES=${LAB_BENCH_SIZES:-1000,10000} LAB_BENCH_REPS=${LAB_BENCH_REPS:-3,1}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
set +e
go test -count=1 -tags lab -timeout 100m -exec "$bin/labexec" -run '^TestBench(Lab|HealthCPU)$' -v ./lab/bench/ 2>&1 |
	tee "$log" | grep --line-buffered -E '^(BENCH |--- |FAIL|ok|PASS|panic)|_test.go:'
rc=${PIPESTATUS[0]}
set -e
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
if [[ $rc != 0 ]]; then
	echo "bench-lab: the benchmark failed (exit $rc), $out not written; log: $log" >&2
	exit "$rc"
fi

val() { sed -n "s/^BENCH $1 //p" "$log" | tail -1; }
cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
{
	cat <<EOF
# Benchmarks

Produced by \`make bench-lab\` (\`scripts/bench-lab.sh\`) on $started; every figure below comes
from that one run (raw lines at the end, full log in \`bin/bench-lab.log\`).

Machine: the lab VM, qemu **TCG (software emulation, no KVM)**, $(val vcpus) vCPU, ${LAB_MEM} MB,
Debian kernel $(val kernel); host CPU: $cpu ($(nproc) cores), host load average
$load_before before and $load_after after the run (other work shared the host).
Emulation makes everything many times slower than bare metal and a busy host adds noise:
compare the programs within this table (same VM, same run), not with figures from elsewhere.
Daemons: lvs-director (this tree), $(val keepalived), ipvsadm from Debian.

Rule set: ${LAB_BENCH_SIZES//,/ and } virtual services (TCP, wrr, NAT), 10 real servers each,
10 services (ports 8000-8009) per VIP, all real servers distinct, no health checks. Each
repetition runs in a **fresh network namespace** (IPVS keeps deleted real servers in a per-namespace
trash that slows later additions); the namespace is flushed and deleted and the CPU left to
settle between repetitions.

$(sed -n 's/^BENCHMD //p' "$log")

How each figure is taken:

- **Cold start**: from starting the program until the kernel holds the complete table. The test
  polls \`ipvsadm -Ln -t\` of the last service every 100 ms (all three program the services in
  that order) and then checks the whole table in \`/proc/net/ip_vs\` (service and real server
  counts); for \`ipvsadm -R\` it is the run time of \`ipvsadm -R < rules\`, checked the same way.
  lvs-director also puts every VIP on its dummy interface (keepalived without VRRP adds no
  address), sets up its nftables table, and runs with \`sync_period: 300s\`.
- **Kernel part only**: the same rule set (services and real servers, no VIPs) applied by the
  director's netlink client (\`director.LinuxKernel.ApplyBatch\`, called from the test in a fresh
  namespace), then read back with \`Services()\`. This is what lvs-director's cold start spends
  in the kernel; the rest of its cold start is the daemon's own work (config, plan, start-up).
- **Incremental change**: one real server added to one service at the largest size, twice.
  The config file is replaced and SIGHUP sent; the time runs from SIGHUP until \`ipvsadm -Ln -t\`
  (polled every 50 ms) shows the new real server. (lvs-director's config path is a symlink to a
  file in another directory, so its file watch stays quiet and only SIGHUP reloads it.) The
  operations are the \`sync applied ops=N\` lines lvs-director logged for the reload.
  The table shows the median of the two reloads and each of them.
- **Memory**: VmRSS from \`/proc/PID/status\`, summed over the daemon's processes (keepalived: parent
  and checker child; started with \`-l -G -n -C\`), 3 s after the table was complete, and again
  after the two reloads.

- **Health-check CPU**: 100 services x 10 real servers, every real server checked over TCP
  every second (lvs-director \`health_check: {type: tcp, interval: 1s}\`, keepalived
  \`TCP_CHECK\` with \`delay_loop 1\`, \`connect_timeout 1\`; both time out after 1 s). The 1,000
  real servers are listeners of the test process on a dummy interface in the daemon's
  namespace. After 20 s of warm-up, the daemon's user+system time over 30 s (\`/proc/PID/stat\`,
  all its processes) as a share of the one vCPU, the connections the listeners accepted per
  second, and how many real servers the kernel table holds at the end (the checked-up ones).

Raw lines of this run:

\`\`\`
$(grep '^BENCH ' "$log")
\`\`\`
EOF
} > "$out"
echo "bench-lab: wrote $out"
