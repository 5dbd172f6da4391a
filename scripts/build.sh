#!/usr/bin/env bash
# build.sh: the release binary of this checkout, built as the checkout's owner
# with their cargo (rustup's ~/.cargo/bin/cargo, else the one on PATH). This
# is how `sudo scripts/quickstart.sh` and `sudo scripts/e2e.sh` build: sudo's
# secure_path has no ~/.cargo/bin, root has no Rust of its own on a person's
# machine, and a build as root would leave root's files in their target/.
#
#   scripts/build.sh           # builds; prints the binary's path
#   scripts/build.sh --print   # prints the build command; builds nothing
#
# CARGO_TARGET_DIR is honoured. Exit 2, nothing done, when there is no cargo.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
print=0
case ${1:-} in
--print) print=1 ;;
"") ;;
*) echo "build.sh: error: unknown argument $1 (--print or nothing)" >&2; exit 2 ;;
esac

builder=$(stat -c %U "$repo")
builder_home=$(getent passwd "$builder" | cut -d: -f6)
cargo=
for c in "$builder_home/.cargo/bin/cargo" "$(command -v cargo || true)"; do
	if [ -n "$c" ] && [ -x "$c" ]; then cargo=$c && break; fi
done
if [ -z "$cargo" ]; then
	echo "build.sh: error: no cargo for $builder to build containarium: install Rust (https://rustup.rs)" >&2
	exit 2
fi
build=(env "PATH=$(dirname "$cargo"):/usr/local/bin:/usr/bin:/bin" cargo build --release --locked --quiet)
[ -z "${CARGO_TARGET_DIR:-}" ] || build=(env "CARGO_TARGET_DIR=$CARGO_TARGET_DIR" "${build[@]}")
[ "$builder" = "$(id -un)" ] || build=(runuser -u "$builder" -- "${build[@]}")
if [ "$print" = 1 ]; then
	echo "${build[*]}"
	exit 0
fi
(cd "$repo" && "${build[@]}")
echo "${CARGO_TARGET_DIR:-$repo/target}/release/containarium"
