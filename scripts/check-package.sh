#!/usr/bin/env bash
# The Debian package, built and installed the way an admin would: the CI step
# (bash scripts/check-package.sh, as root).
#
#   1. scripts/package.sh, run as README.md's Install section prints it,
#      builds containarium_VERSION_amd64.deb, and the path it prints is the
#      README's (target/ there is $CARGO_TARGET_DIR when that is set);
#   2. lintian on it: no error (the warnings left are justified in Cargo.toml);
#   3. a fresh Debian 12 chroot (debootstrap --variant=minbase bookworm, plus
#      man-db, bash-completion and the package's Depends), cached as a tarball
#      under $CONTAINARIUM_CI_CACHE/package-chroot-KEY.tar.zst, KEY a hash of
#      the functions that make it and the package's Depends (like the e2e
#      image cache), so only the first run, or one after either changed,
#      needs the mirror;
#   4. in a fresh copy of that chroot, offline, in a copy of the checkout
#      holding what the README's lines name (scripts/install.sh, the .deb
#      and the binary at their target/ paths): the README's Install lines as
#      printed, but for `sudo` (root already) and the optional systemctl line
#      (no systemd in a chroot). The package: scripts/install.sh PACKAGE
#      (apt-get), whose host init, like the README's own next line, refuses
#      in one line since the chroot has no Incus; a second run (sha256
#      checked) installs nothing; then `containarium --version`, `man
#      containarium` (its EXIT STATUS section), `containarium cr<TAB>`
#      completing to `create` through bash-completion's loader, the units
#      installed but not enabled, the conffile, and sshd's configuration
#      untouched; purged, the binary alone: cargo build (on this host, a
#      no-op after package.sh), install -m 0755 into /usr/local/bin, host
#      init refused alike.
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

# The README's Install section: its console lines, without prompt and comment.
readme=$(sed -n '/^## Install$/,/^## /p' README.md)
readme_lines=$(sed -n 's/^\$ \([^#]*[^#[:space:]]\).*/\1/p' <<<"$readme")

# readme_line PATTERN: the README Install line matching the glob PATTERN, the
# first of them; fails when there is none.
readme_line() {
    local line
    while IFS= read -r line; do
        # shellcheck disable=SC2053 # PATTERN is a glob
        if [[ "$line" == $1 ]]; then
            echo "$line"
            return 0
        fi
    done <<<"$readme_lines"
    die "README.md's Install section has no line like '$1'"
}

# as_printed LINE: LINE, a README line of plain words, run in the chroot's
# copy of the checkout as sudo would run it (sudo's PATH), as root already.
as_printed() {
    local words
    read -ra words <<<"$1"
    [ "${words[0]}" = sudo ] || die "not a sudo line: $1"
    LC_ALL=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        chroot "$root" env -C /root/checkout "${words[@]:1}"
}

# refused_without_incus OUTPUT STATUS: host init refused at its Incus probe
# (exit 2, nothing changed; its error the last line), as it must in a chroot
# without Incus.
refused_without_incus() {
    if [ "$2" != 2 ] || [[ "${1##*$'\n'}" != "error: incus is not installed"* ]]; then
        echo "$1" >&2
        return 1
    fi
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

package_line=$(readme_line 'scripts/package.sh*')
install_line=$(readme_line 'sudo scripts/install.sh *')
init_line=$(readme_line 'sudo containarium host init')
build_line=$(readme_line 'cargo build *')
copy_line=$(readme_line 'sudo install *')
for line in "$package_line" "$install_line" "$build_line" "$copy_line"; do
    [[ "$line" != *[\"\'\$\;\&\|\<\>\\\`]* ]] || die "README.md: not plain words: $line"
done
read -ra words <<<"$install_line"
readme_deb=${words[2]}
[[ "$readme_deb" == target/debian/*.deb ]] || die "README.md installs $readme_deb, not a target/debian/ package"
grep -qF -- "# $readme_deb" <<<"$readme" || die "README.md: the package.sh line does not say it prints $readme_deb"
target=${CARGO_TARGET_DIR:-$repo/target}

t0=$(date +%s)
say "$package_line (README.md)"
read -ra words <<<"$package_line"
out=$("${words[@]}")
deb=${out##*$'\n'}
say "built $deb ($(elapsed "$t0"))"
[ "$(realpath -- "$deb")" = "$(realpath -m -- "$target/${readme_deb#target/}")" ] ||
    die "scripts/package.sh printed $deb, README.md installs $readme_deb (target/ = $target)"

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
# The checkout the README's lines run in: what they name, where they name it.
checkout=$root/root/checkout
mkdir -p -- "$checkout/scripts" "$checkout/target/debian" "$checkout/target/release"
cp -p -- scripts/install.sh "$checkout/scripts/"
cp -- "$deb" "$checkout/$readme_deb"
sshd_before=$(cd "$root/etc/ssh" && find . -type f -exec sha256sum {} + | sort)
say "fresh chroot from the cache ($(elapsed "$t0")); $install_line (README.md), offline"
status=0
install_log=$(as_printed "$install_line" 2>&1) || status=$?
if ! grep -q 'installed the package containarium' <<<"$install_log" ||
    ! grep -q "running: /usr/bin/containarium host init" <<<"$install_log" ||
    ! refused_without_incus "$install_log" "$status"; then
    echo "$install_log" >&2
    die "$install_line: not installed, or host init did not refuse for want of Incus (exit $status)"
fi

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

readme_host_init_refuses() {
    local out status=0
    out=$(as_printed "$init_line" 2>&1) || status=$?
    refused_without_incus "$out" "$status" && [[ "$out" != *$'\n'* ]]
}

again_is_a_no_op() {
    local out sha
    sha=$(sha256sum <"$deb" | cut -d' ' -f1)
    out=$(as_printed "$install_line --sha256 $sha --no-host-init" 2>&1) &&
        grep -q 'sha256 verified' <<<"$out" && grep -q 'is already this package' <<<"$out"
}

# The binary alone, as the README prints it, after the package is purged.
binary_alone_as_printed() {
    local words out status=0
    read -ra words <<<"$build_line"
    "${words[@]}" || return 1
    read -ra words <<<"$copy_line"
    if [ "${words[-1]}" != /usr/local/bin/ ] || [ "${words[-2]}" != target/release/containarium ]; then
        echo "     README.md: $copy_line" >&2
        return 1
    fi
    cp -- "$target/release/containarium" "$checkout/${words[-2]}"
    as_printed "$copy_line" || return 1
    out=$(in_root /usr/local/bin/containarium --version) && [[ "$out" == "containarium "[0-9]* ]] || return 1
    out=$(as_printed "$init_line" 2>&1) || status=$?
    refused_without_incus "$out" "$status"
}

check "containarium --version works" version_works
check "README's '$init_line' refuses in one line without Incus" readme_host_init_refuses
check "install.sh a second time (--sha256) installs nothing" again_is_a_no_op
check "man containarium shows EXIT STATUS and FILES; man containarium-create its options" man_shows_the_page
check "bash completes 'containarium cr<TAB>' to create" bash_completes_create
check "the sync-accounts and reap services and timers are installed, not enabled" units_installed_not_enabled
check "/etc/containarium/config.toml is a conffile with every line commented" conffile_is_commented
check "installing changed nothing of sshd's configuration and made no group" sshd_untouched
in_root dpkg --purge containarium >/dev/null || failed=1
check "purge removes the binary" test ! -e "$root/usr/bin/containarium"
check "the binary alone, as README.md prints it: installed, host init refused without Incus" \
    binary_alone_as_printed
check "installing changed nothing of sshd's configuration and made no group (both ways)" sshd_untouched

[ "$failed" = 0 ] || die "see the FAIL lines above ($(elapsed "$started"))"
say "check-package: all checks passed ($(elapsed "$started"))"
