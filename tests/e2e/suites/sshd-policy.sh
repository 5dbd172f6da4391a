# shellcheck shell=bash
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# sshd-policy: our drop-in's Match block is what sshd applies to jump
# accounts, whatever else is configured. Another drop-in's Match block (read
# after ours) does not give a jump account sftp or a shell; a host-wide
# AuthorizedKeysCommand (as GCE OS Login or EC2 Instance Connect install)
# that hands out an attacker's key does not open a jump account, while it
# does open a normal account (the control); `host init` refuses a Match block
# read before ours, and proves the rest with `sshd -T`. `host init --harden`
# leaves the live bastion with no ssh-audit failure (the unhardened bastion
# fails six algorithms: the control), and ssh -J still works through it.
#
# Everything it writes carries "ctme2e" in its name: drop-ins
# /etc/ssh/sshd_config.d/*-ctme2e-*.conf, the directory /run/ctme2e-akc, and
# the host account e2e-akc-ctrl (outside group containarium); all are
# removed at its end or, after a crash, by e2e_cleanup.

E2E_SSHD_POLICY_DIR=/run/ctme2e-akc
E2E_SSHD_POLICY_CTRL=e2e-akc-ctrl
# ssh-audit (PyPI), in a venv cached next to the image.
E2E_SSH_AUDIT_VENV=$E2E_CACHE_DIR/ssh-audit-3.9.0

sshd_policy__cleanup() {
	# shellcheck disable=SC2086 # the glob is the point
	rm -f $E2E_TEST_DROPINS
	rm -rf "$E2E_SSHD_POLICY_DIR"
	if getent passwd "$E2E_SSHD_POLICY_CTRL" >/dev/null; then userdel -- "$E2E_SSHD_POLICY_CTRL"; fi
	rm -f "$E2E_HARDENING"
	if [ -n "${E2E_SSHD_PID:-}" ]; then e2e_reload_bastion_sshd; fi
}

# sshd_policy__effective USER ADDR KEYWORD VALUE: `sshd -T` says that a
# connection of USER from ADDR gets VALUE for KEYWORD.
sshd_policy__effective() {
	local settings
	settings=$(/usr/sbin/sshd -T -f /etc/ssh/sshd_config -C "user=$1,addr=$2,host=$2") || return 1
	grep -qx -- "$3 $4" <<<"$settings" || { grep -- "^$3 " <<<"$settings"; return 1; }
}

# sshd_policy__audit FAILURES: ssh-audit the bastion sshd; its failed
# algorithms (`kind name`, sorted, space-separated) are exactly FAILURES.
sshd_policy__audit() {
	local venv=$E2E_SSH_AUDIT_VENV got
	if [ ! -x "$venv/bin/ssh-audit" ]; then
		rm -rf "$venv" && python3 -m venv "$venv" &&
			"$venv/bin/pip" install -q --disable-pip-version-check ssh-audit==3.9.0 || return 1
	fi
	# Exit 0 good, 1 warning, 2 warnings, 3 failures; beyond that, no report.
	"$venv/bin/ssh-audit" --json --skip-rate-test -p "$E2E_BASTION_PORT" "$E2E_BASTION_HOST" \
		>"$E2E_WORK/ssh-audit.json"
	[ "$?" -le 3 ] || return 1
	got=$(jq -r '[(.kex, .key, .enc, .mac) | .[]? | select(.notes.fail) | .algorithm] | sort | join(" ")' \
		"$E2E_WORK/ssh-audit.json") || return 1
	[ "$got" = "$1" ] || { echo "ssh-audit fails: ${got:-nothing}; expected: ${1:-nothing}"; return 1; }
}

test_sshd_policy() {
	local work=$E2E_WORK bastion=$E2E_BASTION_HOST port=$E2E_BASTION_PORT ip
	local dropins=/etc/ssh/sshd_config.d dir=$E2E_SSHD_POLICY_DIR ctrl=$E2E_SSHD_POLICY_CTRL
	e2e_on_cleanup sshd_policy__cleanup
	e2e_client e2e-sp "$work"
	e2e_client e2e-attacker "$work"
	check "create e2e-sp" ctm create e2e-sp --ssh-key "$work/keys/e2e-sp.pub" --no-docker
	ip=$(ip_of e2e-sp)

	# --- the drop-in sorts first; the old name is migrated -------------------------
	check "the drop-in is $dropins/00-containarium.conf, first of the *.conf" \
		bash -c "[ \"\$(cd $dropins && ls -1 -- *.conf | LC_ALL=C sort | sed -n 1p)\" = 00-containarium.conf ]"
	cp -a "$dropins/00-containarium.conf" "$dropins/containarium.conf"
	check "host init removes our drop-in under its old name" \
		bash -c "'$BIN' --project $E2E_PROJECT host init && [ ! -e $dropins/containarium.conf ] && [ -e $dropins/00-containarium.conf ]"
	rm -f "$dropins/containarium.conf"

	# --- hostile configuration, read after ours ------------------------------------
	# A Match block for every loopback client that would give sftp and all
	# forwarding, and a host-wide AuthorizedKeysCommand that offers the
	# attacker's key for every account.
	mkdir -p "$dir" && chmod 0755 "$dir"
	install -m 0644 "$work/keys/e2e-attacker.pub" "$dir/attacker.pub"
	printf '#!/bin/sh\ncat %s/attacker.pub\n' "$dir" >"$dir/keys"
	chmod 0755 "$dir/keys"
	printf 'Match Address 127.0.0.0/8\n    ForceCommand internal-sftp\n    AllowTcpForwarding yes\n    PermitTTY yes\n    MaxSessions 10\n' \
		>"$dropins/01-ctme2e-hostile.conf"
	printf 'AuthorizedKeysCommand %s/keys %%u\nAuthorizedKeysCommandUser nobody\n' "$dir" >"$dropins/50-ctme2e-akc.conf"
	check "a normal account (no home, nologin) for the control" \
		useradd -M -N -g nogroup -s /usr/sbin/nologin -d /nonexistent -c "containarium e2e control" -- "$ctrl"
	check "the bastion sshd takes the hostile configuration" e2e_reload_bastion_sshd

	sftp_pwd() { echo pwd | sftp -F "$work/ssh-$1.conf" -P "$port" -b - "$2@$bastion"; }
	check "(control) the AuthorizedKeysCommand key opens the normal account, with sftp" sftp_pwd e2e-attacker "$ctrl"
	refused "the AuthorizedKeysCommand key does not open the jump account" "Permission denied" \
		ssh -F "$work/ssh-e2e-attacker.conf" -p "$port" -W "$ip:22" "e2e-sp@$bastion"
	refused "the jump account gets no sftp from the other Match block" "prohibited\|closed\|failed\|not available" \
		sftp_pwd e2e-sp e2e-sp
	refused "the jump account gets no shell or command (MaxSessions 0)" "channel 0: open failed" \
		ssh -F "$work/ssh-e2e-sp.conf" -o LogLevel=INFO -p "$port" "e2e-sp@$bastion" id
	refused "the jump account still forwards only to its container" "administratively prohibited" \
		ssh -F "$work/ssh-e2e-sp.conf" -o LogLevel=INFO -p "$port" -W "127.0.0.1:$port" "e2e-sp@$bastion"
	check "(control) ssh -J through the jump account still works" hostname_is e2e-sp-container jump e2e-sp "$ip"
	jump_account_gets_ours() {
		sshd_policy__effective e2e-sp 127.0.0.1 authorizedkeyscommand none &&
			sshd_policy__effective e2e-sp 127.0.0.1 forcecommand /usr/sbin/nologin &&
			sshd_policy__effective e2e-sp 127.0.0.1 maxsessions 0
	}
	normal_account_gets_theirs() {
		sshd_policy__effective "$ctrl" 127.0.0.1 authorizedkeyscommand "$dir/keys %u" &&
			sshd_policy__effective "$ctrl" 127.0.0.1 forcecommand internal-sftp
	}
	check "sshd -T: the jump account gets AuthorizedKeysCommand none, ForceCommand nologin, MaxSessions 0" \
		jump_account_gets_ours
	check "(control) sshd -T: the normal account gets the command and internal-sftp" normal_account_gets_theirs
	check "host init accepts it and its sshd -T check passes (our block is read first)" \
		bash -c "'$BIN' --project $E2E_PROJECT host init 2>&1 | e2e_grep -q '^check sshd.s effective policy for jump accounts... done'"

	# --- a Match block read before ours ------------------------------------------------
	mv "$dropins/01-ctme2e-hostile.conf" "$dropins/0-ctme2e-hostile.conf"
	one_line_error "host init refuses a drop-in with a Match block that sorts before ours" \
		"sshd_config.d/0-ctme2e-hostile.conf sorts before 00-containarium.conf and has a Match block" ctm host init
	refused "create refuses it too, and makes nothing" "sorts before 00-containarium.conf" \
		ctm create e2e-sp2 --ssh-key "$work/keys/e2e-sp.pub" --no-docker
	check "nothing was made for e2e-sp2" bash -c "! getent passwd e2e-sp2 && ! incus --project $E2E_PROJECT info e2e-sp2-container >/dev/null 2>&1"
	# What the refusal prevents, shown for real: read first, it wins.
	check "(the attack is real) read before ours, the bastion sshd takes it" e2e_reload_bastion_sshd
	check "(the attack is real) read before ours, it gives the jump account sftp" sftp_pwd e2e-sp e2e-sp
	rm -f "$dropins/0-ctme2e-hostile.conf"
	check "the bastion sshd is back to our policy" e2e_reload_bastion_sshd
	refused "(control) without it, sftp is refused again" "prohibited\|closed\|failed\|not available" sftp_pwd e2e-sp e2e-sp

	# --- a Match block reached through an Include read before ours -------------------
	# (Match Address 192.168.0.0/16: none of the addresses sshd -T was asked
	# about before, so it escaped both checks.)
	printf 'Match Address 192.168.0.0/16\n    ForceCommand internal-sftp\n' >"$dir/hostile-match.conf"
	printf 'Include %s/hostile-match.conf\n' "$dir" >"$dropins/0-ctme2e-include.conf"
	one_line_error "host init refuses a Match block an earlier drop-in includes" \
		"sshd_config.d/0-ctme2e-include.conf sorts before 00-containarium.conf and has a Match block" ctm host init
	rm -f "$dropins/0-ctme2e-include.conf"

	# --- an Include we cannot follow as sshd would ------------------------------------
	# A `*` in the included directory: sshd's glob(3) follows it. What we
	# cannot read as sshd does is refused rather than trusted.
	mkdir -p "$dir/hostile-d1"
	mv "$dir/hostile-match.conf" "$dir/hostile-d1/m.conf"
	printf 'Include %s/hostile-d*/m.conf\n' "$dir" >"$dropins/0-ctme2e-include.conf"
	one_line_error "host init refuses an Include with a pattern in a directory" \
		"0-ctme2e-include.conf: .Include $dir/hostile-d\*/m.conf.: containarium cannot follow a pattern in a directory" \
		ctm host init
	check "(the attack is real) through it, the bastion sshd takes the Match block" e2e_reload_bastion_sshd
	sftp_from_192() { sshd_policy__effective e2e-sp 192.168.0.1 forcecommand internal-sftp; }
	check "(the attack is real) sshd -T gives the jump account sftp from 192.168.0.1" sftp_from_192
	rm -f "$dropins/0-ctme2e-include.conf"
	rm -rf "$dir/hostile-d1"
	check "the bastion sshd is back to our policy" e2e_reload_bastion_sshd
	check "(control) without them, host init passes" ctm host init

	# --- host init --harden: the live bastion passes a real auditor ---------------------
	check "(control) ssh-audit fails the bastion's OpenSSH defaults on six algorithms" sshd_policy__audit \
		"ecdh-sha2-nistp256 ecdh-sha2-nistp384 ecdh-sha2-nistp521 ecdsa-sha2-nistp256 hmac-sha1 hmac-sha1-etm@openssh.com"
	check "host init --harden writes $E2E_HARDENING and reloads sshd" \
		bash -c "'$BIN' --project $E2E_PROJECT host init --harden 2>&1 | e2e_grep -q '^install the sshd hardening drop-in... done' && [ -e $E2E_HARDENING ]"
	check "the bastion sshd takes it" e2e_reload_bastion_sshd
	check "ssh-audit finds no failure on the hardened bastion" sshd_policy__audit ""
	check "(control) ssh -J through the hardened bastion still works" hostname_is e2e-sp-container jump e2e-sp "$ip"
	check "host init without --harden keeps it" \
		bash -c "'$BIN' --project $E2E_PROJECT host init --dry-run 2>&1 | e2e_grep -q '^unchanged: sshd hardening drop-in' && [ -e $E2E_HARDENING ]"

	check "the hostile configuration and the control account are removed" sshd_policy__cleanup
	check "delete e2e-sp" ctm delete e2e-sp --force
}
