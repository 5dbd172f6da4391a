# shellcheck shell=bash
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# accounts: the account database shared with other programs, and many
# creates at once.

test_accounts() {
	local work=$E2E_WORK i pids=() ok=0 pid pwck_before holder releaser
	e2e_client e2e-carol "$work"
	# useradd fails while /etc/passwd.lock names a live process; create must wait
	# it out with backoff. The lock file is ours (made here, removed by its
	# releaser).
	if [ ! -e /etc/passwd.lock ]; then
		sleep 300 &
		holder=$!
		printf %s "$holder" >/etc/passwd.lock # no newline: useradd reads a bare PID
		# Released once create reports that it is waiting (at most 60 s).
		(
			for _ in $(seq 120); do
				grep -q "retrying" "$work/carol.out" 2>/dev/null && break
				sleep 0.5
			done
			rm -f /etc/passwd.lock
			kill "$holder"
		) &
		releaser=$!
		create_carol() { ctm create e2e-carol --ssh-key "$work/keys/e2e-carol.pub" --no-docker >"$work/carol.out" 2>&1; }
		check "create waits out a foreign lock on /etc/passwd" create_carol
		wait "$releaser" || true
		check "it said it was retrying" grep -q "locked by another program; retrying" "$work/carol.out"
		check "delete carol" ctm delete e2e-carol --force
	else
		skip "lock contention: /etc/passwd.lock exists and is not ours"
	fi

	# Ctrl-C while `incus init` runs: the terminal signals the whole process
	# group, incus dies half-way, and create undoes what it left.
	interrupted_create() {
		local pid i
		setsid "$BIN" --project "$E2E_PROJECT" create e2e-int --ssh-key "$work/keys/e2e-carol.pub" \
			--no-docker >"$work/int.out" 2>&1 &
		pid=$!
		for ((i = 0; i < 200; i++)); do
			pgrep -f "incus --project $E2E_PROJECT init .* e2e-int-container" >/dev/null && break
			sleep 0.05
		done
		[ "$i" -lt 200 ] || { echo "incus init never ran"; return 1; }
		kill -INT -- "-$pid"
		wait "$pid" && { echo "create succeeded despite the interrupt"; return 1; }
		cat "$work/int.out"
		! incus --project "$E2E_PROJECT" info e2e-int-container >/dev/null 2>&1 &&
			! getent passwd e2e-int && [ ! -e /etc/containarium/keys/e2e-int ]
	}
	check "Ctrl-C during incus init leaves nothing behind" interrupted_create

	# Ten creates in parallel, from a shell loop.
	for i in $(seq -w 1 10); do e2e_client "e2e-p$i" "$work"; done
	pwck_before=$(pwck -r 2>&1 || true)
	for i in $(seq -w 1 10); do
		ctm create "e2e-p$i" --ssh-key "$work/keys/e2e-p$i.pub" --no-docker --memory 512MiB >"$work/p$i.out" 2>&1 &
		pids+=("$!")
	done
	for pid in "${pids[@]}"; do if wait "$pid"; then ok=$((ok + 1)); fi; done
	if [ "$ok" -eq 10 ]; then pass "10 parallel creates all succeed"; else
		fail "10 parallel creates: only $ok succeeded"
		tail -n 5 "$work"/p*.out
	fi
	check "the 10 addresses are unique" bash -c "'$BIN' --project $E2E_PROJECT list --json | e2e_jq '[.[] | select(.user | startswith(\"e2e-p\")) | .ipv4] | (length == 10) and (unique | length == 10)'"
	check "pwck -r finds nothing new" bash -c "diff <(printf '%s\n' \"\$1\") <(pwck -r 2>&1 || true)" _ "$pwck_before"
	check "one of them is reachable through its jump account" jump e2e-p07 "$(ip_of e2e-p07)" true

	# --- our locks are root's alone ---------------------------------------------------
	# flock needs only a descriptor: a local user who can open a lock file can
	# hold it, and every verb waits, revocation included.
	take() { timeout 5 runuser -u nobody -- flock -n -s "$1" true; }
	check "a local user cannot take our lock" not take /run/containarium.lock
	check "  nor a user's lock" not take /run/containarium/users/e2e-p07.lock
	check "  (control) root can take both: they are there" \
		bash -c "flock -n -s /run/containarium.lock true && flock -n -s /run/containarium/users/e2e-p07.lock true"
	private_locks() {
		local modes
		modes=$(stat -c %a /run/containarium.lock /run/containarium/users/e2e-p07.lock /run/containarium/users /run/containarium)
		[ "$(paste -sd' ' <<<"$modes")" = "600 600 700 700" ] || { echo "modes: $modes"; return 1; }
	}
	check "  the lock files are 0600, their directories 0700" private_locks
	for i in $(seq -w 1 10); do ctm delete "e2e-p$i" --force >/dev/null 2>&1 || fail "delete e2e-p$i"; done
}
