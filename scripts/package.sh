#!/usr/bin/env bash
# Build the Debian package: containarium_VERSION_amd64.deb.
#
#   scripts/package.sh      # prints the path of the .deb on its last line
#
#   1. cargo build --release --locked (the binary, and xtask);
#   2. xtask docs: man pages (containarium(1) and one per verb) and the bash,
#      zsh and fish completions, from the clap definitions, into
#      $CARGO_TARGET_DIR/release/docs (build outputs, never committed), the man
#      pages gzipped;
#   3. cargo deb --no-build, with what Cargo.toml's [package.metadata.deb]
#      lists. cargo-deb is installed (cargo install --locked) into
#      $CONTAINARIUM_CI_CACHE/cargo-bin when it is not on PATH.
set -euo pipefail

repo=$(cd -- "$(dirname -- "$0")/.." && pwd)
cd "$repo"

target=${CARGO_TARGET_DIR:-$repo/target}
cache_root=${CONTAINARIUM_CI_CACHE:-/var/cache/containarium-ci}
cargo_deb_version=3.8.0

say() {
    printf 'package: %s\n' "$*" >&2
}

if ! command -v cargo-deb >/dev/null 2>&1; then
    export PATH=$cache_root/cargo-bin/bin:$PATH
    if ! command -v cargo-deb >/dev/null 2>&1; then
        say "installing cargo-deb $cargo_deb_version into $cache_root/cargo-bin"
        cargo install --locked --quiet --version "$cargo_deb_version" \
            --root "$cache_root/cargo-bin" cargo-deb
    fi
fi

say "cargo build --release --locked"
cargo build --release --locked --quiet
say "man pages and completions into $target/release/docs"
"$target/release/xtask" docs "$target/release/docs"
# Debian installs man pages gzipped (lintian: an error otherwise).
gzip -9nf "$target/release/docs/man/"*.1
say "cargo deb --no-build"
# cargo-deb prints the path of the package it wrote.
deb=$(cargo deb --no-build --locked --quiet)
[ -f "$deb" ] || { echo "package: cargo deb printed no package: $deb" >&2; exit 1; }
echo "$deb"
