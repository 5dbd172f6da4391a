# shellcheck shell=bash
# netlab.sh: places on the network that the tests themselves own, to prove
# what tenants can and cannot reach without ever sending a packet off this
# machine: a network namespace "ctme2e-far" joined to the host by a veth,
# holding addresses that stand in for the cloud (a link-local one for the
# metadata server, one the config denies, one it allows), and TCP listeners
# that answer "hello" (python3, by PID). Sourced after env.sh.

E2E_FAR_NS=ctme2e-far
E2E_FAR_HOST_IF=ctme2efar0
E2E_FAR_LINK_LOCAL=169.254.77.2 # never 169.254.169.254: on a cloud that is the real one
E2E_FAR_DENIED=10.197.84.2
E2E_FAR_ALLOWED=10.197.85.2
E2E_LISTENER_PIDS=()

# e2e_netlab_up: the namespace, its veth and routes to its three addresses.
e2e_netlab_up() {
	e2e_netlab_down
	ip netns add "$E2E_FAR_NS" &&
		ip link add "$E2E_FAR_HOST_IF" type veth peer name ctme2efar1 &&
		ip link set ctme2efar1 netns "$E2E_FAR_NS" &&
		ip addr add 169.254.77.1/24 dev "$E2E_FAR_HOST_IF" &&
		ip addr add 10.197.84.1/24 dev "$E2E_FAR_HOST_IF" &&
		ip addr add 10.197.85.1/24 dev "$E2E_FAR_HOST_IF" &&
		ip link set "$E2E_FAR_HOST_IF" up &&
		ip -n "$E2E_FAR_NS" link set lo up &&
		ip -n "$E2E_FAR_NS" link set ctme2efar1 up &&
		ip -n "$E2E_FAR_NS" addr add "$E2E_FAR_LINK_LOCAL/24" dev ctme2efar1 &&
		ip -n "$E2E_FAR_NS" addr add "$E2E_FAR_DENIED/24" dev ctme2efar1 &&
		ip -n "$E2E_FAR_NS" addr add "$E2E_FAR_ALLOWED/24" dev ctme2efar1 &&
		ip -n "$E2E_FAR_NS" route add "${E2E_BRIDGE_CIDR%.*}.0/24" via 10.197.85.1
}

e2e_netlab_down() {
	local pid
	for pid in "${E2E_LISTENER_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	E2E_LISTENER_PIDS=()
	ip link del "$E2E_FAR_HOST_IF" 2>/dev/null
	ip netns del "$E2E_FAR_NS" 2>/dev/null
	return 0
}

# e2e_listen ADDRESS PORT [NETNS]: a TCP server that says "hello" to each
# connection, in the background (PID kept for e2e_netlab_down).
e2e_listen() {
	local addr=$1 port=$2 ns=${3:-} i
	local prog='import socket,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
while True:
    c,_=s.accept(); c.sendall(b"hello\n"); c.close()'
	if [ -n "$ns" ]; then
		ip netns exec "$ns" /usr/bin/python3 -c "$prog" "$addr" "$port" </dev/null >/dev/null 2>&1 &
	else
		/usr/bin/python3 -c "$prog" "$addr" "$port" </dev/null >/dev/null 2>&1 &
	fi
	E2E_LISTENER_PIDS+=("$!")
	for ((i = 0; i < 50; i++)); do
		if [ -n "$ns" ]; then
			ip netns exec "$ns" ss -Hltn "sport = :$port" | e2e_grep -q . && return 0
		else
			ss -Hltn "sport = :$port" | e2e_grep -q . && return 0
		fi
		sleep 0.1
	done
	e2e_die "listener on $addr:$port did not start"
}

# says_hello ADDRESS PORT: from the host, the listener answers.
says_hello() { [ "$(timeout 5 bash -c "exec 3<>/dev/tcp/$1/$2 && head -n1 <&3")" = hello ]; }

# tenant_says_hello USER ADDRESS PORT: from inside USER's container (as its
# root), the listener answers.
tenant_says_hello() {
	[ "$(in_container "$1" timeout 5 python3 -c 'import socket,sys
c=socket.create_connection((sys.argv[1], int(sys.argv[2])), 4); print(c.recv(16).decode().strip())' "$2" "$3" 2>&1)" = hello ]
}

# tenant_reaches USER ADDRESS PORT: a TCP connect from inside succeeds
# (whatever answers).
tenant_reaches() {
	in_container "$1" timeout 5 python3 -c 'import socket,sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), 4)' "$2" "$3"
}
