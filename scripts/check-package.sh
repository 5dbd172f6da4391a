#!/usr/bin/env bash
# The Debian package, built and installed the way an admin would: the CI step
# (bash scripts/check-package.sh, as root).
#
#   1. scripts/package.sh builds containarium_VERSION_amd64.deb;
#   2. lintian on it: no error (the warnings left are justified in Cargo.toml);
#   3. a fresh Debian 12 chroot (debootstrap --variant=minbase bookworm, plus
#      man-db, bash-completion and the package's Depends), cached as a tarball
#      under $CONTAINARIUM_CI_CACHE/package-chroot-KEY.tar.zst, KEY a hash of
#      the functions that make it and the package's Depends (like the e2e
#      image cache), so only the first run, or one after either changed,
#      needs the mirror;
#   4. in a fresh copy of that chroot, offline: scripts/install.sh PACKAGE
#      (apt-get, sha256 checked; a second run installs nothing), then
#      `containarium --version`, `man containarium` (its EXIT STATUS section),
#      `containarium cr<TAB>` completing to `create` through bash-completion's
#      loader, the units installed but not enabled, the conffile, and sshd's
#      configuration untouched.
#
# Settings: CONTAINARIUM_CI_CACHE (default /var/cache/containarium-ci),
# PACKAGE_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

repo=$(cd -- "$(dirname -- "$0")/.." && pwd)
cd "$repo"

cache_root=${CONTAINARIUM_CI_CACHE:-/var/cache/containarium-ci}
mirror=${PACKAGE_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
started=$(date +%s)
root=""

say() {
    printf '==> %s\n' "$*"
}

die() {
    echo "check-package: FAILED: $*" >&2
    exit 1
}

elapsed() {
    echo "$(($(date +%s) - $1))s"
}

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, chroot)"

# Unmount what make_chroot mounted, then remove the copy; --one-file-system
# so that nothing mounted below it is ever removed.
cleanup() {
    if [ -n "$root" ] && [ -d "$root" ]; then
        mountpoint -q "$root/proc" && umount "$root/proc"
        rm -rf --one-file-system -- "$root"
    fi
}
trap cleanup EXIT

need() {
    local missing=()
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    command -v lintian >/dev/null 2>&1 || missing+=(lintian)
    command -v zstd >/dev/null 2>&1 || missing+=(zstd)
    if [ ${#missing[@]} -gt 0 ]; then
        say "apt-get install ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
}

# new_root: an empty directory for a chroot, traversable by the chroot's
# users (mandb runs as man, apt downloads as _apt).
new_root() {
    root=$(mktemp -d /var/tmp/ctm-package-chroot.XXXXXX)
    chmod 0755 "$root"
}

in_root() {
    LC_ALL=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$root" "$@"
}

# make_chroot TARBALL DEB: a minbase bookworm with man-db, bash-completion and
# what DEB depends on (installed by apt from the package itself, which is then
# purged again), packed into TARBALL.
make_chroot() {
    local tarball=$1 deb=$2
    local log
    say "debootstrap --variant=minbase $suite from $mirror (cache miss)"
    new_root
    log=$(mktemp)
    debootstrap --variant=minbase --include=man-db,bash-completion \
        "$suite" "$root" "$mirror" >"$log" 2>&1 || {
        tail -n 20 "$log" >&2
        rm -f -- "$log"
        die "debootstrap failed"
    }
    # Services never start inside the chroot (openssh-server's postinst).
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    mount -t proc proc "$root/proc"
    cp -- "$deb" "$root/tmp/containarium.deb"
    {
        in_root apt-get -o Dpkg::Use-Pty=0 install -y -q --no-install-recommends \
            /tmp/containarium.deb &&
            in_root dpkg --purge containarium && in_root apt-get clean
    } >"$log" 2>&1 || {
        tail -n 20 "$log" >&2
        rm -f -- "$log"
        die "installing the package's Depends into the chroot failed"
    }
    rm -f -- "$log"
    rm -f -- "$root/tmp/containarium.deb"
    umount "$root/proc"
    tar --zstd -C "$root" -cf "$tarball.tmp" .
    mv -f -- "$tarball.tmp" "$tarball"
    cleanup
    root=""
    find "$cache_root" -maxdepth 1 -name 'package-chroot-*.tar.zst' ! -name "${tarball##*/}" \
        -delete 2>/dev/null || true
}

need

t0=$(date +%s)
say "scripts/package.sh"
deb=$(bash scripts/package.sh | tail -n 1)
say "built $deb ($(elapsed "$t0"))"

t0=$(date +%s)
say "lintian $deb"
lintian --fail-on error --info "$deb" || die "lintian reports errors"
say "lintian: no errors ($(elapsed "$t0"))"

depends=$(dpkg-deb --field "$deb" Depends)
# Keyed by how the chroot is made, not by the checks run in it.
key=$({ declare -f make_chroot new_root in_root; echo "$suite $mirror $depends"; } |
    sha256sum | cut -c1-16)
tarball=$cache_root/package-chroot-$key.tar.zst
mkdir -p -- "$cache_root"
exec 9>"$cache_root/.package-chroot.lock"
flock 9
t0=$(date +%s)
if [ ! -s "$tarball" ]; then
    make_chroot "$tarball" "$deb"
    say "chroot cached as $tarball ($(elapsed "$t0"))"
fi
flock -u 9

t0=$(date +%s)
new_root
tar --zstd -C "$root" -xf "$tarball"
cp -- "$deb" "$root/tmp/containarium.deb"
cp -- scripts/install.sh "$root/tmp/install.sh"
sshd_before=$(cd "$root/etc/ssh" && find . -type f -exec sha256sum {} + | sort)
say "fresh chroot from the cache ($(elapsed "$t0")); scripts/install.sh PACKAGE, offline"
sha=$(sha256sum <"$deb" | cut -d' ' -f1)
install_log=$(in_root bash /tmp/install.sh /tmp/containarium.deb --sha256 "$sha" --no-host-init 2>&1) || {
    echo "$install_log" >&2
    die "scripts/install.sh failed"
}

failed=0
check() {
    # check NAME CMD...: one line per check, all of them run.
    local name=$1
    shift
    if "$@"; then
        echo "ok   $name"
    else
        echo "FAIL $name"
        failed=1
    fi
}

version_works() {
    local out
    out=$(in_root containarium --version) && [[ "$out" == "containarium "[0-9]* ]]
}

man_shows_the_page() {
    local page
    page=$(in_root env MANWIDTH=80 man -P cat containarium 2>&1) || return 1
    grep -q '^EXIT STATUS' <<<"$page" && grep -q '^FILES' <<<"$page" &&
        page=$(in_root env MANWIDTH=80 man -P cat containarium-create 2>/dev/null) &&
        grep -q -- '--ssh-key' <<<"$page"
}

# bash-completion's loader finds our file by the command's name, as it does
# on the admin's first <TAB>; then the completion function answers "cr".
bash_completes_create() {
    local out
    # shellcheck disable=SC2016 # expanded by the chroot's bash
    out=$(in_root bash -ic '
        ! complete -p containarium 2>/dev/null || exit 3
        . /usr/share/bash-completion/bash_completion
        _completion_loader containarium
        spec=$(complete -p containarium) || exit 4
        # Ours, not _minimal, the loader fallback when it finds no file.
        [[ "$spec" == *" -F _containarium "* ]] || exit 5
        func=_containarium
        COMP_WORDS=(containarium cr)
        COMP_CWORD=1
        COMP_LINE="containarium cr"
        COMP_POINT=${#COMP_LINE}
        COMPREPLY=()
        "$func" containarium cr containarium
        printf "%s\n" "${COMPREPLY[@]}"' 2>/dev/null) || return 1
    [ "$out" = create ] || {
        echo "     completed to: ${out:-nothing}" >&2
        return 1
    }
}

units_installed_not_enabled() {
    local unit
    for unit in containarium-sync-accounts.service containarium-sync-accounts.timer \
        containarium-reap.service containarium-reap.timer; do
        [ -f "$root/usr/lib/systemd/system/$unit" ] || return 1
    done
    # Nothing links to them: no maintainer script enabled them.
    [ -z "$(find "$root/etc/systemd" -name 'containarium*')" ]
}

conffile_is_commented() {
    local conffiles
    # shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
    conffiles=$(in_root dpkg-query -W -f '${Conffiles}\n' containarium) &&
        grep -q ' /etc/containarium/config.toml ' <<<"$conffiles" &&
        ! grep -v '^#' "$root/etc/containarium/config.toml" | grep '[^[:space:]]' >/dev/null
}

sshd_untouched() {
    [ "$(cd "$root/etc/ssh" && find . -type f -exec sha256sum {} + | sort)" = "$sshd_before" ] &&
        [ ! -e "$root/etc/ssh/sshd_config.d/00-containarium.conf" ] &&
        ! in_root getent group containarium >/dev/null
}

again_is_a_no_op() {
    local out
    out=$(in_root bash /tmp/install.sh /tmp/containarium.deb --no-host-init 2>&1) &&
        grep -q 'is already this package' <<<"$out"
}

check "containarium --version works" version_works
check "install.sh a second time installs nothing" again_is_a_no_op
check "man containarium shows EXIT STATUS and FILES; man containarium-create its options" man_shows_the_page
check "bash completes 'containarium cr<TAB>' to create" bash_completes_create
check "the sync-accounts and reap services and timers are installed, not enabled" units_installed_not_enabled
check "/etc/containarium/config.toml is a conffile with every line commented" conffile_is_commented
check "installing changed nothing of sshd's configuration and made no group" sshd_untouched
in_root dpkg --purge containarium >/dev/null || failed=1
check "purge removes the binary" test ! -e "$root/usr/bin/containarium"

[ "$failed" = 0 ] || die "see the FAIL lines above ($(elapsed "$started"))"
say "check-package: all checks passed ($(elapsed "$started"))"
