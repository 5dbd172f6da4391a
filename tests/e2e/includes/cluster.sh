# shellcheck shell=bash
# shellcheck disable=SC2016 # jq programs for e2e_jq, single-quoted
# cluster.sh: an Incus cluster of three members on this one machine, and SSH
# bastions beside it, for the cluster suites (scripts/e2e-cluster.sh).
# Modelled on lxc/incus test/includes/clustering.sh. Sourced after env.sh
# (e2e_log, e2e_die, e2e_now_ms, e2e__pid_is), as root.
#
#   cluster_lab_up                 # bridge, 3 members, cluster, image; all ONLINE
#   cluster_incus N ARGS...        # the incus client against member N
#   cluster_member_exec N CMD...   # CMD inside member N's namespaces
#   cluster_member_stop N [SIG]    # stop member N's incusd only (SIGTERM:
#   cluster_member_start N         #   its instances keep running); start it again
#   cluster_member_status N [FROM] # Online/Offline/..., as member FROM sees it
#   cluster_bastion_up B M PORT    # bastion B beside member M, sshd on 127.0.0.1:PORT
#   cluster_bastion B CMD...       # CMD inside bastion B (its /etc, /run, incus)
#   cluster_lab_down               # remove all of it (also an earlier run's leftovers)
#   cluster_free_port FROM, cluster_wait_banner HOST PORT SECONDS,
#   cluster_timed CMD..., cluster_member_pid N, cluster_incusd_rss: for suites
#
# Layout. Every name is fixed, so that a run finds what a killed run left:
#   ctmcl0      a Linux bridge in the root network namespace, 10.197.86.1/24,
#               no NAT, no IPv6, nothing else on it
#   ctmclN      member N (1..3): a mount + network namespace (unshare -m -n, held
#               by a sleeping process, `ip netns attach ctmclN`) with /sys and
#               /proc remounted; eth0 10.197.86.1N/24 (veth ctmclvN on ctmcl0),
#               loopback, NO default route; its own incusd (INCUS_DIR
#               /var/lib/ctmcl/N), server name ctmclN, https on 10.197.86.1N:8443
#   cluster     dir pool "ctmcl"; managed bridge "ctmclbr0" 10.197.87.1/24 (no
#               NAT, no IPv6, dnsmasq without upstream servers), the same on
#               every member, inside its namespace; default profile: root on
#               ctmcl, eth0 on ctmclbr0; image alias ctmcl-debian12 (the main
#               e2e's cached tarballs); cluster.offline_threshold 11 s
#   bastion B   a mount namespace only (the root network namespace: its sshd
#               listens on 127.0.0.1:PORT) with private /etc (a copy of the
#               host's, without what containarium and the main e2e put there),
#               /root, /home and /run; /run/incus/unix.socket there is member
#               M's socket, so a plain `incus` (and containarium, which drops
#               every INCUS_* variable) talks to member M; /run/ctmcl is the
#               host's (records, logs, work files) at the same path
#   /run/ctmcl  records (PIDs), logs (log/), scratch (work/); /var/lib/ctmcl:
#               the INCUS_DIRs, the lab's client config (conf/), the bastions'
#               private trees (bB/)
#   /run/ctmcl.lock  one lab at a time; not the main e2e's lock, so both can run
#               at once: they share only the read-only image cache
#
# Network: only loopback, ctmcl0 (10.197.86.0/24) and ctmclbr0 (10.197.87.0/24,
# only inside the members). The root namespace gets an "unreachable" route for
# 10.197.87.0/24, so that a packet for a container address sent from the host or
# a bastion fails here instead of leaving by the host's default route: reach a
# container through a proxy device on its member's 10.197.86.1N address.
#
# Every process the lab starts carries CTMCL_OWNER=ctmcl-<mN|bN> in its
# environment; cluster_lab_down ends exactly those, whatever runs in the ctmclN
# network namespaces and in the recorded mount namespaces of members and
# bastions, by PID (see cluster__lab_pids). The functions run with set +e
# inside and return non-zero with a message on stderr when they fail.

CLUSTER_STATE_DIR=/run/ctmcl
CLUSTER_LIB_DIR=/var/lib/ctmcl
CLUSTER_LOG_DIR=$CLUSTER_STATE_DIR/log
# Scratch files of the suites (keys, configs): seen at the same path in bastions.
CLUSTER_WORK=$CLUSTER_STATE_DIR/work
CLUSTER_LOCK_FILE=/run/ctmcl.lock
CLUSTER_LOCK_WAIT=${CLUSTER_LOCK_WAIT:-1800}
CLUSTER_LOCK_FD=${CLUSTER_LOCK_FD:-}
CLUSTER_BRIDGE=ctmcl0
CLUSTER_BRIDGE_IP=10.197.86.1
CLUSTER_TENANT_BRIDGE=ctmclbr0
CLUSTER_TENANT_IP=10.197.87.1
CLUSTER_TENANT_SUBNET=10.197.87.0/24
CLUSTER_POOL=ctmcl
CLUSTER_IMAGE=ctmcl-debian12
CLUSTER_MEMBERS=(1 2 3)
# Seconds without a heartbeat before a member is OFFLINE (Incus: more than 10;
# heartbeats go every threshold/2).
CLUSTER_OFFLINE_THRESHOLD=${CLUSTER_OFFLINE_THRESHOLD:-11}
# INCUS_CONF of the lab's clients: only the "local" remote (no images: server).
CLUSTER_CONF=$CLUSTER_LIB_DIR/conf
CLUSTER_PATH=/usr/libexec/incus:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
for cluster__n in "${CLUSTER_MEMBERS[@]}"; do
	declare -gx "CLUSTER_DIR_$cluster__n=$CLUSTER_LIB_DIR/$cluster__n" \
		"CLUSTER_ADDR_$cluster__n=10.197.86.1$cluster__n"
done
unset cluster__n
# Mounts a namespace of ours must not keep a copy of: those of the host's incusd
# (its pools, instances' devices), of lxcfs and other network namespaces. A copy
# would keep a filesystem (a loop device, a netns) alive after the host or the
# main e2e has unmounted it.
CLUSTER__FOREIGN_MOUNTS='^/(var/lib/incus|var/lib/incus-lxcfs|var/lib/lxcfs|run/netns|run/incus)(/|$)'

# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

# One lab at a time: an exclusive flock on $CLUSTER_LOCK_FILE, held until the
# process exits or cluster_lab_down ends. Long-lived children do not inherit it.
cluster_lock() { e2e_flock CLUSTER_LOCK_FD "$CLUSTER_LOCK_FILE" "$CLUSTER_LOCK_WAIT" "another cluster lab"; }

cluster__unlock() { e2e_funlock CLUSTER_LOCK_FD "$CLUSTER_LOCK_FILE"; }

# cluster__spawn LOG CMD...: CMD in the background, in a session of its own,
# without our lock files open (a long-lived child holding one would block the
# next run). Sets CLUSTER__SPAWNED to its PID (setsid does not fork here: a
# background subshell is no process group leader).
cluster__spawn() {
	local log=$1
	shift
	(
		[ -z "${CLUSTER_LOCK_FD:-}" ] || exec {CLUSTER_LOCK_FD}>&-
		[ -z "${E2E_LOCK_FD:-}" ] || exec {E2E_LOCK_FD}>&-
		exec setsid "$@"
	) </dev/null >>"$log" 2>&1 &
	CLUSTER__SPAWNED=$!
	# Not a job of ours: no "Killed" line when cluster_lab_down ends it.
	disown "$CLUSTER__SPAWNED"
}

cluster__member_ok() {
	case ${1:-} in
	1 | 2 | 3) ;;
	*) e2e_die "no such cluster member: ${1:-} (1, 2 or 3)" || return 1 ;;
	esac
}

cluster__ms_since() { echo $(($(e2e_now_ms) - $1)); }

# cluster__holder_pid NAME: the live process holding namespace NAME (mN, bN),
# checked against what was recorded when it started.
cluster__holder_pid() {
	local pid
	pid=$(cat "$CLUSTER_STATE_DIR/$1.holder" 2>/dev/null)
	if e2e__pid_is "$pid" sleep &&
		[ "$(readlink "/proc/$pid/ns/mnt")" = "$(cat "$CLUSTER_STATE_DIR/$1.mnt" 2>/dev/null)" ]; then
		echo "$pid"
	else
		e2e_die "the namespace of $1 is not held (no process ${pid:-?})"
	fi
}

# cluster__start_holder NAME SCRIPT UNSHARE-FLAGS ARGS...: a sleeping process
# holding new namespaces, after SCRIPT (sh, $0=NAME, $1...=ARGS) set them up.
cluster__start_holder() {
	local name=$1 script=$2 flags=$3 pid i
	shift 3
	# shellcheck disable=SC2086 # flags: several words
	cluster__spawn "$CLUSTER_LOG_DIR/$name-holder.log" env -i PATH="$CLUSTER_PATH" \
		CTMCL_OWNER="ctmcl-$name" unshare $flags --propagation private -- sh -c "$script" "$name" "$@"
	pid=$CLUSTER__SPAWNED
	echo "$pid" >"$CLUSTER_STATE_DIR/$name.holder"
	for ((i = 0; i < 100; i++)); do
		e2e__pid_is "$pid" sleep && break
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$CLUSTER_LOG_DIR/$name-holder.log" >&2
			e2e_die "setting up the namespace of $name failed"
			return 1
		fi
		sleep 0.05
	done
	e2e__pid_is "$pid" sleep || e2e_die "the namespace of $name was not ready within 5 s" || return 1
	readlink "/proc/$pid/ns/mnt" >"$CLUSTER_STATE_DIR/$name.mnt"
}

# Shell text shared by the holders: detach every copied mount matching $1.
# shellcheck disable=SC2016 # expanded by the holder's sh
CLUSTER__DETACH_SH='detach() {
	awk -v re="$1" '"'"'$5 ~ re { print $5 }'"'"' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null || true; done
}'

# ---------------------------------------------------------------------------
# The incus client, per member
# ---------------------------------------------------------------------------

# cluster_incus N ARGS...: incus against member N (its unix socket), with the
# lab's own client configuration.
cluster_incus() {
	cluster__member_ok "$1" || return 1
	local n=$1
	shift
	INCUS_DIR=$CLUSTER_LIB_DIR/$n INCUS_CONF=$CLUSTER_CONF incus "$@"
}

# cluster_member_exec N CMD...: CMD inside member N's mount and network
# namespaces (ss, ip, nft there).
cluster_member_exec() {
	cluster__member_ok "$1" || return 1
	local n=$1 pid
	shift
	pid=$(cluster__holder_pid "m$n") || return 1
	(
		[ -z "${CLUSTER_LOCK_FD:-}" ] || exec {CLUSTER_LOCK_FD}>&-
		exec nsenter -t "$pid" -m -n -- env CTMCL_OWNER="ctmcl-m$n" INCUS_DIR="$CLUSTER_LIB_DIR/$n" \
			INCUS_CONF="$CLUSTER_CONF" "$@"
	)
}

# cluster_member_status N [FROM]: member ctmclN's status ("Online", "Offline",
# ...) as member FROM (default 1) sees it.
cluster_member_status() {
	cluster_incus "${2:-1}" query "/1.0/cluster/members/ctmcl$1" | jq -r .status
}

# The incusd PID of member N, or nothing when it is not running.
cluster_member_pid() {
	local pid
	pid=$(cat "$CLUSTER_STATE_DIR/m$1.incusd" 2>/dev/null)
	if e2e__pid_is "$pid" incusd; then echo "$pid"; fi
}

cluster__all_online() {
	cluster_incus 1 query "/1.0/cluster/members?recursion=1" 2>/dev/null |
		e2e_jq --argjson n "${#CLUSTER_MEMBERS[@]}" 'length == $n and all(.[]; .status == "Online")' >/dev/null
}

# cluster__start_incusd N: incusd of member N inside its namespaces, in the
# background (cluster__wait_incusd waits for it).
cluster__start_incusd() {
	local n=$1 holder dir=$CLUSTER_LIB_DIR/$1
	holder=$(cluster__holder_pid "m$n") || return 1
	mkdir -p "$dir" || return 1
	cluster__spawn "$CLUSTER_LOG_DIR/m$n-incusd.out" nsenter -t "$holder" -m -n -- \
		env -i PATH="$CLUSTER_PATH" INCUS_DIR="$dir" CTMCL_OWNER="ctmcl-m$n" LANG=C.UTF-8 \
		incusd --group root --logfile "$CLUSTER_LOG_DIR/m$n-incusd.log"
	echo "$CLUSTER__SPAWNED" >"$CLUSTER_STATE_DIR/m$n.incusd"
}

cluster__wait_incusd() {
	local n=$1 pid
	if ! cluster_incus "$n" admin waitready --timeout 60 >/dev/null; then
		tail -n 20 "$CLUSTER_LOG_DIR/m$n-incusd.out" "$CLUSTER_LOG_DIR/m$n-incusd.log" >&2 2>/dev/null
		e2e_die "incusd of member $n did not get ready (log: $CLUSTER_LOG_DIR/m$n-incusd.log)"
		return 1
	fi
	pid=$(cluster_incus "$n" query /1.0 | jq -r '.environment.server_pid // empty')
	e2e__pid_is "$pid" incusd || e2e_die "member $n: no incusd with pid ${pid:-?}" || return 1
	echo "$pid" >"$CLUSTER_STATE_DIR/m$n.incusd"
}

# cluster_member_stop N [SIGNAL]: stop member N's incusd (by PID; default
# SIGTERM: the daemon exits, its instances, dnsmasq and proxies keep running, as
# when incusd crashes or restarts; PWR: it stops its instances first; KILL: a
# crash). The other members keep the cluster.
cluster_member_stop() {
	local -
	set +e
	cluster__member_ok "$1" || return 1
	local n=$1 sig=${2:-TERM} pid
	pid=$(cluster_member_pid "$n")
	[ -n "$pid" ] || e2e_die "incusd of member $n is not running" || return 1
	e2e__stop_pid "$pid" incusd "$sig"
	! e2e__pid_is "$pid" incusd || e2e_die "incusd of member $n ($pid) did not stop" || return 1
	: >"$CLUSTER_STATE_DIR/m$n.incusd"
}

# cluster_member_start N: start member N's incusd again (same namespaces, same
# INCUS_DIR) and wait until it answers; ONLINE follows at its next heartbeat.
cluster_member_start() {
	local -
	set +e
	cluster__member_ok "$1" || return 1
	[ -z "$(cluster_member_pid "$1")" ] || e2e_die "incusd of member $1 is running already" || return 1
	cluster__start_incusd "$1" && cluster__wait_incusd "$1"
}

# Resident memory of each member's incusd, one "ctmclN RSS MiB" per line.
cluster_incusd_rss() {
	local n pid kb
	for n in "${CLUSTER_MEMBERS[@]}"; do
		pid=$(cluster_member_pid "$n")
		kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
		printf 'ctmcl%s %s MiB\n' "$n" "$([ -n "$kb" ] && echo $((kb / 1024)) || echo '-')"
	done
}

# ---------------------------------------------------------------------------
# cluster_lab_up
# ---------------------------------------------------------------------------

# A member's namespaces: its own sysfs (its network devices) and proc, the
# cgroup hierarchy moved over from the old sysfs. $1: an empty directory,
# $2: mounts to detach.
# shellcheck disable=SC2016 # expanded by the holder's sh
CLUSTER__MEMBER_SH="$CLUSTER__DETACH_SH"'
set -e
detach "$2"
mount --move /sys "$1"
umount -l /proc
mount -t sysfs sysfs /sys
mount --move "$1/fs/cgroup" /sys/fs/cgroup
mount -t proc proc /proc
umount -l "$1"
exec sleep infinity'

# cluster__member_up N: member N's namespaces, attached as ctmclN, and its veth.
cluster__member_up() {
	local n=$1 pid ns=ctmcl$1 veth=ctmclv$1
	mkdir -p "$CLUSTER_STATE_DIR/m$n.sys" || return 1
	cluster__start_holder "m$n" "$CLUSTER__MEMBER_SH" "-m -n" "$CLUSTER_STATE_DIR/m$n.sys" \
		"$CLUSTER__FOREIGN_MOUNTS" || return 1
	pid=$(cat "$CLUSTER_STATE_DIR/m$n.holder")
	ip netns attach "$ns" "$pid" || return 1
	# No IPv6 anywhere in the lab (no link-local chatter either).
	nsenter -t "$pid" -n sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
		net.ipv6.conf.default.disable_ipv6=1 || return 1
	ip link add "$veth" type veth peer name eth0 netns "$ns" &&
		sysctl -qw "net.ipv6.conf.$veth.disable_ipv6=1" &&
		ip link set "$veth" master "$CLUSTER_BRIDGE" up &&
		ip -n "$ns" link set lo up &&
		ip -n "$ns" addr add "10.197.86.1$n/24" dev eth0 &&
		ip -n "$ns" link set eth0 up
}

cluster__client_config() {
	mkdir -p "$1" && cat >"$1/config.yml" <<'EOF'
default-remote: local
remotes:
  local:
    addr: unix://
    public: false
aliases: {}
EOF
}

cluster__bootstrap() {
	local preseed=$CLUSTER_STATE_DIR/preseed-1.yaml
	cat >"$preseed" <<EOF
config:
  core.https_address: $CLUSTER_ADDR_1:8443
  images.auto_update_interval: "0"
storage_pools:
- name: $CLUSTER_POOL
  driver: dir
networks:
- name: $CLUSTER_TENANT_BRIDGE
  type: bridge
  config:
    ipv4.address: $CLUSTER_TENANT_IP/24
    ipv4.nat: "false"
    ipv6.address: none
    raw.dnsmasq: no-resolv
profiles:
- name: default
  devices:
    root:
      type: disk
      path: /
      pool: $CLUSTER_POOL
    eth0:
      type: nic
      name: eth0
      network: $CLUSTER_TENANT_BRIDGE
cluster:
  server_name: ctmcl1
  enabled: true
EOF
	cluster_incus 1 admin init --preseed <"$preseed" || e2e_die "bootstrapping ctmcl1 failed" || return 1
	# Only once clustered: a standalone 6.0.4 incusd drops the connection on it.
	cluster_incus 1 config set cluster.offline_threshold "$CLUSTER_OFFLINE_THRESHOLD" ||
		e2e_die "setting cluster.offline_threshold failed"
}

cluster__join() {
	local n=$1 token addr preseed=$CLUSTER_STATE_DIR/preseed-$1.yaml
	addr=CLUSTER_ADDR_$n
	token=$(cluster_incus 1 cluster add "ctmcl$n" --quiet) || e2e_die "no join token for ctmcl$n" || return 1
	{
		cat <<EOF
cluster:
  enabled: true
  server_name: ctmcl$n
  server_address: ${!addr}:8443
  cluster_address: $CLUSTER_ADDR_1:8443
  cluster_token: $token
  member_config:
  - entity: storage-pool
    name: $CLUSTER_POOL
    key: source
    value: ""
  cluster_certificate: |
EOF
		sed 's/^/    /' "$CLUSTER_DIR_1/cluster.crt"
	} >"$preseed" || return 1
	cluster_incus "$n" admin init --preseed <"$preseed" || e2e_die "ctmcl$n did not join"
}

# cluster_lab_up: the whole lab, from nothing (an earlier run's leftovers are
# removed first); returns once every member is ONLINE and the image is there.
cluster_lab_up() {
	local -
	set +e
	cluster_lock || return 1
	local t0 t n route
	t0=$(e2e_now_ms)
	if [ -e "$CLUSTER_STATE_DIR" ] || [ -e "$CLUSTER_LIB_DIR" ] || ip link show "$CLUSTER_BRIDGE" >/dev/null 2>&1; then
		e2e_log "lab: removing an earlier run's leftovers"
		cluster__down || return 1
		e2e_log "lab: leftovers removed in $(cluster__ms_since "$t0") ms"
	fi
	t=$(e2e_now_ms)
	for route in "${CLUSTER_BRIDGE_IP%.*}.0/24" "$CLUSTER_TENANT_SUBNET"; do
		if [ -n "$(ip -4 route show "$route")" ]; then
			e2e_die "$route is already routed on this host: $(ip -4 route show "$route")"
			return 1
		fi
	done
	# Containers' root and dnsmasq (user nobody, reading its static leases)
	# must traverse /var/lib/ctmcl: 0711, as /var/lib/incus.
	mkdir -p "$CLUSTER_STATE_DIR" "$CLUSTER_LOG_DIR" "$CLUSTER_WORK" "$CLUSTER_LIB_DIR" &&
		chmod 0700 "$CLUSTER_STATE_DIR" && chmod 0711 "$CLUSTER_LIB_DIR" &&
		cat /proc/sys/kernel/random/boot_id >"$CLUSTER_STATE_DIR/boot_id" &&
		cluster__client_config "$CLUSTER_CONF" || return 1

	# The bridge, then each member's namespaces and veth.
	ip link add "$CLUSTER_BRIDGE" type bridge &&
		sysctl -qw "net.ipv6.conf.$CLUSTER_BRIDGE.disable_ipv6=1" &&
		ip addr add "$CLUSTER_BRIDGE_IP/24" dev "$CLUSTER_BRIDGE" &&
		ip link set "$CLUSTER_BRIDGE" up &&
		ip route add unreachable "$CLUSTER_TENANT_SUBNET" || e2e_die "bridge $CLUSTER_BRIDGE" || return 1
	for n in "${CLUSTER_MEMBERS[@]}"; do
		cluster__member_up "$n" || e2e_die "namespaces of member $n" || return 1
	done
	e2e_log "lab: bridge and 3 member namespaces: $(cluster__ms_since "$t") ms"

	t=$(e2e_now_ms)
	for n in "${CLUSTER_MEMBERS[@]}"; do cluster__start_incusd "$n" || return 1; done
	for n in "${CLUSTER_MEMBERS[@]}"; do cluster__wait_incusd "$n" || return 1; done
	e2e_log "lab: 3 incusd ready: $(cluster__ms_since "$t") ms"

	t=$(e2e_now_ms)
	cluster__bootstrap >/dev/null || return 1
	e2e_log "lab: ctmcl1 bootstrapped: $(cluster__ms_since "$t") ms"
	for n in "${CLUSTER_MEMBERS[@]:1}"; do
		t=$(e2e_now_ms)
		cluster__join "$n" >/dev/null || return 1
		e2e_log "lab: ctmcl$n joined: $(cluster__ms_since "$t") ms"
	done

	t=$(e2e_now_ms)
	# The main e2e's image, from the same cache (built there when missing),
	# imported into the lab through member 1.
	INCUS_DIR=$CLUSTER_LIB_DIR/1 INCUS_CONF=$CLUSTER_CONF "$E2E_SCRIPTS_DIR/build-image.sh" \
		--quiet --suite bookworm --cache "$E2E_CACHE_DIR/images" --deb-cache "$E2E_CACHE_DIR/debs" \
		--alias "$CLUSTER_IMAGE" --project default >/dev/null ||
		e2e_die "image $CLUSTER_IMAGE: build or import failed" || return 1
	e2e_log "lab: image $CLUSTER_IMAGE imported: $(cluster__ms_since "$t") ms"

	t=$(e2e_now_ms)
	for ((n = 0; n < 60; n++)); do
		cluster__all_online && break
		sleep 0.5
	done
	if ! cluster__all_online; then
		cluster_incus 1 cluster list >&2
		e2e_die "not every member is ONLINE"
		return 1
	fi
	e2e_log "lab: up in $(cluster__ms_since "$t0") ms (all ONLINE after $(cluster__ms_since "$t") ms more); incusd RSS: $(cluster_incusd_rss | tr '\n' ' ')"
}

# ---------------------------------------------------------------------------
# Bastions
# ---------------------------------------------------------------------------

# A bastion's mount namespace: every mount under /run is hidden by the
# private /run, so it is detached first; then the private trees go over /etc,
# /root, /home and /run, with the host's /run/ctmcl inside. $1: the bastion's
# tree, $2: its /run, $3: /run/ctmcl, $4: mounts to detach.
# shellcheck disable=SC2016 # expanded by the holder's sh
CLUSTER__BASTION_SH="$CLUSTER__DETACH_SH"'
set -e
detach "$4"
detach "^/run/"
mount --bind "$1/etc" /etc
mount --bind "$1/root" /root
mount --bind "$1/home" /home
mount --bind "$3" "$2/ctmcl"
mount --rbind "$2" /run
exec sleep infinity'

# cluster_free_port FROM: the first TCP port from FROM on that nothing listens on.
cluster_free_port() {
	local p
	for ((p = $1; p < $1 + 100; p++)); do
		if ! ss -Hltn "sport = :$p" | e2e_grep -q .; then
			echo "$p"
			return 0
		fi
	done
	e2e_die "no free port in $1..$(($1 + 99))"
}

# cluster_bastion_up B M PORT: bastion B (1..9), a machine of its own beside
# member M: private /etc (so useradd, /etc/ssh, /etc/containarium are its own;
# new accounts get uids and gids B0000..B9999), /root, /home and /run (containarium's lock,
# /run/sshd.pid), its own host keys, sshd on 127.0.0.1:PORT logging to
# $CLUSTER_LOG_DIR/bB-sshd.log. Sets CLUSTER_BASTION_PORT_B.
cluster_bastion_up() {
	local -
	set +e
	cluster_lock || return 1
	local b=$1 m=$2 port=$3 dir run etc pid sshd i f gid u
	case $b in [1-9]) ;; *) e2e_die "bastion number must be 1..9, not $b" || return 1 ;; esac
	cluster__member_ok "$m" || return 1
	case $port in '' | *[!0-9]*) e2e_die "bad port: $port" || return 1 ;; esac
	[ ! -e "$CLUSTER_STATE_DIR/b$b.holder" ] || e2e_die "bastion $b is up already" || return 1
	if ss -Hltn "sport = :$port" | e2e_grep -q .; then
		e2e_die "port $port is in use"
		return 1
	fi
	dir=$CLUSTER_LIB_DIR/b$b
	run=$CLUSTER_STATE_DIR/b$b/run
	etc=$dir/etc
	mkdir -p "$dir/root" "$dir/home" "$run/sshd" "$run/lock" "$run/incus" "$run/ctmcl" || return 1
	chmod 0700 "$dir/root" && chmod 0755 "$run" "$run/sshd" && chmod 1777 "$run/lock" || return 1
	cluster__client_config "$dir/root/.config/incus" || return 1
	ln -s "$CLUSTER_LIB_DIR/$m/unix.socket" "$run/incus/unix.socket" || return 1
	echo "$m" >"$CLUSTER_STATE_DIR/b$b.member"

	# The private /etc: the host's, without its host keys, stale lock files and
	# what containarium or the main e2e wrote there (env.sh's lists).
	cp -a /etc "$etc" || return 1
	rm -f "$etc"/ssh/ssh_host_* "$etc"/passwd.lock "$etc"/shadow.lock "$etc"/group.lock \
		"$etc"/gshadow.lock "$etc"/subuid.lock "$etc"/subgid.lock "$etc"/.pwd.lock \
		"$dir$E2E_FAIL2BAN_TEST_CONF" || return 1
	for f in "${E2E_HOST_FILES[@]}"; do rm -f "$dir$f"; done
	# shellcheck disable=SC2086 # the glob is the point
	rm -f $dir$E2E_TEST_DROPINS
	rm -rf "$dir$E2E_ETC_DIR"
	sed -i -E "s/^(UID_MIN|GID_MIN)([[:space:]]+).*/\\1\\2${b}0000/; s/^(UID_MAX|GID_MAX)([[:space:]]+).*/\\1\\2${b}9999/" \
		"$etc/login.defs" || return 1

	cluster__start_holder "b$b" "$CLUSTER__BASTION_SH" "-m" "$dir" "$run" "$CLUSTER_STATE_DIR" \
		"$CLUSTER__FOREIGN_MOUNTS" || return 1
	pid=$(cat "$CLUSTER_STATE_DIR/b$b.holder")
	# Jump accounts (and their group) the host had when /etc was copied. Only
	# the copy is edited: --force, as the main e2e, running beside, may have
	# a session of one of them open (userdel looks at every process).
	gid=$(cluster_bastion "$b" getent group "$E2E_GROUP" | cut -d: -f3)
	if [ -n "$gid" ]; then
		for u in $(cluster_bastion "$b" getent passwd | awk -F: -v g="$gid" '$4 == g { print $1 }'); do
			cluster_bastion "$b" userdel --force "$u" || return 1
		done
		cluster_bastion "$b" groupdel "$E2E_GROUP" || return 1
	fi
	cluster_bastion "$b" ssh-keygen -A >/dev/null || return 1

	cluster__spawn "$CLUSTER_LOG_DIR/b$b-sshd.out" nsenter -t "$pid" -m -- \
		env -i PATH="$CLUSTER_PATH" CTMCL_OWNER="ctmcl-b$b" \
		/usr/sbin/sshd -f /etc/ssh/sshd_config -p "$port" -o ListenAddress=127.0.0.1 \
		-o PidFile=/run/sshd.pid -E "$CLUSTER_LOG_DIR/b$b-sshd.log"
	for ((i = 0; i < 100; i++)); do
		sshd=$(cat "$run/sshd.pid" 2>/dev/null)
		e2e__pid_is "$sshd" sshd && ss -Hltn "sport = :$port" | e2e_grep -q . && break
		sleep 0.05
	done
	if ! e2e__pid_is "$sshd" sshd; then
		tail -n 20 "$CLUSTER_LOG_DIR/b$b-sshd.out" "$CLUSTER_LOG_DIR/b$b-sshd.log" >&2 2>/dev/null
		e2e_die "sshd of bastion $b did not start"
		return 1
	fi
	echo "$port" >"$CLUSTER_STATE_DIR/b$b.port"
	declare -gx "CLUSTER_BASTION_PORT_$b=$port"
	e2e_log "bastion $b (member ctmcl$m): sshd $sshd on 127.0.0.1:$port"
}

# cluster_bastion B CMD...: CMD inside bastion B: its /etc, /root, /home and
# /run, the root network namespace, INCUS_DIR/INCUS_CONF of its member (a
# plain `incus` there reaches the member even without them). Give absolute
# paths: the working directory is "/". CMD keeps the caller's other variables.
cluster_bastion() {
	local b=$1 pid m
	shift
	pid=$(cluster__holder_pid "b$b") || return 1
	m=$(cat "$CLUSTER_STATE_DIR/b$b.member")
	(
		[ -z "${CLUSTER_LOCK_FD:-}" ] || exec {CLUSTER_LOCK_FD}>&-
		[ -z "${E2E_LOCK_FD:-}" ] || exec {E2E_LOCK_FD}>&-
		exec nsenter -t "$pid" -m -- env CTMCL_OWNER="ctmcl-b$b" HOME=/root \
			INCUS_DIR="$CLUSTER_LIB_DIR/$m" INCUS_CONF=/root/.config/incus "$@"
	)
}

# ---------------------------------------------------------------------------
# Probes for the suites
# ---------------------------------------------------------------------------

# cluster_banner HOST PORT: the first line a TCP server sends (an SSH banner).
cluster_banner() {
	# shellcheck disable=SC2016 # expanded by the inner bash
	timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2" && head -n1 <&3 | tr -d "\r"' _ "$1" "$2" 2>/dev/null
}

# cluster_wait_banner HOST PORT SECONDS: until an SSH banner comes.
cluster_wait_banner() {
	local end=$(($(e2e_now_ms) + $3 * 1000))
	while [ "$(e2e_now_ms)" -lt "$end" ]; do
		[[ $(cluster_banner "$1" "$2") == SSH-2.0-* ]] && return 0
		sleep 0.5
	done
	return 1
}

# cluster_timed CMD...: CMD (a check line), then how long it took.
cluster_timed() {
	local t0 rc=0
	t0=$(e2e_now_ms)
	"$@" || rc=$?
	e2e_log "    took $(cluster__ms_since "$t0") ms"
	return "$rc"
}

# ---------------------------------------------------------------------------
# cluster_lab_down
# ---------------------------------------------------------------------------

# PIDs of the lab's processes: those carrying our CTMCL_OWNER mark, any in the
# members' network namespaces, and any in the mount namespace of a member or
# bastion as long as a process recorded as its own (holder, incusd, sshd) is
# still in it: sshd rewrites its environment (setproctitle), so its listener
# and sessions carry no mark, and a namespace's id is only recycled after its
# last process is gone.
cluster__lab_pids() {
	local n rec name mnt pid root_mnt
	grep -lsz '^CTMCL_OWNER=ctmcl-' /proc/[0-9]*/environ | cut -d/ -f3
	for n in "${CLUSTER_MEMBERS[@]}"; do
		[ ! -e "/run/netns/ctmcl$n" ] || ip netns pids "ctmcl$n" 2>/dev/null
	done
	root_mnt=$(readlink /proc/1/ns/mnt)
	for rec in "$CLUSTER_STATE_DIR"/*.mnt; do
		[ -e "$rec" ] || continue
		name=$(basename "$rec" .mnt)
		mnt=$(cat "$rec")
		case $mnt in "" | "$root_mnt" | "$(readlink /proc/self/ns/mnt)") continue ;; esac
		for pid in "$(cat "$CLUSTER_STATE_DIR/$name.holder" 2>/dev/null)" \
			"$(cat "$CLUSTER_STATE_DIR/$name.incusd" 2>/dev/null)" \
			"$(cat "$CLUSTER_STATE_DIR/$name/run/sshd.pid" 2>/dev/null)"; do
			if { e2e__pid_is "$pid" sleep || e2e__pid_is "$pid" incusd || e2e__pid_is "$pid" sshd; } &&
				[ "$(readlink "/proc/$pid/ns/mnt")" = "$mnt" ]; then
				find /proc/[0-9]*/ns/mnt -maxdepth 0 -printf '%l %p\n' 2>/dev/null |
					awk -v ns="$mnt" '$1 == ns { split($2, a, "/"); print a[3] }'
				break
			fi
		done
	done
}

# Succeeds while any of the PIDs is a live process (not a zombie: PID 1 or our
# shell may reap late).
cluster__live() {
	local p stat
	for p; do
		stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		stat=${stat##*) }
		[ "${stat%% *}" = Z ] || return 0
	done
	return 1
}

# Kill the lab's processes by PID: first the containers (the init of a PID
# namespace of their own under one of ours, so that its LXC monitor, still
# alive, removes its cgroups), then the rest.
cluster__kill_all() {
	local pids kids k i self_pidns
	self_pidns=$(readlink /proc/self/ns/pid)
	for ((i = 0; i < 5; i++)); do
		pids=$(cluster__lab_pids | sort -un | grep -vx -e "$$" -e "$BASHPID")
		[ -n "$pids" ] || return 0
		kids=
		for k in $(pgrep -P "$(echo "$pids" | paste -sd,)"); do
			[ "$(readlink "/proc/$k/ns/pid" 2>/dev/null)" = "$self_pidns" ] || kids+=" $k"
		done
		if [ -n "$kids" ]; then
			# shellcheck disable=SC2086 # a list of PIDs
			kill -KILL $kids 2>/dev/null
			for ((k = 0; k < 50; k++)); do
				# shellcheck disable=SC2086
				cluster__live $kids || break
				sleep 0.1
			done
			sleep 0.3 # the monitors' clean-up
		fi
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null
		for ((k = 0; k < 50; k++)); do
			# shellcheck disable=SC2086
			cluster__live $pids || break
			sleep 0.1
		done
	done
	e2e_log "warning: lab processes left: $(cluster__lab_pids | sort -un | paste -sd' ')"
}

cluster__delete_link() {
	! ip link show "$1" >/dev/null 2>&1 || ip link delete "$1" 2>/dev/null ||
		! ip link show "$1" >/dev/null 2>&1
}

# cluster__down: remove the lab (ours or an earlier run's), under the lock.
cluster__down() {
	local n m rc=0 boot
	boot=$(cat "$CLUSTER_STATE_DIR/boot_id" 2>/dev/null)
	if [ -n "$boot" ] && [ "$boot" != "$(cat /proc/sys/kernel/random/boot_id)" ]; then
		e2e_log "lab records are from an earlier boot: no process of theirs is left"
	else
		cluster__kill_all
	fi
	# The veths first: a deleted namespace takes its end with it, but later.
	for n in "${CLUSTER_MEMBERS[@]}"; do
		cluster__delete_link "ctmclv$n" || rc=1
		[ ! -e "/run/netns/ctmcl$n" ] || ip netns delete "ctmcl$n" || rc=1
	done
	cluster__delete_link "$CLUSTER_BRIDGE" || rc=1
	if ip -4 route show table main type unreachable | e2e_grep -q "^unreachable $CLUSTER_TENANT_SUBNET"; then
		ip route delete unreachable "$CLUSTER_TENANT_SUBNET" || rc=1
	fi
	# Nothing of ours is mounted in this namespace; should something be, it
	# goes before the files (rm --one-file-system would not cross it anyway).
	while read -r m; do
		e2e_log "unmounting $m"
		umount -l "$m" || rc=1
	done < <(awk '$5 ~ "^/(var/lib/ctmcl|run/ctmcl)(/|$)" { print $5 }' /proc/self/mountinfo | sort -r)
	rm -rf --one-file-system "$CLUSTER_LIB_DIR" "$CLUSTER_STATE_DIR" || rc=1
	[ "$rc" -eq 0 ] || e2e_die "the lab was not removed completely"
}

# cluster_lab_down: remove everything the lab made, by name and PID, also after
# a failure, a half-made lab or a killed run. Safe to call more than once and
# from an EXIT trap; keeps the exit status. Touches nothing while another run
# holds the lab's lock.
cluster_lab_down() {
	local rc=$?
	local -
	set +e +u
	local t0
	e2e_try_flock CLUSTER_LOCK_FD "$CLUSTER_LOCK_FILE" || {
		[ $? -eq 2 ] || e2e_log "another cluster lab holds $CLUSTER_LOCK_FILE; not cleaning up"
		return "$rc"
	}
	t0=$(e2e_now_ms)
	cluster__down
	e2e_log "lab: down in $(cluster__ms_since "$t0") ms"
	cluster__unlock
	return "$rc"
}
