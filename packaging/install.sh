#!/usr/bin/env bash
# packaging/install.sh: install lvs-director without a package manager (`make install`).
#
# Installs the same files as the .deb, under a prefix:
#   $PREFIX/sbin/lvs-director                                  (0755)
#   $UNITDIR/lvs-director.service                              (ExecStart points at $PREFIX/sbin)
#   $PREFIX/lib/modules-load.d/lvs-director.conf               (systemd reads /usr/local/lib/... too)
#   $PREFIX/lib/sysctl.d/60-lvs-director.conf
#   $PREFIX/share/man/man8/lvs-director.8.gz, lvs-director-COMMAND.8.gz
#   $PREFIX/share/bash-completion/completions/lvs-director
#   $PREFIX/share/zsh/vendor-completions/_lvs-director        (zsh: add it to $fpath if needed)
#   $PREFIX/share/fish/vendor_completions.d/lvs-director.fish
#   $PREFIX/share/doc/lvs-director/copyright
#   $SYSCONFDIR/lvs-director/director.yaml                     (0640; never overwritten)
# all under $DESTDIR when set (staging for another packager). It neither enables nor starts
# the service, and does not load modules or apply sysctls: it prints how.
#
# Environment (defaults):
#   DESTDIR     ""                   staging root
#   PREFIX      /usr/local           binary, modules-load.d, sysctl.d, man, completion
#   SYSCONFDIR  /etc                 the daemon's default config is /etc/lvs-director/director.yaml
#   UNITDIR     $PREFIX/lib/systemd/system  (on the default systemd unit path; /etc/systemd/system also works)
#   BINARY      bin/lvs-director     the built binary (`make build`)
#   VERSION     from the binary      shown in the man page
#   DOCS        generated            prebuilt `mkman --out` directory (man pages, completions);
#                                    when unset the binary generates them (needs go for mkman)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
BINARY=${BINARY:-$repo/bin/lvs-director}
GO=${GO:-go}

die() { echo "install.sh: $*" >&2; exit 1; }
[ -x "$BINARY" ] || die "$BINARY is missing or not executable: run 'make build' first"
case "$PREFIX" in /*) ;; *) die "PREFIX must be absolute, got '$PREFIX'" ;; esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -z "${DOCS:-}" ]; then
	command -v "$GO" >/dev/null || die "go is needed to generate the man pages and completions (or set DOCS)"
	version=${VERSION:-$("$BINARY" version | awk '{print $2}')}
	(cd "$repo/packaging" && "$GO" run ./cmd/mkman --binary "$BINARY" --version "$version" --out "$tmp/docs") >/dev/null
	DOCS=$tmp/docs
fi
[ -f "$DOCS/share/man/man8/lvs-director.8.gz" ] || die "$DOCS has no share/man/man8/lvs-director.8.gz"

sed "s|/usr/sbin/lvs-director|$PREFIX/sbin/lvs-director|g" "$repo/systemd/lvs-director.service" >"$tmp/lvs-director.service"

install -D -m 0755 "$BINARY" "$DESTDIR$PREFIX/sbin/lvs-director"
install -D -m 0644 "$tmp/lvs-director.service" "$DESTDIR$UNITDIR/lvs-director.service"
install -D -m 0644 "$repo/systemd/modules-load.d/lvs-director.conf" "$DESTDIR$PREFIX/lib/modules-load.d/lvs-director.conf"
install -D -m 0644 "$repo/systemd/sysctl.d/60-lvs-director.conf" "$DESTDIR$PREFIX/lib/sysctl.d/60-lvs-director.conf"
(cd "$DOCS" && find share -type f) | sort | while read -r f; do
	install -D -m 0644 "$DOCS/$f" "$DESTDIR$PREFIX/$f"
done
install -D -m 0644 "$repo/packaging/copyright" "$DESTDIR$PREFIX/share/doc/lvs-director/copyright"

conf=$DESTDIR$SYSCONFDIR/lvs-director/director.yaml
if [ -e "$conf" ]; then
	echo "install.sh: kept the existing $conf"
else
	install -D -m 0640 "$repo/examples/director.yaml" "$conf"
fi

cat <<MSG
install.sh: installed lvs-director under ${DESTDIR}${PREFIX}.
Next: edit $SYSCONFDIR/lvs-director/director.yaml, then
  systemctl daemon-reload
  systemd-modules-load && systemd-sysctl     # or reboot
  systemctl enable --now lvs-director
MSG
