#!/usr/bin/env bash
# Install containarium on an existing Debian or Ubuntu host and run
# `containarium host init`.
#
#   sudo scripts/install.sh ./containarium_0.1.0_amd64.deb [--sha256 HEX]   # the package, offline
#   sudo scripts/install.sh --binary ./containarium [--sha256 HEX]   # offline
#   sudo scripts/install.sh --url https://.../containarium --sha256 HEX
#   sudo scripts/install.sh                       # uses ./containarium next to this script
#
# Options:
#   PACKAGE.deb       install this Debian package (scripts/package.sh builds it)
#                     with apt-get, without its Recommends, so that no network is
#                     needed when its Depends are installed; /usr/bin/containarium
#   --binary PATH     install this local file (no network needed)
#   --url URL         download the binary, or the package when URL ends in .deb
#                     (http(s)://); --sha256 is then required
#   --sha256 HEX      expected SHA-256; the binary or package is installed only if
#                     it matches
#   --prefix DIR      install directory of a binary (default /usr/local/bin)
#   --install-deps    also apt-get install Incus and the ZFS tools (needs a mirror:
#                     Debian 12 takes them from bookworm-backports)
#   --no-host-init    only install the binary or package
#
# A binary install also puts the timers' units (systemd/: sync-accounts and
# reap) into $CONTAINARIUM_UNITS_DIR (default /etc/systemd/system), with
# ExecStart naming the installed binary; the package ships them in
# /usr/lib/systemd/system. Neither ever enables them.
#
# Idempotent: running it again with the same binary or package changes nothing,
# and `containarium host init` is itself idempotent.
set -euo pipefail

prog=$(basename -- "$0")
script_dir=$(cd -- "$(dirname -- "$0")" && pwd)

binary=""
package=""
url=""
sha256=""
prefix=""
install_deps=0
host_init=1

die() {
    echo "$prog: error: $*" >&2
    exit 1
}

say() {
    echo "$prog: $*"
}

usage() {
    sed -n '2,32s/^# \{0,1\}//p' "$0"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=${2:?--binary needs a path}; shift 2 ;;
        --url) url=${2:?--url needs a URL}; shift 2 ;;
        --sha256) sha256=${2:?--sha256 needs a value}; shift 2 ;;
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --install-deps) install_deps=1; shift ;;
        --no-host-init) host_init=0; shift ;;
        -h | --help) usage; exit 0 ;;
        -*) die "unknown option: $1 (see --help)" ;;
        *.deb)
            [ -z "$package" ] || die "give one package"
            package=$1; shift ;;
        *) die "not a package (.deb) or an option: $1 (see --help)" ;;
    esac
done

given=0
for source in "$binary" "$url" "$package"; do
    [ -z "$source" ] || given=$((given + 1))
done
[ "$given" -le 1 ] || die "give one of PACKAGE.deb, --binary or --url"
if [ -n "$sha256" ] && ! [[ "$sha256" =~ ^[0-9a-f]{64}$ ]]; then
    die "--sha256 must be 64 lowercase hex digits"
fi
if [ -n "$url" ]; then
    [[ "$url" =~ ^https?:// ]] || die "--url must be http:// or https://"
    [ -n "$sha256" ] || die "--url needs --sha256: a download is always checked"
fi
if [ "$given" = 0 ]; then
    binary=$script_dir/containarium
    [ -f "$binary" ] || die "no binary: give PACKAGE.deb, --binary PATH or --url URL --sha256 HEX"
fi
if [ -n "$package" ] || [[ "$url" == *.deb ]]; then
    [ -z "$prefix" ] || die "--prefix is for a binary: the package installs /usr/bin/containarium"
fi
prefix=${prefix:-/usr/local/bin}

if [ "$(id -u)" -ne 0 ] && { [ "$host_init" = 1 ] || [ "$install_deps" = 1 ] ||
    [ -n "$package" ] || [[ "$url" == *.deb ]] || [ ! -w "$prefix" ]; }; then
    die "run as root (sudo $0 ...)"
fi

os_id="" os_version="" os_like=""
if [ -r /etc/os-release ]; then
    # shellcheck source=/dev/null
    os_id=$(. /etc/os-release && echo "${ID:-}")
    # shellcheck source=/dev/null
    os_version=$(. /etc/os-release && echo "${VERSION_ID:-}")
    # shellcheck source=/dev/null
    os_like=$(. /etc/os-release && echo "${ID_LIKE:-}")
fi
case "$os_id $os_like" in
    *debian* | *ubuntu*) ;;
    *) say "warning: this is not Debian or Ubuntu ($os_id); continuing anyway" ;;
esac

install_deps() {
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get -o DPkg::Lock::Timeout=300 -y -q)
    case "$os_id:$os_version" in
        debian:12)
            cat >/etc/apt/sources.list.d/containarium-backports.sources <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
            "${apt[@]}" update
            "${apt[@]}" install "linux-headers-$(uname -r)"
            "${apt[@]}" install -t bookworm-backports incus zfs-dkms zfsutils-linux
            ;;
        *)
            "${apt[@]}" update
            "${apt[@]}" install incus zfsutils-linux
            ;;
    esac
}

# installed_binary: the binary the installed package put in place
# (/usr/bin/containarium). grep reads to the end: no SIGPIPE for dpkg-query.
installed_binary() {
    local files
    files=$(dpkg-query -L containarium | grep '/bin/containarium$') || return 1
    echo "${files%%$'\n'*}"
}

# install_package DEB: apt-get installs it with its Depends (no network needed
# when they are installed already) but not its Recommends, unless this very
# package is installed already (the same version and the same binary).
install_package() {
    local deb=$1 name version
    name=$(dpkg-deb --field "$deb" Package) || die "$deb is not a Debian package"
    [ "$name" = containarium ] || die "$deb is the package $name, not containarium"
    version=$(dpkg-deb --field "$deb" Version)
    # (A pipe, not <(...): that needs /dev/fd, which a chroot may lack; and
    # sha256sum, not cmp -s, which stops at the first difference.)
    if [ "$(dpkg-query -W -f '${db:Status-Status} ${Version}' containarium 2>/dev/null)" = "installed $version" ] &&
        [ "$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/containarium | sha256sum)" = \
            "$(sha256sum <"$(installed_binary)")" ]; then
        say "containarium $version is already this package"
        return 0
    fi
    # A path apt-get takes for a file (not a package name), readable by _apt.
    chmod 0755 "$tmp"
    install -m 0644 -- "$deb" "$tmp/containarium.deb"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -y -q \
        install --no-install-recommends "$tmp/containarium.deb"
    say "installed the package containarium $version"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -n "$url" ]; then
    say "downloading $url"
    if [[ "$url" == *.deb ]]; then
        package=$tmp/download.deb
    else
        binary=$tmp/containarium
    fi
    curl -fsSL --retry 3 -o "$tmp/download" "$url"
    mv -- "$tmp/download" "${package:-$binary}"
fi
file=${package:-$binary}
[ -f "$file" ] || die "not found: $file"

if [ -n "$sha256" ]; then
    if ! echo "$sha256  $file" | sha256sum --check --status; then
        die "$file does not match sha256 $sha256 (got $(sha256sum <"$file" | cut -d' ' -f1)); nothing installed"
    fi
    say "sha256 verified"
fi

if [ -n "$package" ]; then
    install_package "$package"
    # The binary the package installed (/usr/bin/containarium).
    dest=$(installed_binary) || die "the package installed no bin/containarium"
else
    dest=$prefix/containarium
    mkdir -p -- "$prefix"
    if [ -f "$dest" ] && cmp -s -- "$binary" "$dest"; then
        say "$dest is already this binary"
    else
        # copy next to the target, then rename: never a half-written binary
        install -m 0755 -- "$binary" "$dest.new"
        mv -f -- "$dest.new" "$dest"
        say "installed $dest"
    fi
fi
# The timers' units from this checkout, for a binary install (the package
# has its own); never enabled.
install_units() {
    local dir=$script_dir/../systemd units_dir=${CONTAINARIUM_UNITS_DIR:-/etc/systemd/system} unit target changed=0
    if [ ! -d "$dir" ]; then
        say "no systemd/ beside this script: the timer units are not installed"
        return 0
    fi
    if [ ! -d "$(dirname -- "$units_dir")" ]; then
        say "no $(dirname -- "$units_dir"): not a systemd host, the timer units are not installed"
        return 0
    fi
    mkdir -p -- "$units_dir"
    for unit in "$dir"/containarium-*.service "$dir"/containarium-*.timer; do
        target=$units_dir/$(basename -- "$unit")
        sed "s|^ExecStart=/usr/bin/containarium|ExecStart=$dest|" -- "$unit" >"$target.new"
        if [ -f "$target" ] && cmp -s -- "$target.new" "$target"; then
            rm -f -- "$target.new"
        else
            mv -f -- "$target.new" "$target"
            say "installed $target"
            changed=1
        fi
    done
    if [ "$changed" = 1 ]; then
        say "not enabled; to run them: systemctl enable --now containarium-sync-accounts.timer containarium-reap.timer"
    fi
}
[ -n "$package" ] || install_units

found=$(command -v containarium || true)
if [ -n "$found" ] && [ "$found" != "$dest" ]; then
    say "warning: containarium on PATH is $found, not $dest (an earlier install?); remove it or call $dest"
fi

if [ "$install_deps" = 1 ]; then
    install_deps
fi
if ! command -v incus >/dev/null 2>&1; then
    say "warning: incus is not installed (use --install-deps, or install incus and zfsutils-linux yourself)"
fi

if [ "$host_init" = 1 ]; then
    say "running: $dest host init"
    "$dest" host init
fi
say "done"
