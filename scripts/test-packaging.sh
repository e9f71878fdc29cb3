#!/usr/bin/env bash
# scripts/test-packaging.sh: builds lvs-director and its .deb and checks them for real:
# package metadata and contents, the maintainer scripts (run with stub commands), the
# systemd unit (systemd-analyze verify and security), an install into a throwaway dpkg
# root, an upgrade that must keep an edited conffile, removal and purge, and
# packaging/install.sh into a DESTDIR. Ends with "packaging: N passed, M failed"; exits
# non-zero when any check failed.
#
# Needs dpkg, systemd-analyze, groff, unshare and bash-completion (packaging/install-test-deps.sh
# installs them); when one is missing it stops with a message, or fails under
# LVS_REQUIRE_EXTERNAL=1.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export PATH=$PATH:/usr/local/go/bin
GO=${GO:-go}

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   - $1"; }
fail() { failed=$((failed + 1)); echo "FAIL - $1"; }
# check DESC EXPECTED SEEN
check() {
	if [ "$2" == "$3" ]; then ok "$1"; else fail "$1"$'\n'"       expected: $2"$'\n'"       saw:      $3"; fi
}
# contains DESC NEEDLE HAYSTACK
contains() {
	if [[ "$3" == *"$2"* ]]; then ok "$1"; else fail "$1"$'\n'"       expected to contain: $2"$'\n'"       saw: $3"; fi
}
lacks() {
	if [[ "$3" != *"$2"* ]]; then ok "$1"; else fail "$1"$'\n'"       expected not to contain: $2"$'\n'"       saw: $3"; fi
}
finish() {
	echo "packaging: $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit
}
fatal() { fail "$1"; finish; }

for tool in dpkg dpkg-deb systemd-analyze groff unshare gzip "$GO" make; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		if [ "${LVS_REQUIRE_EXTERNAL:-}" = 1 ]; then
			fatal "$tool is not installed (packaging/install-test-deps.sh installs it)"
		fi
		echo "test-packaging: SKIP: $tool is not installed; run packaging/install-test-deps.sh"
		exit 0
	fi
done
bash_completion=/usr/share/bash-completion/bash_completion
if [ ! -f "$bash_completion" ]; then
	[ "${LVS_REQUIRE_EXTERNAL:-}" = 1 ] && fatal "bash-completion is not installed (packaging/install-test-deps.sh installs it)"
	echo "test-packaging: SKIP: bash-completion is not installed; run packaging/install-test-deps.sh"
	exit 0
fi

tmp=$(mktemp -d /tmp/test-packaging.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# --- build ------------------------------------------------------------------------------
make -s build >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; fatal "make build"; }
bin=$repo/bin/lvs-director
(cd packaging && "$GO" build -o "$tmp/mkdeb" ./cmd/mkdeb) >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; fatal "build mkdeb"; }
export SOURCE_DATE_EPOCH=1700000000
deb1=$("$tmp/mkdeb" --repo "$repo" --binary "$bin" --version v1.0.0 --out "$tmp/dist1") || fatal "mkdeb v1.0.0"
check "package file name" "$tmp/dist1/lvs-director_1.0.0_amd64.deb" "$deb1"

# --- metadata -----------------------------------------------------------------------------
field() { dpkg-deb --field "$1" "$2"; }
check "Package" "lvs-director" "$(field "$deb1" Package)"
check "Version" "1.0.0" "$(field "$deb1" Version)"
check "Architecture" "amd64" "$(field "$deb1" Architecture)"
check "no Depends (static binary)" "" "$(field "$deb1" Depends)"
check "Recommends" "ipvsadm, iproute2, kmod" "$(field "$deb1" Recommends)"
check "conffiles" "/etc/lvs-director/director.yaml" "$(dpkg-deb --info "$deb1" conffiles)"
info=$(dpkg-deb --info "$deb1")
for s in postinst prerm postrm; do contains "control has $s" " $s " "$info"; done
lacks "no preinst" " preinst " "$info"

# --- contents: mode owner path --------------------------------------------------------
# The commands lvs-director --help lists (cobra's "Available Commands:" section), but help.
commands=$("$bin" --help | sed -n '/^Available Commands:/,/^$/p' | awk 'NR > 1 && NF > 1 && $1 != "help" {print $1}')
contains "--help lists the commands" "run validate plan cleanup status drain undrain version completion" "$(echo $commands)"
contents=$(dpkg-deb --contents "$deb1" | awk '$1 !~ /^d/ {print $1, $2, $6}' | sort)
expected=$(sort <<'LIST'
-rwxr-xr-x root/root ./usr/sbin/lvs-director
-rw-r--r-- root/root ./lib/systemd/system/lvs-director.service
-rw-r--r-- root/root ./usr/lib/modules-load.d/lvs-director.conf
-rw-r--r-- root/root ./usr/lib/sysctl.d/60-lvs-director.conf
-rw-r----- root/root ./etc/lvs-director/director.yaml
-rw-r--r-- root/root ./usr/share/bash-completion/completions/lvs-director
-rw-r--r-- root/root ./usr/share/zsh/vendor-completions/_lvs-director
-rw-r--r-- root/root ./usr/share/fish/vendor_completions.d/lvs-director.fish
-rw-r--r-- root/root ./usr/share/doc/lvs-director/copyright
LIST
)
check "file list with modes (man pages apart)" "$expected" "$(grep -v '/man8/' <<<"$contents")"
# One man page per command (cobra's generator), and no other file in man8.
expected=$(for c in "" $commands; do echo "-rw-r--r-- root/root ./usr/share/man/man8/lvs-director${c:+-$c}.8.gz"; done
	for s in bash fish powershell zsh; do echo "-rw-r--r-- root/root ./usr/share/man/man8/lvs-director-completion-$s.8.gz"; done)
check "man pages: lvs-director.8 and one per command" "$(sort <<<"$expected")" "$(grep '/man8/' <<<"$contents")"

# --- maintainer scripts -----------------------------------------------------------------
mkdir -p "$tmp/ctrl" && dpkg-deb --control "$deb1" "$tmp/ctrl"
# Static: no command line in postinst starts or enables the service.
starts=$(grep -vE '^\s*(#|echo )' "$tmp/ctrl/postinst" | grep -E '(systemctl|deb-systemd-invoke|invoke-rc\.d|service)\s.*\b(start|enable|restart|try-restart|reload-or-restart)\b' || true)
check "postinst never starts/enables the service (static)" "" "$starts"
# Dynamic: run the scripts with logging stubs, /run/systemd/system present in a private
# mount namespace (systemd "running"), and see what they call.
stub=$tmp/stub
mkdir -p "$stub"
for c in systemctl systemd-modules-load systemd-sysctl modprobe sysctl deb-systemd-helper; do
	printf '#!/bin/sh\necho "%s $*" >>"%s/calls"\n' "$c" "$tmp" >"$stub/$c"
	chmod 755 "$stub/$c"
done
run_script() { # SCRIPT ARGS...: prints the commands it called
	: >"$tmp/calls"
	unshare -m sh -c 'mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && PATH="$0:$PATH" exec sh "$@"' \
		"$stub" "$tmp/ctrl/$1" "${@:2}" >"$tmp/script.out" 2>&1 || echo "exit $?" >>"$tmp/calls"
	cat "$tmp/calls"
}
if unshare -m true 2>/dev/null; then
	check "postinst configure (fresh install)" "systemctl daemon-reload
systemd-modules-load /usr/lib/modules-load.d/lvs-director.conf
systemd-sysctl /usr/lib/sysctl.d/60-lvs-director.conf" "$(run_script postinst configure '')"
	check "postinst configure (upgrade): only asks whether it runs" "systemctl daemon-reload
systemd-modules-load /usr/lib/modules-load.d/lvs-director.conf
systemd-sysctl /usr/lib/sysctl.d/60-lvs-director.conf
systemctl is-active --quiet lvs-director.service" "$(run_script postinst configure 1.0.0)"
	check "prerm remove stops the service" "systemctl stop lvs-director.service" "$(run_script prerm remove)"
	check "prerm upgrade leaves it running" "" "$(run_script prerm upgrade 1.0.1)"
	check "postrm remove reloads systemd" "systemctl daemon-reload" "$(run_script postrm remove)"
	check "postinst rejects an unknown action" "exit 1" "$(run_script postinst bogus)"
else
	fatal "unshare -m is not permitted here: cannot run the maintainer scripts safely"
fi

# --- the unit ---------------------------------------------------------------------------
# verify on the packaged unit, with ExecStart pointing at the packaged binary and man
# pages from the package (systemd-analyze checks both exist).
root=$tmp/root
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" && touch "$root/var/lib/dpkg/status"
dpkg_root() { dpkg --root="$root" --force-script-chrootless --log="$tmp/dpkg.log" "$@"; }

out=$(dpkg_root -i "$deb1" 2>&1)
check "dpkg -i into a throwaway root" "0" "$?"
contains "postinst ran and skipped the host explicitly" "lvs-director: DPKG_ROOT=$root: skipping daemon-reload, modules and sysctls" "$out"
check "dpkg status" "install ok installed 1.0.0" "$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Status} ${Version}' lvs-director)"
contains "dpkg lists the conffile" " /etc/lvs-director/director.yaml " "$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Conffiles}' lvs-director)"
check "host dpkg database untouched" "" "$(dpkg-query -W -f='${Status}' lvs-director 2>/dev/null)"
for m in "755 usr/sbin/lvs-director" "640 etc/lvs-director/director.yaml" "644 lib/systemd/system/lvs-director.service" \
	"644 usr/lib/sysctl.d/60-lvs-director.conf" "644 usr/lib/modules-load.d/lvs-director.conf" "644 usr/share/man/man8/lvs-director.8.gz"; do
	check "installed mode of /${m#* }" "$m" "$(stat -c '%a %n' "$root/${m#* }" | sed "s|$root/||")"
done
contains "installed binary runs" "lvs-director " "$("$root/usr/sbin/lvs-director" version 2>&1)"
contains "the shipped config is valid" "valid" "$("$root/usr/sbin/lvs-director" validate --config "$root/etc/lvs-director/director.yaml" 2>&1)"

mkdir -p "$tmp/unit"
sed "s|/usr/sbin/lvs-director|$root/usr/sbin/lvs-director|g" "$root/lib/systemd/system/lvs-director.service" >"$tmp/unit/lvs-director.service"
out=$(MANPATH=$root/usr/share/man systemd-analyze verify "$tmp/unit/lvs-director.service" 2>&1)
check "systemd-analyze verify: no complaints" "0:" "$?:$out"
sec=$(systemd-analyze security --offline=yes "$tmp/unit/lvs-director.service" 2>&1 | sed -n 's/.*Overall exposure level for lvs-director.service: \([0-9.]*\).*/\1/p')
if [ -n "$sec" ] && awk -v s="$sec" 'BEGIN { exit !(s <= 3.0) }'; then ok "systemd-analyze security exposure $sec <= 3.0"; else fail "systemd-analyze security exposure: expected <= 3.0, saw '$sec'"; fi
unit=$(cat "$root/lib/systemd/system/lvs-director.service")
for l in "Type=notify" "NotifyAccess=main" "WatchdogSec=30s" "ExecReload=/bin/kill -HUP \$MAINPID" "Restart=on-failure" \
	"TimeoutStopSec=15s" "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_CHOWN CAP_NET_RAW" \
	"ReadWritePaths=/proc/sys/net" "RuntimeDirectoryPreserve=yes" "ProtectKernelModules=yes"; do
	contains "unit has $l" $'\n'"$l"$'\n' "$unit"
done

# --- man pages and completion ----------------------------------------------------------
mandir=$root/usr/share/man/man8
: >"$tmp/groff.err"
for page in "$mandir"/lvs-director*.8.gz; do
	gzip -dc "$page" | groff -man -Tutf8 -ww -P-cbou >/dev/null 2>>"$tmp/groff.err"
done
check "every man page renders without groff warnings" "" "$(cat "$tmp/groff.err")"
render() { gzip -dc "$1" | groff -man -Tutf8 -P-cbou -rHY=0 -rLL=300n 2>&1 | tr -s ' \n' ' '; }
man=$(render "$mandir/lvs-director.8.gz")
contains "lvs-director(8) names the program" "lvs-director - a Linux LVS (IPVS) director" "$man"
contains "lvs-director(8) documents signals" "SIGHUP reload the configuration file" "$man"
contains "lvs-director(8) documents the exit status" "2 on a usage error" "$man"
contains "lvs-director(8) shows the package version" "lvs-director 1.0.0" "$man"
for c in $commands; do
	contains "lvs-director-$c(8) documents '$c'" "lvs-director $c" "$(render "$mandir/lvs-director-$c.8.gz" 2>&1)"
	contains "lvs-director(8) refers to lvs-director-$c(8)" "lvs-director-$c(8)" "$man"
done
contains "lvs-director-run(8) documents --log-level" '--log-level="info" log level: debug, info, warn, error' "$(render "$mandir/lvs-director-run.8.gz")"
# The bash script cobra generates asks the installed binary (lvs-director __complete ...), with
# bash-completion's helpers as on a Debian system. complete WORDS...: the last word is completed.
complete_words() {
	PATH=$root/usr/sbin:$PATH bash --norc -c '
		. "$1"; . "$2"; shift 2
		COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
		__start_lvs-director 2>/dev/null; echo "${COMPREPLY[*]}"' _ \
		"$bash_completion" "$root/usr/share/bash-completion/completions/lvs-director" "$@"
}
check "completion offers the commands" "run validate plan cleanup status drain undrain version completion help" "$(complete_words lvs-director "")"
check "completion of a command prefix" "undrain" "$(complete_words lvs-director un)"
check "completion of run's flags" "--config --help --log-format --log-level" "$(complete_words lvs-director run --)"
check "completion of --log-level values" "debug info warn error" "$(complete_words lvs-director run --log-level "")"
check "completion of --log-format values" "json" "$(complete_words lvs-director run --log-format j)"
touch "$tmp/director.yaml"
check "completion of --config: files" "$tmp/director.yaml" "$(complete_words lvs-director validate --config "$tmp/dir")"
contains "zsh completion" "#compdef lvs-director" "$(cat "$root/usr/share/zsh/vendor-completions/_lvs-director")"
contains "fish completion" "complete -c lvs-director" "$(cat "$root/usr/share/fish/vendor_completions.d/lvs-director.fish")"

# --- upgrade keeps an edited conffile ---------------------------------------------------
echo "# local edit by the operator" >>"$root/etc/lvs-director/director.yaml"
edited=$(cat "$root/etc/lvs-director/director.yaml")
# The next version also changes the shipped config: the case where dpkg has to choose.
repo2=$tmp/repo2
mkdir -p "$repo2" && cp -r systemd examples "$repo2/" && mkdir -p "$repo2/packaging" && cp -r packaging/deb packaging/copyright "$repo2/packaging/"
echo "# new in 1.0.1" >>"$repo2/examples/director.yaml"
deb2=$("$tmp/mkdeb" --repo "$repo2" --binary "$bin" --version v1.0.1 --out "$tmp/dist2") || fatal "mkdeb v1.0.1"
out=$(dpkg_root --force-confold -i "$deb2" 2>&1 </dev/null)
check "dpkg upgrade to 1.0.1" "0" "$?"
check "upgraded version" "install ok installed 1.0.1" "$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Status} ${Version}' lvs-director)"
check "the edited config survived the upgrade" "$edited" "$(cat "$root/etc/lvs-director/director.yaml")"
contains "the new shipped config is beside it as .dpkg-dist" "# new in 1.0.1" "$(cat "$root/etc/lvs-director/director.yaml.dpkg-dist" 2>&1)"
contains "prerm upgrade and postinst ran chrootless" "DPKG_ROOT=$root: skipping daemon-reload" "$out"

# --- remove and purge ---------------------------------------------------------------------
out=$(dpkg_root -r lvs-director 2>&1)
check "dpkg -r" "0" "$?"
check "binary removed" "no" "$([ -e "$root/usr/sbin/lvs-director" ] && echo yes || echo no)"
check "conffile kept on remove" "$edited" "$(cat "$root/etc/lvs-director/director.yaml" 2>&1)"
contains "prerm skipped the host on remove" "DPKG_ROOT=$root: not stopping any service" "$out"
dpkg_root -P lvs-director >/dev/null 2>&1
check "dpkg -P" "0" "$?"
check "conffile removed on purge" "no" "$([ -e "$root/etc/lvs-director/director.yaml" ] && echo yes || echo no)"

# --- packaging/install.sh -----------------------------------------------------------------
dest=$tmp/destdir
DESTDIR=$dest bash packaging/install.sh >"$tmp/install.out" 2>&1
check "install.sh into DESTDIR" "0" "$?"
for m in "755 usr/local/sbin/lvs-director" "644 usr/local/lib/systemd/system/lvs-director.service" \
	"644 usr/local/lib/modules-load.d/lvs-director.conf" "644 usr/local/lib/sysctl.d/60-lvs-director.conf" \
	"644 usr/local/share/man/man8/lvs-director.8.gz" "644 usr/local/share/man/man8/lvs-director-drain.8.gz" \
	"644 usr/local/share/bash-completion/completions/lvs-director" "644 usr/local/share/zsh/vendor-completions/_lvs-director" \
	"644 usr/local/share/fish/vendor_completions.d/lvs-director.fish" \
	"644 usr/local/share/doc/lvs-director/copyright" "640 etc/lvs-director/director.yaml"; do
	check "install.sh: mode of /${m#* }" "$m" "$(stat -c '%a %n' "$dest/${m#* }" 2>&1 | sed "s|$dest/||")"
done
check "install.sh: ExecStart uses the prefix" "ExecStart=/usr/local/sbin/lvs-director run --config \${LVS_DIRECTOR_CONFIG}" \
	"$(grep '^ExecStart=' "$dest/usr/local/lib/systemd/system/lvs-director.service")"
check "install.sh: no /usr/sbin path left in the unit" "" "$(grep -n '/usr/sbin/' "$dest/usr/local/lib/systemd/system/lvs-director.service")"
echo "# mine" >>"$dest/etc/lvs-director/director.yaml"
mine=$(cat "$dest/etc/lvs-director/director.yaml")
DESTDIR=$dest bash packaging/install.sh >"$tmp/install.out" 2>&1
check "install.sh again" "0" "$?"
check "install.sh never overwrites the config" "$mine" "$(cat "$dest/etc/lvs-director/director.yaml")"
DESTDIR=$tmp/d2 PREFIX=/opt/lvs BINARY=$tmp/nope bash packaging/install.sh >"$tmp/install.out" 2>&1
check "install.sh without a binary fails" "1" "$?"

finish
