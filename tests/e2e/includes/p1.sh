# shellcheck shell=bash
# p1.sh: the bare Incus path (launch + cloud-init wait + first ssh) and the P1
# ratio of containarium create-to-SSH-ready against it, in the same run.
# Sourced after env.sh and tenants.sh.

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
			head -n1)
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

# e2e_bare_baseline USER PUBKEY PRIVKEY: the bare Incus path. Times incus launch
# of $E2E_IMAGE with cloud-init user-data that creates USER (key, passwordless
# sudo) + cloud-init status --wait + the first direct ssh USER@IP true from the
# host. PUBKEY is a file or the key line itself. Prints the milliseconds on
# stdout; deletes the container.
e2e_bare_baseline() {
	local -
	set +e # failures are handled explicitly (callers may use set -e)
	e2e_lock || return 1
	local user=$1 pub=$2 priv=$3 user_data=${4:-} name t0 ms ip kh i ok=0 opts
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
	local t1=$t0 t2=$t0 t3=$t0
	if e2e_incus launch "$E2E_IMAGE" "$name" -c cloud-init.user-data="$user_data" "$@" \
		>/dev/null && t1=$(e2e_now_ms) &&
		e2e_exec_retry "$name" cloud-init status --wait >/dev/null && t2=$(e2e_now_ms) &&
		ip=$(e2e_instance_ipv4 "$name" 30); then
		t3=$(e2e_now_ms)
		for ((i = 0; i < 100; i++)); do
			if ssh "${opts[@]}" -i "$priv" "$user@$ip" true 2>/dev/null; then
				ok=1
				break
			fi
			sleep 0.2
		done
	fi
	ms=$(($(e2e_now_ms) - t0))
	# shellcheck disable=SC2034 # read by e2e_p1
	E2E_BARE_PHASES="launch $((t1 - t0)), cloud-init wait $((t2 - t1)), address $((t3 - t2)), ssh $((t0 + ms - t3))"
	e2e_incus delete --force "$name" >/dev/null 2>&1
	rm -f "$kh"
	[ "$ok" -eq 1 ] || e2e_die "bare baseline: $user@$name never answered over ssh" || return 1
	echo "$ms"
}

# e2e_p1 ROUNDS DIR USER: the P1 ratio, create-to-SSH-ready. Containarium's
# path is `$BIN create USER` (default template, Docker on) plus the first
# `ssh -J` with DIR/ssh-USER.conf; the bare path is e2e_bare_baseline with the
# user-data containarium rendered and E2E_SAME_CONFIG. Rounds alternate so
# warm-up and load fall on both sides; prints every round, then the medians.
# Sets E2E_P1_RATIO.
e2e_p1() {
	local rounds=$1 dir=$2 user=$3 round t0 t1 t2 ip
	local ctm=("$BIN" --project "$E2E_PROJECT")
	: >"$dir/p1-ctm"
	: >"$dir/p1-bare"
	for round in $(seq "$rounds"); do
		t0=$(e2e_now_ms)
		"${ctm[@]}" create "$user" --ssh-key "$dir/keys/$user.pub" --json >"$dir/p1-create.json" 2>"$dir/p1-create.out" || return 1
		t1=$(e2e_now_ms)
		ip=$(jq -r .ipv4 "$dir/p1-create.json")
		ssh -F "$dir/ssh-$user.conf" -J "$user@$E2E_BASTION_HOST:$E2E_BASTION_PORT" "$user@$ip" true || return 1
		t2=$(e2e_now_ms)
		echo $((t2 - t0)) >>"$dir/p1-ctm"
		printf 'P1 round %s phases: containarium create %s ms (steps in s: %s), ssh -J %s ms\n' "$round" \
			$((t1 - t0)) "$(sed -n 's/^\(.*\)\.\.\. done (\(.*\)s)$/\1 \2/p' "$dir/p1-create.out" | paste -sd, | sed 's/,/, /g')" $((t2 - t1))
		e2e_incus config get "$user-container" cloud-init.user-data >"$dir/p1-user-data"
		"${ctm[@]}" delete "$user" --force >/dev/null 2>&1 || return 1
		e2e_bare_baseline "$user" "$dir/keys/$user.pub" "$dir/keys/$user" "$dir/p1-user-data" \
			"${E2E_SAME_CONFIG[@]}" >>"$dir/p1-bare" || return 1
		printf 'P1 round %s phases (ms): bare %s\n' "$round" "$E2E_BARE_PHASES"
		printf 'P1 round %s: containarium %s ms, bare %s ms\n' "$round" "$(tail -n1 "$dir/p1-ctm")" "$(tail -n1 "$dir/p1-bare")"
	done
	local ctm_ms bare_ms
	ctm_ms=$(sort -n "$dir/p1-ctm" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
	bare_ms=$(sort -n "$dir/p1-bare" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
	E2E_P1_RATIO=$(awk -v a="$ctm_ms" -v b="$bare_ms" 'BEGIN { printf "%.2f", a / b }')
	printf 'P1 create-to-SSH-ready (median of %s): containarium %s ms, bare incus %s ms, ratio %s (target <= 1.10)\n' \
		"$rounds" "$ctm_ms" "$bare_ms" "$E2E_P1_RATIO"
}
