#!/usr/bin/env bash
# Benchmarks, each against a baseline measured in the same run on the same
# host (never a timed test):
#
#   P6   startup cost on an empty host: `containarium --version` (beside
#        /bin/true, the floor of the measurement), and `containarium list
#        --json` against `incus list --format json`, the one call it wraps.
#        Median of 31 interleaved runs each. Target: list adds <= 10 ms.
#   P1   create-to-SSH-ready: `containarium create` + first `ssh -J`, against
#        two bare Incus paths with the same image, user-data and security
#        config, all three in every round (rounds interleaved), median of
#        ROUNDS. The overhead path: `incus launch` with the address pinned
#        as containarium pins it + the very cloud-init wait containarium
#        runs (read from its --dry-run) + first ssh; target ratio <= 1.05.
#        The manual path: `incus launch` + `cloud-init status --wait` +
#        first ssh; target ratio <= 0.85. Prints per-phase medians.
#   M1   idle memory of a container with Docker enabled but unused (dockerd
#        socket-activated), against the same container with dockerd always
#        running. Target: <= 45 MiB.
#   P5   density: N tenants (Docker enabled, socket-activated), created
#        by one `apply` of a cohort file, every one answering over `ssh -J`
#        through its own jump account; total time and host memory per
#        tenant. Target: N of N. Then the same file again (apply's no-op):
#        target < 2 s for 50 users.
#   P2   a cohort from one file: `apply` of P2N users (50; 6 with --quick)
#        to all answering `ssh -J`, against the same users made one after
#        the other by hand (bare `incus launch` + `cloud-init status
#        --wait` + first ssh). Target: ratio <= 0.4.
#   P3   `list --json` with the N tenants against `incus list --format
#        json`, 11 interleaved rounds, median. Target: ratio <= 1.2.
#   S1   `sync-accounts` rebuilding 50 of the tenants' jump accounts and key
#        files from Incus metadata (removed behind the tool's back, as after
#        a bastion rebuild). Target: < 10 s.
#   storm 50 of the tenants connecting through the bastion at the same
#        moment, each running a command in their container. Target: all 50
#        succeed; prints p50/p95 connect-to-answer time.
#
#   sudo scripts/bench.sh [--quick] [--only "SECTION..."] [ROUNDS]
#
# ROUNDS of P1 default to 25 and N to 200 (the release figures in
# BENCHMARKS.md); --quick (CI) takes 7 rounds, N = 30 and P2N = 6.
# BENCH_DENSITY=N overrides N. --only (or BENCH_ONLY), a list of sections separated by
# spaces or commas (p6 p1 m1 p2 p5 p3 s1 storm), runs only those, for
# iterating: `--only p1` or `BENCH_ONLY="p3 s1" scripts/bench.sh --quick`
# (p5, p3, s1 and storm all need the N tenants, which are then created).
# A summary at the end lists each figure, its target and whether it was met;
# the exit status is non-zero only when a measurement failed, never for a
# missed target (these are figures, not timed tests).
#
# Uses the same environment as scripts/e2e.sh (project ctme2e, bridge
# 10.197.83.0/24 without NAT, loopback sshd) and cleans up the same way; its
# pool is larger (E2E_POOL_SIZE, default 32GiB here, a sparse file) to hold
# 200 tenants.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# 200 tenants need more than the e2e suite's 8 GiB pool.
E2E_POOL_SIZE=${E2E_POOL_SIZE:-32GiB}
for include in env tenants p1 p2 density; do
	# shellcheck source=/dev/null
	. "tests/e2e/includes/$include.sh"
done
trap e2e_cleanup EXIT
trap 'exit 130' INT TERM

rounds=25 density=200 p2n=50 only=${BENCH_ONLY:-}
while [ $# -gt 0 ]; do
	case $1 in
	--quick) rounds=7 density=30 p2n=6 ;;
	--only) only=${2:?--only needs a list of sections}; shift ;;
	--only=*) only=${1#--only=} ;;
	[0-9]*) rounds=$1 ;;
	*) echo "usage: $0 [--quick] [--only \"p6 p1 m1 p2 p5 p3 s1 storm\"] [ROUNDS]" >&2; exit 2 ;;
	esac
	shift
done
density=${BENCH_DENSITY:-$density}
only=${only//,/ }
for section in $only; do
	case $section in
	p6 | p1 | m1 | p2 | p5 | p3 | s1 | storm) ;;
	*) echo "bench: unknown section $section (p6 p1 m1 p2 p5 p3 s1 storm)" >&2; exit 2 ;;
	esac
done
# wanted SECTION...: whether any of the sections is to run.
wanted() {
	local s
	[ -n "$only" ] || return 0
	for s in "$@"; do [[ " $only " == *" $s "* ]] && return 0; done
	return 1
}
# summary LINE: one "figure: value (target): met|MISSED" line for the end.
summary=()
verdict() { awk -v v="$1" -v t="$2" "BEGIN { exit !(v $3 t) }" && echo met || echo MISSED; }
e2e_install_deps
e2e_start_incusd
e2e_setup_incus
e2e_image
work=$E2E_WORK
e2e_containarium "$work"

ctm host init >/dev/null 2>&1
e2e_start_syslog
e2e_start_bastion_sshd
e2e_client e2e-perf "$work"
key=$work/keys/e2e-perf

# --- P6 ------------------------------------------------------------------------
# The commands run interleaved, 31 rounds, so load from elsewhere on the
# machine falls on all of them alike; each figure is the median, in ms.
bench_p6() {
	local p6_cmds=("/bin/true" "$BIN --version" "$BIN --project $E2E_PROJECT list --json"
		"incus --project $E2E_PROJECT list --format json")
	local c t0 t1 p6_true p6_version p6_list p6_incus p6_ratio p6_added
	rm -f "$work"/p6-*
	for _ in $(seq 31); do
		for c in "${!p6_cmds[@]}"; do
			t0=$(date +%s%N)
			# shellcheck disable=SC2086 # the words of the command line
			${p6_cmds[$c]} >/dev/null 2>&1
			t1=$(date +%s%N)
			echo "$(((t1 - t0) / 1000))" >>"$work/p6-$c"
		done
	done
	p6_median() { awk -v us="$(e2e_median "$work/p6-$1")" 'BEGIN { printf "%.1f", us / 1000 }'; }
	p6_true=$(p6_median 0)
	p6_version=$(p6_median 1)
	p6_list=$(p6_median 2)
	p6_incus=$(p6_median 3)
	p6_ratio=$(awk -v a="$p6_list" -v b="$p6_incus" 'BEGIN { printf "%.2f", a / b }')
	p6_added=$(awk -v a="$p6_list" -v b="$p6_incus" 'BEGIN { printf "%.1f", a - b }')
	printf 'P6 startup on an empty host (median of 31, interleaved): /bin/true %s ms, containarium --version %s ms; list --json %s ms, incus list --format json %s ms: ratio %s, %s ms added (target: <= 10 ms added)\n' \
		"$p6_true" "$p6_version" "$p6_list" "$p6_incus" "$p6_ratio" "$p6_added"
	summary+=("P6 list on an empty host over incus list: +$p6_added ms, ratio $p6_ratio (target <= 10 ms added): $(verdict "$p6_added" 10 '<=')")
}

# --- P1 ------------------------------------------------------------------------
bench_p1() {
	e2e_p1 "$rounds" "$work" e2e-perf
	summary+=("P1 overhead, containarium / launch with the address pinned + the same wait (median of $rounds; $E2E_P1_MS): $E2E_P1_OVERHEAD_RATIO (target <= 1.05): $(verdict "$E2E_P1_OVERHEAD_RATIO" 1.05 '<=')")
	summary+=("P1 manual, containarium / launch + cloud-init status --wait (median of $rounds): $E2E_P1_RATIO (target <= 0.85): $(verdict "$E2E_P1_RATIO" 0.85 '<=')")
}

# --- M1 ------------------------------------------------------------------------
usage_mib() { incus query "/1.0/instances/$1/state?project=$E2E_PROJECT" | jq -r '.memory.usage / 1048576 | floor'; }
bench_m1() {
	local docker_a m1 u
	for u in e2e-mem-a e2e-mem-b; do
		ctm create "$u" --ssh-key "$key.pub" >"$work/create-mem.out" 2>&1 || { cat "$work/create-mem.out" >&2; return 1; }
	done
	e2e_exec_retry e2e-mem-b-container systemctl enable --now docker.service containerd.service >/dev/null 2>&1
	sleep 20
	docker_a=$(e2e_exec_retry e2e-mem-a-container systemctl is-active docker.service || true)
	m1=$(e2e_rss_mib e2e-mem-a-container)
	printf 'M1 idle memory, docker socket-activated (dockerd %s): %s MiB resident, %s MiB with page cache\n' \
		"$docker_a" "$m1" "$(usage_mib e2e-mem-a-container)"
	summary+=("M1 idle memory, Docker socket-activated: $m1 MiB (target <= 45 MiB): $(verdict "$m1" 45 '<=')")
	printf 'M1 idle memory, dockerd always running:            %s MiB resident, %s MiB with page cache (target for the first: <= 45 MiB)\n' \
		"$(e2e_rss_mib e2e-mem-b-container)" "$(usage_mib e2e-mem-b-container)"
	# Socket activation still works: the first docker command starts dockerd.
	e2e_exec_retry e2e-mem-a-container docker info --format '{{.ServerVersion}}' >/dev/null &&
		printf 'M1 first docker info in the socket-activated container started dockerd: %s\n' \
			"$(e2e_exec_retry e2e-mem-a-container systemctl is-active docker.service)"
	for u in e2e-mem-a e2e-mem-b; do
		ctm delete "$u" --force >"$work/delete-mem.out" 2>&1 || { cat "$work/delete-mem.out" >&2; return 1; }
	done
}

# --- P2 ------------------------------------------------------------------------
bench_p2() {
	e2e_p2 "$p2n" "$work" || return 1
	printf 'P2 %s users from one file to all answering ssh -J: apply %s ms, one after the other by hand %s ms: ratio %s (target <= 0.4)\n' \
		"$p2n" "$E2E_P2_APPLY_MS" "$E2E_P2_BARE_MS" "$E2E_P2_RATIO"
	summary+=("P2 apply of $p2n users / the same made one after the other by hand: $E2E_P2_RATIO (target <= 0.4): $(verdict "$E2E_P2_RATIO" 0.4 '<=')")
}

wanted p6 && bench_p6
wanted p1 && bench_p1
wanted m1 && bench_m1
wanted p2 && bench_p2
# P5, P3, S1 and the storm share the N tenants (tests/e2e/includes/density.sh).
if wanted p5 p3 s1 storm; then
	density_setup "$density" "$work" "$key"
	summary+=("apply of the same $density-user file again (no changes): $DENSITY_NOOP_MS ms (target < 2000 ms for 50): $(verdict "$DENSITY_NOOP_MS" 2000 '<')")
	wanted p5 && bench_p5 "$density" "$work"
	wanted p3 && bench_p3 "$density" "$work"
	wanted s1 && bench_s1 "$density"
	wanted storm && bench_storm "$density" "$work"
	density_teardown "$density"
fi

echo "== summary"
printf '%s\n' "${summary[@]}"
