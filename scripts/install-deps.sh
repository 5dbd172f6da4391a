#!/usr/bin/env bash
# install-deps.sh: the Debian packages a Containarium host needs (Incus, the
# storage and image tools, sshd, nftables so Incus has a firewall driver),
# installed with apt only when one is missing: a second run does nothing, not
# even `apt-get update`. Used by scripts/quickstart.sh and by the end-to-end
# harness (tests/e2e/includes/env.sh), which adds its own test tools.
#
#   sudo scripts/install-deps.sh [--dry-run] [--log FILE] [EXTRA_PACKAGE...]
#
#   --dry-run    print what would be installed, install nothing
#   --log FILE   append apt's output to FILE (its tail is shown on failure)
#
# Incus comes from bookworm-backports on Debian 12 (a deb822 source for it is
# added when no apt source names bookworm-backports yet), from the
# distribution on Debian 13 and Ubuntu. Everything is installed without
# Recommends. The last line says what was installed, or "all installed,
# unchanged".
set -euo pipefail

prog=${0##*/}
die() {
	echo "$prog: error: $*" >&2
	exit 1
}

dry_run=0
log=
extra=()
while [ $# -gt 0 ]; do
	case $1 in
	--dry-run) dry_run=1; shift ;;
	--log) log=${2:?--log needs a file}; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
	-*) die "unknown option: $1 (see --help)" ;;
	*) extra+=("$1"); shift ;;
	esac
done

# What a bastion needs: Incus and what it runs (dnsmasq for the bridge,
# nftables/iptables for its firewall, uidmap for unprivileged containers),
# btrfs-progs for a pool on a loop file, debootstrap/xz/pigz for
# scripts/build-image.sh, jq for the scripts, sshd for the jump accounts.
want=(incus btrfs-progs debootstrap openssh-server openssh-client jq xz-utils pigz
	dnsmasq-base iproute2 iptables nftables uidmap procps "${extra[@]}")
BACKPORTS_SOURCE=/etc/apt/sources.list.d/containarium-backports.sources

missing=()
for p in "${want[@]}"; do
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
	echo "packages: all installed, unchanged"
	exit 0
fi
[ "$(id -u)" -eq 0 ] || die "must run as root to install ${missing[*]}"

# shellcheck source=/dev/null
os=$(. /etc/os-release && echo "${ID:-}:${VERSION_ID:-}")
backports=0
case " ${missing[*]} " in
*" incus "*) [ "$os" != debian:12 ] || backports=1 ;;
esac
case $os in
debian:* | ubuntu:*) ;;
*) die "not Debian or Ubuntu ($os): install ${missing[*]} yourself" ;;
esac

if [ "$dry_run" -eq 1 ]; then
	[ "$backports" -eq 0 ] || echo "packages: would add $BACKPORTS_SOURCE (for incus) unless a source names bookworm-backports"
	echo "packages: would install ${missing[*]}"
	exit 0
fi

if [ "$backports" -eq 1 ] &&
	! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
	cat >"$BACKPORTS_SOURCE" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	echo "packages: added $BACKPORTS_SOURCE"
fi

apt=(apt-get -q -y -o DPkg::Lock::Timeout=300 --no-install-recommends)
plain=() incus=()
for p in "${missing[@]}"; do
	if [ "$p" = incus ] && [ "$backports" -eq 1 ]; then incus=(incus); else plain+=("$p"); fi
done
install() {
	export DEBIAN_FRONTEND=noninteractive
	apt-get -q -o DPkg::Lock::Timeout=300 update &&
		if [ "${#plain[@]}" -gt 0 ]; then "${apt[@]}" install "${plain[@]}"; fi &&
		if [ "${#incus[@]}" -gt 0 ]; then "${apt[@]}" install -t bookworm-backports incus; fi
}
echo "packages: installing ${missing[*]}"
if [ -n "$log" ]; then
	install >>"$log" 2>&1 || {
		tail -n 30 "$log" >&2
		die "apt failed (log: $log)"
	}
else
	install || die "apt failed"
fi
echo "packages: installed ${missing[*]}"
