# shellcheck shell=bash
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# cluster: the lab itself (tests/e2e/includes/cluster.sh), so that the cluster
# checks on top of it can trust it: three members ONLINE, a container on a
# remote member reached through its member's address, bastions that are
# machines of their own, and a member whose incusd stops and comes back.
# Run by scripts/e2e-cluster.sh, which brings the lab up with bastion 1 beside
# member 1 and bastion 2 beside member 2.

test_cluster() {
	local c=ctmcl-probe ip=10.197.87.20 port=10020 t0 ms key1 key2 host_key served1 status remotes
	local m2=$CLUSTER_ADDR_2 m3=$CLUSTER_ADDR_3 p1=$CLUSTER_BASTION_PORT_1 p2=$CLUSTER_BASTION_PORT_2

	# --- the cluster -------------------------------------------------------------
	members_online() {
		cluster_incus 1 query "/1.0/cluster/members?recursion=1" |
			e2e_jq 'map(select(.status == "Online") | .server_name) | sort == ["ctmcl1", "ctmcl2", "ctmcl3"]'
	}
	cluster_timed check "ctmcl1, ctmcl2 and ctmcl3 are ONLINE" members_online
	each_member_is_itself() {
		local n
		for n in 1 2 3; do
			[ "$(cluster_incus "$n" query /1.0 | jq -r .environment.server_name)" = "ctmcl$n" ] || return 1
		done
	}
	check "cluster_incus N talks to member N" each_member_is_itself
	no_default_route() {
		local n
		for n in 1 2 3; do
			[ -z "$(cluster_member_exec "$n" ip -4 route show default)" ] || return 1
			cluster_member_exec "$n" ip -4 addr show dev eth0 | e2e_grep -q "inet 10.197.86.1$n/24" || return 1
		done
	}
	check "members have their 10.197.86.1N address and no default route" no_default_route
	# A stray packet for a tenant address must not leave by the host's default
	# route: `ip route get` sends nothing.
	check "from the host, 10.197.87.0/24 is unreachable (the lab's route)" \
		bash -c "ip -4 route show type unreachable | e2e_grep -qx 'unreachable $CLUSTER_TENANT_SUBNET *' && ! ip -4 route get $ip"

	# --- a container on ctmcl2, reached through ctmcl2's address -------------------
	t0=$(e2e_now_ms)
	cluster_timed check "init $c on ctmcl2 with a pinned address" \
		cluster_incus 1 init "$CLUSTER_IMAGE" "$c" --target ctmcl2 -d "eth0,ipv4.address=$ip"
	cluster_timed check "a nat proxy device on ctmcl2's address" \
		cluster_incus 1 config device add "$c" ssh proxy "listen=tcp:$m2:$port" \
		"connect=tcp:$ip:22" nat=true
	cluster_timed check "start $c" cluster_incus 1 start "$c"
	runs_on() { [ "$(cluster_incus 1 list "$1" -f csv -c L)" = "$2" ]; }
	check "$c runs on ctmcl2" runs_on "$c" ctmcl2
	cluster_timed check "$c's sshd answers its banner at $m2:$port, from the host" \
		cluster_wait_banner "$m2" "$port" 90
	ms=$(($(e2e_now_ms) - t0))
	e2e_log "    from init to the banner through ctmcl2's proxy: $ms ms"
	check "ctmcl3 answers at $m3:8443 (control for the next check)" \
		bash -c "timeout 5 bash -c 'exec 3<>/dev/tcp/$m3/8443'"
	check "nothing answers at $m3:$port (the proxy is ctmcl2's only)" \
		not timeout 5 bash -c "exec 3<>/dev/tcp/$m3/$port"

	# --- bastions: machines of their own ---------------------------------------------
	check "bastion 1's sshd answers on 127.0.0.1:$p1" cluster_wait_banner 127.0.0.1 "$p1" 5
	check "bastion 2's sshd answers on 127.0.0.1:$p2" cluster_wait_banner 127.0.0.1 "$p2" 5
	served_key() { ssh-keyscan -t ed25519 -p "$1" 127.0.0.1 2>/dev/null | awk '{ print $3 }'; }
	key1=$(served_key "$p1")
	key2=$(served_key "$p2")
	served1=$(awk '{ print $2 }' "$CLUSTER_LIB_DIR/b1/etc/ssh/ssh_host_ed25519_key.pub" 2>/dev/null)
	host_key=$(awk '{ print $2 }' /etc/ssh/ssh_host_ed25519_key.pub 2>/dev/null || true)
	check "bastion 1 serves the host key of its own /etc (control)" \
		bash -c "[ -n '$key1' ] && [ '$key1' = '$served1' ]"
	check "bastions 1 and 2 have host keys of their own, not the host's" \
		bash -c "[ -n '$key2' ] && [ '$key1' != '$key2' ] && [ '$key1' != '$host_key' ] && [ '$key2' != '$host_key' ]"
	useradd_in_1() {
		cluster_bastion 1 useradd --no-create-home --shell /usr/sbin/nologin ctmcl-user &&
			cluster_bastion 1 getent passwd ctmcl-user
	}
	check "useradd in bastion 1 makes ctmcl-user there (control)" useradd_in_1
	only_in_1() { ! getent passwd ctmcl-user && ! cluster_bastion 2 getent passwd ctmcl-user; }
	check "ctmcl-user exists neither in bastion 2 nor on the host" only_in_1
	# What containarium sees there: no INCUS_* variable (it drops them all).
	bare_incus_is() { [ "$(cluster_bastion "$1" env -u INCUS_DIR -u INCUS_CONF incus query /1.0 | jq -r .environment.server_name)" = "ctmcl$2" ]; }
	check "a plain incus in bastion 1 reaches ctmcl1" bare_incus_is 1 1
	check "a plain incus in bastion 2 reaches ctmcl2" bare_incus_is 2 2
	remotes=$(cluster_bastion 1 env -u INCUS_DIR -u INCUS_CONF incus remote list -f csv | cut -d, -f1 | paste -sd' ')
	check "a bastion's incus knows only the local remote, no images: server ($remotes)" \
		test "$remotes" = "local (current)"
	# How the cluster suites run containarium: as on a bastion that is member
	# 2's machine (its /etc/containarium, its /run/containarium.lock, incus
	# through /run/incus/unix.socket).
	check "containarium list runs in bastion 2" cluster_bastion 2 "$BIN" list
	own_run() {
		local pid
		pid=$(cluster_bastion 1 cat /run/sshd.pid) &&
			[ "$pid" = "$(cat "$CLUSTER_STATE_DIR/b1/run/sshd.pid")" ] &&
			ss -Hltnp "sport = :$p1" | e2e_grep -q "pid=$pid," &&
			cluster_bastion 1 touch /run/containarium.lock &&
			[ -e "$CLUSTER_STATE_DIR/b1/run/containarium.lock" ] && [ ! -e "$CLUSTER_STATE_DIR/b2/run/containarium.lock" ]
	}
	check "bastion 1's /run is its own: /run/sshd.pid names its sshd, /run/containarium.lock is not bastion 2's" own_run

	# --- one member's incusd stops; the others keep the cluster ------------------------
	check "stop ctmcl3's incusd" cluster_member_stop 3
	t0=$(e2e_now_ms)
	cluster_timed check "with ctmcl3 stopped, incus list on ctmcl1 works" \
		timeout 30 env INCUS_DIR="$CLUSTER_DIR_1" INCUS_CONF="$CLUSTER_CONF" incus list -f csv
	cluster_timed check "with ctmcl3 stopped, $c on ctmcl2 still answers" cluster_wait_banner "$m2" "$port" 10
	wait_status() {
		local want=$1 n=$2 end=$(($(e2e_now_ms) + $3 * 1000))
		while [ "$(e2e_now_ms)" -lt "$end" ]; do
			[ "$(cluster_member_status "$n" 1 2>/dev/null)" = "$want" ] && return 0
			sleep 0.5
		done
		return 1
	}
	check "ctmcl1 shows ctmcl3 OFFLINE (threshold ${CLUSTER_OFFLINE_THRESHOLD} s)" wait_status Offline 3 90
	ms=$(($(e2e_now_ms) - t0))
	e2e_log "    ctmcl3 OFFLINE $ms ms after its incusd stopped"
	status=$(cluster_incus 1 cluster list -f json | jq -r 'map("\(.server_name)=\(.status)") | join(" ")')
	check "incus cluster list: ctmcl1 and ctmcl2 ONLINE, ctmcl3 OFFLINE ($status)" \
		bash -c "[[ '$status' == *ctmcl1=Online* && '$status' == *ctmcl2=Online* && '$status' == *ctmcl3=Offline* ]]"
	t0=$(e2e_now_ms)
	cluster_timed check "start ctmcl3's incusd again" cluster_member_start 3
	check "ctmcl3 is ONLINE again" wait_status Online 3 60
	e2e_log "    ctmcl3 ONLINE $(($(e2e_now_ms) - t0)) ms after its incusd started"

	# --- clean up ---------------------------------------------------------------------
	cluster_timed check "delete $c" cluster_incus 1 delete --force "$c"
	check "$c is gone" not cluster_incus 1 info "$c"
	cluster_bastion 1 userdel ctmcl-user >/dev/null 2>&1 || true
	e2e_log "incusd resident memory after the checks: $(cluster_incusd_rss | paste -sd' ')"
}
