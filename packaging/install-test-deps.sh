#!/usr/bin/env bash
# Installs what scripts/test-packaging.sh and the packaging unit tests use, from Debian's
# packages: dpkg/dpkg-deb, systemd-analyze (package systemd; systemd need not run as PID 1),
# groff (man page check), unshare (util-linux) and bash-completion (the completion script
# cobra generates uses its helpers, as on any Debian system). Idempotent: installs only what is
# missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
missing=()
for pair in dpkg-deb:dpkg systemd-analyze:systemd groff:groff-base unshare:util-linux gzip:gzip; do
	command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
[ -f /usr/share/bash-completion/bash_completion ] || missing+=(bash-completion)
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "packaging/install-test-deps: installing ${missing[*]}" >&2
if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; then
	$SUDO apt-get update -q >/dev/null
	$SUDO apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi
