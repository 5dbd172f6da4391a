#!/usr/bin/env bash
# Deployment checks: the single entry point CI calls (bash scripts/check-deploy.sh).
#
#   1. installs the checkers when missing: shellcheck, cloud-init, nftables and
#      iproute2 from Debian
#      (apt-get update only when something is missing), and two Python venvs
#      cached under $CONTAINARIUM_CI_CACHE/deploy-venv, keyed by the pinned
#      requirements files (tests/deploy/requirements*.txt) and the Python version;
#   2. shellcheck on every scripts/*.sh;
#   3. checkov -d terraform/ (deliberate skips are inline and in terraform/README.md);
#   4. pytest tests/deploy: Terraform structure (python-hcl2), cloud-init schema
#      (cloud-init schema --config-file on the rendered template), the startup
#      script's decisions with fake zpool/zfs/incus/blkid, its load balancer
#      hold with real nftables in a network namespace of the test's, install.sh, and
#      ssh-audit on an sshd started on loopback with the sshd configuration the
#      bastion cloud-init writes (no failure allowed; the unhardened control
#      must fail).
#
# Every check runs even when an earlier one failed; the exit status is non-zero
# if any failed. Needs root only to apt-get install missing tools.
set -euo pipefail

repo=$(cd -- "$(dirname -- "$0")/.." && pwd)
cd "$repo"

cache_root=${CONTAINARIUM_CI_CACHE:-/var/cache/containarium-ci}
venv_root=$cache_root/deploy-venv
# Tests fail (rather than skip) when a checker is missing.
export DEPLOY_CHECKS_REQUIRE_TOOLS=1

started=$(date +%s)
failed=()

say() {
    printf '==> %s\n' "$*"
}

elapsed() {
    echo "$(($(date +%s) - $1))s"
}

# pick_python: print a Python 3 that can create venvs (python3 on PATH first).
pick_python() {
    local py
    for py in "$(command -v python3 || true)" /usr/bin/python3; do
        if [ -n "$py" ] && "$py" -c 'import ensurepip, venv' >/dev/null 2>&1; then
            echo "$py"
            return 0
        fi
    done
    return 1
}

install_debian_tools() {
    local missing=()
    command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
    command -v cloud-init >/dev/null 2>&1 || missing+=(cloud-init)
    # sshd for the ssh-audit check of the bastion's sshd configuration
    [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    # the startup script's load balancer hold, applied in a test network namespace
    command -v nft >/dev/null 2>&1 || missing+=(nftables)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    pick_python >/dev/null || missing+=(python3-venv)
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "check-deploy: missing ${missing[*]}; run as root to install them" >&2
        return 1
    fi
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [[ " ${missing[*]} " == *" cloud-init "* ]]; then
        # Installed only for `cloud-init schema`: keep it from acting at this machine's boot.
        mkdir -p /etc/cloud
        touch /etc/cloud/cloud-init.disabled
    fi
}

# ensure_venv NAME REQUIREMENTS: print the path of an up-to-date venv.
ensure_venv() {
    local name=$1 req=$2 py key dir
    py=$(pick_python)
    key=$( { cat "$req"; "$py" -c 'import sys; print(sys.version, sys.executable)'; } | sha256sum | cut -c1-16)
    dir=$venv_root/$name-$key
    if [ -f "$dir/.complete" ]; then
        echo "$dir"
        return 0
    fi
    say "creating venv $dir from $req" >&2
    rm -rf -- "$dir"
    # drop venvs built from older requirements
    find "$venv_root" -maxdepth 1 -name "$name-*" -type d -exec rm -rf -- {} + 2>/dev/null || true
    mkdir -p -- "$venv_root"
    "$py" -m venv "$dir" >&2
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        -r "$req" >&2
    touch "$dir/.complete"
    echo "$dir"
}

run_check() {
    # run_check NAME CMD...: run one check, remember a failure, keep going.
    local name=$1 t0 rc=0
    shift
    say "$name"
    t0=$(date +%s)
    "$@" || rc=$?
    if [ "$rc" -ne 0 ]; then
        failed+=("$name")
        say "$name: FAILED (exit $rc, $(elapsed "$t0"))"
    else
        say "$name: ok ($(elapsed "$t0"))"
    fi
}

# --- install -----------------------------------------------------------------
t0=$(date +%s)
install_debian_tools
mkdir -p -- "$venv_root"
exec 9>"$venv_root/.lock"
flock 9
tests_venv=$(ensure_venv tests tests/deploy/requirements.txt)
checkov_venv=$(ensure_venv checkov tests/deploy/requirements-checkov.txt)
flock -u 9
say "checkers ready ($(elapsed "$t0")): $(shellcheck --version | sed -n 's/^version: /shellcheck /p'), $(cloud-init --version 2>&1 | tr -d '\n'), checkov $("$checkov_venv/bin/checkov" --version)"

# --- checks ------------------------------------------------------------------
mapfile -t shell_scripts < <(find scripts tests/e2e -name '*.sh' -type f | sort)
run_check "shellcheck (${#shell_scripts[@]} scripts)" \
    shellcheck --external-sources --source-path=SCRIPTDIR "${shell_scripts[@]}"

# --skip-download: no calls to the Prisma Cloud API (CI has no Internet).
run_check "checkov -d terraform/" \
    "$checkov_venv/bin/checkov" -d terraform/ --skip-download --compact --quiet

# no .pytest_cache or __pycache__ left in the work tree
run_check "pytest tests/deploy" \
    env PYTHONDONTWRITEBYTECODE=1 "$tests_venv/bin/python" -m pytest -p no:cacheprovider tests/deploy

if [ ${#failed[@]} -gt 0 ]; then
    echo "check-deploy: FAILED: ${failed[*]} ($(elapsed "$started"))" >&2
    exit 1
fi
say "check-deploy: all checks passed ($(elapsed "$started"))"
