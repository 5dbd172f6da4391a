# shellcheck shell=bash
# shellcheck disable=SC2016 # jq programs for e2e_jq, single-quoted
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# doctor: `host doctor` on the real bastion. It passes on a healthy host;
# then each fault, injected behind the tool's back and undone before the
# next, turns its own check to FAIL with the right fix and a non-zero exit,
# and after the printed fix is run doctor passes again (the positive
# control around every fault). The fixes are run as printed: containarium
# ones through the e2e binary, the others with bash -c, which proves that
# they paste.

# Checks that must not FAIL on the e2e host: all of them. fail2ban runs a
# server of the suite's own (includes/fail2ban.sh, with the test [fail2ban]
# table); when one it did not start is running, fail2ban is left out.
E2E_DOCTOR_CHECKS=(incus config sshd-running sshd-dropin sshd-policy key-dir key-files
	jump-accounts privilege quotas processes nic-isolation autostart tenant-acl storage fail2ban
	sshd-algorithms kernel-limits clock)
E2E_DOCTOR_IGNORE='[]'
E2E_DOCTOR_PIDFILE=

# A real bastion's sshd writes /run/sshd.pid, which doctor reads; the e2e
# bastion writes its own pid file. While this suite runs, /run/sshd.pid
# names the e2e bastion, unless something else wrote one.
doctor__pidfile() {
	[ ! -e /run/sshd.pid ] || return 0
	printf '%s\n' "$E2E_SSHD_PID" >/run/sshd.pid && E2E_DOCTOR_PIDFILE=/run/sshd.pid
}
doctor__cleanup() {
	if [ -n "$E2E_DOCTOR_PIDFILE" ] && [ "$(cat "$E2E_DOCTOR_PIDFILE" 2>/dev/null)" = "$E2E_SSHD_PID" ]; then
		rm -f "$E2E_DOCTOR_PIDFILE"
	fi
	E2E_DOCTOR_PIDFILE=
	e2e_stop_fail2ban
	e2e_fail2ban_config_restore
}

# Our jail (host init) and a fail2ban-server of our own, as on a bastion.
doctor__fail2ban() {
	if e2e_fail2ban_foreign; then
		E2E_DOCTOR_IGNORE='["fail2ban"]'
		E2E_DOCTOR_CHECKS=("${E2E_DOCTOR_CHECKS[@]/fail2ban/}")
		echo "a fail2ban-server this run did not start is running: the fail2ban check is left out"
		return 0
	fi
	e2e_fail2ban_config && ctm host init >/dev/null && e2e_start_fail2ban
}

# doctor__run: host doctor, text to $work/doctor.txt, JSON to
# $work/doctor.json; returns doctor's exit code of the text run.
doctor__run() {
	local rc=0
	ctm host doctor >"$E2E_WORK/doctor.txt" 2>"$E2E_WORK/doctor.err" || rc=$?
	ctm host doctor --json >"$E2E_WORK/doctor.json" 2>/dev/null || true
	cat "$E2E_WORK/doctor.txt" "$E2E_WORK/doctor.err"
	return "$rc"
}

# doctor__passes: doctor exits 0, and every check of E2E_DOCTOR_CHECKS is
# there and did not fail.
doctor__passes() {
	local name rc=0
	doctor__run || rc=$?
	for name in "${E2E_DOCTOR_CHECKS[@]}"; do
		[ -n "$name" ] || continue
		e2e_jq --arg n "$name" '[.checks[] | select(.name == $n and .status != "fail")] | length == 1' \
			<"$E2E_WORK/doctor.json" >/dev/null || { echo "check $name missing or failed"; return 1; }
	done
	e2e_jq --argjson ignore "$E2E_DOCTOR_IGNORE" \
		'[.checks[] | select(.status == "fail") | .name] - $ignore | length == 0' \
		<"$E2E_WORK/doctor.json" >/dev/null || return 1
	[ "$E2E_DOCTOR_IGNORE" != '[]' ] || [ "$rc" -eq 0 ] || { echo "doctor exited $rc"; return 1; }
}

# doctor__fails NAME FIX: doctor exits non-zero, NAME is FAIL with FIX in
# its fix (text and JSON), and its FAIL line is printed.
doctor__fails() {
	local name=$1 fix=$2
	if doctor__run; then
		echo "doctor exited 0"
		return 1
	fi
	grep -F "FAIL $name: " "$E2E_WORK/doctor.txt" | e2e_grep -qF "fix: " || { echo "no FAIL line for $name"; return 1; }
	grep -F "FAIL $name: " "$E2E_WORK/doctor.txt" | e2e_grep -qF -- "$fix" || { echo "no fix $fix"; return 1; }
	e2e_jq --arg n "$name" --arg f "$fix" \
		'.ok == false and ([.checks[] | select(.name == $n and .status == "fail" and (.fix | contains($f)))] | length == 1)' \
		<"$E2E_WORK/doctor.json" >/dev/null
}

# doctor__fix NAME: runs the fix doctor printed for NAME.
doctor__fix() {
	local fix
	fix=$(jq -r --arg n "$1" '.checks[] | select(.name == $n) | .fix' "$E2E_WORK/doctor.json")
	echo "running: $fix"
	case $fix in
	"containarium "*)
		# shellcheck disable=SC2086 # the fix is words of ours, no quoting
		ctm ${fix#containarium } ;;
	*) bash -c "$fix" ;;
	esac
}

test_doctor() {
	local work=$E2E_WORK user=e2e-doc c=e2e-doc-container keyfile capture=${DOCTOR_CAPTURE_DIR:-}
	keyfile=/etc/containarium/keys/$user
	e2e_on_cleanup doctor__cleanup
	doctor__pidfile
	e2e_client "$user" "$work"
	check "create $user" ctm create "$user" --ssh-key "$work/keys/$user.pub" --no-docker
	check "our fail2ban jail and a fail2ban-server of the suite's own" doctor__fail2ban
	check "host doctor passes on the e2e host, and exits 0" doctor__passes
	check "doctor names the running bastion sshd" grep -q "^ok   sshd-running: pid $E2E_SSHD_PID " "$work/doctor.txt"
	[ "$E2E_DOCTOR_IGNORE" != '[]' ] ||
		check "the fail2ban check sees our jail" grep -Eq "^ok   fail2ban: jail sshd active" "$work/doctor.txt"
	if [ -n "$capture" ]; then
		# Real output for the unit tests' fixtures.
		mkdir -p "$capture"
		incus query /1.0 >"$capture/incus-server.json"
		incus query "/1.0/storage-pools/$E2E_POOL" >"$capture/incus-pool.json"
		incus query "/1.0/storage-pools/$E2E_POOL/resources" >"$capture/incus-pool-resources.json"
		cp "$work/doctor.json" "$capture/doctor-healthy.json"
		cp "$work/doctor.txt" "$capture/doctor-healthy.txt"
		{ getent passwd root "$user"; } >"$capture/passwd"
		getent group root containarium >"$capture/group"
		stat -c '%n %U %a %F' /etc/containarium/keys "$keyfile" >"$capture/key-stat.txt"
	fi

	# A key file others may write: anyone on the host could add a key.
	chmod o+w "$keyfile"
	check "a key file writable by others fails key-files with chmod go-w" \
		doctor__fails key-files "chmod go-w $keyfile"
	check "the printed fix works" doctor__fix key-files
	check "doctor passes again after chmod go-w" doctor__passes

	# A jump account deleted behind the tool's back.
	userdel -- "$user"
	check "a deleted jump account fails jump-accounts with sync-accounts" \
		doctor__fails jump-accounts "containarium sync-accounts"
	check "the printed fix works" doctor__fix jump-accounts
	check "doctor passes again after sync-accounts" doctor__passes

	# A tenant made before containarium set a process limit.
	check "the tenant loses limits.processes (as an older tenant never had it)" \
		incus --project "$E2E_PROJECT" config unset "$c" limits.processes
	check "a tenant without a process limit fails processes with sync-accounts" \
		doctor__fails processes "containarium sync-accounts"
	check "the printed fix works" doctor__fix processes
	check "  and gives it config.toml's limit, 4096" \
		test "$(incus --project "$E2E_PROJECT" config get "$c" limits.processes)" = 4096
	check "doctor passes again after sync-accounts set the limit" doctor__passes

	# A privileged container (Incus takes it live; it applies at the next
	# start, and doctor judges the configuration).
	if ! incus --project "$E2E_PROJECT" config set "$c" security.privileged=true; then
		incus --project "$E2E_PROJECT" stop "$c" &&
			incus --project "$E2E_PROJECT" config set "$c" security.privileged=true
	fi
	check "a privileged container fails privilege with config unset" \
		doctor__fails privilege "config unset $c security.privileged"
	if [ -n "$capture" ]; then
		incus --project "$E2E_PROJECT" list --format json "^$c\$" >"$capture/incus-list-privileged.json"
		cp "$work/doctor.txt" "$capture/doctor-privileged.txt"
	fi
	check "the printed fix works" doctor__fix privilege
	incus --project "$E2E_PROJECT" start "$c" 2>/dev/null || true
	check "doctor passes again after unsetting security.privileged" doctor__passes

	# The drop-in removed: sshd would apply its defaults to jump accounts.
	mv "$E2E_DROPIN" "$work/dropin.aside"
	check "a removed drop-in fails sshd-dropin with host init" \
		doctor__fails sshd-dropin "containarium host init"
	check "and sshd -T shows the policy gone" \
		e2e_jq '.checks[] | select(.name == "sshd-policy" and .status == "fail")' <"$work/doctor.json"
	check "the printed fix works" doctor__fix sshd-dropin
	rm -f "$work/dropin.aside"
	check "the bastion sshd takes the drop-in again" e2e_reload_bastion_sshd
	check "doctor passes again after host init" doctor__passes

	check "delete $user" ctm delete "$user" --force
	doctor__cleanup
}
