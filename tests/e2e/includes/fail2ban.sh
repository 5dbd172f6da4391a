# shellcheck shell=bash
# fail2ban.sh: a fail2ban-server of the suite's own, on fail2ban's default
# socket and configuration (/etc/fail2ban, where `containarium host init`
# writes our jail), so that containarium's own fail2ban-client calls reach
# it. Its log goes to $E2E_LOG_DIR and its database is in memory, through
# /etc/fail2ban/fail2ban.d/ctme2e.local, so no ban outlives the test.
# A fail2ban-server this suite did not start is never touched: the caller
# skips instead. Sourced after env.sh.
#
#   e2e_fail2ban_foreign && skip ...   # one is running that is not ours
#   e2e_start_fail2ban                 # sets E2E_FAIL2BAN_PID
#   e2e_stop_fail2ban                  # by PID; also an e2e_on_cleanup hook
#   e2e_fail2ban_config [KEY = VALUE...] # the e2e config.toml with a test
#                                        # [fail2ban] table (banaction dummy)
#   e2e_fail2ban_config_restore          # the config.toml as it was

E2E_FAIL2BAN_PID=${E2E_FAIL2BAN_PID:-}
E2E_FAIL2BAN_PIDFILE=/run/fail2ban/fail2ban.pid
E2E_FAIL2BAN_LOCAL=$E2E_FAIL2BAN_TEST_CONF # env.sh's cleanup removes it too

# Succeeds when a fail2ban server is running that this run did not start.
e2e_fail2ban_foreign() {
	local pid
	for pid in $(pgrep -x fail2ban-server); do
		e2e__pid_is "$pid" fail2ban-server || continue
		[ "$pid" = "$E2E_FAIL2BAN_PID" ] || return 0
	done
	[ -z "$E2E_FAIL2BAN_PID" ] && fail2ban-client ping >/dev/null 2>&1
}

e2e_start_fail2ban() {
	local -
	set +e # failures are handled explicitly (callers may use set -e)
	local i
	if e2e_fail2ban_foreign; then
		e2e_die "a fail2ban-server that is not ours is running"
		return 1
	fi
	mkdir -p /run/fail2ban "$(dirname "$E2E_FAIL2BAN_LOCAL")" || return 1
	printf '[Definition]\nlogtarget = %s\ndbfile = :memory:\n' "$E2E_LOG_DIR/fail2ban.log" \
		>"$E2E_FAIL2BAN_LOCAL" || return 1
	fail2ban-server -b -x >>"$E2E_LOG_DIR/fail2ban.out" 2>&1 {E2E_LOCK_FD}>&- ||
		e2e_die "fail2ban-server did not start (log: $E2E_LOG_DIR/fail2ban.log)" || return 1
	for ((i = 0; i < 100; i++)); do
		E2E_FAIL2BAN_PID=$(cat "$E2E_FAIL2BAN_PIDFILE" 2>/dev/null)
		e2e__pid_is "$E2E_FAIL2BAN_PID" fail2ban-server && fail2ban-client ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	e2e__pid_is "$E2E_FAIL2BAN_PID" fail2ban-server ||
		e2e_die "fail2ban-server wrote no pid (log: $E2E_LOG_DIR/fail2ban.log)" || return 1
	e2e_log "fail2ban-server $E2E_FAIL2BAN_PID"
}

# A [fail2ban] table whose bans cannot cut the tests' own traffic (dummy),
# polling the auth log the bastion writes; extra lines are appended to it.
e2e_fail2ban_config() {
	[ -e "$E2E_WORK/config.toml.before-fail2ban" ] ||
		cp "$CONTAINARIUM_CONFIG" "$E2E_WORK/config.toml.before-fail2ban" || return 1
	cp "$E2E_WORK/config.toml.before-fail2ban" "$CONTAINARIUM_CONFIG" || return 1
	{
		printf '\n[fail2ban]\nbanaction = "dummy"\nbackend = "polling"\nmaxretry = 3\n'
		printf 'bantime = "10m"\nlogpath = "%s"\n' "$E2E_AUTH_LOG"
		printf '%s\n' "$@"
	} >>"$CONTAINARIUM_CONFIG"
}

e2e_fail2ban_config_restore() {
	if [ -e "$E2E_WORK/config.toml.before-fail2ban" ]; then
		mv "$E2E_WORK/config.toml.before-fail2ban" "$CONTAINARIUM_CONFIG"
	fi
}

e2e_stop_fail2ban() {
	local -
	set +e
	if [ -n "$E2E_FAIL2BAN_PID" ]; then
		e2e__stop_pid "$E2E_FAIL2BAN_PID" fail2ban-server
		E2E_FAIL2BAN_PID=
	fi
	rm -f "$E2E_FAIL2BAN_LOCAL"
}
