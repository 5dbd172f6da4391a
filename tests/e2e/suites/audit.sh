# shellcheck shell=bash
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# audit: `containarium audit` reads the bastion sshd's real auth log
# (rsyslogd, /var/log/auth.log). After known sessions (an ssh -J session
# running a command, a wrong key, a forward to the other user's container,
# a shell attempt), `audit --json --since <start>` holds exactly those
# records for these users, with the client's port, the container and its
# address, the keys' fingerprints and the denied target. The auth log
# accumulates across runs: everything is scoped by --since and our users.

# audit__client_port: the client port of the one live connection to the
# bastion (this suite's: runs are serialised), within 10 s.
audit__client_port() {
	local i conns
	for ((i = 0; i < 100; i++)); do
		conns=$(ss -tnH state established "( dport = :$E2E_BASTION_PORT )" | awk '{print $3}')
		if [ -n "$conns" ] && [ "$(wc -l <<<"$conns")" = 1 ]; then
			echo "${conns##*:}"
			return 0
		fi
		sleep 0.1
	done
	return 1
}

test_audit() {
	local work=$E2E_WORK bastion=$E2E_BASTION_HOST port=$E2E_BASTION_PORT
	local a=e2e-audit-a b=e2e-audit-b a_ip b_ip since jump_pid client_port fp_a fp_x fp_b out
	e2e_client "$a" "$work"
	e2e_client "$b" "$work"
	e2e_client e2e-audit-x "$work" # a key that opens nothing
	check "create $a" ctm create "$a" --ssh-key "$work/keys/$a.pub" --no-docker
	check "create $b" ctm create "$b" --ssh-key "$work/keys/$b.pub" --no-docker
	a_ip=$(ip_of "$a")
	b_ip=$(ip_of "$b")
	fp_a=$(ssh-keygen -lf "$work/keys/$a.pub" | awk '{print $2}')
	fp_b=$(ssh-keygen -lf "$work/keys/$b.pub" | awk '{print $2}')
	fp_x=$(ssh-keygen -lf "$work/keys/e2e-audit-x.pub" | awk '{print $2}')
	check "the drop-in logs jump accounts at VERBOSE" grep -qx '    LogLevel VERBOSE' "$E2E_DROPIN"
	# rsyslogd's stamps have microseconds; a whole second back is safe,
	# since nothing of these users was logged in it.
	since=$(date -u -d '-1 sec' +%Y-%m-%dT%H:%M:%SZ)

	# --- the known sessions -----------------------------------------------------
	jump "$a" "$a_ip" 'sleep 2; hostname' </dev/null >"$work/audit-session.out" 2>&1 &
	jump_pid=$!
	client_port=$(audit__client_port) || client_port=none
	wait "$jump_pid"
	check "a's ssh -J session runs its command" grep -qx "$a-container" "$work/audit-session.out"
	refused "a wrong key is refused" "Permission denied" \
		ssh -F "$work/ssh-e2e-audit-x.conf" -p "$port" -W "$a_ip:22" "$a@$bastion"
	refused "a forward to b's container is denied" "administratively prohibited" \
		ssh -F "$work/ssh-$a.conf" -o LogLevel=INFO -p "$port" -W "$b_ip:22" "$a@$bastion"
	refused "a shell on the bastion is refused" "not available\|closed\|failed\|refused" \
		ssh -F "$work/ssh-$a.conf" -o LogLevel=INFO -p "$port" "$a@$bastion" id
	check "b's ssh -J session" jump "$b" "$b_ip" true
	sleep 1 # rsyslogd writes asynchronously

	# --- what audit says ----------------------------------------------------------
	out=$work/audit.jsonl
	check "audit --json --since runs" bash -c "'$BIN' --project $E2E_PROJECT audit --json --since '$since' >'$out'"
	audit__count() { [ "$(jq -c "select(.user == \"$a\" and ($1))" "$out" | wc -l)" = "$2" ]; }
	check "a has 3 sessions (ssh -J, the denied forward's, the shell attempt's) and 3 refusals" \
		bash -c "[ \"\$(jq -c 'select(.user == \"$a\")' '$out' | wc -l)\" = 6 ]"
	check "the ssh -J session: from 127.0.0.1:$client_port to $a-container $a_ip:22, a's key, ended by a disconnect" \
		audit__count ".kind == \"session\" and .from == \"127.0.0.1:$client_port\" and .from_port == $client_port and .container == \"$a-container\" and .to == \"$a_ip:22\" and .fingerprint == \"$fp_a\" and .end == \"disconnected\" and .started <= .ended and .duration_s >= 2" 1
	check "every session of a is a's key, started and ended" \
		audit__count ".kind == \"session\" and .fingerprint == \"$fp_a\" and (.started | type) == \"string\" and (.ended | type) == \"string\" and .end != \"still-open\"" 3
	check "the wrong key: refused, with its fingerprint" \
		audit__count ".kind == \"refused\" and .reason == \"key-refused\" and .fingerprint == \"$fp_x\" and (.from | startswith(\"127.0.0.1:\"))" 1
	check "the denied forward: its target is b's container, port 22" \
		audit__count ".kind == \"refused\" and .reason == \"forward-denied\" and .target == \"$b_ip:22\" and .target_host == \"$b_ip\" and .target_port == 22 and .fingerprint == \"$fp_a\"" 1
	check "the shell attempt is refused" audit__count ".kind == \"refused\" and .reason == \"session-refused\"" 1
	check "nothing of a from before --since" bash -c "[ -s '$out' ] && [ -z \"\$(jq -c 'select(.user == \"$a\" and .started < \"$since\")' '$out')\" ]"
	check "b's one session is there too: both are jump accounts" \
		bash -c "[ \"\$(jq -c 'select(.user == \"$b\")' '$out' | wc -l)\" = 1 ]"
	check "audit $a shows only a (b's session is not there)" \
		bash -c "'$BIN' --project $E2E_PROJECT audit $a --json --since '$since' | jq -e -s 'length == 6 and all(.user == \"$a\")'"
	check "audit $b shows b's session (control)" \
		bash -c "'$BIN' --project $E2E_PROJECT audit $b --json --since '$since' | jq -e -s 'length == 1 and .[0].kind == \"session\" and .[0].fingerprint == \"$fp_b\" and .[0].to == \"$b_ip:22\"'"
	check "the table names a's session" bash -c "'$BIN' --project $E2E_PROJECT audit $a --since '$since' | e2e_grep -q '^session .*$a .*127.0.0.1:$client_port .*$a_ip:22'"
	check "--until before the sessions shows none of them" \
		bash -c "out=\$('$BIN' --project $E2E_PROJECT audit $a --json --since '$since' --until '$since') && [ -z \"\$out\" ]"
	# A session still open is said to be.
	jump "$a" "$a_ip" sleep 4 </dev/null >/dev/null 2>&1 &
	jump_pid=$!
	client_port=$(audit__client_port) || client_port=none
	sleep 0.5 # the login itself, after the TCP connection
	check "a session still open is still-open, not ended" \
		bash -c "'$BIN' --project $E2E_PROJECT audit $a --json --since '$since' | jq -e -s 'map(select(.from_port == $client_port)) | length == 1 and .[0].end == \"still-open\" and .[0].ended == null'"
	wait "$jump_pid"
	sleep 1
	check "once closed, it is disconnected" \
		bash -c "'$BIN' --project $E2E_PROJECT audit $a --json --since '$since' | jq -e -s 'map(select(.from_port == $client_port)) | length == 1 and .[0].end == \"disconnected\"'"
	# Keep the real lines for the unit-test fixtures (tests/fixtures/auth.log).
	grep -F -e "$a" -e "$b" -e "127.0.0.1 port" "$E2E_AUTH_LOG" | tail -n 200 >"$E2E_LOG_DIR/audit-auth.log" || true

	check "delete $a" ctm delete "$a" --force
	check "delete $b" ctm delete "$b" --force
}
