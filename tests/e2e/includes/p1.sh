# shellcheck shell=bash
# shellcheck disable=SC2016 # jq programs for e2e_jq, single-quoted
# p1.sh: P1, containarium create-to-SSH-ready against two bare Incus paths in
# the same run: the manual one (launch + `cloud-init status --wait` + first
# ssh, what an admin does by hand) and the overhead one (launch with the
# address pinned + the very wait containarium uses + first ssh: the pure cost
# of the tool). Sourced after env.sh and tenants.sh.

# ---------------------------------------------------------------------------
# Helpers for tests
# ---------------------------------------------------------------------------

# e2e_instance_ipv4 NAME [TIMEOUT_S]: print eth0's global IPv4 address (waits).
e2e_instance_ipv4() {
	local -
	set +e # failures are handled explicitly (callers may use set -e)
	local name=$1 timeout=${2:-60} ip i
	for ((i = 0; i < timeout * 5; i++)); do
		ip=$(incus query "/1.0/instances/$name/state?project=$E2E_PROJECT" 2>/dev/null |
			jq -r '.network.eth0.addresses[]? | select(.family == "inet" and .scope == "global") | .address' |
			sed -n 1p)
		if [ -n "$ip" ]; then
			echo "$ip"
			return 0
		fi
		sleep 0.2
	done
	e2e_die "no IPv4 on eth0 of $name after ${timeout}s"
}

# e2e_user_data USER PUBKEY_LINE: cloud-config creating USER with the key and
# passwordless sudo (and membership of group docker when it exists).
e2e_user_data() {
	cat <<EOF
#cloud-config
users:
  - name: $1
    shell: /bin/bash
    groups: [sudo]
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    lock_passwd: true
    ssh_authorized_keys:
      - $2
runcmd:
  - [sh, -c, "getent group docker >/dev/null && usermod -aG docker $1 || true"]
EOF
}

# e2e_ssh_opts KNOWN_HOSTS_FILE: BatchMode, no host key prompts.
e2e_ssh_opts() {
	printf '%s\n' -o BatchMode=yes -o StrictHostKeyChecking=no \
		-o "UserKnownHostsFile=$1" -o GlobalKnownHostsFile=/dev/null \
		-o ConnectTimeout=5 -o LogLevel=ERROR -o IdentitiesOnly=yes
}

# e2e_exec_retry NAME CMD...: incus exec, retried (5 tries) only when Incus
# itself failed to run CMD (exit 255, e.g. "Failed to retrieve PID of
# executing child process" on a busy host), as containarium does.
e2e_exec_retry() {
	local name=$1 try rc
	shift
	for try in 1 2 3 4 5; do
		e2e_incus exec "$name" -- "$@"
		rc=$?
		[ "$rc" -eq 255 ] || return "$rc"
		sleep "0.$try"
	done
	return "$rc"
}

# e2e_median FILE: the median of the numbers in FILE, one a line.
e2e_median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# e2e_phase_medians FILE: FILE has "PHASE<TAB>MS" lines (several rounds);
# prints "PHASE MEDIAN ms, ..." in the order the phases first appear.
e2e_phase_medians() {
	awk -F '\t' '!($1 in n) { order[++k] = $1 } { v[$1, ++n[$1]] = $2 }
		END {
			for (i = 1; i <= k; i++) {
				p = order[i]; m = n[p]
				for (a = 1; a <= m; a++) s[a] = v[p, a]
				for (a = 2; a <= m; a++) for (b = a; b > 1 && s[b - 1] > s[b]; b--) { t = s[b]; s[b] = s[b - 1]; s[b - 1] = t }
				printf "%s%s %d ms", (i > 1 ? ", " : ""), p, s[int((m + 1) / 2)]
			}
			print ""
		}' "$1"
}

# e2e_bare_baseline USER PUBKEY PRIVKEY [USER-DATA-FILE [LAUNCH-ARGS...]]: the
# manual path. Times incus launch of $E2E_IMAGE with cloud-init user-data
# that creates USER (key, passwordless sudo) + cloud-init status --wait +
# reading the address Incus reports + the first direct ssh USER@IP true from
# the host. PUBKEY is a file or the key line itself. Prints the milliseconds
# on stdout; appends its phases to $E2E_PHASES_OUT (see e2e_phase_medians)
# when set; deletes the container.
e2e_bare_baseline() {
	local -
	set +e # failures are handled explicitly (callers may use set -e)
	e2e_lock || return 1
	local user=$1 pub=$2 priv=$3 user_data=${4:-} name t0 ms ip kh opts
	[ -n "$user" ] && [ -n "$pub" ] && [ -r "$priv" ] ||
		e2e_die "usage: e2e_bare_baseline USER PUBKEY PRIVKEY [USER-DATA-FILE [LAUNCH-ARGS...]]" || return 1
	shift $(($# < 4 ? $# : 4))
	[ -f "$pub" ] && pub=$(head -n1 "$pub")
	# The same user-data (and launch config) as the path compared against,
	# so the ratio measures only what differs.
	if [ -n "$user_data" ]; then user_data=$(cat "$user_data"); else user_data=$(e2e_user_data "$user" "$pub"); fi
	name=ctme2e-bare-$$-$RANDOM
	kh=$(mktemp "$E2E_STATE_DIR/known_hosts.XXXXXX")
	mapfile -t opts < <(e2e_ssh_opts "$kh")
	t0=$(e2e_now_ms)
	local t1=$t0 t2=$t0 t3=$t0 ok=1
	if e2e_incus launch "$E2E_IMAGE" "$name" -c cloud-init.user-data="$user_data" "$@" \
		>/dev/null && t1=$(e2e_now_ms) &&
		e2e_exec_retry "$name" cloud-init status --wait >/dev/null && t2=$(e2e_now_ms) &&
		ip=$(e2e_instance_ipv4 "$name" 30); then
		t3=$(e2e_now_ms)
		e2e__first_ssh "$priv" "$user@$ip" "${opts[@]}" || ok=0
	else
		ok=0
	fi
	ms=$(($(e2e_now_ms) - t0))
	[ -z "${E2E_PHASES_OUT:-}" ] || printf 'launch\t%s\nwait (cloud-init status --wait)\t%s\naddress\t%s\nssh\t%s\n' \
		$((t1 - t0)) $((t2 - t1)) $((t3 - t2)) $((t0 + ms - t3)) >>"$E2E_PHASES_OUT"
	e2e_incus delete --force "$name" >/dev/null 2>&1
	rm -f "$kh"
	[ "$ok" -eq 1 ] || e2e_die "bare baseline: $user@$name never answered over ssh" || return 1
	echo "$ms"
}

# e2e__first_ssh PRIVKEY USER@IP SSH-OPTS...: ssh USER@IP true until it
# answers (at most 100 tries, 0.2 s apart).
e2e__first_ssh() {
	local priv=$1 target=$2 i
	shift 2
	for ((i = 0; i < 100; i++)); do
		ssh "$@" -i "$priv" "$target" true 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}

# e2e_p1_learn DIR USER: reads, from `containarium create USER --dry-run`,
# what the overhead path must do the same way: the cloud-init wait argv that
# containarium runs with `incus exec` (cloud_init::wait_argv()) and the file
# it then reads for errors (cloud_init::STATUS_FILE), and the eth0 devices it
# adds to `incus init` (the pinned address and the NIC filters). Sets
# E2E_WAIT_ARGV, E2E_STATUS_FILE and E2E_NIC_ARGS (without the address).
e2e_p1_learn() {
	local dir=$1 user=$2 line
	"$BIN" --project "$E2E_PROJECT" create "$user" --ssh-key "$dir/keys/$user.pub" --dry-run >"$dir/p1-dry-run" 2>&1 ||
		e2e_die "create --dry-run failed: $(cat "$dir/p1-dry-run")" || return 1
	# "    # incus --project P exec NAME -- ARGV...; then read FILE for errors"
	line=$(sed -n 's/^    # .* exec [^ ]* -- \(.*; then read [^ ]* for errors\)$/\1/p' "$dir/p1-dry-run")
	E2E_STATUS_FILE=${line##*; then read }
	E2E_STATUS_FILE=${E2E_STATUS_FILE% for errors}
	# The argv is shell-quoted words (Cmd's Display); xargs splits them the
	# same way, without a shell evaluating anything.
	mapfile -d '' -t E2E_WAIT_ARGV < <(printf '%s' "${line%; then read * for errors}" | xargs printf '%s\0')
	mapfile -t E2E_NIC_ARGS < <(grep -o -- '--device eth0,[^ ]*' "$dir/p1-dry-run" | grep -v ',ipv4\.address=' |
		sed 's/^--device /-d\n/')
	if [ "${E2E_WAIT_ARGV[0]:-}" != timeout ] || [ -z "$line" ] || [ "${#E2E_NIC_ARGS[@]}" -eq 0 ]; then
		e2e_die "could not read the cloud-init wait and NIC devices from create --dry-run: $(cat "$dir/p1-dry-run")"
	fi
}

# e2e_free_top_ip: the highest address of the bridge's /24 that no instance
# of any project holds (configured or reported) and nothing answers ARP for
# on the bridge: containarium allocates from the bottom, so it stays free.
e2e_free_top_ip() {
	local -
	set +e
	local prefix=${E2E_BRIDGE_IP%.*} held i
	held=$(incus list --all-projects --format json | jq -r '.[] |
		(.expanded_devices[]?["ipv4.address"] // empty),
		(.state.network[]?.addresses[]? | select(.family == "inet") | .address)')
	for ((i = 254; i > 200; i--)); do
		grep -qxF "$prefix.$i" <<<"$held" && continue
		ip neigh show dev "$E2E_BRIDGE" to "$prefix.$i" | e2e_grep -q . && continue
		echo "$prefix.$i"
		return 0
	done
	e2e_die "no free address at the top of $E2E_BRIDGE_CIDR"
}

# e2e_light_baseline USER PUBKEY PRIVKEY USER-DATA-FILE IP [LAUNCH-ARGS...]:
# the overhead path. Times incus launch with the address IP pinned (and
# E2E_NIC_ARGS) + containarium's own cloud-init wait (E2E_WAIT_ARGV through
# incus exec, then E2E_STATUS_FILE read for this boot's errors) + the first
# direct ssh. Prints the milliseconds; phases to $E2E_PHASES_OUT; deletes the
# container. Needs e2e_p1_learn first.
e2e_light_baseline() {
	local -
	set +e
	e2e_lock || return 1
	local user=$1 pub=$2 priv=$3 user_data=$4 ip=$5 name t0 ms kh opts since
	shift 5
	user_data=$(cat "$user_data")
	name=ctme2e-light-$$-$RANDOM
	kh=$(mktemp "$E2E_STATE_DIR/known_hosts.XXXXXX")
	mapfile -t opts < <(e2e_ssh_opts "$kh")
	since=$(date +%s.%N)
	t0=$(e2e_now_ms)
	local t1=$t0 t2=$t0 ok=1
	if e2e_incus launch "$E2E_IMAGE" "$name" -c cloud-init.user-data="$user_data" "$@" \
		-d "eth0,ipv4.address=$ip" "${E2E_NIC_ARGS[@]}" >/dev/null && t1=$(e2e_now_ms) &&
		e2e_exec_retry "$name" "${E2E_WAIT_ARGV[@]}" &&
		e2e_incus file pull "$name$E2E_STATUS_FILE" - | e2e_jq --argjson since "$since" \
			'[.v1[] | objects | select((.start // 0) >= $since)] | length > 0 and all(.errors | length == 0)' >/dev/null; then
		t2=$(e2e_now_ms)
		e2e__first_ssh "$priv" "$user@$ip" "${opts[@]}" || ok=0
	else
		ok=0
	fi
	ms=$(($(e2e_now_ms) - t0))
	[ -z "${E2E_PHASES_OUT:-}" ] || printf 'launch (address pinned)\t%s\nwait (containarium'"'"'s)\t%s\nssh\t%s\n' \
		$((t1 - t0)) $((t2 - t1)) $((t0 + ms - t2)) >>"$E2E_PHASES_OUT"
	e2e_incus delete --force "$name" >/dev/null 2>&1
	rm -f "$kh"
	[ "$ok" -eq 1 ] || e2e_die "overhead baseline: $user@$name ($ip) did not finish cloud-init cleanly or never answered over ssh" || return 1
	echo "$ms"
}

# e2e__p1_ctm DIR USER: containarium's path, `create USER` (default template,
# Docker on) + the first `ssh -J` with DIR/ssh-USER.conf. Appends the total
# to DIR/p1-ctm and the phases (create's own steps from its progress lines,
# the rest of create as "probes and startup", the ssh) to DIR/p1-ph-ctm;
# keeps the user-data it rendered in DIR/p1-user-data; deletes the user.
e2e__p1_ctm() {
	local dir=$1 user=$2 t0 t1 t2 ip
	local ctm=("$BIN" --project "$E2E_PROJECT")
	t0=$(e2e_now_ms)
	"${ctm[@]}" create "$user" --ssh-key "$dir/keys/$user.pub" --json >"$dir/p1-create.json" 2>"$dir/p1-create.out" ||
		e2e_die "create failed: $(cat "$dir/p1-create.out")" || return 1
	t1=$(e2e_now_ms)
	ip=$(jq -r .ipv4 "$dir/p1-create.json")
	ssh -F "$dir/ssh-$user.conf" -J "$user@$E2E_BASTION_HOST:$E2E_BASTION_PORT" "$user@$ip" true ||
		e2e_die "the first ssh -J to $user@$ip failed" || return 1
	t2=$(e2e_now_ms)
	echo $((t2 - t0)) >>"$dir/p1-ctm"
	# "STEP... done (1.23s)", with the user, container and address made generic.
	sed -n 's/^\(.*\)\.\.\. done (\([0-9.]*\)s)$/\1\t\2/p' "$dir/p1-create.out" |
		sed "s/ at [0-9.]*\t/\t/; s/$user-container/CONTAINER/g; s/$user/USER/g" |
		awk -F '\t' -v total=$((t1 - t0)) -v ssh=$((t2 - t1)) \
			'{ ms = int($2 * 1000 + 0.5); sum += ms; printf "%s\t%d\n", $1, ms }
			END { printf "probes and startup\t%d\nssh -J\t%d\n", total - sum, ssh }' >>"$dir/p1-ph-ctm"
	if [ ! -s "$dir/p1-user-data" ]; then
		e2e_incus config get "$user-container" cloud-init.user-data >"$dir/p1-user-data"
		# Where the cloud-init wait goes, once: each stage's start and end in
		# seconds from the start of create (the container shares the clock).
		# shellcheck disable=SC2016 # jq's variables
		local stages='def s: . - $t0 / 1000 | . * 10 | round / 10;
			[.v1 | to_entries[] | select(.value | objects | .start != null)] | sort_by(.value.start)
			| map("\(.key) \(.value.start | s)-\(.value.finished // 0 | s)")
			| "P1 cloud-init stages in the tenant container, round 1 (s from the start of create; create returned at \($t1 / 1000 | s)): " + join(", ")'
		e2e_incus file pull "$user-container$E2E_STATUS_FILE" - 2>/dev/null |
			jq -r --argjson t0 "$t0" --argjson t1 "$t1" "$stages" || true
	fi
	"${ctm[@]}" delete "$user" --force >/dev/null 2>&1 || e2e_die "delete $user failed"
}

# e2e_p1 ROUNDS DIR USER: P1. Each round runs containarium's path, the
# overhead path and the manual path (E2E_SAME_CONFIG, the same user-data),
# starting each round with the next one so warm-up and load fall on all
# three alike (the first round starts with containarium, whose user-data the
# others reuse). Prints every round, each path's per-phase medians, then the
# medians and ratios. Sets E2E_P1_RATIO (containarium / manual) and
# E2E_P1_OVERHEAD_RATIO (containarium / overhead).
e2e_p1() {
	local rounds=$1 dir=$2 user=$3 round k path pin
	rm -f "$dir"/p1-ctm "$dir"/p1-light "$dir"/p1-manual "$dir"/p1-ph-* "$dir/p1-user-data"
	e2e_p1_learn "$dir" "$user" || return 1
	pin=$(e2e_free_top_ip) || return 1
	local paths=(ctm light manual)
	for round in $(seq "$rounds"); do
		for k in 0 1 2; do
			path=${paths[$(((round - 1 + k) % 3))]}
			case $path in
			ctm) e2e__p1_ctm "$dir" "$user" || return 1 ;;
			light)
				E2E_PHASES_OUT=$dir/p1-ph-light e2e_light_baseline "$user" "$dir/keys/$user.pub" "$dir/keys/$user" \
					"$dir/p1-user-data" "$pin" "${E2E_SAME_CONFIG[@]}" >>"$dir/p1-light" || return 1
				;;
			manual)
				E2E_PHASES_OUT=$dir/p1-ph-manual e2e_bare_baseline "$user" "$dir/keys/$user.pub" "$dir/keys/$user" \
					"$dir/p1-user-data" "${E2E_SAME_CONFIG[@]}" >>"$dir/p1-manual" || return 1
				;;
			esac
		done
		printf 'P1 round %s: containarium %s ms, overhead path %s ms, manual path %s ms\n' "$round" \
			"$(tail -n1 "$dir/p1-ctm")" "$(tail -n1 "$dir/p1-light")" "$(tail -n1 "$dir/p1-manual")"
	done
	local ctm_ms light_ms manual_ms
	ctm_ms=$(e2e_median "$dir/p1-ctm")
	light_ms=$(e2e_median "$dir/p1-light")
	manual_ms=$(e2e_median "$dir/p1-manual")
	E2E_P1_RATIO=$(awk -v a="$ctm_ms" -v b="$manual_ms" 'BEGIN { printf "%.2f", a / b }')
	E2E_P1_OVERHEAD_RATIO=$(awk -v a="$ctm_ms" -v b="$light_ms" 'BEGIN { printf "%.2f", a / b }')
	# shellcheck disable=SC2034 # read by the sourcing script
	E2E_P1_MS="containarium $ctm_ms ms, overhead path $light_ms ms, manual path $manual_ms ms"
	printf 'P1 phase medians, containarium:  %s\n' "$(e2e_phase_medians "$dir/p1-ph-ctm")"
	printf 'P1 phase medians, overhead path: %s\n' "$(e2e_phase_medians "$dir/p1-ph-light")"
	printf 'P1 phase medians, manual path:   %s\n' "$(e2e_phase_medians "$dir/p1-ph-manual")"
	printf 'P1 create-to-SSH-ready (median of %s): %s; overhead ratio %s (target <= 1.05), manual ratio %s (target <= 0.85)\n' \
		"$rounds" "$E2E_P1_MS" "$E2E_P1_OVERHEAD_RATIO" "$E2E_P1_RATIO"
}
