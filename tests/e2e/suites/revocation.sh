# shellcheck shell=bash
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# revocation: `delete` and `keys remove` end what the user already has open.
# A live `ssh -N -L` tunnel and a live `ssh -J` session through the jump
# account end within seconds of `delete --force`, which then removes the
# account and its key file (userdel refuses while the account has a process);
# `keys remove` ends them too, while the user's other key keeps working.

# Background ssh clients of this suite, ended by PID at its end or, after a
# crash, by e2e_cleanup.
E2E_REVOCATION_PIDS=()

revocation__alive() {
	local stat
	[ "$(cat "/proc/$1/comm" 2>/dev/null)" = ssh ] || return 1
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[ "${stat%% *}" != Z ]
}

revocation__stop_clients() {
	local pid
	for pid in "${E2E_REVOCATION_PIDS[@]}"; do
		if revocation__alive "$pid"; then kill "$pid" 2>/dev/null || true; fi
	done
	E2E_REVOCATION_PIDS=()
}

# revocation__tunnel USER IP LPORT: ssh -N -L 127.0.0.1:LPORT:IP:22 through
# USER's jump account, in the background; waits until it listens.
revocation__tunnel() {
	local user=$1 ip=$2 lport=$3 i
	ssh -F "$E2E_WORK/ssh-$user.conf" -p "$E2E_BASTION_PORT" -N -o ExitOnForwardFailure=yes \
		-L "127.0.0.1:$lport:$ip:22" "$user@$E2E_BASTION_HOST" </dev/null >>"$E2E_LOG_DIR/tunnel.log" 2>&1 &
	E2E_REVOCATION_PIDS+=("$!")
	for ((i = 0; i < 100; i++)); do
		ss -Hltn "sport = :$lport" | e2e_grep -q . && return 0
		sleep 0.1
	done
	return 1
}

# revocation__session USER IP: a live ssh -J session (sleep 300) in the
# background.
revocation__session() {
	local user=$1 ip=$2
	jump "$user" "$ip" sleep 300 </dev/null >>"$E2E_LOG_DIR/session.log" 2>&1 &
	E2E_REVOCATION_PIDS+=("$!")
}

# revocation__sessions_are UID N: the bastion has N sshd processes running
# as UID (one per live connection), within 10 s.
revocation__sessions_are() {
	local uid=$1 n=$2 i
	for ((i = 0; i < 100; i++)); do
		[ "$(pgrep -U "$uid" -x 'sshd|sshd-session' -c || true)" = "$n" ] && return 0
		sleep 0.1
	done
	pgrep -U "$uid" -a 'sshd|sshd-session'
	return 1
}

# revocation__clients_end_within SECONDS: every client started so far ended.
revocation__clients_end_within() {
	local deadline=$(($(date +%s) + $1)) pid left
	while :; do
		left=()
		for pid in "${E2E_REVOCATION_PIDS[@]}"; do
			if revocation__alive "$pid"; then left+=("$pid"); fi
		done
		[ "${#left[@]}" -ne 0 ] || return 0
		[ "$(date +%s)" -lt "$deadline" ] || {
			echo "still running: ${left[*]}"
			return 1
		}
		sleep 0.2
	done
}

test_revocation() {
	local work=$E2E_WORK bastion=$E2E_BASTION_HOST port=$E2E_BASTION_PORT
	local lport=$((E2E_BASTION_PORT + 100)) ip uid fingerprint
	e2e_on_cleanup revocation__stop_clients
	e2e_client e2e-rd "$work"
	e2e_client e2e-rk "$work"
	e2e_client e2e-rk-b "$work"

	# --- delete ends a live tunnel and a live ssh -J session ---------------------
	check "create e2e-rd" ctm create e2e-rd --ssh-key "$work/keys/e2e-rd.pub" --no-docker
	ip=$(ip_of e2e-rd)
	uid=$(id -u e2e-rd)
	check "a live ssh -N -L tunnel through e2e-rd's jump account" revocation__tunnel e2e-rd "$ip" "$lport"
	check "(control) the tunnel reaches e2e-rd's container" \
		hostname_is e2e-rd-container ssh -F "$work/ssh-e2e-rd.conf" -p "$lport" e2e-rd@127.0.0.1
	revocation__session e2e-rd "$ip"
	check "(control) two live connections of e2e-rd on the bastion" revocation__sessions_are "$uid" 2
	deleted() {
		ctm delete e2e-rd --force >"$work/rd-delete.out" 2>&1 || { cat "$work/rd-delete.out"; return 1; }
		grep -Eq 'ended [2-9] live jump sessions of e2e-rd' "$work/rd-delete.out" || { cat "$work/rd-delete.out"; return 1; }
	}
	check "delete --force succeeds with them open and says it ended them (at least the 2)" deleted
	check "the tunnel and the ssh -J session end within 5 s" revocation__clients_end_within 5
	check "no process of e2e-rd is left and the tunnel port is closed" \
		bash -c "! pgrep -U '$uid' && ! ss -Hltn 'sport = :$lport' | e2e_grep -q ."
	check "e2e-rd's account, key file and container are gone" \
		bash -c "! getent passwd e2e-rd && [ ! -e /etc/containarium/keys/e2e-rd ] && ! incus --project $E2E_PROJECT info e2e-rd-container >/dev/null 2>&1"
	refused "e2e-rd's key no longer opens anything on the bastion" "Permission denied\|Connection closed" \
		ssh -F "$work/ssh-e2e-rd.conf" -p "$port" -W "$ip:22" "e2e-rd@$bastion"
	check "a rerun of delete succeeds (nothing left)" bash -c "'$BIN' --project $E2E_PROJECT delete e2e-rd --force | e2e_grep -qx 'nothing to delete for e2e-rd'"
	revocation__stop_clients

	# --- keys remove ends the sessions, the other key keeps working --------------
	check "create e2e-rk with key A" ctm create e2e-rk --ssh-key "$work/keys/e2e-rk.pub" --no-docker
	check "add key B" ctm keys add e2e-rk "$work/keys/e2e-rk-b.pub"
	ip=$(ip_of e2e-rk)
	uid=$(id -u e2e-rk)
	key_b_jump() { ssh -F "$work/ssh-e2e-rk-b.conf" -J "e2e-rk@$bastion:$port" "e2e-rk@$ip" "$@"; }
	check "(control) key B opens ssh -J" hostname_is e2e-rk-container key_b_jump
	check "a live tunnel with key A" revocation__tunnel e2e-rk "$ip" "$lport"
	revocation__session e2e-rk "$ip"
	check "(control) two live connections of e2e-rk on the bastion" revocation__sessions_are "$uid" 2
	fingerprint=$(ssh-keygen -lf "$work/keys/e2e-rk.pub" | awk '{ print $2 }')
	removed() {
		ctm keys remove e2e-rk "$fingerprint" >"$work/rk-remove.out" 2>&1 || { cat "$work/rk-remove.out"; return 1; }
		grep -Eq 'ended [2-9] live jump sessions of e2e-rk' "$work/rk-remove.out" || { cat "$work/rk-remove.out"; return 1; }
	}
	check "keys remove A says it ended e2e-rk's live jump sessions (at least the 2)" removed
	check "key A's tunnel and ssh -J session end within 5 s" revocation__clients_end_within 5
	refused "key A no longer opens the jump account" "Permission denied" \
		ssh -F "$work/ssh-e2e-rk.conf" -p "$port" -W "$ip:22" "e2e-rk@$bastion"
	check "key B still opens ssh -J into the container" hostname_is e2e-rk-container key_b_jump
	check "keys list shows key B only" bash -c "'$BIN' --project $E2E_PROJECT keys list e2e-rk --json | e2e_jq 'length == 1 and .[0].comment == \"e2e-rk-b@laptop\"'"
	revocation__stop_clients

	check "delete e2e-rk" ctm delete e2e-rk --force
	check "e2e-rk's account and key file are gone" bash -c "! getent passwd e2e-rk && [ ! -e /etc/containarium/keys/e2e-rk ]"
}
