# shellcheck shell=bash
# density.sh: the benchmarks that need many tenants, all made through the
# tool: P5 (N running tenants, each reachable through its own jump account,
# host memory per tenant), P3 (`list --json` with N tenants), S1
# (sync-accounts rebuilding 50 users' accounts) and the login storm (50
# users at once), all from one `apply`. Sourced by scripts/bench.sh after env.sh and tenants.sh;
# the functions add their verdicts to the caller's `summary` array with
# `verdict` (both defined there).
#
# Parallel work runs under xargs, in the foreground: never `&` and `wait`,
# since the sourcing shell's background jobs include the incusd it may have
# started.

# e2e_rss_mib CONTAINER: resident memory of the container's processes, from
# its memory cgroup on the host: total_rss under cgroup v1, anon under v2.
# Page cache is left out: it depends on what ran before, not on what keeps
# running.
e2e_rss_mib() {
	local dir
	dir=$(find /sys/fs/cgroup/memory /sys/fs/cgroup -maxdepth 1 -type d -name "lxc.payload.${E2E_PROJECT}_$1" 2>/dev/null | sed -n 1p)
	awk '$1 == "total_rss" || $1 == "anon" { printf "%.1f", $2 / 1048576; exit }' "$dir/memory.stat"
}

# e2e_mem_available_mib: MemAvailable of the host, in MiB.
e2e_mem_available_mib() { awk '$1 == "MemAvailable:" { printf "%d", $2 / 1024 }' /proc/meminfo; }

# density_users N: the names of the N density users, e2e-s001 and on.
density_users() { seq -f 'e2e-s%03g' 1 "$1"; }

# density_setup N DIR KEY: N tenants from one cohort file through `apply`
# (its default: as many creates at once as CPUs, plus one; all share
# KEY.pub), then the same file applied again, which has nothing to do. Sets
# DENSITY_MS (total time), DENSITY_NOOP_MS (the rerun) and
# DENSITY_MEM_BEFORE (MiB available before). Fails unless all N were
# created.
density_setup() {
	local n=$1 dir=$2 key=$3 created t0
	density_users "$n" | awk -v key="$(cat "$key.pub")" 'BEGIN { print "set = \"e2e-density\"" }
		{ printf "[[user]]\nname = \"%s\"\nkeys = [\"%s\"]\n", $1, key }' >"$dir/density.toml"
	DENSITY_MEM_BEFORE=$(e2e_mem_available_mib)
	t0=$(e2e_now_ms)
	"$BIN" --project "$E2E_PROJECT" apply "$dir/density.toml" >"$dir/density-apply.out" 2>&1 ||
		tail -n 20 "$dir/density-apply.out" >&2
	DENSITY_MS=$(($(e2e_now_ms) - t0))
	created=$(ctm list --json | jq '[.[] | select(.user | startswith("e2e-s")) | select(.state == "running")] | length')
	printf 'setup: %s of %s tenants created by one apply in %s ms (%s ms each)\n' \
		"$created" "$n" "$DENSITY_MS" $((DENSITY_MS / n))
	[ "$created" -eq "$n" ] || e2e_die "only $created of $n tenants were created"
	t0=$(e2e_now_ms)
	"$BIN" --project "$E2E_PROJECT" apply "$dir/density.toml" >"$dir/density-noop.out" 2>&1 ||
		{ tail -n 5 "$dir/density-noop.out" >&2; return 1; }
	DENSITY_NOOP_MS=$(($(e2e_now_ms) - t0))
	printf 'apply of the same file again, %s users: %s ms (%s)\n' "$n" "$DENSITY_NOOP_MS" "$(tail -n1 "$dir/density-noop.out")"
	[ "$(tail -n1 "$dir/density-noop.out")" = "No changes." ] || e2e_die "the rerun of apply changed something"
}

# density_teardown N: deletes the N density users: the empty set applied
# with --prune.
density_teardown() {
	local t0
	t0=$(e2e_now_ms)
	printf 'set = "e2e-density"\n' >"$E2E_WORK/density.toml"
	"$BIN" --project "$E2E_PROJECT" apply "$E2E_WORK/density.toml" --prune >"$E2E_WORK/density-prune.out" 2>&1 ||
		tail -n 20 "$E2E_WORK/density-prune.out" >&2
	printf 'teardown: %s tenants deleted by apply --prune in %s ms\n' "$1" $(($(e2e_now_ms) - t0))
}

# bench_p5 N DIR: the N tenants of density_setup are running and each
# answers `hostname` over `ssh -J` through its own jump account (4 at a
# time); the host memory they use: MemAvailable before and after, per
# tenant, and the sum of their cgroups' resident memory (as M1 reads it).
bench_p5() {
	local n=$1 dir=$2 running ok after per sum t0 reach_ms
	# Let the last ones finish booting, as M1 does for one.
	sleep 20
	running=$(e2e_incus list --format csv -c ns | awk -F, '$1 ~ /^e2e-s[0-9]+-container$/ && $2 == "RUNNING"' | wc -l)
	after=$(e2e_mem_available_mib)
	per=$(awk -v b="$DENSITY_MEM_BEFORE" -v a="$after" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }')
	sum=$(for u in $(density_users "$n"); do e2e_rss_mib "$u-container"; echo; done |
		awk '{ s += $1 } END { printf "%.0f", s }')
	ctm list --json | jq -r '.[] | select(.user | startswith("e2e-s")) | "\(.user) \(.ipv4)"' >"$dir/reach-targets"
	rm -f "$dir"/reach-e2e-s*
	# One check, run by xargs as: bash -c "$reach_one" reach DIR JUMP USER IP.
	# shellcheck disable=SC2016 # expanded by the inner shell
	local reach_one='out=$(ssh -F "$1/ssh-e2e-perf.conf" -J "$3@$2" "$3@$4" hostname 2>&1)
[ "$out" = "$3-container" ] && echo ok >"$1/reach-$3" || echo "$3: $out" >&2'
	t0=$(e2e_now_ms)
	xargs -P 4 -L 1 bash -c "$reach_one" reach "$dir" "$E2E_BASTION_HOST:$E2E_BASTION_PORT" <"$dir/reach-targets" || true
	reach_ms=$(($(e2e_now_ms) - t0))
	ok=$(cat "$dir"/reach-e2e-s* 2>/dev/null | wc -l)
	printf 'P5 density: %s tenants running (Docker enabled, socket-activated), %s of %s reachable over ssh -J through their own jump account (checked 4 at a time in %s ms); created in %s ms\n' \
		"$running" "$ok" "$n" "$reach_ms" "$DENSITY_MS"
	printf 'P5 host memory: MemAvailable %s MiB before, %s MiB after: %s MiB per tenant; their cgroups hold %s MiB resident (%s MiB each)\n' \
		"$DENSITY_MEM_BEFORE" "$after" "$per" "$sum" "$(awk -v s="$sum" -v n="$n" 'BEGIN { printf "%.1f", s / n }')"
	# The shared host limits, at N: the fullest key quota (the containers'
	# root UID shares one), tasks, neighbour entries, open files, addresses.
	printf 'P5 host limits with %s tenants: keys %s; tasks %s of kernel.pid_max %s; neighbours on %s %s of gc_thresh3 %s; open files %s of fs.file-max %s; addresses %s (with the gateway) of the bridge'"'"'s %s\n' "$n" \
		"$(awk 'NR > 0 { split($4, q, "/"); if (q[1] + 0 > m) { m = q[1] + 0; sub(":", "", $1); line = q[1] " of kernel.keys.maxkeys " q[2] " (UID " $1 ")" } } END { print line }' /proc/key-users)" \
		"$(ps -eL --no-headers | wc -l)" "$(cat /proc/sys/kernel/pid_max)" \
		"$E2E_BRIDGE" "$(ip neigh show dev "$E2E_BRIDGE" | wc -l)" "$(cat /proc/sys/net/ipv4/neigh/default/gc_thresh3)" \
		"$(cut -f1 /proc/sys/fs/file-nr)" "$(cat /proc/sys/fs/file-max)" \
		"$(($(wc -l <"$dir/reach-targets") + 1))" "$((2 ** (32 - ${E2E_BRIDGE_CIDR#*/}) - 2))"
	# What the shared key quota stops when full: a new session keyring (runc
	# makes one per Docker container), here in the last tenant.
	# shellcheck disable=SC2016 # Python, not shell
	printf 'P5 a new session keyring in e2e-s%03d-container (what runc needs per Docker container): %s\n' "$n" \
		"$(e2e_exec_retry "$(printf 'e2e-s%03d-container' "$n")" python3 -c 'import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print("ok" if libc.syscall(250, 1, None) >= 0 else os.strerror(ctypes.get_errno()))' 2>&1)"
	summary+=("P5 density: $ok of $n tenants reachable over ssh -J, created in $((DENSITY_MS / 1000)) s, $per MiB of host memory each (target $n of $n): $(verdict "$ok" "$n" '>=')")
}

# bench_p3 N DIR: `containarium list --json` against `incus list --format
# json` in the same project, with the N tenants there; 11 rounds,
# interleaved, median.
bench_p3() {
	local n=$1 dir=$2 t0 t1 ctm_ms incus_ms ratio
	rm -f "$dir/p3-ctm" "$dir/p3-incus"
	for _ in $(seq 11); do
		t0=$(date +%s%N)
		ctm list --json >/dev/null
		t1=$(date +%s%N)
		echo $(((t1 - t0) / 1000000)) >>"$dir/p3-ctm"
		t0=$(date +%s%N)
		e2e_incus list --format json >/dev/null
		t1=$(date +%s%N)
		echo $(((t1 - t0) / 1000000)) >>"$dir/p3-incus"
	done
	ctm_ms=$(e2e_median "$dir/p3-ctm")
	incus_ms=$(e2e_median "$dir/p3-incus")
	ratio=$(awk -v a="$ctm_ms" -v b="$incus_ms" 'BEGIN { printf "%.2f", a / b }')
	printf 'P3 list with %s tenants (median of 11, interleaved): containarium list --json %s ms, incus list --format json %s ms: ratio %s (target <= 1.2)\n' \
		"$n" "$ctm_ms" "$incus_ms" "$ratio"
	summary+=("P3 list --json with $n tenants / incus list: $ratio (target <= 1.2): $(verdict "$ratio" 1.2 '<=')")
}

# bench_s1 N: as after a bastion rebuild, the jump accounts and key files of
# the first 50 of the N tenants are removed behind the tool's back and
# sync-accounts rebuilds them from Incus metadata; then once more, with
# nothing to do.
bench_s1() {
	local n=$1 m u t0 s1_ms again_ms
	m=$((n < 50 ? n : 50))
	for u in $(density_users "$m"); do
		userdel -- "$u"
		rm -f -- "$E2E_ETC_DIR/keys/$u"
	done
	t0=$(e2e_now_ms)
	ctm sync-accounts >"$E2E_WORK/sync.out" 2>&1
	s1_ms=$(($(e2e_now_ms) - t0))
	t0=$(e2e_now_ms)
	ctm sync-accounts >"$E2E_WORK/sync2.out" 2>&1
	again_ms=$(($(e2e_now_ms) - t0))
	printf 'S1 sync-accounts rebuilding %s users (%s tenants): %s ms (%s); again, nothing to do: %s ms (%s) (target < 10000 ms)\n' \
		"$m" "$n" "$s1_ms" "$(tail -n1 "$E2E_WORK/sync.out")" "$again_ms" "$(tail -n1 "$E2E_WORK/sync2.out")"
	summary+=("S1 sync-accounts rebuilding $m users ($n tenants): $s1_ms ms (target < 10000 ms): $(verdict "$s1_ms" 10000 '<')")
}

# bench_storm N DIR: the login storm, a class starting at 9:00. The first 50
# of the N tenants connect through the bastion at the same moment, each
# running `hostname` in their own container; each records its exit status
# and its connect-to-answer time.
bench_storm() {
	local n=$1 dir=$2 m ok p50 p95
	m=$((n < 50 ? n : 50))
	# One login, run by xargs as: bash -c "$storm_one" storm DIR JUMP USER IP.
	# shellcheck disable=SC2016 # expanded by the inner shell
	local storm_one='u=$3 t0=$(date +%s%N) rc=0
out=$(ssh -F "$1/ssh-e2e-perf.conf" -J "$u@$2" "$u@$4" hostname 2>&1) || rc=$?
t1=$(date +%s%N)
[ "$out" = "$u-container" ] || [ "$rc" -ne 0 ] || rc=1
echo "$rc $(((t1 - t0) / 1000000))" >"$1/storm-$u"'
	rm -f "$dir"/storm-e2e-s*
	ctm list --json | jq -r --argjson m "$m" '[.[] | select(.user | startswith("e2e-s"))] | sort_by(.user) | .[:$m][] | "\(.user) \(.ipv4)"' >"$dir/storm-targets"
	xargs -P "$m" -L 1 bash -c "$storm_one" storm "$dir" "$E2E_BASTION_HOST:$E2E_BASTION_PORT" <"$dir/storm-targets" || true
	ok=$(cat "$dir"/storm-e2e-s* | awk '$1 == 0' | wc -l)
	read -r p50 p95 < <(cat "$dir"/storm-e2e-s* | awk '{ print $2 }' | sort -n |
		awk '{ v[NR] = $1 } END { print v[int(NR * 0.5 + 0.5)], v[int(NR * 0.95 + 0.5)] }')
	printf 'login storm: %s of %s users at once succeeded; connect-to-answer p50 %s ms, p95 %s ms (sshd: %s) (target: %s of %s)\n' \
		"$ok" "$m" "$p50" "$p95" "$(/usr/sbin/sshd -T -f /etc/ssh/sshd_config | grep -E '^(maxstartups|persourcemaxstartups) ' | paste -sd, | sed 's/,/, /')" "$m" "$m"
	summary+=("login storm, $m users at once: $ok of $m (target $m of $m): $(verdict "$ok" "$m" '>=')")
}
