# shellcheck shell=bash
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# cluster-users: containarium on the lab's cluster (tests/e2e/includes/cluster.sh),
# through two bastions that are machines of their own (bastion 1 beside member
# 1, bastion 2 beside member 2): users placed on different members, each
# reaching their own container through either bastion and nothing else; a user
# made through one bastion logs in through the other after sync-accounts; a
# delete through one revokes on the other; move keeps SSH working; the
# bastions' host certificates make one exported file work through both; a
# member down leaves the others usable and says which.

# cu__retry SECONDS CMD...: CMD until it succeeds, at most SECONDS.
cu__retry() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 1
	done
}

# cu__ctm B ARGS...: containarium on bastion B.
cu__ctm() {
	local b=$1
	shift
	cluster_bastion "$b" "$BIN" "$@"
}

# cu__endpoint B USER: USER's endpoint (ADDRESS:PORT) as bastion B's info says.
cu__endpoint() { cu__ctm "$1" info "$2" --json | jq -r .endpoint; }

# cu__ssh PORT USER ENDPOINT CMD...: ssh -J through the jump account USER on the
# bastion at 127.0.0.1:PORT into USER@ENDPOINT.
cu__ssh() {
	local port=$1 user=$2 to=$3
	shift 3
	ssh -F "$CLUSTER_WORK/ssh-$user.conf" -J "$user@127.0.0.1:$port" \
		-p "${to##*:}" "$user@${to%:*}" "$@" </dev/null
}

# cu__reaches PORT USER: USER's own container answers with its hostname
# through the bastion at PORT.
cu__reaches() {
	local to
	to=$(cu__endpoint 1 "$2") || return 1
	[ "$(cu__ssh "$1" "$2" "$to" hostname)" = "$2-container" ]
}

# cu__lb_start PORT TARGET_PORT: a TCP forwarder on 127.0.0.1:PORT to
# 127.0.0.1:TARGET_PORT, the lab's load balancer. Sets CU_LB_PID.
cu__lb_start() {
	python3 - "$1" "$2" <<'EOF' &
import socket, sys, threading
listen, target = int(sys.argv[1]), int(sys.argv[2])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", listen))
server.listen(16)
def pipe(a, b):
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
while True:
    client, _ = server.accept()
    upstream = socket.create_connection(("127.0.0.1", target))
    for a, b in ((client, upstream), (upstream, client)):
        threading.Thread(target=pipe, args=(a, b), daemon=True).start()
EOF
	CU_LB_PID=$!
	local i
	for ((i = 0; i < 50; i++)); do
		ss -Hltn "sport = :$1" | e2e_grep -q . && return 0
		sleep 0.1
	done
	return 1
}

cu__lb_stop() {
	if [ -n "${CU_LB_PID:-}" ]; then
		kill "$CU_LB_PID" 2>/dev/null || true
		wait "$CU_LB_PID" 2>/dev/null || true # 143: it was killed
	fi
	CU_LB_PID=
}

cu__cleanup() {
	local b u
	cu__lb_stop
	cluster_member_start 3 >/dev/null 2>&1 || true
	for u in e2e-cla e2e-clb e2e-clc e2e-clr1 e2e-clr2; do
		for b in 1 2; do cu__ctm "$b" delete "$u" --force >/dev/null 2>&1 || true; done
	done
}

test_cluster_users() {
	local w=$CLUSTER_WORK p1=$CLUSTER_BASTION_PORT_1 p2=$CLUSTER_BASTION_PORT_2 b u to_a to_b to_c lb
	e2e_on_cleanup cu__cleanup
	mkdir -p "$w/keys"
	for u in e2e-cla e2e-clb e2e-clc e2e-clr1 e2e-clr2; do
		rm -f "$w/keys/$u" "$w/keys/$u.pub"
		e2e_client "$u" "$w"
	done
	for b in 1 2; do
		cluster_bastion "$b" mkdir -p /etc/containarium
		cluster_bastion "$b" tee /etc/containarium/config.toml >/dev/null <<EOF
image = "$CLUSTER_IMAGE"
disk = "2GiB"
cpu = 1
memory = "512MiB"
EOF
		check "host init on bastion $b" cu__ctm "$b" host init
	done

	# --- placement and the way in -------------------------------------------------
	cluster_timed check "create e2e-cla through bastion 1, on ctmcl2" \
		cu__ctm 1 create e2e-cla --ssh-key "$w/keys/e2e-cla.pub" --no-docker --target ctmcl2
	located() { [ "$(cu__ctm "$1" list --json | jq -r --arg u "$2" '.[] | select(.user == $u) | .location')" = "$3" ]; }
	check "  list on bastion 2 shows it on ctmcl2 (the cluster's state is shared)" located 2 e2e-cla ctmcl2
	to_a=$(cu__endpoint 1 e2e-cla)
	check "  its endpoint is ctmcl2's address: $to_a" test "${to_a%:*}" = "$CLUSTER_ADDR_2"
	check "  bastion 1's key file permits exactly that endpoint" \
		cluster_bastion 1 grep -q "permitopen=\"$to_a\"" /etc/containarium/keys/e2e-cla
	check "  e2e-cla reaches its container through bastion 1" cu__reaches "$p1" e2e-cla
	check "  not yet through bastion 2: no account there before sync-accounts" \
		not cu__reaches "$p2" e2e-cla
	check "sync-accounts on bastion 2" cu__ctm 2 sync-accounts
	check "  now e2e-cla reaches its container through bastion 2" cu__reaches "$p2" e2e-cla

	cluster_timed check "create e2e-clb through bastion 2, on ctmcl3" \
		cu__ctm 2 create e2e-clb --ssh-key "$w/keys/e2e-clb.pub" --no-docker --target ctmcl3
	check "sync-accounts on bastion 1" cu__ctm 1 sync-accounts
	to_b=$(cu__endpoint 1 e2e-clb)
	check "  e2e-clb reaches its container through bastion 1 (made through bastion 2)" \
		cu__reaches "$p1" e2e-clb
	check "  e2e-cla cannot open a tunnel to e2e-clb's endpoint (permitopen)" \
		not cu__ssh "$p1" e2e-cla "$to_b" hostname
	check "  nor to a member's Incus port" not cu__ssh "$p1" e2e-cla "$CLUSTER_ADDR_2:8443" hostname
	check "  nor with e2e-clb's name but e2e-cla's key" \
		not ssh -F "$w/ssh-e2e-cla.conf" -J "e2e-clb@127.0.0.1:$p1" -p "${to_b##*:}" "e2e-clb@${to_b%:*}" hostname

	# --- tenants cannot reach the members -------------------------------------------
	from_tenant() {
		cu__ctm 1 info e2e-cla >/dev/null &&
			cluster_incus 1 exec e2e-cla-container -- timeout 5 bash -c "exec 3<>/dev/tcp/$1/$2 && head -n1 <&3" 2>/dev/null
	}
	check "from the bastion, e2e-clb's endpoint answers (control)" cluster_wait_banner "${to_b%:*}" "${to_b##*:}" 5
	check "e2e-cla's container cannot reach e2e-clb's endpoint on ctmcl3" \
		not from_tenant "${to_b%:*}" "${to_b##*:}"
	check "  nor its own member's published port for itself" not from_tenant "${to_a%:*}" "${to_a##*:}"
	check "  nor a member's Incus API" not from_tenant "$CLUSTER_ADDR_1" 8443
	acl_rejects_members() {
		cluster_incus 1 network acl show containarium-tenants |
			e2e_grep -q "destination: $CLUSTER_ADDR_1,$CLUSTER_ADDR_2,$CLUSTER_ADDR_3\$"
	}
	check "  the tenant ACL rejects every member's address (the same from either bastion)" acl_rejects_members
	acl_unchanged() { cu__ctm 2 host init 2>&1 | e2e_grep -q '^network ACL containarium-tenants: unchanged$'; }
	check "  host init on bastion 2 leaves that ACL unchanged" acl_unchanged

	# --- one SSH identity for the bastions -----------------------------------------
	rm -f "$w/host-ca" "$w/host-ca.pub"
	ssh-keygen -q -t ed25519 -N '' -C containarium-host-ca -f "$w/host-ca"
	for b in 1 2; do
		check "host sign on bastion $b" cu__ctm "$b" host sign --ca-key "$w/host-ca" --principals 127.0.0.1
	done
	lb=$(cluster_free_port 22120)
	cu__ctm 1 export e2e-cla --jump-ip 127.0.0.1 --jump-port "$lb" --key "$w/keys/e2e-cla" \
		--host-ca "$w/host-ca.pub" >"$w/e2e-cla.export"
	cu__ctm 1 export e2e-cla --jump-ip 127.0.0.1 --jump-port "$lb" --key "$w/keys/e2e-cla" \
		>"$w/e2e-cla.pinned"
	# While a new CA replaces this one, exports list both: the new one first.
	rm -f "$w/host-ca-new" "$w/host-ca-new.pub"
	ssh-keygen -q -t ed25519 -N '' -C containarium-host-ca-new -f "$w/host-ca-new"
	cat "$w/host-ca-new.pub" "$w/host-ca.pub" >"$w/host-cas.pub"
	cu__ctm 1 export e2e-cla --jump-ip 127.0.0.1 --jump-port "$lb" --key "$w/keys/e2e-cla" \
		--host-ca "$w/host-cas.pub" >"$w/e2e-cla.rotating"
	cu__ctm 1 export e2e-cla --jump-ip 127.0.0.1 --jump-port "$lb" --key "$w/keys/e2e-cla" \
		--host-ca "$w/host-ca-new.pub" >"$w/e2e-cla.other-ca"
	through_lb() { [ "$(ssh -F "$1" -o BatchMode=yes e2e-cla-dev hostname </dev/null)" = e2e-cla-container ]; }
	check "a load balancer in front of bastion 1" cu__lb_start "$lb" "$p1"
	check "  the exported file (host CA) works through it" through_lb "$w/e2e-cla.export"
	check "  the file pinned to bastion 1's key works too (control)" through_lb "$w/e2e-cla.pinned"
	cu__lb_stop
	check "the load balancer now sends to bastion 2" cu__lb_start "$lb" "$p2"
	check "  the same exported file works, unchanged" through_lb "$w/e2e-cla.export"
	check "  so does one listing two CAs (a rotation's overlap)" through_lb "$w/e2e-cla.rotating"
	check "  one trusting only another CA does not" not through_lb "$w/e2e-cla.other-ca"
	check "  the file pinned to bastion 1's own key does not" not through_lb "$w/e2e-cla.pinned"
	cu__lb_stop

	# --- move -------------------------------------------------------------------------
	check "snapshot e2e-cla on ctmcl2, before the move" cu__ctm 1 snapshot create e2e-cla before-move
	cluster_timed check "move e2e-cla to ctmcl1 through bastion 1" cu__ctm 1 move e2e-cla --target ctmcl1
	check "  list shows it on ctmcl1" located 1 e2e-cla ctmcl1
	check "  its endpoint is ctmcl1's address, same port" \
		test "$(cu__endpoint 1 e2e-cla)" = "$CLUSTER_ADDR_1:${to_a##*:}"
	check "  e2e-cla reaches it through bastion 1" cu__reaches "$p1" e2e-cla
	synced_reaches() { cu__ctm "$1" sync-accounts >/dev/null && cu__reaches "$2" "$3"; }
	check "  and through bastion 2 after its sync-accounts" synced_reaches 2 "$p2" e2e-cla
	check "  nothing answers at the old endpoint any more" not cluster_wait_banner "${to_a%:*}" "${to_a##*:}" 2
	move_again() { cu__ctm 1 move e2e-cla --target ctmcl1 | e2e_grep -q 'already; nothing changed'; }
	check "move to the member it is on changes nothing" move_again
	refused "move to a member that does not exist is refused in one line" "no cluster member" \
		cu__ctm 1 move e2e-cla --target ctmcl9
	# The snapshot holds the sshd published on ctmcl2, where it was taken.
	cluster_timed check "restore the snapshot from before the move" cu__ctm 1 snapshot restore e2e-cla before-move
	check "  e2e-cla is still on ctmcl1, its endpoint ctmcl1's" \
		test "$(cu__ctm 1 list --json | jq -r '.[] | select(.user == "e2e-cla") | .location')/$(cu__endpoint 1 e2e-cla)" = \
		"ctmcl1/$CLUSTER_ADDR_1:${to_a##*:}"
	check "  e2e-cla reaches it through bastion 1" cu__reaches "$p1" e2e-cla

	# --- two bastions choose at the same moment -------------------------------------
	# Each bastion chooses an address under its own lock, so these two both choose
	# the lowest free one; whoever finds the other on it moves (create's claim step).
	local pa pb rc_a=0 rc_b=0 ip_r1 ip_r2
	cu__ctm 1 create e2e-clr1 --ssh-key "$w/keys/e2e-clr1.pub" --no-docker --target ctmcl1 >"$w/clr1.out" 2>&1 &
	pa=$!
	cu__ctm 2 create e2e-clr2 --ssh-key "$w/keys/e2e-clr2.pub" --no-docker --target ctmcl3 >"$w/clr2.out" 2>&1 &
	pb=$!
	wait "$pa" || rc_a=$?
	wait "$pb" || rc_b=$?
	check "create e2e-clr1 through bastion 1 and e2e-clr2 through bastion 2 at once: both succeed" \
		test "$rc_a/$rc_b" = 0/0
	e2e_log "gave way: $(grep -h 'at the same moment' "$w/clr1.out" "$w/clr2.out" | paste -sd';' || echo none)"
	ip_r1=$(cu__ctm 1 info e2e-clr1 --json | jq -r .ipv4)
	ip_r2=$(cu__ctm 1 info e2e-clr2 --json | jq -r .ipv4)
	check "  they have different addresses ($ip_r1, $ip_r2)" test "$ip_r1" != "$ip_r2"
	unique_addresses() {
		[ -z "$(cu__ctm 1 list --json | jq -r '.[].ipv4' | sort | uniq -d)" ]
	}
	check "  no two containers share an address" unique_addresses
	check "  e2e-clr1 reaches its container through bastion 1" cu__reaches "$p1" e2e-clr1
	check "  e2e-clr2 reaches its container through bastion 2" cu__reaches "$p2" e2e-clr2
	for u in e2e-clr1 e2e-clr2; do
		for b in 1 2; do cu__ctm "$b" delete "$u" --force >/dev/null 2>&1 || true; done
	done

	# --- a member down ------------------------------------------------------------------
	check "stop ctmcl3's incusd (e2e-clb's member)" cluster_member_stop 3
	offline() { [ "$(cluster_member_status 3 1)" = Offline ]; }
	check "  ctmcl1 sees ctmcl3 offline" cu__retry 60 offline
	says_down() { cu__ctm 1 list 2>&1 >/dev/null | e2e_grep -q 'cluster member ctmcl3 is offline'; }
	check "  list on bastion 1 says which member is down" says_down
	check "  and still lists e2e-cla on ctmcl1" located 1 e2e-cla ctmcl1
	cluster_timed check "  create e2e-clc on ctmcl2 works meanwhile" \
		cu__ctm 1 create e2e-clc --ssh-key "$w/keys/e2e-clc.pub" --no-docker --target ctmcl2
	check "  e2e-clc reaches it through bastion 1" cu__reaches "$p1" e2e-clc
	check "start ctmcl3's incusd again" cluster_member_start 3
	check "  e2e-clb reaches its container again" cu__retry 60 cu__reaches "$p1" e2e-clb

	# --- revocation across bastions -------------------------------------------------
	# A key removed through bastion 2 ends the sessions it opened through bastion 1
	# at bastion 1's next sync-accounts; a delete through bastion 2 removes the
	# account there at once and from bastion 1 at its next run.
	rm -f "$w/keys/e2e-clc2" "$w/keys/e2e-clc2.pub"
	e2e_client e2e-clc2 "$w"
	check "keys add a second key of e2e-clc through bastion 2" cu__ctm 2 keys add e2e-clc "$w/keys/e2e-clc2.pub"
	check "sync-accounts on bastion 1 (e2e-clc's two keys)" cu__ctm 1 sync-accounts
	to_c=$(cu__endpoint 1 e2e-clc)
	second_key() {
		[ "$(ssh -F "$w/ssh-e2e-clc2.conf" -J "e2e-clc@127.0.0.1:$p1" -p "${to_c##*:}" \
			"e2e-clc@${to_c%:*}" hostname </dev/null)" = e2e-clc-container ]
	}
	coproc CU_SESSION { cu__ssh "$p1" e2e-clc "$to_c" 'echo open; sleep 600'; }
	local line="" session=$CU_SESSION_PID
	read -r -t 30 line <&"${CU_SESSION[0]}" || true
	check "a live session of e2e-clc through bastion 1, with its first key" test "$line" = open
	check "keys remove that key through bastion 2" cu__ctm 2 keys remove e2e-clc e2e-clc@laptop
	alive() { kill -0 "$session" 2>/dev/null; }
	check "  the session through bastion 1 lives until bastion 1's sync-accounts (the window)" alive
	check "sync-accounts on bastion 1" cu__ctm 1 sync-accounts
	check "  it ended that session" cu__retry 10 not alive
	check "  the removed key no longer gets through bastion 1" not cu__reaches "$p1" e2e-clc
	check "  the other key still does (control)" second_key
	kill "$session" 2>/dev/null || true
	wait "$session" 2>/dev/null || true

	check "delete e2e-clc through bastion 2" cu__ctm 2 delete e2e-clc --force
	check "  revoked on bastion 2 at once" not cluster_bastion 2 getent passwd e2e-clc
	check "  bastion 1 still has the account until its sync-accounts (the window)" \
		cluster_bastion 1 getent passwd e2e-clc
	check "sync-accounts on bastion 1" cu__ctm 1 sync-accounts
	gone_from() { ! cluster_bastion "$1" getent passwd "$2" && ! cluster_bastion "$1" test -e "/etc/containarium/keys/$2"; }
	check "  the account and key file are gone from bastion 1" gone_from 1 e2e-clc
	kept() { cluster_bastion 1 getent passwd e2e-cla >/dev/null && cluster_bastion 1 getent passwd e2e-clb >/dev/null; }
	check "  e2e-cla and e2e-clb keep their accounts on bastion 1" kept

	for u in e2e-cla e2e-clb; do
		check "delete $u through bastion 1" cu__ctm 1 delete "$u" --force
	done
	both_gone() { cu__ctm 2 sync-accounts >/dev/null && gone_from 2 e2e-cla && gone_from 2 e2e-clb; }
	check "sync-accounts on bastion 2 removes both there" both_gone
	cu__cleanup
}
