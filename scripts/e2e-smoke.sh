#!/usr/bin/env bash
# e2e-smoke.sh: prove the e2e environment on this host by hand, without
# containarium: image, bridge, cloud-init, a jump-only host account behind the
# containarium sshd drop-in, Docker inside, and a few Incus behaviours the
# product relies on. Prints a report; exit status 0 only if every check passed.
#
#   scripts/e2e-smoke.sh [--fixtures DIR] [--baseline-runs N] [--keep-going]
#
#   --fixtures DIR      also write incus-list.json, incus-network.json and
#                       incus-instance-state.json into DIR (e.g. tests/fixtures)
#   --baseline-runs N   number of bare-baseline runs (default 3, 0 to skip)
#
# Run as root. Cleans up everything it created on exit (see tests/e2e/includes/env.sh).
# shellcheck disable=SC2016 # remote commands are single-quoted on purpose
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
for include in env p1; do
	# shellcheck source=/dev/null
	. "$here/../tests/e2e/includes/$include.sh"
done

fixtures=
baseline_runs=3
while [ $# -gt 0 ]; do
	case $1 in
	--fixtures) fixtures=${2:?}; shift 2 ;;
	--baseline-runs) baseline_runs=${2:?}; shift 2 ;;
	-h | --help) sed -n '2,/^# shellcheck/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
	*) echo "unknown argument: $1" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
[ -z "$fixtures" ] || fixtures=$(mkdir -p "$fixtures" && cd "$fixtures" && pwd)

T_ALL=$(e2e_now_ms)
FAILS=0
REPORT=()
pass() { REPORT+=("PASS  $*"); e2e_log "PASS $*"; }
fail() { REPORT+=("FAIL  $*"); e2e_log "FAIL $*"; FAILS=$((FAILS + 1)); }
note() { REPORT+=("NOTE  $*"); e2e_log "NOTE $*"; }
# check DESCRIPTION CMD...: run CMD, PASS if it succeeds.
check() {
	local d=$1
	shift
	if "$@"; then pass "$d"; else fail "$d"; fi
}
not() { ! "$@"; }
# capture CMD...: "exit=N stderr=<text>" (stdout dropped; CR dropped, newlines
# shown as " | ").
capture() {
	local err rc=0
	err=$("$@" 2>&1 >/dev/null) || rc=$?
	err=${err//$'\r'/}
	printf 'exit=%s stderr=%s' "$rc" "${err//$'\n'/ | }"
}
# capture_all CMD...: like capture, with stdout and stderr together.
capture_all() {
	local out rc=0
	out=$("$@" 2>&1) || rc=$?
	out=${out//$'\r'/}
	printf 'exit=%s output=%s' "$rc" "${out//$'\n'/ | }"
}

LOCK_SLEEP_PID=
finish() {
	local rc=$?
	if [ -n "$LOCK_SLEEP_PID" ]; then
		[ "$(cat /etc/passwd.lock 2>/dev/null)" != "$LOCK_SLEEP_PID" ] || rm -f /etc/passwd.lock
		kill "$LOCK_SLEEP_PID" 2>/dev/null || true
	fi
	e2e_cleanup
	rm -rf "${WORK:-/nonexistent-ctme2e}"
	exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# ---------------------------------------------------------------- environment
T=$(e2e_now_ms)
e2e_install_deps
note "deps check/install: $(($(e2e_now_ms) - T)) ms"

# (f) incus when the daemon is down (only observable on a bare machine).
if ! e2e_incus_up && ! pgrep -x incusd >/dev/null; then
	note "(f) 'incus list' without incusd: $(capture incus list)"
fi
T=$(e2e_now_ms)
e2e_start_incusd
if [ -n "$E2E_INCUSD_PID" ]; then
	note "incusd: started (or adopted) by us, pid $E2E_INCUSD_PID ($(($(e2e_now_ms) - T)) ms)"
else
	note "incusd: reused the running one ($(($(e2e_now_ms) - T)) ms)"
fi
T=$(e2e_now_ms)
e2e_setup_incus
note "incus setup (pool, bridge, project): $(($(e2e_now_ms) - T)) ms"
T=$(e2e_now_ms)
e2e_image
note "image: build (or cache) and import ${E2E_IMAGE_MS} ms, unpack onto pool ${E2E_IMAGE_WARM_MS} ms, total $(($(e2e_now_ms) - T)) ms, fp ${E2E_IMAGE_FINGERPRINT:0:12}"
e2e_start_syslog
e2e_start_bastion_sshd

WORK=$(mktemp -d "$E2E_STATE_DIR/smoke.XXXXXX")
ssh-keygen -q -t ed25519 -N '' -C ctme2e-smoke -f "$WORK/id" </dev/null
PUB=$(cat "$WORK/id.pub")
cat >"$WORK/ssh_config" <<EOF
Host *
    BatchMode yes
    StrictHostKeyChecking no
    UserKnownHostsFile $WORK/known_hosts
    GlobalKnownHostsFile /dev/null
    ConnectTimeout 5
    LogLevel ERROR
    IdentitiesOnly yes
    IdentityFile $WORK/id
EOF
SSH=(ssh -F "$WORK/ssh_config")
JUMP=e2e-smoke@$E2E_BASTION_HOST:$E2E_BASTION_PORT

# (f) Incus errors for missing things.
note "(f) 'incus launch nosuch-image x': $(capture e2e_incus launch nosuch-image ctme2e-nosuch)"
note "(f) 'incus info nosuch': $(capture e2e_incus info nosuch)"

# ---------------------------------------------------------------- containers
A=ctme2e-alice-container
B=ctme2e-bob-container
C=ctme2e-carol-container
NEST=(-c security.nesting=true -c security.syscalls.intercept.mknod=true
	-c security.syscalls.intercept.setxattr=true)
T=$(e2e_now_ms)
if capture_out=$(e2e_incus launch "$E2E_IMAGE" "$A" -d root,size=3GiB "${NEST[@]}" \
	-c limits.cpu=1 -c limits.memory=1GiB -c user.containarium.owner=alice \
	-c user.containarium.state=creating \
	-c cloud-init.user-data="$(e2e_user_data alice "$PUB")" 2>&1); then
	pass "(b) incus launch -d root,size=3GiB on btrfs ($(($(e2e_now_ms) - T)) ms)"
else
	fail "(b) incus launch -d root,size=3GiB: $capture_out"
	exit 1
fi
e2e_incus launch "$E2E_IMAGE" "$B" -d root,size=4GiB "${NEST[@]}" -c limits.cpu=2 \
	-c limits.memory=2GiB -c user.containarium.owner=bob -c user.containarium.state=creating \
	-c cloud-init.user-data="$(e2e_user_data bob "$PUB")" >/dev/null
e2e_incus create "$E2E_IMAGE" "$C" -d root,size=2GiB -c limits.cpu=1 -c limits.memory=512MiB \
	-c user.containarium.owner=carol -c user.containarium.state=stopped \
	-c cloud-init.user-data="$(e2e_user_data carol "$PUB")" >/dev/null

for n in "$A" "$B"; do
	T=$(e2e_now_ms)
	st=$(e2e_incus exec "$n" -- cloud-init status --wait 2>&1 | tail -n1) || true
	check "cloud-init on $n: '$st' ($(($(e2e_now_ms) - T)) ms after launch returned)" \
		test "$st" = "status: done"
	e2e_incus config set "$n" user.containarium.state=ready
done
IPA=$(e2e_instance_ipv4 "$A")
IPB=$(e2e_instance_ipv4 "$B")
check "$A has IPv4 $IPA on eth0 in $E2E_BRIDGE_CIDR" test "${IPA%.*}" = "${E2E_BRIDGE_IP%.*}"
check "$B has IPv4 $IPB on eth0 in $E2E_BRIDGE_CIDR" test "${IPB%.*}" = "${E2E_BRIDGE_IP%.*}"
check "cloud-init made user alice with sudo in $A" \
	e2e_incus exec "$A" -- su - alice -c 'sudo -n true'
check "machine-id is per container" test \
	"$(e2e_incus exec "$A" -- cat /etc/machine-id)" != "$(e2e_incus exec "$B" -- cat /etc/machine-id)"
check "ssh host keys are per container" test \
	"$(e2e_incus exec "$A" -- cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2)" != \
	"$(e2e_incus exec "$B" -- cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2)"
note "limits.cpu=1: nproc inside $A = $(e2e_incus exec "$A" -- nproc) (host: $(nproc))"
idle=$(e2e_incus exec "$A" -- systemctl is-active docker.socket docker.service containerd.service | tr '\n' ' ') || true
check "idle: docker.socket active, docker.service and containerd inactive ($idle)" \
	test "$idle" = "active inactive inactive "
failed_units=$(e2e_incus exec "$A" -- systemctl --failed --no-legend --plain | awk '{print $1}' | tr '\n' ' ')
check "no failed units in $A (${failed_units:-none})" test -z "$failed_units"

# ---------------------------------------------------------------- jump account
getent group "$E2E_GROUP" >/dev/null || groupadd "$E2E_GROUP"
useradd -g "$E2E_GROUP" -M -d /nonexistent -s /usr/sbin/nologin -p '*' e2e-smoke
install -d -m 0755 -o root -g root "$E2E_ETC_DIR" "$E2E_ETC_DIR/keys"
printf 'restrict,port-forwarding,permitopen="%s:22" %s\n' "$IPA" "$PUB" >"$E2E_ETC_DIR/keys/e2e-smoke"
chown root:root "$E2E_ETC_DIR/keys/e2e-smoke"
chmod 0644 "$E2E_ETC_DIR/keys/e2e-smoke"
cat >"$E2E_DROPIN" <<'EOF'
# Managed by containarium: jump-only accounts.
Match Group containarium
    AuthorizedKeysFile /etc/containarium/keys/%u
    AllowTcpForwarding local
    AllowStreamLocalForwarding no
    PermitListen none
    PermitTTY no
    X11Forwarding no
    AllowAgentForwarding no
    PermitTunnel no
    ForceCommand /usr/sbin/nologin
    PasswordAuthentication no
    KbdInteractiveAuthentication no
    AuthenticationMethods publickey
EOF
chmod 0644 "$E2E_DROPIN"

# (g) sshd -t and -T.
check "(g) sshd -t with the drop-in: $(capture /usr/sbin/sshd -t)" /usr/sbin/sshd -t
keys='^(authorizedkeysfile|allowtcpforwarding|allowstreamlocalforwarding|permitlisten|permittty|x11forwarding|allowagentforwarding|permittunnel|forcecommand|passwordauthentication|kbdinteractiveauthentication|authenticationmethods) '
tj=$(/usr/sbin/sshd -T -C user=e2e-smoke,host=x,addr=127.0.0.1 | grep -E "$keys" | sort | tr '\n' ';')
tr_=$(/usr/sbin/sshd -T -C user=root,host=x,addr=127.0.0.1 | grep -E "$keys" | sort | tr '\n' ';')
note "(g) sshd -T e2e-smoke: $tj"
note "(g) sshd -T root:      $tr_"
check "(g) Match applied to e2e-smoke" grep -q 'forcecommand /usr/sbin/nologin;' <<<"$tj"
check "(g) root unaffected" grep -q 'forcecommand none;' <<<"$tr_"

# sshd hands its config to each connection from memory: is a drop-in written
# after start seen without a reload?
if "${SSH[@]}" -J "$JUMP" "alice@$IPA" true 2>/dev/null; then
	note "drop-in written after sshd started: effective WITHOUT reload"
else
	note "drop-in written after sshd started: NOT effective until sshd is reloaded (SIGHUP)"
fi
e2e_reload_bastion_sshd

T=$(e2e_now_ms)
out=$("${SSH[@]}" -J "$JUMP" "alice@$IPA" 'echo ok-$(id -un)@$(hostname)' 2>&1) || true
check "(c) ssh -J e2e-smoke (no home, -d /nonexistent) -> alice@$IPA: '$out' ($(($(e2e_now_ms) - T)) ms)" \
	test "$out" = "ok-alice@$A"
r=$(capture_all "${SSH[@]}" -p "$E2E_BASTION_PORT" e2e-smoke@"$E2E_BASTION_HOST" id)
check "direct ssh to the bastion gets no shell: $r" grep -q 'exit=1 .*currently not available' <<<"$r"
r=$(capture_all "${SSH[@]}" -tt -p "$E2E_BASTION_PORT" e2e-smoke@"$E2E_BASTION_HOST")
check "direct ssh -tt gets no tty/shell: $r" grep -q 'PTY allocation request failed' <<<"$r"
r=$(capture "${SSH[@]}" -o LogLevel=INFO -J "$JUMP" "alice@$IPB" true)
check "-J to another address ($IPB:22) refused: $r" grep -Eq 'exit=255 .*(administratively prohibited|stdio forwarding failed)' <<<"$r"
r=$(capture "${SSH[@]}" -o LogLevel=INFO -p "$E2E_BASTION_PORT" -W "$IPA:2222" e2e-smoke@"$E2E_BASTION_HOST")
check "-W to another port ($IPA:2222) refused: $r" grep -Eq 'exit=255 .*(administratively prohibited|stdio forwarding failed)' <<<"$r"
r=$(capture "${SSH[@]}" -o LogLevel=INFO -p "$E2E_BASTION_PORT" -W "127.0.0.1:$E2E_BASTION_PORT" e2e-smoke@"$E2E_BASTION_HOST")
check "-W to the bastion itself refused: $r" grep -Eq 'exit=255 .*(administratively prohibited|stdio forwarding failed)' <<<"$r"
r=$(capture "${SSH[@]}" -o LogLevel=INFO -o ExitOnForwardFailure=yes -N -p "$E2E_BASTION_PORT" \
	-R 127.0.0.1:39998:127.0.0.1:22 e2e-smoke@"$E2E_BASTION_HOST")
check "-R remote forward refused: $r" grep -q 'exit=255 .*remote port forwarding failed' <<<"$r"
note "sshd log on refusal: $(grep "to connect to host $IPB port 22, but the request was denied" "$E2E_AUTH_LOG" | tail -n1 || true)"

# ---------------------------------------------------------------- docker
mkdir -p "$WORK/bb/bin"
cp /bin/busybox "$WORK/bb/bin/busybox"
ln -s busybox "$WORK/bb/bin/sh"
tar -C "$WORK/bb" -cf "$WORK/busybox.tar" .
e2e_incus file push -q "$WORK/busybox.tar" "$A/tmp/busybox.tar"
e2e_incus exec "$A" -- chmod 0644 /tmp/busybox.tar
T=$(e2e_now_ms)
out=$("${SSH[@]}" -J "$JUMP" "alice@$IPA" \
	'docker import /tmp/busybox.tar ctme2e/busybox:local >/dev/null && docker run --rm ctme2e/busybox:local /bin/sh -c "echo docker-ok"' 2>&1) || true
check "docker run as alice (socket-activated, first use): '$out' ($(($(e2e_now_ms) - T)) ms)" test "$out" = docker-ok
act=$(e2e_incus exec "$A" -- systemctl is-active docker.service containerd.service | tr '\n' ' ') || true
check "after first use: docker.service and containerd active ($act)" test "$act" = "active active "

# (d) addresses with docker0 present.
addrs=$(e2e_incus list "$A" --format json | jq -c '.[0].state.network | with_entries(.value |= [.addresses[] | select(.family == "inet") | .address])')
note "(d) incus list --format json state.network inet: $addrs"
col=$(e2e_incus list "$A" --format csv -c 4)
note "(d) incus list IPV4 column: $(tr '\n' ' ' <<<"$col")"
check "(d) eth0 from state.network.eth0 is $IPA, docker0 is separate" \
	e2e_jq --arg ip "$IPA" '(.eth0 == [$ip]) and (.docker0 | length == 1) and (.docker0[0] != $ip)' <<<"$addrs"

# ---------------------------------------------------------------- (a) live IP pin
pid_before=$(incus query "/1.0/instances/$A/state?project=$E2E_PROJECT" | jq .pid)
veth_before=$(e2e_incus config get "$A" volatile.eth0.host_name)
# A session open across the change must survive.
"${SSH[@]}" -J "$JUMP" "alice@$IPA" 'sleep 4; echo alive' >"$WORK/held.out" 2>&1 &
held=$!
sleep 1.5
r=$(capture e2e_incus config device override "$A" eth0 ipv4.address="$IPA")
check "(a) incus config device override $A eth0 ipv4.address=$IPA on a running container: $r" \
	grep -q '^exit=0' <<<"$r"
wait "$held" || true
check "(a) ssh session held across the override: '$(cat "$WORK/held.out")'" grep -qx alive "$WORK/held.out"
pid_after=$(incus query "/1.0/instances/$A/state?project=$E2E_PROJECT" | jq .pid)
veth_after=$(e2e_incus config get "$A" volatile.eth0.host_name)
check "(a) no restart (init pid $pid_before -> $pid_after, veth $veth_before -> $veth_after)" \
	test "$pid_before/$veth_before" = "$pid_after/$veth_after"
out=$("${SSH[@]}" -J "$JUMP" "alice@$IPA" 'ip -4 -o addr show eth0 | awk "{print \$4}"' 2>&1) || true
check "(a) new ssh after override, eth0 still $out" test "$out" = "$IPA/24"
note "(a) dnsmasq static host entry: $(cat "/var/lib/incus/networks/$E2E_BRIDGE/dnsmasq.hosts/${E2E_PROJECT}_$A.eth0" 2>/dev/null || echo none)"
note "(a) device now: $(e2e_incus config device show "$A" | tr '\n' ' ')"

# ---------------------------------------------------------------- (b) quota
T=$(e2e_now_ms)
r=$(capture e2e_incus exec "$A" -- dd if=/dev/zero of=/quota-test bs=1M count=3500 status=none)
sz=$(e2e_incus exec "$A" -- stat -c %s /quota-test 2>/dev/null || echo 0)
e2e_incus exec "$A" -- rm -f /quota-test
check "(b) 3500 MiB write into root,size=3GiB stopped at $((sz / 1048576)) MiB: $r ($(($(e2e_now_ms) - T)) ms)" \
	grep -q 'Disk quota exceeded' <<<"$r"
note "(b) df / inside shows the pool, not the quota: $(e2e_incus exec "$A" -- df -h / | tail -n1)"

# ---------------------------------------------------------------- fixtures
if [ -n "$fixtures" ]; then
	e2e_incus list --format json | jq . >"$fixtures/incus-list.json"
	incus query "/1.0/networks/$E2E_BRIDGE" | jq . >"$fixtures/incus-network.json"
	incus query "/1.0/instances/$A/state?project=$E2E_PROJECT" | jq . >"$fixtures/incus-instance-state.json"
	check "fixtures written to $fixtures" e2e_jq 'length == 3' <"$fixtures/incus-list.json"
fi

# ---------------------------------------------------------------- (f) passwd lock
if [ ! -e /etc/passwd.lock ]; then
	sleep 60 &
	LOCK_SLEEP_PID=$!
	printf '%s' "$LOCK_SLEEP_PID" >/etc/passwd.lock
	r=$(capture useradd -g "$E2E_GROUP" -M -d /nonexistent -s /usr/sbin/nologin -p '*' e2e-locked)
	rm -f /etc/passwd.lock
	kill "$LOCK_SLEEP_PID" 2>/dev/null || true
	wait "$LOCK_SLEEP_PID" 2>/dev/null || true
	LOCK_SLEEP_PID=
	note "(f) useradd with /etc/passwd.lock held by a live PID: $r"
	check "(f) useradd refused while locked" grep -q '^exit=1 .*cannot lock /etc/passwd' <<<"$r"
fi

# ---------------------------------------------------------------- baseline
for ((i = 1; i <= baseline_runs; i++)); do
	ms=$(e2e_bare_baseline bare "$WORK/id.pub" "$WORK/id") || ms=FAILED
	check "(e) bare baseline run $i: $ms ms" test "$ms" != FAILED
done

# ---------------------------------------------------------------- cleanup check
T=$(e2e_now_ms)
started_incusd=$E2E_INCUSD_PID
trap - EXIT
e2e_cleanup
rm -rf "$WORK"
note "cleanup: $(($(e2e_now_ms) - T)) ms"
if [ -n "$started_incusd" ]; then
	check "cleanup: incusd we started is stopped" not e2e__pid_is "$started_incusd" incusd
	check "cleanup: incusd restarts to inspect what is left" e2e_start_incusd
fi
check "cleanup: no project/network/pool left" test -z "$(incus project list -f csv | grep "^$E2E_PROJECT" || true)$(incus network list -f csv | grep "^$E2E_BRIDGE," || true)$(incus storage list -f csv | grep "^$E2E_POOL," || true)"
check "cleanup: no e2e-* accounts left" test -z "$(getent passwd | grep '^e2e-' || true)"
check "cleanup: bastion sshd stopped" test ! -e "$E2E_SSHD_PIDFILE"
[ -z "$started_incusd" ] || e2e_stop_incusd

note "full smoke run: $(($(e2e_now_ms) - T_ALL)) ms"
echo
echo "==================== e2e smoke report ===================="
printf '%s\n' "${REPORT[@]}"
echo "failures: $FAILS"
[ "$FAILS" -eq 0 ]
