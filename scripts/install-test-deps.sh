#!/usr/bin/env bash
# Installs every outside program the unit tests use, from Debian's packages. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d /var/lib/apt/lists ] || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ]; then
	apt-get update -q >/dev/null
fi
sh scripts/install-bgp-peers.sh
