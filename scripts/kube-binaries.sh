#!/usr/bin/env bash
# Builds kube-apiserver and etcd for the kubernetes integration tests from the
# nested module tools/kube into a cache dir keyed by version, and prints that
# dir. Idempotent: does nothing when both binaries are already there.
#
#   KUBE_CACHE   cache root (default $HOME/.cache/lvs-director-kube)
#
# Use: export KUBE_BIN_DIR="$(scripts/kube-binaries.sh)"
# A cold build of kube-apiserver takes 20+ minutes on 2 cores.
set -euo pipefail

KUBE_VERSION=v1.37.2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mod="$here/tools/kube"
dir="${KUBE_CACHE:-$HOME/.cache/lvs-director-kube}/$KUBE_VERSION"

if [[ -x "$dir/kube-apiserver" && -x "$dir/etcd" ]]; then
	echo "$dir"
	exit 0
fi

mkdir -p "$dir"
cd "$mod"
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

if [[ ! -x "$dir/etcd" ]]; then
	echo "building etcd into $dir" >&2
	go build -trimpath -ldflags '-s -w' -o "$dir/etcd.tmp" ./etcd
	mv "$dir/etcd.tmp" "$dir/etcd"
fi

if [[ ! -x "$dir/kube-apiserver" ]]; then
	echo "building kube-apiserver $KUBE_VERSION into $dir (slow when cold)" >&2
	vpkg=k8s.io/component-base/version
	minor="${KUBE_VERSION#v1.}"
	minor="${minor%%.*}"
	ldflags="-s -w -X $vpkg.gitVersion=$KUBE_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean"
	go build -trimpath -ldflags "$ldflags" -o "$dir/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
	mv "$dir/kube-apiserver.tmp" "$dir/kube-apiserver"
fi

echo "$dir"
