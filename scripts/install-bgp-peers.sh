#!/bin/sh
# Installs the independent BGP daemons that the bgp/ package's tests peer with:
# BIRD 2 (bird2: bird, birdc) and GoBGP's daemon (gobgpd: gobgpd, gobgp).
# Idempotent: does nothing when both are present. The packages' own services are
# kept from starting (policy-rc.d during the install, then disabled when systemd runs);
# the tests start their own daemons on loopback addresses.
set -eu

need=""
command -v bird >/dev/null 2>&1 && command -v birdc >/dev/null 2>&1 || need="$need bird2"
command -v gobgpd >/dev/null 2>&1 && command -v gobgp >/dev/null 2>&1 || need="$need gobgpd"
if [ -z "$need" ]; then
	echo "install-bgp-peers: bird2 and gobgpd already installed"
	exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
	SUDO="sudo"
fi

# Keep invoke-rc.d from starting the packaged services during the install.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
	$SUDO chmod 755 "$policy"
	created_policy=1
fi
cleanup() {
	if [ "$created_policy" = 1 ]; then
		$SUDO rm -f "$policy"
	fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends $need; then
	$SUDO apt-get update
	$SUDO apt-get install -y --no-install-recommends $need
fi

# Where systemd runs, make sure the packaged daemons stay off.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	for unit in bird.service gobgpd.service; do
		$SUDO systemctl disable --now "$unit" >/dev/null 2>&1 || true
	done
fi

echo "install-bgp-peers: installed$need"
