#!/usr/bin/env bash
# bench-lab.sh: measures lvs-director against `ipvsadm --restore` (the floor) and keepalived in
# the lab VM (lab/bench: TestBenchLab, TestBenchHealthCPU; lab/e2e: TestClusterFailover and
# TestKeepalivedVRRPFailover, failover against keepalived VRRP) and writes docs/benchmarks.md from
# that one run.
#
# Assumes lab/setup.sh and `make lab-bins` ran (bin/labexec, bin/vm/lvs-director; keepalived
# comes with the lab's base image).
#
# Environment:
#   LAB_BENCH_SIZES  services per run, comma separated (default 1000,10000), 10 real servers each
#   LAB_BENCH_REPS   repetitions of each cold start per size, median reported (default 3; e.g.
#                    3,1: three at 1,000 services, one at 10,000). Each repetition runs every
#                    program once, one after the other (the host's load drifts over minutes)
#   LAB_MEM          VM memory in MB (default 2048: 10,000 services need more than 1024)
#   LAB_TIMEOUT      VM time limit (default 90m)
#   LAB_CLUSTER_RUNS failover runs per daemon (kill -9 for both, graceful stop for keepalived;
#                    lvs-director's graceful stop runs once), median reported (default 3)
#   LAB_BENCH_FAILOVER  0: skip the failover comparison (default 1)
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
export LAB_BENCH_SIZES=${LAB_BENCH_SIZES:-1000,10000} LAB_BENCH_REPS=${LAB_BENCH_REPS:-3}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
set +e
go test -count=1 -tags lab -timeout 100m -exec "$bin/labexec" -run '^TestBench(Lab|HealthCPU)$' -v ./lab/bench/ 2>&1 |
	tee "$log" | grep --line-buffered -E '^(BENCH |--- |FAIL|ok|PASS|panic)|_test.go:'
rc=${PIPESTATUS[0]}
set -e
if [[ $rc != 0 ]]; then
	echo "bench-lab: the benchmark failed (exit $rc), $out not written; log: $log" >&2
	exit "$rc"
fi

# Failover, lvs-director (product's default cluster timers) against keepalived VRRP (advert_int 1)
# in the same topology, appended to the same log.
failover_rc=skipped
if [[ ${LAB_BENCH_FAILOVER:-1} != 0 ]]; then
	set +e
	LAB_CLUSTER_DEFAULT_TIMERS=1 LAB_CLUSTER_RUNS=${LAB_CLUSTER_RUNS:-3} go test -count=1 -tags lab -timeout 40m -exec "$bin/labexec" \
		-run '^(TestClusterFailover|TestKeepalivedVRRPFailover)$' -v ./lab/e2e/ 2>&1 |
		tee -a "$log" | grep --line-buffered -E '^(BENCH |--- |FAIL|ok|PASS|panic)|_test.go:'
	failover_rc=${PIPESTATUS[0]}
	set -e
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

val() { sed -n "s/^BENCH $1 //p" "$log" | tail -1; }
# fo WHO KIND FIELD: one field of a "BENCH failover.WHO.KIND k=v ..." line (lab/e2e/vrrp_test.go).
fo() { val "failover\.$1\.$2" | tr ' ' '\n' | sed -n "s/^$3=//p"; }
ratio2() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f\n", a / b }'
}
# cell MEDIAN ALL UNIT: "0.743 s (0.739, 0.728, 0.750 s)"
cell() {
	if [[ -z $1 || $1 == - ]]; then
		echo "not measured"
	elif [[ $2 == *,* ]]; then
		echo "$1$3 (${2//,/, }$3)"
	else
		echo "$1$3"
	fi
}
failover_md() {
	echo "## Failover: lvs-director against keepalived VRRP"
	echo
	if [[ $failover_rc == skipped ]]; then
		echo "Not measured in this run (LAB_BENCH_FAILOVER=0)."
		return
	fi
	if [[ $failover_rc != 0 ]]; then
		echo "**The failover run (lab/e2e TestClusterFailover, TestKeepalivedVRRPFailover) failed (exit"
		echo "$failover_rc), see the log: figures it did not print show as not measured.**"
		echo
	fi
	echo "Same run and VM, the topology of \`lab/e2e\` (\`TestClusterFailover\`): a client, a router, three"
	echo "directors, two real servers on a bridge; the client opens a new TCP connection to the VIP every 50 ms"
	echo "(500 ms timeout). **lvs-director**: memberlist with the product's default timers, eBGP to a BIRD 2"
	echo "router, one active-standby VIP with full NAT. **keepalived** $(val keepalived | sed 's/^Keepalived //; s/ (.*//') (\`TestKeepalivedVRRPFailover\`): VRRPv2,"
	echo "advert_int 1, priorities 150/100/50 with preemption; the VIP on the directors' segment with the router"
	echo "(reached over ARP, no BGP) and the real servers' gateway address in one VRRP instance; its"
	echo "virtual_server (NAT, rr) has the same real servers, no health checks. kill -9 kills keepalived's"
	echo "parent and children at once and removes the killed master's addresses right after (keepalived"
	echo "leaves them and its IPVS table behind: the old master would go on serving until the backup's"
	echo "gratuitous ARP); a killed lvs-director's route goes with its BGP session."
	echo
	echo "| event | figure | lvs-director | keepalived | lvs-director / keepalived |"
	echo "| --- | --- | --- | --- | --- |"
	local kind what l k lf kf
	for kind in kill graceful; do
		case $kind in
		kill) what="kill -9 of the owner / master" ;;
		graceful) what="graceful stop (SIGTERM) of the owner / master" ;;
		esac
		l=$(fo lvs-director $kind runs) k=$(fo keepalived $kind runs)
		what="$what; median of ${l:-0} / ${k:-0} runs"
		# The router switches: lvs-director BIRD's log (birdc polled if BIRD never logged it),
		# keepalived its neighbour entry (the VIP on the backup if the entry never changed).
		lf=router kf=router
		[[ $(fo lvs-director $kind router) == - ]] && lf=moved
		[[ $(fo keepalived $kind router) == - ]] && kf=moved
		l=$(fo lvs-director $kind $lf) k=$(fo keepalived $kind $kf)
		echo "| $what | the router sends to the new director | $(cell "$l" "$(fo lvs-director $kind ${lf}_all)" " s") | $(cell "$k" "$(fo keepalived $kind ${kf}_all)" " s") | $(ratio2 "$l" "$k") |"
		l=$(fo lvs-director $kind moved) k=$(fo keepalived $kind moved)
		echo "| | the new director has it (lvs-director: route at it, birdc polled; keepalived: VIP on the backup) | $(cell "$l" "$(fo lvs-director $kind moved_all)" " s") | $(cell "$k" "$(fo keepalived $kind moved_all)" " s") | $(ratio2 "$l" "$k") |"
		l=$(fo lvs-director $kind client) k=$(fo keepalived $kind client)
		echo "| | client ok again | $(cell "$l" "$(fo lvs-director $kind client_all)" " s") | $(cell "$k" "$(fo keepalived $kind client_all)" " s") | $(ratio2 "$l" "$k") |"
		l=$(fo lvs-director $kind answered) k=$(fo keepalived $kind answered)
		[[ -n $k ]] && echo "| | the request after the last failed one answered | $(cell "$l" "$(fo lvs-director $kind answered_all)" " s") | $(cell "$k" "$(fo keepalived $kind answered_all)" " s") | $(ratio2 "$l" "$k") |"
		l=$(fo lvs-director $kind failed) k=$(fo keepalived $kind failed)
		echo "| | failed requests | $(cell "$l" "$(fo lvs-director $kind failed_all)" "") | $(cell "$k" "$(fo keepalived $kind failed_all)" "") | $(ratio2 "$l" "$k") |"
	done
	echo
	echo "How the failover figures are taken (all from the start of the kill or stop, on the VM's clock):"
	echo "the router switch is BIRD's own log timestamp of the new best route (lvs-director) or the time"
	echo "\`ip -ts monitor neigh\` in the router reports its neighbour entry for the VIP at the backup's MAC"
	echo "address (keepalived); the takeover at the director is birdc polled back to back (tens of ms"
	echo "per call under emulation) or \`ip -ts monitor address\` on the backups; \`client ok again\` is the"
	echo "end of the last failed request after the event (as \`TestClusterFailover\` times it), failed"
	echo "requests those that failed in between (a failure takes up to the 500 ms timeout, so the count"
	echo "grows by about 2 per second of outage). With keepalived a connection attempt made while no"
	echo "director holds the VIP waits at the old master for the VIP's ARP and succeeds after the"
	echo "takeover, so \`client ok again\` can be below the takeover time; the row \`the request after the"
	echo "last failed one answered\` is when that request got its answer (measured for keepalived only)."
	echo "lvs-director's partition figures are in the raw lines (\`failover.lvs-director.partition\`)."
}
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
  reads the last service over netlink (one dump of that service, about 1 ms; running
  \`ipvsadm -Ln -t\` instead would take tens of ms of the one vCPU the daemon needs) whenever
  the daemon writes to its log (at most every 10 ms) and every 50 ms otherwise (both daemons; all
  three program the services in that order), and then checks the whole table in
  \`/proc/net/ip_vs\` (service and real server counts); for \`ipvsadm -R\` it is the run time of
  \`ipvsadm -R < rules\`, checked the same way.
  lvs-director also puts every VIP on its dummy interface (keepalived without VRRP adds no
  address), sets up its nftables table, and runs with \`sync_period: 300s\`.
- **The batched floor as a program** (the issue's goal: a cold start within 1.5x of it):
  \`ipvsbatch RULES\` (\`lab/cmd/ipvsbatch\`) reads the rule file \`ipvsadm -R\` reads and applies
  it with the director's netlink client, requests in writes of 256 on one socket; it is started
  with \`ip netns exec\` as the daemons are, and timed from its start to its exit, as
  \`ipvsadm -R\` is. A cold start is measured from the program's start too, so this floor pays
  for a start as the daemon does (\`ip netns exec\` and a Go program's start took 0.06-0.1 s in
  this VM). The row after it compares with the client called inside the test process (no
  start at all), as earlier runs did.
- **Kernel part only**: the same rule set (services and real servers, no VIPs) applied by the
  director's netlink client (\`director.LinuxKernel.ApplyBatch\`, called from the test in a fresh
  namespace), then read back with \`Services()\`, and \`/proc/net/ip_vs\` read whole in the same
  namespace (a helper process in the namespace; the baseline of the read). This is what
  lvs-director's cold start spends in the kernel; the rest of its cold start is the daemon's own
  work (config, plan, start-up).
- **Incremental change**: one real server added to one service at the largest size, at each of
  5 reloads (\`LAB_BENCH_RELOADS\`), 3 s apart.
  The config file is replaced and SIGHUP sent; the time runs from SIGHUP until the service, read
  over netlink whenever the daemon writes to its log (at most every 10 ms) and every 50 ms
  otherwise, shows the new real server. (lvs-director's config path is a symlink to a
  file in another directory, so its file watch stays quiet and only SIGHUP reloads it.) The
  operations are the \`sync applied ops=N\` lines lvs-director logged for the reload.
  The table shows the median of the reloads and each of them (the first after the start pays
  for memory and code the daemon touches for the first time).
- **Memory**: VmRSS from \`/proc/PID/status\`, summed over the daemon's processes (keepalived: parent
  and checker child; started with \`-l -G -n -C\`), 3 s after the table was complete, and again
  3 s after the last reload.
- **The test's own load**: a poll costs the one vCPU 2-4 ms, so the polls are paced by the
  daemons' logs, not by a fast timer (a 10 ms timer took 8-63 ms of reloads of 44-167 ms); and
  the test collects its own garbage before each timed part and holds its collector during it
  (for the batched client too).

- **Health-check CPU**: 100 services x 10 real servers, every real server checked over TCP
  every second (lvs-director \`health_check: {type: tcp, interval: 1s}\`, keepalived
  \`TCP_CHECK\` with \`delay_loop 1\`, \`connect_timeout 1\`; both time out after 1 s). The 1,000
  real servers are listeners of the test process on a dummy interface in the daemon's
  namespace. After 20 s of warm-up, the daemon's user+system time over 30 s (\`/proc/PID/stat\`,
  all its processes) as a share of the one vCPU, the connections the listeners accepted per
  second, and how many real servers the kernel table holds at the end (the checked-up ones).
  A third run checks the same targets with \`type: tcp_half_open\` (a SYN from a raw socket,
  the SYN-ACK answered by the kernel's reset: no connection is accepted, so the listeners
  cannot count these checks and the daemon's own check counter is used).

$(failover_md)

Raw lines of this run:

\`\`\`
$(grep '^BENCH ' "$log")
\`\`\`
EOF
} > "$out"
echo "bench-lab: wrote $out"
if [[ $failover_rc != 0 && $failover_rc != skipped ]]; then
	echo "bench-lab: the failover run failed (exit $failover_rc), some of its figures may be missing from $out; log: $log" >&2
	exit "$failover_rc"
fi
