# shellcheck shell=bash
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# network: the tenant boundary on the wire. A tenant is root in their
# container; they must not reach a neighbour, the bastion, link-local
# addresses (the cloud's metadata server) or what deny-egress lists, nor
# answer for a neighbour's address. Every refusal has a control beside it
# that shows the path itself works, so only the rule can be what stops it.

test_network() {
	local work=$E2E_WORK a=e2e-na b=e2e-nb a_ip b_ip gw=$E2E_BRIDGE_IP
	e2e_client "$a" "$work"
	e2e_client "$b" "$work"

	# Fail closed: a network without our ACL is refused before anything is made.
	e2e_on_cleanup e2e_netlab_down
	check "a bridge without our ACL (made here)" incus network create "$E2E_BRIDGE2" \
		ipv4.address=10.197.86.1/24 ipv4.nat=false ipv6.address=none
	printf 'image = "%s"\nnetwork = "%s"\n' "$E2E_IMAGE" "$E2E_BRIDGE2" >"$work/unguarded.toml"
	one_line_error "create on an unguarded network is refused" "does not carry the containarium-tenants network ACL" \
		env CONTAINARIUM_CONFIG="$work/unguarded.toml" "$BIN" --project "$E2E_PROJECT" create e2e-nz --ssh-key "$work/keys/$a.pub"
	check "nothing was made for it" bash -c "! getent passwd e2e-nz && ! incus --project $E2E_PROJECT info e2e-nz-container >/dev/null 2>&1"
	incus network delete "$E2E_BRIDGE2" >/dev/null

	# IPv6: our ACL is IPv4 only, so a dual-stack tenant network is refused
	# by every verb that puts tenants on it or guards it, naming the fix.
	e2e_on_cleanup network__v6_down
	check "a dual-stack bridge (made here: explicit subnets, no NAT)" incus network create "$NETWORK_V6_BRIDGE" \
		ipv4.address=10.197.90.1/24 ipv4.nat=false ipv6.address="$NETWORK_V6_GATEWAY/64" ipv6.nat=false
	check "control: the host has the bridge's IPv6 address (really dual-stack)" bash -c \
		"ip -6 -o addr show dev $NETWORK_V6_BRIDGE | e2e_grep -q ' $NETWORK_V6_GATEWAY/64 '"
	sed '/^network *=/d' "$CONTAINARIUM_CONFIG" >"$work/dual-stack.toml"
	printf 'network = "%s"\n' "$NETWORK_V6_BRIDGE" >>"$work/dual-stack.toml"
	v6() { env CONTAINARIUM_CONFIG="$work/dual-stack.toml" "$BIN" --project "$E2E_PROJECT" "$@"; }
	local v6_fix="incus network set $NETWORK_V6_BRIDGE ipv6.address=none"
	one_line_error "create on a dual-stack network is refused, naming the fix" "gives tenants IPv6.*run \`$v6_fix\`" \
		v6 create e2e-n6 --ssh-key "$work/keys/$a.pub"
	check "nothing was made for it (container, account, key file)" bash -c "! getent passwd e2e-n6 && \
		! incus --project $E2E_PROJECT info e2e-n6-container >/dev/null 2>&1 && [ ! -e /etc/containarium/keys/e2e-n6 ]"
	local acl_before
	acl_before=$(incus network acl show "$E2E_ACL")
	one_line_error "host init on a dual-stack network is refused, naming the fix" "gives tenants IPv6.*run \`$v6_fix\`" \
		v6 host init
	check "host init changed neither our ACL nor the dual-stack bridge" bash -c \
		"[ \"\$(incus network acl show $E2E_ACL)\" = \"\$1\" ] && [ -z \"\$(incus network get $NETWORK_V6_BRIDGE security.acls)\" ]" _ "$acl_before"
	check "control: host init on the IPv4-only network plans as before" ctm host init --dry-run
	doctor_v6() { # doctor_v6 ok|fail [CTM...]: tenant-ipv6's status, and the fix on a failure
		local want=$1 json
		shift
		json=$("$@" host doctor --json 2>/dev/null)
		# shellcheck disable=SC2016 # a jq program
		e2e_jq --arg want "$want" --arg fix "$v6_fix" '.checks[] | select(.name == "tenant-ipv6")
			| .status == $want and (if $want == "fail" then .fix == $fix else true end)' <<<"$json"
	}
	check "host doctor fails tenant-ipv6 on the dual-stack network, naming the fix" doctor_v6 fail v6
	check "control: host doctor passes tenant-ipv6 on the IPv4-only network" doctor_v6 ok ctm
	# The named fix is complete: Incus then disables IPv6 on the bridge
	# itself, link-local included (so the host has no address there at all).
	check "the fix as printed" incus network set "$NETWORK_V6_BRIDGE" ipv6.address=none
	check "after it, host doctor passes tenant-ipv6 there" doctor_v6 ok v6
	check "and the bridge has no IPv6 on the host side, not even link-local" bash -c \
		"[ \"\$(cat /proc/sys/net/ipv6/conf/$NETWORK_V6_BRIDGE/disable_ipv6)\" = 1 ] && [ -z \"\$(ip -6 -o addr show dev $NETWORK_V6_BRIDGE)\" ]"
	check "so is the suite's IPv4-only bridge" bash -c \
		"[ \"\$(cat /proc/sys/net/ipv6/conf/$E2E_BRIDGE/disable_ipv6)\" = 1 ] && [ -z \"\$(ip -6 -o addr show dev $E2E_BRIDGE)\" ]"
	network__v6_down

	# Pinned and filtered before the first start: one `incus init` carries it all.
	filtered_before_start() {
		local out before k
		out=$(ctm create "$a" --ssh-key "$work/keys/$a.pub" --dry-run) || return 1
		before=${out%%". start $a-container"*} # everything planned before the first start
		[ "$before" != "$out" ] || return 1
		for k in ipv4.address=10.197.83. security.port_isolation=true security.mac_filtering=true \
			security.ipv4_filtering=true; do
			[[ $before == *"--device eth0,$k"* ]] || { echo "no eth0,$k before start"; return 1; }
		done
	}
	check "the plan pins and filters eth0 in incus init, before start" filtered_before_start
	check "create $a" ctm create "$a" --ssh-key "$work/keys/$a.pub" --no-docker
	check "create $b" ctm create "$b" --ssh-key "$work/keys/$b.pub" --no-docker
	a_ip=$(ip_of "$a")
	b_ip=$(ip_of "$b")
	check "the NIC carries the filters" bash -c "for k in security.port_isolation security.mac_filtering security.ipv4_filtering; do [ \"\$(incus --project $E2E_PROJECT config device get $a-container eth0 \$k)\" = true ] || exit 1; done"
	check "Incus applied the ACL to the bridge (read from nftables)" bash -c \
		"nft list ruleset | e2e_grep -q 'ip daddr 169.254.0.0/16 reject' && nft list ruleset | e2e_grep -q 'ip daddr 10.197.83.0/24 reject'"

	# Neighbours: a service and sshd in B.
	in_container "$b" sh -c 'setsid python3 -c "
import socket
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\"0.0.0.0\", 8080)); s.listen(4)
while True:
    c,_=s.accept(); c.sendall(b\"hello\n\"); c.close()
" </dev/null >/dev/null 2>&1 &'
	sleep 1
	check "control: the bastion reaches B's service" says_hello "$b_ip" 8080
	check "control: B reaches its own service" tenant_says_hello "$b" 127.0.0.1 8080
	check "A cannot connect to a service in B" not tenant_reaches "$a" "$b_ip" 8080
	check "A cannot connect to B's sshd" not tenant_reaches "$a" "$b_ip" 22
	routed_to_b() {
		in_container "$a" ip route replace "$b_ip/32" via "$gw" dev eth0 || return 1
		local rc=0
		tenant_reaches "$a" "$b_ip" 22 || rc=1
		in_container "$a" ip route del "$b_ip/32"
		return "$rc"
	}
	check "A cannot reach B by routing through the gateway" not routed_to_b

	# The bastion itself: something bound on the gateway address.
	e2e_listen "$gw" 18080
	check "control: the bastion reaches its gateway service" says_hello "$gw" 18080
	check "A cannot connect to a service on the bridge gateway" not tenant_reaches "$a" "$gw" 18080
	check "A cannot reach the bastion's sshd" not tenant_reaches "$a" "$gw" 22

	# Beyond the bastion: addresses this test owns in its own namespace.
	check "a namespace standing in for the cloud" e2e_netlab_up
	e2e_listen "$E2E_FAR_LINK_LOCAL" 8080 "$E2E_FAR_NS"
	e2e_listen "$E2E_FAR_DENIED" 8081 "$E2E_FAR_NS"
	e2e_listen "$E2E_FAR_ALLOWED" 8082 "$E2E_FAR_NS"
	check "control: A reaches an address outside that nothing denies" tenant_says_hello "$a" "$E2E_FAR_ALLOWED" 8082
	check "control: the bastion reaches the link-local stand-in" says_hello "$E2E_FAR_LINK_LOCAL" 8080
	check "A cannot reach a link-local address (like the metadata server)" not tenant_reaches "$a" "$E2E_FAR_LINK_LOCAL" 8080
	check "control: the bastion reaches the denied address" says_hello "$E2E_FAR_DENIED" 8081
	check "A cannot reach what deny-egress lists" not tenant_reaches "$a" "$E2E_FAR_DENIED" 8081
	e2e_netlab_down

	# DHCP and the jump still work after a restart.
	check "restart A" ctm restart "$a"
	has_address() { in_container "$1" ip -4 -o addr show dev eth0 | e2e_grep -q " $2/"; }
	check "A has its address again after the restart (DHCP works)" has_address "$a" "$a_ip"
	check "A is reachable through its jump" jump "$a" "$a_ip" true

	# Spoofing: with B stopped, A claims B's address.
	check "stop B" ctm stop "$b"
	check "A adds B's address to its eth0" in_container "$a" ip addr add "$b_ip/24" dev eth0
	in_container "$a" ping -c 1 -W 1 "$gw" >/dev/null 2>&1 || true # announce it
	check "control: A's sshd answers on A's own address" e2e_banner "$a_ip"
	check "the bastion does not reach A at B's address" not e2e_banner "$b_ip"
	in_container "$a" ip addr del "$b_ip/24" dev eth0 || true
	check "start B" ctm start "$b"
	check "B is reachable through its jump again" jump "$b" "$b_ip" true

	# A tenant made before the filters existed: sync-accounts brings it in line.
	incus --project "$E2E_PROJECT" config device unset "$a-container" eth0 security.ipv4_filtering
	incus --project "$E2E_PROJECT" config device unset "$a-container" eth0 security.port_isolation
	check "sync-accounts filters an older tenant's NIC, as a change" bash -c \
		"'$BIN' --project $E2E_PROJECT sync-accounts 2>&1 | e2e_grep -q \"filter $a-container's eth0... done\""
	check "its NIC carries the filters again" bash -c "for k in security.port_isolation security.ipv4_filtering; do [ \"\$(incus --project $E2E_PROJECT config device get $a-container eth0 \$k)\" = true ] || exit 1; done"

	check "delete $a" ctm delete "$a" --force
	check "delete $b" ctm delete "$b" --force
}

# A dual-stack bridge of the suite's own, with a ULA prefix (never one
# Incus picks); deleted by name, also when the suite fails.
NETWORK_V6_BRIDGE=ctme2ebr6
NETWORK_V6_GATEWAY=fd42:197:90::1
network__v6_down() {
	if incus network show "$NETWORK_V6_BRIDGE" >/dev/null 2>&1; then
		incus network delete "$NETWORK_V6_BRIDGE" >/dev/null
	fi
	return 0
}

# e2e_banner IP: an SSH banner on IP:22 within 3 s.
e2e_banner() { timeout 3 bash -c "exec 3<>/dev/tcp/$1/22 && head -c 4 <&3" 2>/dev/null | e2e_grep -q SSH-; }
