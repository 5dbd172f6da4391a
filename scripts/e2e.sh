#!/usr/bin/env bash
# shellcheck disable=SC2034 # E2E_SUITE is read by fail (checks.sh)
# End-to-end suites: containarium against a real Incus, a real sshd bastion on
# 127.0.0.1 and real jump accounts, on this machine, as root.
#
#   sudo scripts/e2e.sh              # every suite, in order (not p1: by name)
#   sudo scripts/e2e.sh network p1   # only these suites
#   sudo scripts/e2e.sh --list       # the suites
#
# Laid out as Incus's own test/ is: tests/e2e/includes/*.sh (one include per
# concern: env.sh the host environment (incusd, pool, bridge, image, rsyslogd,
# the bastion sshd), checks.sh pass/fail, tenants.sh the binary and its
# users, p1.sh the bare baseline, netlab.sh addresses the tests own,
# fail2ban.sh a fail2ban-server of the run's own) and tests/e2e/suites/AREA.sh,
# each defining test_AREA, which makes its own users (named e2e-*) and deletes
# them. This runner sets the environment up once, runs the suites, and prints
# one PASS/FAIL line per check, a line per suite and a closing
# "N passed, N failed". It works only in the Incus project "ctme2e" on a
# bridge it creates (10.197.83.0/24, no NAT) and removes all of it on exit,
# even on failure. It builds the release binary first, as the checkout's
# owner with their cargo (scripts/build.sh; set CONTAINARIUM_BIN to use another
# binary).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# The order matters only for time: the cheap suites first.
all_suites=(basics tenant-data sshd-policy audit fail2ban revocation network dhcp restore-trust apply-trust accounts lifecycle backup trixie doctor cohort crash quickstart)
# Run by name only: a measurement, which scripts/bench.sh takes with more rounds.
named_suites=(p1)

for include in env checks tenants p1 netlab fail2ban; do
	# shellcheck source=/dev/null
	. "tests/e2e/includes/$include.sh"
done
for suite in "${all_suites[@]}" "${named_suites[@]}"; do
	# shellcheck source=/dev/null
	[ ! -f "tests/e2e/suites/$suite.sh" ] || . "tests/e2e/suites/$suite.sh"
done

e2e_pick_suites "$@"

trap e2e_cleanup EXIT
trap 'exit 130' INT TERM

e2e_install_deps
e2e_start_incusd
e2e_setup_incus
e2e_image
e2e_containarium "$E2E_WORK"

# The drop-in goes in before the bastion's sshd starts, as on a real host.
E2E_SUITE=setup # read by fail (checks.sh)
check "host init" ctm host init
# Stock Debian allows 128 inotify instances for all containers together: the
# 14th container's systemd-networkd failed (found by bench.sh's 50 users).
check "host init raised the kernel limits for many containers, in /etc/sysctl.d/60-containarium.conf" \
	bash -c "[ \"\$(sysctl -n fs.inotify.max_user_instances)\" -ge 1048576 ] && grep -qx 'fs.inotify.max_user_instances = [0-9]*' /etc/sysctl.d/60-containarium.conf"
check "host init is idempotent" bash -c "'$BIN' --project $E2E_PROJECT host init 2>&1 | e2e_grep -q '^sshd drop-in .*: unchanged$' && '$BIN' --project $E2E_PROJECT host init 2>&1 | e2e_grep -q '^network ACL containarium-tenants: unchanged$'"
e2e_start_syslog
e2e_start_bastion_sshd

e2e_run_suites
