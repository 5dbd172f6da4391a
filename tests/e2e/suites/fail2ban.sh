# shellcheck shell=bash
# shellcheck disable=SC2016 # jq programs for e2e_jq, single-quoted
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# fail2ban: `host init` writes our sshd jail from the [fail2ban] table of
# config.toml and fail2ban really applies it (Debian's defaults-debian.conf
# cannot switch it back on); bad-key logins from 127.0.0.1 to the bastion
# get 127.0.0.1 banned (loopback is not exempt), `security status --json`
# lists the ban, `security unban` lifts it, and a client that logs in after
# trying a few other keys is not banned (the control). The jail's action
# is fail2ban's `dummy`, so a ban cannot cut the test's own traffic.
#
# It starts its own fail2ban-server (tests/e2e/includes/fail2ban.sh) and
# skips when one it did not start is running. It adds the [fail2ban]
# table to the e2e config.toml and puts the file back at its end; the jail
# files are restored with the host state (env.sh).

fail2ban__cleanup() {
	e2e_stop_fail2ban
	e2e_fail2ban_config_restore
	if [ -n "$(ip_of e2e-f2b 2>/dev/null)" ]; then ctm delete e2e-f2b --force >/dev/null 2>&1; fi
}

# fail2ban__banned IP: `security status --json` lists IP as banned.
fail2ban__banned() {
	ctm security status --json | e2e_jq --arg ip "$1" 'any(.banned[]; .address == $ip and .start != "" and .end != "")'
}
# fail2ban__unbanned IP: `security status --json` answers, without IP among the bans.
fail2ban__unbanned() {
	ctm security status --json | e2e_jq --arg ip "$1" 'all(.banned[]; .address != $ip)'
}

# fail2ban__wait_banned IP: within 20 s (the polling backend reads each second).
fail2ban__wait_banned() {
	local i
	for ((i = 0; i < 40; i++)); do
		fail2ban__banned "$1" >/dev/null && return 0
		sleep 0.5
	done
	ctm security status
	return 1
}

test_fail2ban() {
	local work=$E2E_WORK bastion=$E2E_BASTION_HOST port=$E2E_BASTION_PORT ip out before
	local jail=/etc/fail2ban/jail.d/containarium.conf
	if e2e_fail2ban_foreign; then
		skip "fail2ban: a fail2ban-server this run did not start is running; not touching it"
		return 0
	fi
	e2e_on_cleanup fail2ban__cleanup
	e2e_client e2e-f2b "$work"
	for k in k1 k2 k3 bad; do ssh-keygen -q -t ed25519 -N '' -f "$work/keys/f2b-$k"; done
	check "create e2e-f2b" ctm create e2e-f2b --ssh-key "$work/keys/e2e-f2b.pub" --no-docker
	ip=$(ip_of e2e-f2b)

	# --- the jail, without a server ----------------------------------------------
	e2e_fail2ban_config 'enabled = false'
	check "host init says fail2ban-server is not running, and succeeds" \
		bash -c "out=\$('$BIN' --project $E2E_PROJECT host init 2>&1) && grep -q 'fail2ban-server is not running; it reads the jail when it starts' <<<\"\$out\""
	check "the jail carries our marker, aggressive mode and ignoreself = false" \
		bash -c "head -n 1 $jail | e2e_grep -q '^# Managed by containarium' && grep -qx 'mode = aggressive' $jail && grep -qx 'ignoreself = false' $jail && grep -qx 'banaction = dummy' $jail"
	check "enabled = false wins over Debian's defaults-debian.conf (fail2ban-client -d)" \
		bash -c "grep -qs 'enabled = true' /etc/fail2ban/jail.d/defaults-debian.conf && ! fail2ban-client -d 2>/dev/null | e2e_grep -qF \"['add', 'sshd'\""
	e2e_fail2ban_config
	check "host init switches the jail on" ctm host init
	check "(control) fail2ban-client -d now has the sshd jail with our settings" \
		bash -c "d=\$(fail2ban-client -d 2>/dev/null); grep -qF \"['add', 'sshd', 'polling']\" <<<\"\$d\" && grep -qF \"['set', 'sshd', 'maxretry', 3]\" <<<\"\$d\" && grep -qF \"['set', 'sshd', 'ignoreself', False]\" <<<\"\$d\" && grep -qF \"['set', 'sshd', 'addaction', 'dummy']\" <<<\"\$d\""
	# OpenSSH 9.8 and later log as sshd-session, which fail2ban 1.0 misses.
	local session_line
	session_line="$(date -u +%Y-%m-%dT%H:%M:%S.000000+00:00) vm sshd-session[4242]: Connection closed by authenticating user e2e-f2b 192.0.2.7 port 50002 [preauth]"
	# (whole output first: grep -q would close the pipe, and fail2ban-regex
	# fails with a broken pipe under pipefail)
	matches() {
		local out
		out=$(fail2ban-regex -c "$1" "$session_line" 'sshd[mode=aggressive]') &&
			grep -qx "Lines: 1 lines, 0 ignored, $2 matched, $3 missed" <<<"$out"
	}
	check "an sshd-session line counts as a failure (our filter.d/sshd.local)" matches /etc/fail2ban 1 0
	rm -rf "$work/fail2ban-without-override"
	cp -a /etc/fail2ban "$work/fail2ban-without-override"
	rm -f "$work/fail2ban-without-override/filter.d/sshd.local"
	check "(control) without our override fail2ban misses it" matches "$work/fail2ban-without-override" 0 1
	rm -rf "$work/fail2ban-without-override"
	printf '# not containarium'"'"'s\n[sshd]\n' >"$work/foreign-jail"
	cp -a "$jail" "$work/our-jail"
	cp "$work/foreign-jail" "$jail"
	one_line_error "host init refuses a jail file without our marker" "was not written by containarium" ctm host init
	check "the foreign jail file is untouched" cmp "$jail" "$work/foreign-jail"
	cp -a "$work/our-jail" "$jail"

	# --- a server of our own -----------------------------------------------------
	check "start fail2ban-server" e2e_start_fail2ban
	check "fail2ban runs our jail with the dummy action" \
		bash -c "fail2ban-client get sshd actions | e2e_grep -qx dummy && [ \"\$(fail2ban-client get sshd maxretry)\" = 3 ]"
	# Earlier suites' failures in the auth log may have banned loopback as
	# the server read the log: start from no bans.
	fail2ban-client unban --all >/dev/null
	check "host init with nothing changed does not reload fail2ban" \
		bash -c "out=\$('$BIN' --project $E2E_PROJECT host init 2>&1) && ! grep -q 'reload fail2ban' <<<\"\$out\""
	e2e_fail2ban_config 'findtime = "15m"'
	check "host init reloads fail2ban when the jail changed" \
		bash -c "'$BIN' --project $E2E_PROJECT host init 2>&1 | e2e_grep -q '^reload fail2ban... done' && [ \"\$(fail2ban-client get sshd findtime)\" = 900 ]"
	fail2ban-client unban --all >/dev/null

	# --- the control: a login after maxretry other keys is not a ban --------------
	# (three refused keys, as many as would ban three failed connections:
	# fail2ban counts connections that fail, not keys tried on the way)
	# (The whole answer is read: the container's sshd closes once the tunnel's
	# end of input reaches it.)
	banner() {
		local answer
		answer=$(timeout 20 ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no \
			-o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o LogLevel=ERROR "$@" -p "$port" \
			-W "$ip:22" "e2e-f2b@$bastion" </dev/null)
		[[ $answer == SSH-2.0* ]]
	}
	check "(control) e2e-f2b logs in with its key after trying three others" \
		banner -i "$work/keys/f2b-k1" -i "$work/keys/f2b-k2" -i "$work/keys/f2b-k3" -i "$work/keys/e2e-f2b"
	sleep 3
	check "(control) 127.0.0.1 is not banned after that login" fail2ban__unbanned 127.0.0.1

	# --- maxretry bad-key logins -------------------------------------------------
	before=$(ctm security status --json | jq .total_failed)
	for _ in 1 2 3; do banner -i "$work/keys/f2b-bad" 2>/dev/null || true; done
	check "3 bad-key logins from 127.0.0.1 get it banned (security status --json)" fail2ban__wait_banned 127.0.0.1
	check "fail2ban counted the 3 failures" \
		bash -c "[ \$('$BIN' --project $E2E_PROJECT security status --json | jq .total_failed) -ge $((before + 3)) ]"
	check "security status names e2e-f2b among the failing accounts" \
		bash -c "'$BIN' --project $E2E_PROJECT security status --json | e2e_jq 'any(.failures[]; .account == \"e2e-f2b\" and .failures >= 3)'"
	out=$(ctm security unban 127.0.0.1)
	lifted() { [ "$out" = 'unbanned 127.0.0.1' ] && fail2ban__unbanned 127.0.0.1; }
	check "security unban 127.0.0.1 lifts the ban" lifted
	one_line_error "a second unban is a one-line error" "127.0.0.1 is not banned" ctm security unban 127.0.0.1
	check "... with exit code 2" bash -c "'$BIN' --project $E2E_PROJECT security unban 127.0.0.1 2>/dev/null; [ \$? -eq 2 ]"
	one_line_error "unban of something that is not an address is a one-line error" "is not an IP address" \
		ctm security unban 127.0.0.1/8

	# --- a manual ban ------------------------------------------------------------
	check "security ban 127.0.0.1" bash -c "[ \"\$('$BIN' --project $E2E_PROJECT security ban 127.0.0.1)\" = 'banned 127.0.0.1' ]"
	check "security status lists the manual ban" fail2ban__banned 127.0.0.1
	check "and unban lifts it" ctm security unban 127.0.0.1

	check "delete e2e-f2b" ctm delete e2e-f2b --force
	local server=$E2E_FAIL2BAN_PID
	fail2ban__cleanup
	check "our fail2ban-server stopped" not e2e__pid_is "$server" fail2ban-server
}
