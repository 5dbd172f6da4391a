#!/usr/bin/env bash
# shellcheck disable=SC2034 # E2E_SUITE is read by fail (checks.sh)
# Cluster end-to-end suites: containarium against a real three-member Incus
# cluster on this one machine (tests/e2e/includes/cluster.sh: a member per
# network namespace, on bridge ctmcl0 10.197.86.0/24, no NAT, no default route)
# and SSH bastions beside its members, as root.
#
#   sudo scripts/e2e-cluster.sh            # every cluster suite
#   sudo scripts/e2e-cluster.sh cluster    # only these suites
#   sudo scripts/e2e-cluster.sh --list     # the suites
#
# Same shape as scripts/e2e.sh: it builds the release binary as the
# checkout's owner (scripts/build.sh; set CONTAINARIUM_BIN to use another
# binary), installs what is missing, brings the
# lab up (removing an earlier run's leftovers first) with bastion 1 beside
# member 1 and bastion 2 beside member 2, runs tests/e2e/suites/<suite>.sh's
# test_<suite>, prints one PASS/FAIL line per check, a line per suite and
# "N passed, N failed", and removes the whole lab on exit, even on failure.
# It has a lock of its own (/run/ctmcl.lock) and shares nothing with
# scripts/e2e.sh but the read-only image cache, so both can run at once.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
all_suites=(cluster cluster-users)

# checks.sh writes its scratch file under E2E_STATE_DIR: the lab's, not the
# main e2e's /run/ctme2e.
export E2E_STATE_DIR=/run/ctmcl
for include in env checks tenants cluster; do
	# shellcheck source=/dev/null
	. "tests/e2e/includes/$include.sh"
done
E2E_WORK=$CLUSTER_WORK
for suite in "${all_suites[@]}"; do
	# shellcheck source=/dev/null
	[ ! -f "tests/e2e/suites/$suite.sh" ] || . "tests/e2e/suites/$suite.sh"
done

e2e_pick_suites "$@"

started=$(e2e_now_ms)
e2e_install_deps
# The lock e2e_install_deps takes only to install is the main e2e's: let go of it.
e2e__unlock
BIN=${CONTAINARIUM_BIN:-}
# As the checkout's owner, with their cargo (sudo's PATH has no ~/.cargo/bin).
[ -n "$BIN" ] || BIN=$(scripts/build.sh)

trap cluster_lab_down EXIT
trap 'exit 130' INT TERM

cluster_lab_up
cluster_bastion_up 1 1 "$(cluster_free_port 22101)"
cluster_bastion_up 2 2 "$(cluster_free_port 22102)"
e2e_log "lab and bastions ready $(($(e2e_now_ms) - started)) ms after the start"

rc=0
e2e_run_suites || rc=$?
e2e_log "incusd resident memory: $(cluster_incusd_rss | paste -sd' ' | sed 's/ MiB /, /g')"
exit "$rc"
