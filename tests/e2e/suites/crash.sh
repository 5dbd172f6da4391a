# shellcheck shell=bash
# shellcheck disable=SC2016 # jq programs for e2e_jq, single-quoted
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# crash: a bastion preempted mid-operation. containarium is killed with
# SIGKILL at each step of create, delete, restore and keys add (timed on the
# step's progress line, so the shipped binary is what is killed); after each,
# the same command run again converges, or refuses naming the command that
# cleans up, and that command leaves nothing behind. Then incusd stopped in
# the middle of a create, a full storage pool, and 20 creates with 10
# deletes at once.

# crash__kill_at POINT LOG ARGS...: runs containarium ARGS in the background
# (the binary itself, so that its PID is the one killed) and SIGKILLs it at
# POINT: `after:STEP` once its progress (to LOG) says the step whose synopsis
# starts with STEP is done, or `in:WORDS` while a command of its own holding
# WORDS (" init ", say) runs. What it started itself (that `incus init`) is
# left to finish, as it would be, and waited for. Fails unless it was really
# killed there.
crash__kill_at() {
	local point=$1 log=$2 pid kids k i rc=0
	shift 2
	"$BIN" --project "$E2E_PROJECT" "$@" >/dev/null 2>"$log" &
	pid=$!
	for ((i = 0; i < 3000; i++)); do
		case $point in
		in:*) pgrep -P "$pid" -f -- "${point#in:}" >/dev/null && break ;;
		after:*) grep -q -F -- "${point#after:}" <(grep '\.\.\. done (' "$log") && break ;;
		esac
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.02
	done
	# Stopped first, so it starts nothing between the look and the kill.
	kill -STOP "$pid" 2>/dev/null
	kids=$(pgrep -P "$pid")
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null || rc=$?
	for k in $kids; do
		for ((i = 0; i < 1200; i++)); do
			kill -0 "$k" 2>/dev/null || break
			sleep 0.1
		done
	done
	[ "$rc" -eq 137 ] || {
		echo "not killed at $point (exit $rc):"
		cat "$log"
		return 1
	}
}

# crash__gone USER: nothing of USER is left: no container, no jump account,
# no key file, and the account database is as consistent as before.
crash__gone() {
	local user=$1
	! e2e_incus info "$user-container" >/dev/null 2>&1 || { echo "container left"; return 1; }
	! getent passwd "$user" >/dev/null || { echo "account left"; return 1; }
	[ ! -e "$E2E_ETC_DIR/keys/$user" ] || { echo "key file left"; return 1; }
	crash__pwck_clean
}

# crash__pwck_clean: `pwck -r` and `grpck -r` say what they said when the
# suite began (a stock system has complaints of its own about system users).
crash__pwck_clean() {
	diff <(pwck -r 2>&1; grpck -r 2>&1) "$E2E_WORK/crash-pwck.before"
}

# crash__state_is USER STATE...: list shows USER in one of the STATEs.
crash__state_is() {
	local user=$1 state
	shift
	state=$(ctm list --json | jq -r --arg u "$user" '.[] | select(.user == $u) | .state')
	printf '%s\n' "$@" | e2e_grep -qx -- "$state" || { echo "$user is \"$state\", not $*"; return 1; }
}

# crash__create_again USER: create USER again; a create killed while it was
# marking the container ready may have finished that, and then "already
# exists" is the converged state.
crash__create_again() {
	local out
	out=$(crash__create "$1" 2>&1) && return 0
	echo "$out"
	grep -q "already exists" <<<"$out" && crash__state_is "$1" running
}

# crash__reachable USER: ssh -J through USER's jump account runs hostname in
# USER's container (every user of this suite has the key e2e-crash).
crash__reachable() {
	local user=$1 ip
	ip=$(ip_of "$user")
	[ "$(ssh -F "$E2E_WORK/ssh-e2e-crash.conf" -J "$user@$E2E_BASTION_HOST:$E2E_BASTION_PORT" \
		"$user@$ip" hostname </dev/null)" = "$user-container" ]
}

# crash__restore_again FILE USER: the rerun of a killed restore either
# converges (USER answers ssh -J: the killed run's `incus import` died with
# it, of a broken pipe) or refuses in one line naming the command that
# cleans up.
crash__restore_again() {
	local file=$1 user=$2 out
	if out=$(ctm restore "$file" 2>&1); then
		crash__reachable "$user" || { echo "restored, but $user does not answer"; return 1; }
		return 0
	fi
	echo "$out"
	[ "$(grep -c '^error' <<<"$out")" = 1 ] &&
		tail -n1 <<<"$out" | e2e_grep -q "^error: .*containarium delete $user"
}

crash__create() { ctm create "$1" --ssh-key "$E2E_WORK/keys/e2e-crash.pub" --no-docker; }

# crash__one VERB USER: one create or delete of a crowd, its output kept.
crash__one() {
	local out=$E2E_WORK/crash-$2.out
	case $1 in
	create) crash__create "$2" ;;
	delete) ctm delete "$2" --force ;;
	esac >"$out" 2>&1 || { echo "$1 $2 failed:" && cat "$out" && return 1; }
}

# crash__crowd JOBS "VERB USER"...: all of them, JOBS at a time (xargs: the
# runner's background jobs include the incusd it may have started, so never
# a bare `wait`).
crash__crowd() {
	local jobs=$1
	shift
	(
		export -f crash__one crash__create ctm
		export BIN E2E_PROJECT E2E_WORK
		# shellcheck disable=SC2016 # expanded by the inner shell
		printf '%s\n' "$@" | xargs -P "$jobs" -L 1 bash -c 'crash__one "$@"' _
	)
}

# crash__all_running USER...: each is running, and no two share an address.
crash__all_running() {
	local list
	list=$(ctm list --json)
	for u in "$@"; do
		e2e_jq --arg u "$u" '.[] | select(.user == $u and .state == "running")' <<<"$list" >/dev/null ||
			{ echo "$u is not running"; return 1; }
	done
	[ "$(jq -r '.[].ipv4' <<<"$list" | sort | uniq -d)" = "" ] || { echo "addresses shared"; return 1; }
}

crash__cleanup() {
	local u
	for u in $(ctm list --json 2>/dev/null | jq -r '.[] | select(.user | startswith("e2e-c")) | .user'); do
		ctm delete "$u" --force >/dev/null 2>&1 || true
	done
	if e2e__exists storage show "$E2E_POOL_TINY"; then incus storage delete "$E2E_POOL_TINY" >/dev/null 2>&1 || true; fi
	rm -f "$E2E_WORK/crash-tiny.toml"
}

test_crash() {
	local work=$E2E_WORK point d u i log=$E2E_WORK/crash.log backup
	e2e_on_cleanup crash__cleanup
	e2e_client e2e-crash "$work"
	# (they exit non-zero on a stock system: its own system users' homes)
	{ pwck -r 2>&1; grpck -r 2>&1; } >"$work/crash-pwck.before" || true

	# --- create and delete, killed at each step -------------------------
	# Each create kill is followed by a delete kill at the next of delete's
	# points.
	u=e2e-ck
	local create_points=("in: init " "after:create container" "after:create jump account"
		"after:check sshd's effective policy" "after:write the jump account's keys"
		"after:start $u-container" "after:wait for cloud-init" "after:verify the user")
	local delete_points=("after:remove the jump key file" "after:lock jump account"
		"after:end $u's live sessions" "after:delete jump account" "in: delete --force ") c=0
	for point in "${create_points[@]}"; do
		check "create killed ${point/:/ }" crash__kill_at "$point" "$log" create "$u" --ssh-key "$work/keys/e2e-crash.pub" --no-docker
		check "  list shows $u pending (or, killed while marking it ready, running)" \
			crash__state_is "$u" pending "$([ "$point" = "after:verify the user" ] && echo running)"
		check "  create $u again converges" crash__create_again "$u"
		check "  $u is running and reachable with ssh -J" crash__reachable "$u"
		d=${delete_points[$((c++ % ${#delete_points[@]}))]}
		check "delete killed ${d/:/ }" crash__kill_at "$d" "$log" delete "$u" --force
		check "  delete $u again converges" ctm delete "$u" --force
		check "  nothing of $u is left" crash__gone "$u"
	done
	# A killed create's leftovers, removed by delete instead.
	killed_then_deleted() { crash__kill_at "$1" "$log" create "$u" --ssh-key "$work/keys/e2e-crash.pub" --no-docker && ctm delete "$u" --force; }
	for point in "after:create jump account" "after:start $u-container"; do
		check "create killed ${point/:/ }, then delete" killed_then_deleted "$point"
		check "  nothing of $u is left after the delete" crash__gone "$u"
	done

	# --- restore, killed at each step -------------------------------------
	# A rerun converges or refuses naming `delete`, which leaves nothing
	# behind.
	u=e2e-cr
	mkdir -p "$work/crash-backup"
	check "create $u for a backup" crash__create "$u"
	check "backup $u" ctm backup "$u" --output "$work/crash-backup"
	backup=$(ls "$work/crash-backup/$u"-container-*.tar.gz) || backup=missing
	check "delete $u" ctm delete "$u" --force
	for point in "after:authenticate " "in: import " "after:import $u-container" \
		"after:mark $u-container pending" "after:check that Incus imported" "after:re-author $u-container" \
		"after:create jump account" "after:check sshd's effective policy" \
		"after:write the jump account's keys" "after:start $u-container" "after:wait for sshd"; do
		check "restore killed ${point/:/ }" crash__kill_at "$point" "$log" restore "$backup"
		check "  restore again converges, or names the command that cleans up" \
			crash__restore_again "$backup" "$u"
		check "  delete $u (that command)" ctm delete "$u" --force
		check "  nothing of $u is left" crash__gone "$u"
	done
	check "restore $u after all that" ctm restore "$backup"
	check "  $u is reachable with ssh -J" crash__reachable "$u"

	# --- keys add, killed at each step ------------------------------------
	ssh-keygen -q -t ed25519 -N '' -C "$u@new" -f "$work/keys/$u-new"
	sed "s|$work/keys/e2e-crash\$|$work/keys/$u-new|" "$work/ssh-e2e-crash.conf" >"$work/ssh-$u-new.conf"
	new_key_reaches() {
		[ "$(ssh -F "$work/ssh-$u-new.conf" -J "$u@$E2E_BASTION_HOST:$E2E_BASTION_PORT" \
			"$u@$(ip_of "$u")" hostname </dev/null)" = "$u-container" ]
	}
	once_inside() { [ "$(in_container "$u" grep -c -F "$(cut -d' ' -f2 "$work/keys/$u-new.pub")" "/home/$u/.ssh/authorized_keys")" = 1 ]; }
	# (its first step, a file push, takes 30 ms: too short to time a kill in)
	for point in "after:update /home/$u/.ssh/authorized_keys" "after:write $u's jump keys"; do
		check "keys add killed ${point/:/ }" crash__kill_at "$point" "$log" keys add "$u" "$work/keys/$u-new.pub"
		check "  keys add again converges" ctm keys add "$u" "$work/keys/$u-new.pub"
		check "  both keys are recorded" test "$(ctm keys list "$u" | wc -l)" = 2
		check "  the new key is in authorized_keys once" once_inside
		check "  the new key gets through the jump" new_key_reaches
		check "  keys remove it again" ctm keys remove "$u" "$u@new"
	done
	check "delete $u" ctm delete "$u" --force
	check "  nothing of $u is left" crash__gone "$u"

	# --- incusd stopped in the middle of a create ---------------------------
	u=e2e-ci
	if [ -n "$E2E_INCUSD_PID" ]; then
		crash__create_without_incusd() {
			crash__create "$u" >"$log" 2>&1 &
			local pid=$! i rc=0
			for ((i = 0; i < 600; i++)); do
				grep -q "^start $u-container\.\.\. done" "$log" && break
				sleep 0.05
			done
			e2e_stop_incusd
			wait "$pid" || rc=$?
			cat "$log"
			return "$rc"
		}
		refused "create fails with a clear error when incusd stops under it" \
			"^error: the Incus daemon is not running" crash__create_without_incusd
		check "incusd starts again" e2e_start_incusd
		check "create $u again converges once Incus is back" crash__create "$u"
		check "  $u is reachable with ssh -J" crash__reachable "$u"
		check "delete $u" ctm delete "$u" --force
		check "  nothing of $u is left" crash__gone "$u"
	else
		skip "incusd stopped mid-create: this incusd is not the suite's own"
	fi

	# --- a full storage pool ----------------------------------------------
	u=e2e-cf
	check "a storage pool too small for the image" incus storage create "$E2E_POOL_TINY" btrfs size=256MiB
	sed "1i storage-pool = \"$E2E_POOL_TINY\"" "$CONTAINARIUM_CONFIG" >"$work/crash-tiny.toml"
	refused "create on a full pool fails with the pool's message" \
		"[Nn]o space left\|[Dd]isk quota exceeded" \
		env CONTAINARIUM_CONFIG="$work/crash-tiny.toml" "$BIN" --project "$E2E_PROJECT" \
		create "$u" --ssh-key "$work/keys/e2e-crash.pub" --no-docker
	check "  nothing of $u is left" crash__gone "$u"
	check "  the tiny pool is empty again" bash -c "[ \"\$(incus storage volume list $E2E_POOL_TINY --all-projects --format csv | wc -l)\" = 0 ]"
	check "  the others keep working: a create on the main pool" crash__create e2e-cf2
	check "  reachable with ssh -J" crash__reachable e2e-cf2
	incus storage delete "$E2E_POOL_TINY" >/dev/null 2>&1 || true

	# --- 20 creates and 10 deletes at once ---------------------------------
	local old=() new=()
	for i in $(seq -w 1 10); do old+=("e2e-co$i"); done
	for i in $(seq -w 1 20); do new+=("e2e-cn$i"); done
	check "10 users to delete, created 3 at a time" crash__crowd 3 "${old[@]/#/create }"
	check "20 creates and 10 deletes at once all succeed" \
		crash__crowd 30 "${new[@]/#/create }" "${old[@]/#/delete }"
	check "  the 20 are running, with 20 different addresses" crash__all_running "${new[@]}"
	gone_all() { for x in "${old[@]}"; do crash__gone "$x" || return 1; done; }
	check "  nothing of the 10 deleted is left; pwck -r and grpck -r clean" gone_all
	reach_all() { for x in "${new[@]}"; do crash__reachable "$x" || { echo "$x unreachable"; return 1; }; done; }
	check "  every one of the 20 is reachable with ssh -J" reach_all
	check "delete the 20, 5 at a time" crash__crowd 5 "${new[@]/#/delete }"
	check "  nothing of them is left" bash -c "[ \"\$('$BIN' --project $E2E_PROJECT list --json | jq '[.[] | select(.user | startswith(\"e2e-cn\"))] | length')\" = 0 ]"
	crash__cleanup
}
