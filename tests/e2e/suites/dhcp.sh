# shellcheck shell=bash
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# dhcp: no tenant can lease an address we pin. The pinned address reaches a
# container through dnsmasq's static host entry, and dnsmasq will not hand
# an address that is leased to another MAC: a tenant asking, under a
# made-up client MAC, for the next free address (an ordinary UDP socket
# from its own address, which its NIC filter lets through) would wedge the
# next `create` for the lease's hour. host init leaves DHCP only the top of
# the subnet (ipv4.dhcp.ranges) and containers are pinned below it, so that
# request is refused; the control, the same request for an address in the
# range, is answered, so only the range can be what refuses it.

# dhcp__ask USER WANT: from inside USER's container, as its root, a DHCP
# DISCOVER and then a REQUEST for WANT under a made-up client MAC; prints
# "offer ADDR" and then "ack ADDR", "nak" or "no answer".
dhcp__ask() {
	e2e_incus exec "$1-container" -- python3 - "$2" <<'PY'
import os, random, socket, struct, sys

want = socket.inet_aton(sys.argv[1])
mac = b"\x02\x5a" + os.urandom(4)
xid = random.getrandbits(32)

def packet(kind, opts):
    # op, htype, hlen, hops, xid, secs, flags (broadcast), ciaddr..giaddr
    head = struct.pack("!BBBBIHH", 1, 1, 6, 0, xid, 0, 0x8000) + b"\0" * 16
    body = mac + b"\0" * 10 + b"\0" * 192 + b"\x63\x82\x53\x63"
    o = bytes([53, 1, kind, 61, 7, 1]) + mac
    for code, value in opts:
        o += bytes([code, len(value)]) + value
    return head + body + o + b"\xff"

def options(data):
    out, i = {}, 240
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        out[data[i]] = data[i + 2 : i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    return out

# Replies go to port 68 by broadcast: read them off the interface, so that
# nothing in the container that holds port 68 is in the way.
raw = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
raw.bind(("eth0", 0))
raw.settimeout(5)
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
out.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)

def ask(kind, opts):
    out.sendto(packet(kind, opts), ("255.255.255.255", 67))
    while True:
        ip = raw.recv(4096)
        udp = ip[(ip[0] & 15) * 4 :]
        dhcp = udp[8:]
        if ip[9] != 17 or struct.unpack("!H", udp[2:4])[0] != 68 or len(dhcp) < 240:
            continue
        if dhcp[4:8] != struct.pack("!I", xid):
            continue
        o = options(dhcp)
        return o.get(53, b"\0")[0], socket.inet_ntoa(dhcp[16:20]), o

try:
    kind, offered, o = ask(1, [(50, want)])
except socket.timeout:
    print("no offer")
    sys.exit(0)
print("offer", offered)
try:
    kind, got, _ = ask(3, [(50, want), (54, o.get(54, b"\0\0\0\0"))])
except socket.timeout:
    print("no answer")
    sys.exit(0)
print({5: "ack " + got, 6: "nak"}.get(kind, "type %d" % kind))
PY
}

test_dhcp() {
	local work=$E2E_WORK s=e2e-ds v=e2e-dv range dynamic next answer
	e2e_client "$s" "$work"
	e2e_client "$v" "$work"
	range=$(incus network get "$E2E_BRIDGE" ipv4.dhcp.ranges)
	dynamic=${range%%-*}
	check "host init gave $E2E_BRIDGE a DHCP range at the top of its subnet ($range)" \
		bash -c "[ -n '$dynamic' ] && [ '${dynamic##*.}' -ge 240 ]"
	check "create the squatter $s" ctm create "$s" --ssh-key "$work/keys/$s.pub" --no-docker
	next=$(ctm create "$v" --ssh-key "$work/keys/$v.pub" --dry-run | sed -n "s/^[0-9]*\. create container $v-container at //p")
	check "the next create would pin $next, below the range" bash -c "[ -n '$next' ]"

	answer=$(dhcp__ask "$s" "$dynamic")
	check "control: a made-up MAC asking for $dynamic, in the range, is acknowledged (${answer//$'\n'/; })" \
		bash -c "e2e_grep -qx 'ack $dynamic' <<<'$answer'"
	answer=$(dhcp__ask "$s" "$next")
	check "the squat: a made-up MAC asking for $next is answered, and not given it (${answer//$'\n'/; })" \
		bash -c "e2e_grep -q '^offer ' <<<'$answer' && ! e2e_grep -qx 'ack $next' <<<'$answer'"
	check "create $v after the squat" ctm create "$v" --ssh-key "$work/keys/$v.pub" --no-docker
	check "  it has $next" test "$(ip_of "$v")" = "$next"
	check "  and is reachable with ssh -J" jump "$v" "$next" true

	# A neighbour stopped (past its lease, it would have none): its address
	# is no more leasable than a free one.
	check "stop $v" ctm stop "$v"
	answer=$(dhcp__ask "$s" "$next")
	check "the squat on stopped $v's address is not given it (${answer//$'\n'/; })" \
		bash -c "e2e_grep -q '^offer ' <<<'$answer' && ! e2e_grep -qx 'ack $next' <<<'$answer'"
	check "start $v" ctm start "$v"
	check "  $v is reachable with ssh -J again" jump "$v" "$next" true

	check "delete $v" ctm delete "$v" --force
	check "delete $s" ctm delete "$s" --force
}
