#!/usr/bin/env bash
# build-image.sh: build a cloud-init capable Incus system-container image for
# containarium with debootstrap, without any image server.
#
# Usage (as root):
#   scripts/build-image.sh [options]
#
#   --distro debian|ubuntu   distribution (default: debian)
#   --suite NAME             release (default: bookworm for debian, noble for ubuntu;
#                            tested: bookworm and trixie, Debian 12 and 13)
#   --mirror URL             package mirror (default: deb.debian.org / archive.ubuntu.com)
#   --security-mirror URL    security mirror ("none" to skip)
#   --arch ARCH              Debian architecture (default: the host's)
#   --alias NAME             import into Incus under this alias (replaces an old one)
#   --project NAME           Incus project to import into (default: client default)
#   --output DIR             write meta.tar.<c> and rootfs.tar.<c> into DIR
#   --compression gz|xz      tarball compression (default: gz, fast; xz is smaller)
#   --no-docker              leave docker.io out
#   --deb-cache DIR          keep downloaded .debs in DIR to speed up rebuilds
#   --cache DIR              keep the two tarballs in DIR/image-KEY and build only
#                            when they are not there: KEY names the distribution,
#                            suite, architecture, variant, compression and this
#                            script's own hash, so a changed script builds anew
#                            (and removes the older build of the same image)
#   -q, --quiet              only print errors and the result
#   -h, --help
#
# At least one of --alias, --output and --cache is required. With --output the two
# tarballs can be carried to an air-gapped bastion and imported there with
#   incus image import meta.tar.gz rootfs.tar.gz --alias NAME
#
# The image: systemd, udev, dbus, systemd-networkd (DHCP on eth0) and
# systemd-resolved, openssh-server (no host keys baked in: cloud-init or
# ssh-keygen -A make them on first boot), sudo, en_US.UTF-8 locale, cloud-init
# (NoCloud seed written by Incus templates from cloud-init.user-data,
# cloud-init.vendor-data and cloud-init.network-config), an empty machine-id,
# and docker.io started on demand: docker.socket is enabled, docker.service and
# containerd.service are disabled, so an idle container runs neither dockerd nor
# containerd; the first docker command starts both.
set -euo pipefail

prog=${0##*/}
die() {
	echo "$prog: error: $*" >&2
	exit 1
}
usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; }

distro=debian
suite=
mirror=
security_mirror=
arch=
alias_name=
project=
output=
compression=gz
docker=1
deb_cache=
cache=
quiet=0

while [ $# -gt 0 ]; do
	case $1 in
	--distro) distro=${2:?}; shift 2 ;;
	--suite) suite=${2:?}; shift 2 ;;
	--mirror) mirror=${2:?}; shift 2 ;;
	--security-mirror) security_mirror=${2:?}; shift 2 ;;
	--arch) arch=${2:?}; shift 2 ;;
	--alias) alias_name=${2:?}; shift 2 ;;
	--project) project=${2:?}; shift 2 ;;
	--output) output=${2:?}; shift 2 ;;
	--compression) compression=${2:?}; shift 2 ;;
	--no-docker) docker=0; shift ;;
	--deb-cache) deb_cache=${2:?}; shift 2 ;;
	--cache) cache=${2:?}; shift 2 ;;
	-q | --quiet) quiet=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done

case $distro in
debian)
	suite=${suite:-bookworm}
	mirror=${mirror:-http://deb.debian.org/debian}
	security_mirror=${security_mirror:-http://deb.debian.org/debian-security}
	components=main
	keyring=/usr/share/keyrings/debian-archive-keyring.gpg
	;;
ubuntu)
	suite=${suite:-noble}
	mirror=${mirror:-http://archive.ubuntu.com/ubuntu}
	security_mirror=${security_mirror:-http://security.ubuntu.com/ubuntu}
	components=main,universe
	keyring=/usr/share/keyrings/ubuntu-archive-keyring.gpg
	;;
*) die "--distro must be debian or ubuntu" ;;
esac
case $compression in
gz | xz) ;;
*) die "--compression must be gz or xz" ;;
esac
[ -n "$alias_name$output$cache" ] || die "give --alias NAME, --output DIR or --cache DIR (see --help)"
[ "$(id -u)" -eq 0 ] || die "must run as root"
if [ -n "$alias_name" ]; then
	command -v incus >/dev/null || die "--alias needs the incus client"
	command -v jq >/dev/null || die "--alias needs jq"
fi
arch=${arch:-$(dpkg --print-architecture)}
case $arch in
amd64) incus_arch=x86_64 ;;
arm64) incus_arch=aarch64 ;;
*) incus_arch=$arch ;;
esac

log() { [ "$quiet" -eq 1 ] || printf '%s: [%(%H:%M:%S)T] %s\n' "$prog" -1 "$*" >&2; }
# Run a noisy command; show its output only when it fails.
run() {
	local out rc=0
	out=$("$@" 2>&1) || rc=$?
	if [ "$rc" -ne 0 ]; then
		printf '%s\n' "$out" | tail -n 40 >&2
		die "command failed (exit $rc): $*"
	fi
	[ "$quiet" -eq 1 ] || [ -z "${VERBOSE:-}" ] || printf '%s\n' "$out" >&2
}

# deliver: write --output and import --alias from $meta_tar and $rootfs_tar
# (fingerprint $fingerprint), built now or found in the cache.
deliver() {
	if [ -n "$output" ]; then
		mkdir -p "$output"
		rm -f "$output"/meta.tar.gz "$output"/meta.tar.xz "$output"/rootfs.tar.gz "$output"/rootfs.tar.xz
		cp "$meta_tar" "$rootfs_tar" "$output/"
		echo "$fingerprint" >"$output/fingerprint"
		log "wrote $output/meta.tar.$compression $output/rootfs.tar.$compression"
	fi

	if [ -n "$alias_name" ]; then
		pargs=()
		[ -z "$project" ] || pargs=(--project "$project")
		images=$(incus image list "${pargs[@]}" --format json)
		old=$(jq -r --arg a "$alias_name" '.[] | select(any(.aliases[]?; .name == $a)) | .fingerprint' <<<"$images")
		if [ "$old" = "$fingerprint" ]; then
			log "image $alias_name is already $fingerprint"
		else
			if ! jq -e --arg f "$fingerprint" 'any(.[]; .fingerprint == $f)' <<<"$images" >/dev/null; then
				run incus image import "${pargs[@]}" "$meta_tar" "$rootfs_tar"
			fi
			if [ -n "$old" ]; then
				run incus image alias delete "${pargs[@]}" "$alias_name"
				# Drop the replaced image unless another alias still names it.
				if jq -e --arg f "$old" '.[] | select(.fingerprint == $f) | (.aliases | length) <= 1' <<<"$images" >/dev/null; then
					run incus image delete "${pargs[@]}" "$old"
				fi
			fi
			run incus image alias create "${pargs[@]}" "$alias_name" "$fingerprint"
			log "imported as $alias_name"
		fi
	fi
	log "done in $(($(date +%s) - start)) s, fingerprint $fingerprint"
	echo "$fingerprint"
}

start=$(date +%s)

# --- the cache ---------------------------------------------------------------------
cache_dir=
if [ -n "$cache" ]; then
	key=$distro-$suite-$arch-$([ "$docker" -eq 1 ] && echo docker || echo nodocker)-$compression
	cache_dir=$cache/image-$key-$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
	if [ -s "$cache_dir/fingerprint" ] && [ -s "$cache_dir/meta.tar.$compression" ] &&
		[ -s "$cache_dir/rootfs.tar.$compression" ]; then
		log "using the image cached in $cache_dir"
		meta_tar=$cache_dir/meta.tar.$compression
		rootfs_tar=$cache_dir/rootfs.tar.$compression
		fingerprint=$(cat "$cache_dir/fingerprint")
		deliver
		exit 0
	fi
fi

for c in debootstrap chroot tar mount umount; do
	command -v "$c" >/dev/null || die "missing command: $c (apt-get install debootstrap)"
done
[ -r "$keyring" ] || die "missing keyring $keyring (apt-get install ${distro}-keyring)"

work=$(mktemp -d /var/tmp/containarium-image.XXXXXX)
rootfs=$work/rootfs

umount_all() {
	local m
	# Deepest mounts first.
	while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done < <(awk -v p="$rootfs" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r)
}
cleanup() {
	local rc=$?
	umount_all
	if awk -v p="$rootfs" 'index($2, p) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
		echo "$prog: warning: mounts left under $rootfs; not removing $work" >&2
	else
		rm -rf --one-file-system "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# --- stage 1: debootstrap -----------------------------------------------------
script_arg=()
if [ ! -e "/usr/share/debootstrap/scripts/$suite" ]; then
	# Newer Ubuntu releases than the host's debootstrap knows share one script.
	[ "$distro" = ubuntu ] || die "debootstrap does not know suite $suite"
	script_arg=(/usr/share/debootstrap/scripts/gutsy)
fi
cache_arg=()
if [ -n "$deb_cache" ]; then
	mkdir -p "$deb_cache"
	cache_arg=(--cache-dir="$(cd "$deb_cache" && pwd)")
fi
log "debootstrap $distro $suite ($arch) from $mirror"
run debootstrap --variant=minbase --arch="$arch" --components="$components" \
	--keyring="$keyring" "${cache_arg[@]}" "$suite" "$rootfs" "$mirror" "${script_arg[@]}"

# --- stage 2: packages in a chroot ---------------------------------------------
in_root() {
	chroot "$rootfs" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		LC_ALL=C DEBIAN_FRONTEND=noninteractive HOME=/root "$@"
}

# Never start services inside the chroot (they would run on the build host).
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
# Build-time only: no fsync, no docs/man pages/translations.
echo force-unsafe-io >"$rootfs/etc/dpkg/dpkg.cfg.d/zz-containarium-build"
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/zz-containarium-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
EOF
echo 'APT::Install-Recommends "false";' >"$rootfs/etc/apt/apt.conf.d/90containarium-norecommends"
rm -f "$rootfs/etc/resolv.conf"
cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf"

case $distro in
debian)
	rm -f "$rootfs/etc/apt/sources.list"
	{
		printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: %s\nSigned-By: %s\n' \
			"$mirror" "$suite" "$suite" "${components//,/ }" "$keyring"
		if [ "$security_mirror" != none ]; then
			printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: %s\nSigned-By: %s\n' \
				"$security_mirror" "$suite" "${components//,/ }" "$keyring"
		fi
	} >"$rootfs/etc/apt/sources.list.d/debian.sources"
	;;
ubuntu)
	{
		echo "deb $mirror $suite ${components//,/ }"
		echo "deb $mirror $suite-updates ${components//,/ }"
		[ "$security_mirror" = none ] || echo "deb $security_mirror $suite-security ${components//,/ }"
	} >"$rootfs/etc/apt/sources.list"
	;;
esac

mount -t proc proc "$rootfs/proc"
if [ -n "$deb_cache" ]; then
	mount --bind "$deb_cache" "$rootfs/var/cache/apt/archives"
fi

pkgs=(systemd-sysv udev dbus openssh-server sudo locales cloud-init systemd-resolved
	ca-certificates iproute2 less)
[ "$docker" -eq 0 ] || pkgs+=(docker.io)
log "installing ${pkgs[*]}"
run in_root apt-get -q update
run in_root apt-get -q -y -o Dpkg::Options::=--force-confold dist-upgrade
# systemd-resolved's postinst points /etc/resolv.conf at its stub (absent in a
# chroot): nothing that needs DNS may run after this install.
run in_root apt-get -q -y -o Dpkg::Options::=--force-confold install "${pkgs[@]}"

log "configuring"
# Locale (cloud-init's locale module fails without it).
case $distro in
debian)
	echo 'en_US.UTF-8 UTF-8' >"$rootfs/etc/locale.gen"
	run in_root locale-gen
	;;
ubuntu) run in_root locale-gen en_US.UTF-8 ;;
esac
run in_root update-locale LANG=en_US.UTF-8

# Network: DHCP on eth0 via systemd-networkd even without cloud-init's own
# rendering (cloud-init writes 10-cloud-init-eth0.network, which sorts first).
cat >"$rootfs/etc/systemd/network/90-containarium-eth0.network" <<'EOF'
[Match]
Name=eth0

[Network]
DHCP=ipv4
IPv6AcceptRA=no

[DHCPv4]
UseDomains=true
EOF
run in_root systemctl enable systemd-networkd.service systemd-resolved.service
ln -sf ../run/systemd/resolve/stub-resolv.conf "$rootfs/etc/resolv.conf"

# cloud-init: only the NoCloud seed Incus writes; no probing of other sources.
cat >"$rootfs/etc/cloud/cloud.cfg.d/90-containarium.cfg" <<'EOF'
# containarium: Incus writes the NoCloud seed from its templates.
datasource_list: [ NoCloud, None ]
EOF

# SSH: no host keys in the image. cloud-init makes them on first boot; the
# drop-in makes them if cloud-init is disabled or removed.
rm -f "$rootfs"/etc/ssh/ssh_host_*
mkdir -p "$rootfs/etc/systemd/system/ssh.service.d"
cat >"$rootfs/etc/systemd/system/ssh.service.d/10-containarium-hostkeys.conf" <<'EOF'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF

# Docker on demand: only the socket listens at boot.
if [ "$docker" -eq 1 ]; then
	run in_root systemctl disable docker.service containerd.service
	run in_root systemctl enable docker.socket
fi

# Quiet idle containers: no periodic jobs that make no sense in a container.
for t in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
	if [ -e "$rootfs/lib/systemd/system/$t" ] || [ -e "$rootfs/usr/lib/systemd/system/$t" ]; then
		run in_root systemctl disable "$t"
	fi
done

# Identity: every container gets its own machine-id and hostname.
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$rootfs/var/lib/dbus/machine-id"
echo localhost >"$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"

# --- stage 3: clean up ------------------------------------------------------------
umount_all # proc and the .deb cache (which apt-get clean must not empty)
run in_root apt-get -q clean
rm -f "$rootfs/usr/sbin/policy-rc.d" "$rootfs/etc/dpkg/dpkg.cfg.d/zz-containarium-build" \
	"$rootfs/etc/dpkg/dpkg.cfg.d/zz-containarium-nodoc"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
	"$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old \
	"$rootfs"/var/lib/cloud/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* \
	"$rootfs"/tmp/* "$rootfs"/var/tmp/* "$rootfs"/root/.bash_history
# Docs of the packages debootstrap itself unpacked.
find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
mkdir -p "$rootfs/var/lib/apt/lists/partial"

# --- stage 4: Incus metadata -----------------------------------------------------
meta=$work/meta
mkdir -p "$meta/templates"
now=$(date +%s)
description="$distro $suite $arch (containarium$([ "$docker" -eq 1 ] && echo ', docker'), $(date -u +%Y%m%d_%H%M))"
cat >"$meta/metadata.yaml" <<EOF
architecture: $incus_arch
creation_date: $now
properties:
  architecture: $arch
  description: $description
  os: $distro
  release: $suite
  variant: cloud
  containarium.docker: "$([ "$docker" -eq 1 ] && echo true || echo false)"
templates:
  /etc/hostname:
    when: [create, copy]
    create_only: false
    template: hostname.tpl
    properties: {}
  /etc/hosts:
    when: [create, copy]
    create_only: false
    template: hosts.tpl
    properties: {}
  /var/lib/cloud/seed/nocloud-net/meta-data:
    when: [create, copy]
    create_only: false
    template: cloud-init-meta.tpl
    properties: {}
  /var/lib/cloud/seed/nocloud-net/user-data:
    when: [create, copy]
    create_only: false
    template: cloud-init-user.tpl
    properties:
      default: |
        #cloud-config
        {}
  /var/lib/cloud/seed/nocloud-net/vendor-data:
    when: [create, copy]
    create_only: false
    template: cloud-init-vendor.tpl
    properties:
      default: |
        #cloud-config
        {}
  /var/lib/cloud/seed/nocloud-net/network-config:
    when: [create, copy]
    create_only: false
    template: cloud-init-network.tpl
    properties: {}
EOF
echo '{{ container.name }}' >"$meta/templates/hostname.tpl"
cat >"$meta/templates/hosts.tpl" <<'EOF'
127.0.0.1	localhost
127.0.1.1	{{ container.name }}
::1	localhost ip6-localhost ip6-loopback
ff02::1	ip6-allnodes
ff02::2	ip6-allrouters
EOF
cat >"$meta/templates/cloud-init-meta.tpl" <<'EOF'
instance-id: {{ container.name }}
local-hostname: {{ container.name }}
{{ config_get("user.meta-data", "") }}
EOF
echo '{{ config_get("cloud-init.user-data", properties.default) }}' >"$meta/templates/cloud-init-user.tpl"
echo '{{ config_get("cloud-init.vendor-data", properties.default) }}' >"$meta/templates/cloud-init-vendor.tpl"
cat >"$meta/templates/cloud-init-network.tpl" <<'EOF'
{% if config_get("cloud-init.network-config", "") == "" %}version: 1
config:
  - type: physical
    name: eth0
    subnets:
      - type: dhcp
        control: auto
{% else %}{{ config_get("cloud-init.network-config", "") }}{% endif %}
EOF

# --- stage 5: pack and import -------------------------------------------------------
case $compression in
gz)
	if command -v pigz >/dev/null; then zip=(pigz -6); else zip=(gzip -6); fi
	;;
xz) zip=(xz -T0 -6) ;;
esac
log "packing (${zip[0]})"
tar -C "$meta" --numeric-owner -cf - metadata.yaml templates | "${zip[@]}" >"$work/meta.tar.$compression"
tar -C "$rootfs" --numeric-owner --xattrs --xattrs-include='*' -cf - . |
	"${zip[@]}" >"$work/rootfs.tar.$compression"
fingerprint=$(cat "$work/meta.tar.$compression" "$work/rootfs.tar.$compression" | sha256sum | cut -d' ' -f1)

meta_tar=$work/meta.tar.$compression
rootfs_tar=$work/rootfs.tar.$compression

if [ -n "$cache_dir" ]; then
	# Into place whole or not at all; then drop older builds of this image.
	rm -rf "$cache_dir.tmp"
	mkdir -p "$cache_dir.tmp"
	cp "$meta_tar" "$rootfs_tar" "$cache_dir.tmp/"
	echo "$fingerprint" >"$cache_dir.tmp/fingerprint"
	rm -rf "$cache_dir"
	mv "$cache_dir.tmp" "$cache_dir"
	find "$cache" -mindepth 1 -maxdepth 1 -name "image-$key-*" ! -name "${cache_dir##*/}" -exec rm -rf {} +
	log "cached in $cache_dir"
	meta_tar=$cache_dir/meta.tar.$compression
	rootfs_tar=$cache_dir/rootfs.tar.$compression
fi
deliver
