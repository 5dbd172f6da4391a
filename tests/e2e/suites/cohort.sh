# shellcheck shell=bash
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# cohort: a class from one file. `apply` creates six users, changes nothing
# the second time, then applies exactly a changed file with --prune (one
# user's memory and keys, one dropped, one added); `reap` stops an idle
# container while one with a live `ssh -J` session keeps running, and
# stops an expired one, deleting it once its grace period is over.

# Background ssh clients of this suite, ended by PID.
E2E_COHORT_PIDS=()

cohort__stop_clients() {
	local pid
	for pid in "${E2E_COHORT_PIDS[@]}"; do
		[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = ssh ] && kill "$pid" 2>/dev/null
	done
	E2E_COHORT_PIDS=()
}

cohort__cleanup() {
	local u
	cohort__stop_clients
	for u in $(ctm list --json 2>/dev/null | jq -r '.[] | select(.user | startswith("e2e-h")) | .user'); do
		ctm delete "$u" --force >/dev/null 2>&1 || true
	done
}

# cohort__file FILE USER...: a cohort file of set e2e-cohort; each USER is
# NAME or NAME:EXTRA-TOML-LINES (\n-separated), with the suite's key.
cohort__file() {
	local file=$1 spec name extra key
	shift
	key=$(cat "$E2E_WORK/keys/e2e-cohort.pub")
	{
		printf 'set = "e2e-cohort"\n[defaults]\ndocker = false\nmemory = "768MiB"\n'
		for spec in "$@"; do
			name=${spec%%:*}
			extra=
			[ "$name" = "$spec" ] || extra=${spec#*:}
			printf '[[user]]\nname = "%s"\nkeys = ["%s"]\n%b\n' "$name" "$key" "$extra"
		done
	} >"$file"
}

# cohort__reaches USER [CONFIG]: ssh -J through USER's jump account runs
# hostname in USER's container (with the suite's key, or CONFIG's).
cohort__reaches() {
	local user=$1 conf=${2:-$E2E_WORK/ssh-e2e-cohort.conf}
	[ "$(ssh -F "$conf" -J "$user@$E2E_BASTION_HOST:$E2E_BASTION_PORT" \
		"$user@$(ip_of "$user")" hostname </dev/null)" = "$user-container" ]
}

cohort__status() { e2e_incus list --format json "^$1-container\$" | jq -r '.[0].status // "absent"'; }

# cohort__wait_running_for USER SECONDS: waits until USER's container has
# run for SECONDS.
cohort__wait_running_for() {
	local user=$1 seconds=$2 started
	started=$(date -d "$(e2e_incus list --format json "^$user-container\$" | jq -r '.[0].last_used_at')" +%s) || return 0
	while [ $(($(date +%s) - started)) -lt "$seconds" ]; do sleep 1; done
}

test_cohort() {
	local work=$E2E_WORK file=$E2E_WORK/course.toml out
	e2e_on_cleanup cohort__cleanup
	e2e_client e2e-cohort "$work"
	cohort__file "$file" e2e-h1 e2e-h2 e2e-h3 'e2e-h4:expires = "45s"' \
		'e2e-h5:idle-stop = "1m"' 'e2e-h6:idle-stop = "1m"'

	check "apply a file of 6 users" ctm apply "$file"
	reach_all() { for u in "$@"; do cohort__reaches "$u" || { echo "$u unreachable"; return 1; }; done; }
	check "  all 6 are running and reachable with ssh -J" reach_all e2e-h1 e2e-h2 e2e-h3 e2e-h4 e2e-h5 e2e-h6
	check "  list shows their EXPIRES and IDLE" bash -c \
		"'$BIN' --project $E2E_PROJECT list | e2e_grep -q 'EXPIRES  *IDLE' && '$BIN' --project $E2E_PROJECT list | grep '^e2e-h5-container ' | e2e_grep -q ' 1m\$'"
	out=$(ctm apply "$file" --detailed-exitcode 2>&1) || out="exit $?: $out"
	check "the same file again: No changes. (exit 0 with --detailed-exitcode)" \
		bash -c "[ \"\$(tail -n1 <<<'$out')\" = 'No changes.' ]"

	# Ben's successor: e2e-h2 gets more memory and a new key instead of the
	# old; e2e-h3 leaves; e2e-h7 joins.
	ssh-keygen -q -t ed25519 -N '' -C "e2e-h2@new" -f "$work/keys/e2e-h2-new"
	sed "s|$work/keys/e2e-cohort\$|$work/keys/e2e-h2-new|" "$work/ssh-e2e-cohort.conf" >"$work/ssh-e2e-h2-new.conf"
	cohort__file "$file" e2e-h1 e2e-h2 'e2e-h4:expires = "45s"' \
		'e2e-h5:idle-stop = "1m"' 'e2e-h6:idle-stop = "1m"' e2e-h7
	sed -i "/^name = \"e2e-h2\"/{n;s|^keys = .*|keys = [\"$(cat "$work/keys/e2e-h2-new.pub")\"]\nmemory = \"1GiB\"|}" "$file"
	local plan
	plan=$(ctm apply "$file" --prune --dry-run 2>/dev/null) || true
	check "the changed file's plan: exactly those changes" bash -c "grep -qx '~ e2e-h2 update memory 768MiB -> 1GiB; keys +1 -1 (+SHA256:[^ ]* e2e-h2@new, -SHA256:[^ ]* e2e-cohort@laptop)' <<<'$plan' &&
		grep -qx '+ e2e-h7 create (.*)' <<<'$plan' && grep -qx -- '- e2e-h3 delete (pruned)' <<<'$plan' &&
		grep -qx 'Plan: 1 to create, 1 to update, 1 to delete, 4 unchanged.' <<<'$plan'"
	check "  the dry run with --prune changed nothing" test "$(cohort__status e2e-h3)" = Running
	check "apply it with --prune" ctm apply "$file" --prune
	check "  the new user is reachable with ssh -J" cohort__reaches e2e-h7
	check "  the changed user's new key gets through" cohort__reaches e2e-h2 "$work/ssh-e2e-h2-new.conf"
	refused "  the changed user's old key does not" "Permission denied" cohort__reaches e2e-h2
	check "  the changed user's memory is 1GiB" test "$(e2e_incus config get e2e-h2-container limits.memory)" = 1GiB
	check "  the dropped user is gone: container, account, key file" bash -c \
		"! incus --project $E2E_PROJECT info e2e-h3-container >/dev/null 2>&1 && ! getent passwd e2e-h3 && [ ! -e $E2E_ETC_DIR/keys/e2e-h3 ]"
	check "  a user outside the set is untouched (e2e-h1 still reachable)" cohort__reaches e2e-h1

	# Idle stop: e2e-h6 has a live session, e2e-h5 has none; both have
	# idle-stop 1m. e2e-h4 expired 45 s after it was created.
	jump_h6() { ssh -F "$work/ssh-e2e-cohort.conf" -J "e2e-h6@$E2E_BASTION_HOST:$E2E_BASTION_PORT" "e2e-h6@$(ip_of e2e-h6)" "$@"; }
	jump_h6 sleep 600 </dev/null >>"$E2E_LOG_DIR/cohort-session.log" 2>&1 &
	E2E_COHORT_PIDS+=("$!")
	cohort__wait_running_for e2e-h5 62
	cohort__wait_running_for e2e-h6 62
	check "  the live session to e2e-h6 is up" jump_h6 true
	out=$(ctm reap --delete-after 40s 2>&1) || true
	printf '%s\n' "$out" | sed 's/^/    reap: /'
	check "reap stops the idle container" test "$(cohort__status e2e-h5)" = Stopped
	check "  and says why" grep -q "^stopped e2e-h5-container: no SSH connection since .* (idle-stop 1m)" <<<"$out"
	check "  the one with a live ssh -J session keeps running" test "$(cohort__status e2e-h6)" = Running
	check "  and its last activity is recorded" bash -c "'$BIN' --project $E2E_PROJECT info e2e-h6 | e2e_grep -q '^last active:  20'"
	check "  one without idle-stop or expiry keeps running" test "$(cohort__status e2e-h1)" = Running
	check "reap stops the expired container" test "$(cohort__status e2e-h4)" = Stopped
	check "  and says why" grep -q "^stopped e2e-h4-container: expired at " <<<"$out"
	check "  the expired container is kept during its grace period" bash -c \
		"'$BIN' --project $E2E_PROJECT reap --delete-after 1h --json | e2e_jq '.[] | select(.user == \"e2e-h4\") | .action == \"keep\"'"
	local end
	end=$(date -d "$(e2e_incus config get e2e-h4-container user.containarium.expires)" +%s) || end=0
	while [ "$(date +%s)" -lt $((end + 41)) ]; do sleep 1; done
	check "after its grace period, reap deletes it" bash -c \
		"'$BIN' --project $E2E_PROJECT reap --delete-after 40s | e2e_grep -q '^deleted e2e-h4-container: expired at '"
	check "  nothing of it is left" bash -c \
		"! incus --project $E2E_PROJECT info e2e-h4-container >/dev/null 2>&1 && ! getent passwd e2e-h4 && [ ! -e $E2E_ETC_DIR/keys/e2e-h4 ]"
	cohort__stop_clients

	printf 'set = "e2e-cohort"\n' >"$file"
	check "an empty file with --prune deletes the whole set" ctm apply "$file" --prune
	check "  no e2e-h user is left" bash -c "[ \"\$('$BIN' --project $E2E_PROJECT list --json | jq '[.[] | select(.user | startswith(\"e2e-h\"))] | length')\" = 0 ]"
	cohort__cleanup
}
