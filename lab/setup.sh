#!/usr/bin/env bash
# lab/setup.sh — prepare the lvs-director lab (issue 4).
#
# Installs the Debian packages the lab needs, fetches Debian's own kernel
# package (not installed: only unpacked into a cache folder), extracts an
# uncompressed vmlinux (booted through the PVH entry point), runs depmod and
# builds the base initramfs (busybox, kmod, iproute2, ipvsadm, nft, BIRD 2
# (bird, birdc: a router for the BGP and cluster scenarios), keepalived (for
# comparison benchmarks), the IPVS / netfilter modules and an /init script).
#
# Idempotent: everything is cached under
#   ${LAB_CACHE:-$HOME/.cache/lvs-director-lab}/<kernel-version>/
# keyed by the kernel version and a hash of this script, so a rerun with
# nothing to do takes well under a second.
#
# Environment:
#   LAB_CACHE        cache root (default $HOME/.cache/lvs-director-lab)
#   LAB_KERNEL_PKG   kernel package to use (default: what linux-image-amd64
#                    depends on, e.g. linux-image-6.1.0-56-amd64)
#   LAB_FORCE=1      rebuild the cache even if it is up to date
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C

CACHE_ROOT=${LAB_CACHE:-$HOME/.cache/lvs-director-lab}
SELF_HASH=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)

log() { echo "lab/setup: $*" >&2; }

SUDO=
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

# --- 1. Debian packages ------------------------------------------------------
PKGS=(qemu-system-x86 busybox-static ipvsadm iproute2 nftables kmod cpio xz-utils bird2 keepalived)
installed=" $(dpkg-query -W -f='${db:Status-Status}:${Package} ' "${PKGS[@]}" 2>/dev/null || true) "
missing=()
for p in "${PKGS[@]}"; do
	case "$installed" in *" installed:$p "*) ;; *) missing+=("$p") ;; esac
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; then
		log "apt-get install failed; running apt-get update and retrying"
		$SUDO apt-get update -q >/dev/null
		$SUDO apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
	fi
fi

# --- 2. which kernel ---------------------------------------------------------
KPKG=${LAB_KERNEL_PKG:-}
if [ -z "$KPKG" ]; then
	KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
	if [ -z "$KPKG" ]; then
		$SUDO apt-get update -q >/dev/null
		KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
	fi
fi
[ -n "$KPKG" ] || { log "cannot find the kernel package"; exit 1; }
KVER=${KPKG#linux-image-}
CACHE=$CACHE_ROOT/$KVER
STAMP=$CACHE/.stamp

# One build at a time (several engineers' test runs call this at once); a waiter then finds
# the cache up to date.
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.setup.lock"
flock 9

if [ "${LAB_FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$SELF_HASH" ] &&
	[ -f "$CACHE/vmlinux" ] && [ -f "$CACHE/initramfs-base.cpio" ]; then
	echo "$KVER" >"$CACHE_ROOT/current"
	log "up to date: $CACHE"
	exit 0
fi

log "building lab cache for $KVER in $CACHE"
mkdir -p "$CACHE"
rm -f "$STAMP"

# --- 3. kernel package -------------------------------------------------------
KROOT=$CACHE/kernel
if [ ! -f "$KROOT/boot/vmlinuz-$KVER" ] || [ ! -f "$KROOT/lib/modules/$KVER/modules.dep" ]; then
	rm -rf "$CACHE/deb" "$KROOT"
	mkdir -p "$CACHE/deb"
	# apt-get download writes into the current directory; _apt may not be
	# able to write into root's cache folder, so download via a temp dir.
	tmpdl=$(mktemp -d)
	chmod 0777 "$tmpdl"
	(cd "$tmpdl" && apt-get download "$KPKG" >/dev/null 2>&1) || {
		$SUDO apt-get update -q >/dev/null
		(cd "$tmpdl" && apt-get download "$KPKG")
	}
	mv "$tmpdl"/*.deb "$CACHE/deb/"
	rmdir "$tmpdl"
	dpkg-deb -x "$CACHE"/deb/*.deb "$KROOT"
	depmod -b "$KROOT" "$KVER"
	rm -rf "$CACHE/deb" # 70 MB we no longer need
fi

# --- 4. vmlinux from bzImage -------------------------------------------------
# Same idea as the kernel's scripts/extract-vmlinux: find the compressed
# payload by its magic and decompress until we get an ELF image.
extract_vmlinux() {
	local img=$1 out=$2
	try() { # $1 magic (tr escapes), $2 placeholder, $3 decompressor
		local pos
		command -v "${3%% *}" >/dev/null || return 1
		for pos in $(tr "$1\n$2" "\n$2=" <"$img" | grep -abo "^$2"); do
			pos=${pos%%:*}
			tail -c+"$pos" "$img" | $3 >"$out" 2>/dev/null || true
			[ "$(head -c 4 "$out" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] && return 0
		done
		return 1
	}
	try '\3757zXZ\000' abcde 'xz -dcq' || try '\037\213\000' xy 'gzip -dcq' ||
		try '(\265/\375' xxx 'zstd -dcq' || try '\002!L\030' xxx 'lz4 -dcq' ||
		try ']\000\000\000' xxx 'unlzma -c'
}
if [ ! -f "$CACHE/vmlinux" ]; then
	log "extracting vmlinux"
	if extract_vmlinux "$KROOT/boot/vmlinuz-$KVER" "$CACHE/vmlinux.tmp"; then
		mv "$CACHE/vmlinux.tmp" "$CACHE/vmlinux"
	else
		rm -f "$CACHE/vmlinux.tmp"
		log "could not extract vmlinux; labexec will boot the bzImage"
	fi
fi
ln -sf "kernel/boot/vmlinuz-$KVER" "$CACHE/bzImage"

# --- 5. base initramfs -------------------------------------------------------
log "building base initramfs"
ST=$CACHE/staging
rm -rf "$ST"
mkdir -p "$ST"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,etc,dev,proc,sys,tmp,run,root,var,mnt,lab/bin}
ln -s ../run "$ST/var/run"
mknod -m 600 "$ST/dev/console" c 5 1
mknod -m 666 "$ST/dev/null" c 1 3

# busybox with applet links for everything except what real tools provide
cp /bin/busybox "$ST/bin/busybox"
REAL_TOOLS=" ip tc modprobe insmod rmmod lsmod depmod modinfo ss nft ipvsadm bird birdc keepalived "
for a in $(/bin/busybox --list); do
	case "$REAL_TOOLS" in *" $a "*) continue ;; esac
	[ "$a" = busybox ] && continue
	ln -s busybox "$ST/bin/$a"
done

# copy a dynamic binary and the shared libraries it needs (paths as ldd sees)
copy_bin() {
	local src=$1 dst=$2 lib
	cp -L "$src" "$ST$dst"
	for lib in $(ldd "$src" | awk '/=> \// {print $3} /^\t\// {print $1}'); do
		[ -e "$ST$lib" ] && continue
		mkdir -p "$ST$(dirname "$lib")"
		cp -L "$lib" "$ST$lib"
	done
}
copy_bin "$(readlink -f /usr/sbin/ip)" /usr/sbin/ip
copy_bin "$(readlink -f /usr/bin/ss 2>/dev/null || readlink -f /bin/ss)" /usr/bin/ss
copy_bin /usr/sbin/ipvsadm /usr/sbin/ipvsadm
copy_bin /usr/sbin/nft /usr/sbin/nft
copy_bin /bin/kmod /usr/bin/kmod
# BIRD 2 for the routers of the BGP/cluster scenarios (control socket and pid file are always
# given with -s/-P in a temp dir); keepalived for comparison benchmarks.
copy_bin /usr/sbin/bird /usr/sbin/bird
copy_bin /usr/sbin/birdc /usr/sbin/birdc
copy_bin /usr/sbin/keepalived /usr/sbin/keepalived
mkdir -p "$ST/etc/bird" "$ST/etc/keepalived"
for t in modprobe insmod rmmod lsmod depmod modinfo; do ln -s ../bin/kmod "$ST/usr/sbin/$t"; done
for t in ip ipvsadm nft modprobe insmod rmmod lsmod; do ln -s "../usr/sbin/$t" "$ST/sbin/$t"; done
# iproute2 data files (rt_tables etc.), optional
for d in /usr/share/iproute2 /etc/iproute2; do
	[ -d "$d" ] && mkdir -p "$ST$d" && cp -a "$d/." "$ST$d/"
done

# modules: the ones the lab loads plus their dependencies
LAB_MODULES="veth dummy crc32c_generic libcrc32c nf_defrag_ipv4 nf_defrag_ipv6 nf_conntrack
 ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_lblc ip_vs_lblcr ip_vs_dh ip_vs_sh
 ip_vs_sed ip_vs_nq ip_vs_mh ip_vs_fo ip_vs_ovf ip_vs_twos
 nf_nat nfnetlink nf_tables nft_chain_nat nft_masq nft_nat nft_ct nf_conntrack_netlink
 sch_netem bridge virtio_pci virtio_net"
MD=$ST/lib/modules/$KVER
mkdir -p "$MD"
loadable=""
for m in $LAB_MODULES; do
	deps=$(modprobe -d "$KROOT" -S "$KVER" --show-depends "$m" 2>/dev/null) || {
		log "module $m not available, skipped"
		continue
	}
	loadable="$loadable $m"
	for f in $(echo "$deps" | awk '$1 == "insmod" {print $2}'); do
		rel=${f#"$KROOT"/lib/modules/"$KVER"/}
		mkdir -p "$MD/$(dirname "$rel")"
		cp "$f" "$MD/$rel"
	done
done
cp "$KROOT/lib/modules/$KVER"/modules.{builtin,builtin.modinfo,order} "$MD/"
depmod -b "$ST" "$KVER"
echo "$loadable" | tr ' ' '\n' | sed '/^$/d' >"$ST/etc/lab-modules"

cat >"$ST/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$ST/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
cat >"$ST/etc/hosts" <<'EOF'
127.0.0.1 localhost
::1 localhost
EOF
echo 'hosts: files' >"$ST/etc/nsswitch.conf"
echo lab >"$ST/etc/hostname"

cat >"$ST/init" <<'EOF'
#!/bin/sh
# lvs-director lab init (PID 1). Built by lab/setup.sh.
export PATH=/lab/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/netns /dev/pts /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /dev/shm 2>/dev/null
# console_loglevel comes from loglevel= on the command line (labexec)
# serial console: no CR insertion, no echo (labexec also strips CRs)
stty -F /dev/console -onlcr -echo 2>/dev/null
hostname lab
for m in $(cat /etc/lab-modules); do
	case $m in
	dummy) modprobe dummy numdummies=0 ;;
	*) modprobe "$m" ;;
	esac || echo "lab-init: modprobe $m failed"
done
/usr/sbin/ip link set lo up
if [ -x /lab/run.sh ]; then
	/lab/run.sh
else
	echo "lab-init: no /lab/run.sh; starting a shell"
	setsid cttyhack sh
fi
sync
poweroff -f
EOF
chmod 755 "$ST/init"

(cd "$ST" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$CACHE/initramfs-base.cpio.tmp"
mv "$CACHE/initramfs-base.cpio.tmp" "$CACHE/initramfs-base.cpio"
rm -rf "$ST"

echo "$SELF_HASH" >"$STAMP"
echo "$KVER" >"$CACHE_ROOT/current"
log "done: $CACHE ($(du -sh "$CACHE/initramfs-base.cpio" | cut -f1) initramfs)"
