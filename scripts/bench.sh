#!/usr/bin/env bash
# Benchmarks, each against a baseline measured in the same run on the same
# host (never a timed test):
#
#   P1   create-to-SSH-ready: `containarium create` + first `ssh -J`, against
#        bare `incus launch` + `cloud-init status --wait` + first ssh with the
#        same image, the same user-data and the same security config.
#        Median of ROUNDS (default 5). Target: ratio <= 1.10.
#   M1   idle memory of a container with Docker enabled but unused (dockerd
#        socket-activated), against the same container with dockerd always
#        running. Target: <= 45 MiB.
#   S1   `sync-accounts` rebuilding 50 users' jump accounts and key files
#        from Incus metadata (50 real tenants, their accounts removed behind
#        the tool's back). Target: < 10 s.
#   Storm the same 50 users connecting through the bastion at the same
#        moment, each running a command in their container. Target: all 50
#        succeed; prints p50/p95 connect-to-answer time.
#   P6   startup cost on an empty host: `containarium --version` (beside
#        /bin/true, the floor of the measurement), and `containarium list
#        --json` against `incus list --format json`, the one call it wraps.
#        Median of 31 interleaved runs each. Target: list adds <= 10 ms.
#
#   sudo scripts/bench.sh [--quick] [ROUNDS]
#
# ROUNDS of P1 default to 25 (the figures in BENCHMARKS.md); --quick (CI)
# takes 9. A summary at the end lists each figure, its target and whether it
# was met; the exit status is non-zero only when a measurement failed, never
# for a missed target (these are figures, not timed tests).
#
# Uses the same environment as scripts/e2e.sh (project ctme2e, bridge
# 10.197.83.0/24 without NAT, loopback sshd) and cleans up the same way.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
for include in env tenants p1; do
	# shellcheck source=/dev/null
	. "tests/e2e/includes/$include.sh"
done
trap e2e_cleanup EXIT
trap 'exit 130' INT TERM

rounds=25
if [ "${1:-}" = --quick ]; then
	rounds=9
	shift
fi
rounds=${1:-$rounds}
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
p6_cmds=("/bin/true" "$BIN --version" "$BIN --project $E2E_PROJECT list --json"
	"incus --project $E2E_PROJECT list --format json")
for i in $(seq 31); do
	for c in "${!p6_cmds[@]}"; do
		t0=$(date +%s%N)
		# shellcheck disable=SC2086 # the words of the command line
		${p6_cmds[$c]} >/dev/null 2>&1
		t1=$(date +%s%N)
		echo "$(((t1 - t0) / 1000))" >>"$work/p6-$c"
	done
done
p6_median() { sort -n "$work/p6-$1" | awk '{ v[NR] = $1 } END { printf "%.1f", v[int((NR + 1) / 2)] / 1000 }'; }
p6_true=$(p6_median 0)
p6_version=$(p6_median 1)
p6_list=$(p6_median 2)
p6_incus=$(p6_median 3)
p6_ratio=$(awk -v a="$p6_list" -v b="$p6_incus" 'BEGIN { printf "%.2f", a / b }')
p6_added=$(awk -v a="$p6_list" -v b="$p6_incus" 'BEGIN { printf "%.1f", a - b }')
printf 'P6 startup on an empty host (median of 31, interleaved): /bin/true %s ms, containarium --version %s ms; list --json %s ms, incus list --format json %s ms: ratio %s, %s ms added (target: <= 10 ms added)\n' \
	"$p6_true" "$p6_version" "$p6_list" "$p6_incus" "$p6_ratio" "$p6_added"
summary+=("P6 list on an empty host over incus list: +$p6_added ms, ratio $p6_ratio (target <= 10 ms added): $(verdict "$p6_added" 10 '<=')")

# --- P1 ------------------------------------------------------------------------
e2e_p1 "$rounds" "$work" e2e-perf
summary+=("P1 create-to-SSH-ready / bare incus (median of $rounds): $E2E_P1_RATIO (target <= 1.10): $(verdict "$E2E_P1_RATIO" 1.10 '<=')")

# --- M1 ------------------------------------------------------------------------
# Resident memory of the container's processes, from its memory cgroup on the
# host: total_rss under cgroup v1, anon under v2. Page cache is left out: it
# depends on what ran before, not on what keeps running.
rss_mib() {
	local dir
	dir=$(find /sys/fs/cgroup/memory /sys/fs/cgroup -maxdepth 1 -type d -name "lxc.payload.${E2E_PROJECT}_$1" 2>/dev/null | head -n1)
	awk '$1 == "total_rss" || $1 == "anon" { printf "%.1f", $2 / 1048576; exit }' "$dir/memory.stat"
}
usage_mib() { incus query "/1.0/instances/$1/state?project=$E2E_PROJECT" | jq -r '.memory.usage / 1048576 | floor'; }
ctm create e2e-mem-a --ssh-key "$key.pub" >/dev/null 2>&1
ctm create e2e-mem-b --ssh-key "$key.pub" >/dev/null 2>&1
e2e_incus exec e2e-mem-b-container -- systemctl enable --now docker.service containerd.service >/dev/null 2>&1
sleep 20
docker_a=$(e2e_incus exec e2e-mem-a-container -- systemctl is-active docker.service || true)
m1=$(rss_mib e2e-mem-a-container)
printf 'M1 idle memory, docker socket-activated (dockerd %s): %s MiB resident, %s MiB with page cache\n' \
	"$docker_a" "$m1" "$(usage_mib e2e-mem-a-container)"
summary+=("M1 idle memory, Docker socket-activated: $m1 MiB (target <= 45 MiB): $(verdict "$m1" 45 '<=')")
printf 'M1 idle memory, dockerd always running:            %s MiB resident, %s MiB with page cache (target for the first: <= 45 MiB)\n' \
	"$(rss_mib e2e-mem-b-container)" "$(usage_mib e2e-mem-b-container)"
# Socket activation still works: the first docker command starts dockerd.
e2e_incus exec e2e-mem-a-container -- docker info --format '{{.ServerVersion}}' >/dev/null &&
	printf 'M1 first docker info in the socket-activated container started dockerd: %s\n' \
		"$(e2e_incus exec e2e-mem-a-container -- systemctl is-active docker.service)"
ctm delete e2e-mem-a --force >/dev/null
ctm delete e2e-mem-b --force >/dev/null

# --- S1 and the login storm -----------------------------------------------------
# 50 users created through the tool, 3 at a time (all share e2e-perf's key);
# then, as after a bastion rebuild, their jump accounts and key files are
# removed behind the tool's back and sync-accounts rebuilds them (S1).
users=()
for i in $(seq -w 1 50); do users+=("e2e-s$i"); done
# xargs runs the parallel work in the foreground (never `&` and `wait`: this
# shell's background jobs include the incusd it may have started).
t0=$(e2e_now_ms)
# shellcheck disable=SC2016 # expanded by the inner shell
printf '%s\n' "${users[@]}" | xargs -P 3 -I{} sh -c \
	'"$0" --project "$1" create "$2" --ssh-key "$3" >"$4/create-$2.out" 2>&1 || cat "$4/create-$2.out" >&2' \
	"$BIN" "$E2E_PROJECT" {} "$key.pub" "$work" || true
created=$(ctm list --json | jq '[.[] | select(.user | startswith("e2e-s"))] | length')
printf 'setup: %s of 50 users created in %s ms, 3 at a time\n' "$created" $(($(e2e_now_ms) - t0))
[ "$created" -eq 50 ] || { echo "bench: only $created of 50 users were created" >&2; exit 1; }
for u in "${users[@]}"; do
	userdel -- "$u"
	rm -f -- "$E2E_ETC_DIR/keys/$u"
done
t0=$(e2e_now_ms)
ctm sync-accounts >"$work/sync.out" 2>&1
s1_ms=$(($(e2e_now_ms) - t0))
t0=$(e2e_now_ms)
ctm sync-accounts >"$work/sync2.out" 2>&1
s1_again_ms=$(($(e2e_now_ms) - t0))
printf 'S1 sync-accounts for 50 users: %s ms (%s); again, nothing to do: %s ms (%s) (target < 10000 ms)\n' \
	"$s1_ms" "$(tail -n1 "$work/sync.out")" "$s1_again_ms" "$(tail -n1 "$work/sync2.out")"
summary+=("S1 sync-accounts for 50 users: $s1_ms ms (target < 10000 ms): $(verdict "$s1_ms" 10000 '<')")

# The login storm: a class starting at 9:00. All 50 users connect through the
# bastion at the same moment, each running `hostname` in their own
# container; each records its exit status and its connect-to-answer time.
# One login, run by xargs as: bash -c "$storm_one" storm WORK JUMP USER IP.
# shellcheck disable=SC2016 # expanded by the inner shell
storm_one='u=$3 t0=$(date +%s%N) rc=0
out=$(ssh -F "$1/ssh-e2e-perf.conf" -J "$u@$2" "$u@$4" hostname 2>&1) || rc=$?
t1=$(date +%s%N)
[ "$out" = "$u-container" ] || [ "$rc" -ne 0 ] || rc=1
echo "$rc $(((t1 - t0) / 1000000))" >"$1/storm-$u"'
ctm list --json | jq -r '.[] | select(.user | startswith("e2e-s")) | "\(.user) \(.ipv4)"' >"$work/storm-targets"
xargs -P 50 -L 1 bash -c "$storm_one" storm "$work" "$E2E_BASTION_HOST:$E2E_BASTION_PORT" <"$work/storm-targets" || true
storm_ok=$(cat "$work"/storm-e2e-s* | awk '$1 == 0' | wc -l)
read -r storm_p50 storm_p95 < <(cat "$work"/storm-e2e-s* | awk '{ print $2 }' | sort -n |
	awk '{ v[NR] = $1 } END { print v[int(NR * 0.5 + 0.5)], v[int(NR * 0.95 + 0.5)] }')
printf 'login storm: %s of 50 users at once succeeded; connect-to-answer p50 %s ms, p95 %s ms (sshd: %s) (target: 50 of 50)\n' \
	"$storm_ok" "$storm_p50" "$storm_p95" "$(/usr/sbin/sshd -T -f /etc/ssh/sshd_config | grep -E '^(maxstartups|persourcemaxstartups) ' | paste -sd, | sed 's/,/, /')"
summary+=("login storm, 50 users at once: $storm_ok of 50 (target 50 of 50): $(verdict "$storm_ok" 50 '>=')")
for u in "${users[@]}"; do ctm delete "$u" --force >/dev/null; done

echo "== summary"
printf '%s\n' "${summary[@]}"
