# shellcheck shell=bash
# shellcheck disable=SC2016 # jq programs for e2e_jq, single-quoted
# env.sh: the host environment of containarium's end-to-end tests: packages,
# incusd, the pool, bridge and project, the image, the bastion sshd, and the
# cleanup of all of it. Sourced by scripts/e2e.sh, scripts/bench.sh and
# scripts/e2e-smoke.sh, as root, on a Debian 12 host (no systemd needed):
#
#   . tests/e2e/includes/env.sh
#   trap e2e_cleanup EXIT        # (INT/TERM: trap 'exit 130' INT TERM)
#   e2e_install_deps             # apt, only when something is missing
#   e2e_start_incusd             # reuse a running incusd or start one
#   e2e_setup_incus              # pool, bridge, project (fresh every run)
#   e2e_image                    # build (cached) and import the image
#   e2e_start_syslog             # rsyslogd, so sshd logs to /var/log/auth.log
#   e2e_start_bastion_sshd       # sshd on 127.0.0.1:$E2E_BASTION_PORT
#
# Everything created carries the prefix "ctme2e" (Incus objects, files under
# /run) or "e2e-" (host accounts); nothing else is touched. Traffic goes only to
# loopback and to the bridge created here (explicit subnet, no NAT, no IPv6).
#
# Globals (set before sourcing to override the defaults):
#   E2E_PROJECT=ctme2e  E2E_POOL=ctme2e  E2E_POOL_SIZE=8GiB
#   E2E_BRIDGE=ctme2ebr0  E2E_BRIDGE_CIDR=10.197.83.1/24
#   E2E_BRIDGE2=ctme2ebr1 (a bridge without our ACL, made by the network suite)
#   E2E_ACL=containarium-tenants (made by host init; never one that was there before)
#   E2E_IMAGE=ctme2e-debian12 (alias, in Incus project "default", shared)
#   E2E_NOCLOUD_IMAGE=ctme2e-nocloud (published by e2e.sh for one check, deleted by e2e_cleanup)
#   E2E_BASTION_HOST=127.0.0.1  E2E_BASTION_PORT=22022
#   E2E_STATE_DIR=/run/ctme2e (pids, temp files)  E2E_LOG_DIR=$E2E_STATE_DIR/log
#   E2E_CACHE_DIR=/var/cache/containarium-e2e (image tarballs, .deb cache,
#     host-backup/: drop-in and /etc/containarium as they were before the run)
#   E2E_GROUP=containarium (host group of jump accounts)
#   E2E_DELETE_IMAGE=0 (1: e2e_cleanup also deletes the image aliases and images)
#   E2E_IMAGE_REBUILD=0 (1: e2e_image rebuilds even when the cache is fresh)
#   E2E_IMAGE_TRIXIE=ctme2e-debian13 (alias of the Debian 13 image, the trixie suite's)
#   E2E_LOCK_WAIT=1800 (seconds to wait for another run's lock, /run/ctme2e.lock)
# Set by the functions:
#   E2E_INCUSD_PID    incusd started (or adopted) by us; "" when reused
#   E2E_SSHD_PID      bastion sshd started by us
#   E2E_RSYSLOGD_PID  rsyslogd started by us; "" when one was running already
#   E2E_IMAGE_FINGERPRINT, E2E_IMAGE_MS (build or cache, and import),
#   E2E_IMAGE_WARM_MS (unpacking the image onto the pool)
#   E2E_BRIDGE_IP     10.197.83.1 (address part of E2E_BRIDGE_CIDR)
#
# The functions run with set +e internally (whatever the caller uses) and
# return non-zero with a message on stderr when they fail. Callers may use
# set -euo pipefail.

E2E_PROJECT=${E2E_PROJECT:-ctme2e}
E2E_POOL=${E2E_POOL:-ctme2e}
E2E_POOL_SIZE=${E2E_POOL_SIZE:-8GiB}
# A pool too small for the image: the crash suite's full pool.
E2E_POOL_TINY=ctme2e-tiny
E2E_BRIDGE=${E2E_BRIDGE:-ctme2ebr0}
E2E_BRIDGE2=ctme2ebr1
E2E_ACL=containarium-tenants
E2E_BRIDGE_CIDR=${E2E_BRIDGE_CIDR:-10.197.83.1/24}
# shellcheck disable=SC2034 # used by the sourcing scripts
E2E_BRIDGE_IP=${E2E_BRIDGE_CIDR%/*}
E2E_IMAGE=${E2E_IMAGE:-ctme2e-debian12}
E2E_IMAGE_TRIXIE=${E2E_IMAGE_TRIXIE:-ctme2e-debian13}
# Published by e2e.sh for one check; e2e_cleanup deletes it.
E2E_NOCLOUD_IMAGE=${E2E_NOCLOUD_IMAGE:-ctme2e-nocloud}
E2E_BASTION_HOST=${E2E_BASTION_HOST:-127.0.0.1}
E2E_BASTION_PORT=${E2E_BASTION_PORT:-22022}
E2E_STATE_DIR=${E2E_STATE_DIR:-/run/ctme2e}
E2E_LOG_DIR=${E2E_LOG_DIR:-$E2E_STATE_DIR/log}
E2E_CACHE_DIR=${E2E_CACHE_DIR:-/var/cache/containarium-e2e}
E2E_REPO=${E2E_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
E2E_SCRIPTS_DIR=$E2E_REPO/scripts
E2E_GROUP=${E2E_GROUP:-containarium}
E2E_DELETE_IMAGE=${E2E_DELETE_IMAGE:-0}
E2E_INCUSD_PID=${E2E_INCUSD_PID:-}
E2E_SSHD_PID=${E2E_SSHD_PID:-}
E2E_IMAGE_FINGERPRINT=${E2E_IMAGE_FINGERPRINT:-}
E2E_IMAGE_MS=${E2E_IMAGE_MS:-0}
E2E_IMAGE_WARM_MS=${E2E_IMAGE_WARM_MS:-0}

E2E_SSHD_PIDFILE=/run/ctme2e-sshd.pid
E2E_RSYSLOGD_PID=${E2E_RSYSLOGD_PID:-}
# Where the bastion sshd's lines land (syslog, facility auth), as on a real
# Debian bastion: fail2ban and `containarium audit` read it.
E2E_AUTH_LOG=/var/log/auth.log
E2E_INCUSD_PIDFILE=$E2E_STATE_DIR/incusd.pid
E2E_DROPIN=/etc/ssh/sshd_config.d/00-containarium.conf
# The drop-in's name before 00-containarium.conf; host init removes ours.
E2E_OLD_DROPIN=/etc/ssh/sshd_config.d/containarium.conf
# `host init --harden`'s drop-in (the sshd-policy suite writes it).
E2E_HARDENING=/etc/ssh/sshd_config.d/00-containarium-hardening.conf
# What `containarium host init` writes for fail2ban (our jail, its switch,
# the filter override), and the fail2ban.d file of the suite's own server.
E2E_FAIL2BAN_FILES=(/etc/fail2ban/jail.d/containarium.conf /etc/fail2ban/jail.d/containarium.local
	/etc/fail2ban/filter.d/sshd.local)
E2E_FAIL2BAN_TEST_CONF=/etc/fail2ban/fail2ban.d/ctme2e.local
# Host files the tool writes: e2e__record_host_state saves each as it was
# before the run, e2e__restore_host_state puts it back (or removes it).
E2E_HOST_FILES=("$E2E_DROPIN" "$E2E_OLD_DROPIN" "$E2E_HARDENING" /etc/sysctl.d/60-containarium.conf
	"${E2E_FAIL2BAN_FILES[@]}")
# Kernel tunables host init may raise (src/sysctl.rs), saved and put back the
# same way.
E2E_HOST_SYSCTLS=(fs.inotify kernel.keys net.ipv4.neigh.default net.ipv6.neigh.default)
# Drop-ins a suite writes (hostile configuration) match this; never others.
E2E_TEST_DROPINS='/etc/ssh/sshd_config.d/*-ctme2e-*.conf'
E2E_ETC_DIR=/etc/containarium
E2E_BACKUP_DIR=$E2E_CACHE_DIR/host-backup
E2E_LOCK_FILE=/run/ctme2e.lock
E2E_LOCK_WAIT=${E2E_LOCK_WAIT:-1800}
E2E_LOCK_FD=${E2E_LOCK_FD:-}

# Functions e2e_cleanup runs first, for what a suite made outside the
# project (namespaces, listeners, drop-ins): e2e_on_cleanup FN.
E2E_CLEANUP_HOOKS=()
e2e_on_cleanup() { E2E_CLEANUP_HOOKS+=("$1"); }

e2e_log() { printf '[e2e %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
e2e_die() {
	e2e_log "ERROR: $*"
	return 1
}

# Refuse to work on names without our prefix (protects against bad overrides).
e2e__check_names() {
	local n
	for n in "$E2E_PROJECT" "$E2E_POOL" "$E2E_BRIDGE" "$E2E_IMAGE"; do
		case $n in
		ctme2e*) ;;
		*) e2e_die "refusing Incus object name without the ctme2e prefix: $n" || return 1 ;;
		esac
	done
}

# Milliseconds since the epoch.
e2e_now_ms() {
	local t
	t=$(date +%s%N)
	echo $((t / 1000000))
}

# incus, confined to the test project.
e2e_incus() { incus --project "$E2E_PROJECT" "$@"; }

# e2e_jq JQ-ARGS...: `jq -e JQ-ARGS` on standard input, which must hold JSON.
# jq 1.6's -e exits 0 on empty input, so a check of what a failed command
# printed (nothing) would pass. Exported: checks run `bash -c` pipelines.
e2e_jq() {
	local json
	json=$(cat)
	[ -n "${json//[[:space:]]/}" ] || { echo "e2e_jq: no JSON on standard input" >&2; return 1; }
	jq -e "$@" <<<"$json"
}
export -f e2e_jq

# e2e_grep GREP-ARGS...: grep on standard input, read whole first. grep -q
# stops at the first match, and the writer's next write then kills it with
# SIGPIPE: under pipefail the pipeline fails although grep found the line
# (tests/it/pipes.rs keeps every pipeline of ours from doing that).
# Exported: checks run `bash -c` pipelines.
e2e_grep() {
	local input
	input=$(cat)
	if [ -n "$input" ]; then grep "$@" <<<"$input"; else grep "$@" </dev/null; fi
}
export -f e2e_grep

e2e__init_state() {
	mkdir -p "$E2E_STATE_DIR" "$E2E_LOG_DIR" && chmod 0700 "$E2E_STATE_DIR"
}

# Is $1 a live (not zombie) process named $2?
e2e__pid_is() {
	local stat
	[ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] || return 1
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[ "${stat%% *}" != Z ]
}

# Stop process $1 (expected name $2) by PID: TERM (or signal $3), wait, KILL.
e2e__stop_pid() {
	local -
	set +e # failures are handled explicitly (callers may use set -e)
	local pid=$1 name=$2 sig=${3:-TERM} i
	e2e__pid_is "$pid" "$name" || return 0
	kill "-$sig" "$pid" 2>/dev/null
	for ((i = 0; i < 300; i++)); do
		e2e__pid_is "$pid" "$name" || return 0
		sleep 0.2
	done
	e2e_log "$name ($pid) did not stop on SIG$sig; sending KILL"
	kill -KILL "$pid" 2>/dev/null
	sleep 0.5
}

# ---------------------------------------------------------------------------
# One run at a time: every function that changes the host takes an exclusive
# flock on $E2E_LOCK_FILE first (held until the process exits or e2e_cleanup
# ends). A second run waits up to $E2E_LOCK_WAIT seconds, then fails; its
# e2e_cleanup touches nothing. Long-lived children (incusd, sshd) do not
# inherit the lock.
# ---------------------------------------------------------------------------
e2e_lock() { e2e_flock E2E_LOCK_FD "$E2E_LOCK_FILE" "$E2E_LOCK_WAIT" "another e2e run"; }

# e2e_flock VAR FILE SECONDS WHAT: an exclusive flock on FILE (waiting at
# most SECONDS for WHAT holds it), its fd in the variable named VAR, and our
# PID in FILE. VAR is set only once the lock is held: a run killed while it
# waits must not clean up under the holder's feet. Nothing when VAR is set.
e2e_flock() {
	local var=$1 file=$2 wait=$3 what=$4 owner fd
	[ -z "${!var:-}" ] || return 0
	exec {fd}>>"$file" || return 1
	if ! flock -n "$fd"; then
		owner=$(cat "$file" 2>/dev/null)
		e2e_log "$what (pid ${owner:-?}) is active; waiting up to ${wait}s"
		if ! flock -w "$wait" "$fd"; then
			exec {fd}>&-
			e2e_die "$what (pid ${owner:-?}) still holds $file"
			return 1
		fi
	fi
	printf -v "$var" %s "$fd"
	echo "$$" >"$file"
}

# e2e_try_flock VAR FILE: e2e_flock without waiting. Exit 1 when another
# holds FILE, 2 when FILE cannot be opened; VAR stays empty then. Nothing
# when VAR is set.
e2e_try_flock() {
	local var=$1 file=$2 fd
	[ -z "${!var:-}" ] || return 0
	exec {fd}>>"$file" || return 2
	if ! flock -n "$fd"; then
		exec {fd}>&-
		return 1
	fi
	printf -v "$var" %s "$fd"
	echo "$$" >"$file"
}

# e2e_funlock VAR FILE: lets go of e2e_flock's lock (nothing when VAR is empty).
e2e_funlock() {
	local var=$1 file=$2 fd
	fd=${!var:-}
	[ -n "$fd" ] || return 0
	: >"$file"
	exec {fd}>&-
	printf -v "$var" '%s' ''
}
e2e__unlock() { e2e_funlock E2E_LOCK_FD "$E2E_LOCK_FILE"; }

# ---------------------------------------------------------------------------
# e2e_install_deps: install the host packages the suite needs: what
# scripts/install-deps.sh installs for any Containarium host (Incus from
# bookworm-backports and the tools; the same code quickstart.sh runs) and the
# suites' own tools. Does nothing (no apt-get update, no lock: the cluster lab
# runs beside the main e2e) when all are installed.
# ---------------------------------------------------------------------------
e2e_install_deps() {
	local -
	set +e # failures are handled explicitly (callers may use set -e)
	local extra=(busybox-static rsyslog fail2ban sudo python3-yaml)
	if [ "$("$E2E_SCRIPTS_DIR/install-deps.sh" --dry-run "${extra[@]}" 2>/dev/null)" = 'packages: all installed, unchanged' ]; then
		return 0
	fi
	e2e_lock || return 1
	e2e__init_state || return 1
	"$E2E_SCRIPTS_DIR/install-deps.sh" --log "$E2E_LOG_DIR/apt.log" \
		"${extra[@]}" | grep -v 'unchanged$' >&2
	[ "${PIPESTATUS[0]}" -eq 0 ] || e2e_die "installing the packages failed"
}

# ---------------------------------------------------------------------------
# incusd
# ---------------------------------------------------------------------------
e2e_incus_up() { timeout 10 incus query /1.0 >/dev/null 2>&1; }

# e2e_start_incusd: reuse a running incusd (left running at the end), or start
# /usr/libexec/incus/incusd in its own session and set E2E_INCUSD_PID (stopped
# by e2e_cleanup). An incusd that an earlier, crashed run of this suite started
# is adopted (and stopped at the end).
e2e_start_incusd() {
	local -
	set +e # failures are handled explicitly (callers may use set -e)
	e2e_lock || return 1
	local pid i
	e2e__init_state || return 1
	if ! e2e_incus_up && [ -n "$(e2e__incusd_daemons)" ]; then
		e2e_log "an incusd daemon is running but not answering yet; waiting"
		incus admin waitready --timeout 60 >/dev/null 2>&1
	fi
	if e2e_incus_up; then
		pid=$(cat "$E2E_INCUSD_PIDFILE" 2>/dev/null)
		if e2e__pid_is "$pid" incusd; then
			E2E_INCUSD_PID=$pid
			e2e_log "adopting incusd $pid started by an earlier run"
		else
			E2E_INCUSD_PID=
			rm -f "$E2E_INCUSD_PIDFILE"
			e2e_log "reusing the running incusd"
		fi
		return 0
	fi
	e2e_log "starting incusd"
	PATH=/usr/libexec/incus:/usr/sbin:/usr/bin:/sbin:/bin setsid /usr/libexec/incus/incusd \
		--group root --logfile "$E2E_LOG_DIR/incusd.log" \
		</dev/null >>"$E2E_LOG_DIR/incusd.out" 2>&1 {E2E_LOCK_FD}>&- &
	pid=$!
	for ((i = 0; i < 120; i++)); do
		e2e_incus_up && break
		if ! kill -0 "$pid" 2>/dev/null && [ -z "$(e2e__incusd_daemons)" ]; then
			tail -n 20 "$E2E_LOG_DIR/incusd.out" "$E2E_LOG_DIR/incusd.log" >&2 2>/dev/null
			e2e_die "incusd exited during start-up"
			return 1
		fi
		sleep 0.5
	done
	e2e_incus_up || {
		e2e_die "incusd did not answer within 60 s (log: $E2E_LOG_DIR/incusd.log)"
		return 1
	}
	# The daemon's own idea of its PID (setsid may have forked).
	E2E_INCUSD_PID=$(incus query /1.0 | jq -r '.environment.server_pid // empty')
	[ -n "$E2E_INCUSD_PID" ] || E2E_INCUSD_PID=$pid
	echo "$E2E_INCUSD_PID" >"$E2E_INCUSD_PIDFILE"
	e2e_log "incusd running, pid $E2E_INCUSD_PID"
}

# PIDs of incusd daemons (not its fork*/callhook helper processes), only the
# host's own: a daemon with an INCUS_DIR of its own (a member of the cluster
# lab, tests/e2e/includes/cluster.sh) is another server.
e2e__incusd_daemons() {
	local p args arg1 dir
	for p in $(pgrep -x incusd); do
		e2e__pid_is "$p" incusd || continue # zombies (PID 1 may reap late)
		dir=$(tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | sed -n 's/^INCUS_DIR=//p')
		case ${dir:-/var/lib/incus} in
		/var/lib/incus | /var/lib/incus/) ;;
		*) continue ;;
		esac
		args=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || continue
		read -r _ arg1 _ <<<"$args"
		case ${arg1:-} in
		"" | --*) echo "$p" ;;
		esac
	done
}

e2e_stop_incusd() {
	local -
	set +e # failures are handled explicitly (callers may use set -e)
	[ -n "$E2E_INCUSD_PID" ] || return 0
	if e2e__pid_is "$E2E_INCUSD_PID" incusd; then
		e2e_log "stopping incusd $E2E_INCUSD_PID"
		# SIGPWR: incusd shuts its instances down cleanly, then exits.
		e2e__stop_pid "$E2E_INCUSD_PID" incusd PWR
	fi
	rm -f "$E2E_INCUSD_PIDFILE"
	E2E_INCUSD_PID=
}

# ---------------------------------------------------------------------------
# Incus objects
# ---------------------------------------------------------------------------
e2e__exists() { incus "$@" >/dev/null 2>&1; }

# Delete our Incus objects (instances and profiles of the project, the project,
# the bridge, volumes on the pool, the pool). Quiet when they are absent.
e2e_delete_incus_objects() {
	local -
	set +e # failures are handled explicitly (callers may use set -e)
	e2e_lock || return 1
	local rc=0 n pool
	e2e__check_names || return 1
	e2e_incus_up || return 0
	e2e__init_state || return 1
	if e2e__exists project show "$E2E_PROJECT"; then
		for n in $(incus list --project "$E2E_PROJECT" --format csv -c n 2>/dev/null); do
			incus delete --project "$E2E_PROJECT" --force "$n" >/dev/null 2>"$E2E_STATE_DIR/delete.err" && continue
			# A root volume at its btrfs quota cannot even drop its nested
			# subvolumes (Docker's): "Could not destroy subvolume/snapshot: Disk
			# quota exceeded". Lift the quota, then delete.
			e2e_log "deleting $n failed ($(tail -c 300 "$E2E_STATE_DIR/delete.err")); retrying without its root quota"
			incus stop --project "$E2E_PROJECT" --force "$n" >/dev/null 2>&1
			incus config device unset --project "$E2E_PROJECT" "$n" root size >/dev/null 2>&1
			incus delete --project "$E2E_PROJECT" --force "$n" >/dev/null || rc=1
		done
		rm -f "$E2E_STATE_DIR/delete.err"
		for n in $(incus profile list --project "$E2E_PROJECT" --format csv 2>/dev/null | cut -d, -f1); do
			[ "$n" = default ] || incus profile delete --project "$E2E_PROJECT" "$n" >/dev/null || rc=1
		done
		for n in $(incus storage volume list "$E2E_POOL" --project "$E2E_PROJECT" --format csv -c tn 2>/dev/null |
			awk -F, '$1 == "custom" { print $2 }'); do
			incus storage volume delete --project "$E2E_PROJECT" "$E2E_POOL" "$n" >/dev/null || rc=1
		done
		incus project delete "$E2E_PROJECT" >/dev/null || rc=1
	fi
	for n in "$E2E_BRIDGE" "$E2E_BRIDGE2"; do
		if e2e__exists network show "$n"; then
			incus network delete "$n" >/dev/null || rc=1
		fi
	done
	# Made by `containarium host init` on our bridge; e2e_setup_incus refuses
	# to run where one existed before (a real bastion's).
	if e2e__exists network acl show "$E2E_ACL" &&
		incus query "/1.0/network-acls/$E2E_ACL" | e2e_jq '.used_by | length == 0' >/dev/null; then
		incus network acl delete "$E2E_ACL" >/dev/null || rc=1
	fi
	for pool in "$E2E_POOL" "$E2E_POOL_TINY"; do
		e2e__exists storage show "$pool" || continue
		# Image volumes (cached unpacked images) keep the pool busy.
		for n in $(incus storage volume list "$pool" --all-projects --format json |
			jq -r '.[] | select(.type == "image") | "\(.project) \(.name)"' | tr ' ' '/'); do
			incus storage volume delete --project "${n%%/*}" "$pool" "image/${n#*/}" >/dev/null || rc=1
		done
		incus storage delete "$pool" >/dev/null || rc=1
	done
	return "$rc"
}

# e2e_setup_incus: fresh btrfs pool, bridge and project (leftovers of an earlier
# run are deleted first). The project's default profile gets a root disk on the
# pool and eth0 on the bridge.
e2e_setup_incus() {
	local -
	set +e # failures are handled explicitly (callers may use set -e)
	e2e_lock || return 1
	local route
	e2e__check_names || return 1
	if e2e__exists network acl show "$E2E_ACL" &&
		incus query "/1.0/network-acls/$E2E_ACL" |
		e2e_jq --arg b "$E2E_BRIDGE" --arg b2 "$E2E_BRIDGE2" \
			'.used_by | map(select(. != "/1.0/networks/\($b)" and . != "/1.0/networks/\($b2)")) | length > 0' >/dev/null; then
		e2e_die "network ACL $E2E_ACL guards networks that are not this suite's (a real bastion?); not touching it"
		return 1
	fi
	e2e__record_host_state || return 1
	e2e_delete_incus_objects || e2e_die "could not delete leftovers" || return 1
	route=$(ip -4 route show "${E2E_BRIDGE_CIDR%.*}.0/${E2E_BRIDGE_CIDR#*/}")
	if [ -n "$route" ]; then
		e2e_die "subnet of $E2E_BRIDGE_CIDR is already routed on this host: $route"
		return 1
	fi
	e2e_log "creating pool $E2E_POOL, bridge $E2E_BRIDGE, project $E2E_PROJECT"
	if ! {
		incus storage create "$E2E_POOL" btrfs size="$E2E_POOL_SIZE" >/dev/null &&
			incus network create "$E2E_BRIDGE" ipv4.address="$E2E_BRIDGE_CIDR" \
				ipv4.nat=false ipv6.address=none raw.dnsmasq=no-resolv >/dev/null &&
			incus project create "$E2E_PROJECT" -c features.images=false \
				-c features.profiles=true >/dev/null &&
			incus profile device add --project "$E2E_PROJECT" default root disk \
				path=/ pool="$E2E_POOL" >/dev/null &&
			incus profile device add --project "$E2E_PROJECT" default eth0 nic \
				network="$E2E_BRIDGE" name=eth0 >/dev/null
	}; then
		e2e_die "Incus setup failed"
		return 1
	fi
}

# ---------------------------------------------------------------------------
# Image
# ---------------------------------------------------------------------------

# e2e_image [SUITE [ALIAS]]: make sure alias ALIAS (default $E2E_IMAGE, in
# project default) names the Debian SUITE (default bookworm) image that the
# current build-image.sh builds. build-image.sh --cache keeps the tarballs in
# $E2E_CACHE_DIR/images/image-debian-SUITE-...-<hash of build-image.sh> and
# builds only when they are missing (E2E_IMAGE_REBUILD=1: always);
# scripts/quickstart.sh caches its image the same way. Sets E2E_IMAGE_FINGERPRINT and E2E_IMAGE_MS
# (build or cache, and import). Call it after e2e_setup_incus: it then also
# unpacks the image onto the pool (e2e_warm_image).
e2e_image() {
	local -
	set +e # failures are handled explicitly (callers may use set -e)
	e2e_lock || return 1
	local suite=${1:-bookworm} alias=${2:-$E2E_IMAGE} debs=$E2E_CACHE_DIR/debs t0 fp
	e2e__check_names || return 1
	case $alias in
	ctme2e*) ;;
	*) e2e_die "refusing an image alias without the ctme2e prefix: $alias" || return 1 ;;
	esac
	# Bookworm's .debs stay where they always were.
	[ "$suite" = bookworm ] || debs+=-$suite
	mkdir -p "$E2E_CACHE_DIR" || return 1
	if [ "${E2E_IMAGE_REBUILD:-0}" = 1 ]; then
		rm -rf "$E2E_CACHE_DIR/images/image-debian-$suite-"*
	fi
	# Tarballs of build-image.sh versions from before the key named the suite,
	# once no run has made them for a week (a branch without the suite in its
	# key may still be using them).
	find "$E2E_CACHE_DIR" -mindepth 1 -maxdepth 1 -regextype posix-extended \
		-regex '.*/image-[0-9a-f]{16}' -mtime +7 -exec rm -rf {} + 2>/dev/null
	t0=$(e2e_now_ms)
	fp=$("$E2E_SCRIPTS_DIR/build-image.sh" --suite "$suite" --cache "$E2E_CACHE_DIR/images" \
		--deb-cache "$debs" --alias "$alias" --project default) || {
		e2e_die "image $alias (debian $suite): build or import failed"
		return 1
	}
	E2E_IMAGE_MS=$(($(e2e_now_ms) - t0))
	E2E_IMAGE_FINGERPRINT=$fp
	# Unpack the image onto the pool now, so that the first timed launch is a
	# btrfs clone like every later one.
	if e2e__exists project show "$E2E_PROJECT"; then
		e2e_warm_image "$alias" || return 1
	fi
}

# e2e_warm_image [ALIAS]: create (never start) and delete a throwaway instance
# so the image volume exists on $E2E_POOL. Sets E2E_IMAGE_WARM_MS. Called by
# e2e_image when the project exists already.
e2e_warm_image() {
	local -
	set +e
	local name=ctme2e-warm-$$ t0
	t0=$(e2e_now_ms)
	e2e_incus create "${1:-$E2E_IMAGE}" "$name" >/dev/null || e2e_die "could not create $name" || return 1
	e2e_incus delete --force "$name" >/dev/null
	E2E_IMAGE_WARM_MS=$(($(e2e_now_ms) - t0))
}

# ---------------------------------------------------------------------------
# Host state (sshd drop-in, /etc/containarium, group) and bastion sshd
# ---------------------------------------------------------------------------

# Record the drop-in, our fail2ban files, /etc/containarium and whether the group exists, so that
# e2e_cleanup can put them back. A record left by a crashed run is restored
# first (it holds the state from before that run).
e2e__record_host_state() {
	local -
	set +e # failures are handled explicitly (callers may use set -e)
	e2e_lock || return 1
	[ -z "${E2E__RECORDED:-}" ] || return 0
	e2e__init_state || return 1
	# Leftovers of an earlier, unfinished run: its accounts, then the host
	# state it recorded before it started.
	e2e_delete_accounts || return 1
	if [ -e "$E2E_BACKUP_DIR/recorded" ]; then
		e2e_log "restoring host state recorded by an earlier, unfinished run"
		e2e__restore_host_state || return 1
	fi
	rm -rf "$E2E_BACKUP_DIR" && mkdir -p "$E2E_BACKUP_DIR" || return 1
	local f
	mkdir -p "$E2E_BACKUP_DIR/files" || return 1
	for f in "${E2E_HOST_FILES[@]}"; do
		if [ -e "$f" ]; then
			cp -a "$f" "$E2E_BACKUP_DIR/files/${f//\//%}" || return 1
		fi
	done
	sysctl "${E2E_HOST_SYSCTLS[@]}" >"$E2E_BACKUP_DIR/sysctl" 2>/dev/null
	if [ -e "$E2E_ETC_DIR" ]; then
		tar -C "$(dirname "$E2E_ETC_DIR")" -cpf "$E2E_BACKUP_DIR/etc.tar" \
			"$(basename "$E2E_ETC_DIR")" || return 1
	fi
	if getent group "$E2E_GROUP" >/dev/null; then
		touch "$E2E_BACKUP_DIR/group-existed"
	fi
	echo "$$" >"$E2E_BACKUP_DIR/recorded"
	E2E__RECORDED=1
}

e2e__restore_host_state() {
	local -
	set +e # failures are handled explicitly (callers may use set -e)
	local rc=0
	[ -e "$E2E_BACKUP_DIR/recorded" ] || return 0
	local f saved
	for f in "${E2E_HOST_FILES[@]}"; do
		saved=$E2E_BACKUP_DIR/files/${f//\//%}
		if [ -e "$saved" ]; then
			cp -a "$saved" "$f" || rc=1
		else
			rm -f "$f"
		fi
	done
	local key value
	while IFS=' =' read -r key value; do
		[ "$(sysctl -n "$key" 2>/dev/null)" = "$value" ] || sysctl -qw "$key=$value" || rc=1
	done < <(cat "$E2E_BACKUP_DIR/sysctl" 2>/dev/null)
	# shellcheck disable=SC2086 # the glob is the point
	rm -f $E2E_TEST_DROPINS
	rm -f "$E2E_FAIL2BAN_TEST_CONF"
	rm -rf "$E2E_ETC_DIR"
	if [ -e "$E2E_BACKUP_DIR/etc.tar" ]; then
		tar -C "$(dirname "$E2E_ETC_DIR")" -xpf "$E2E_BACKUP_DIR/etc.tar" || rc=1
	fi
	if [ ! -e "$E2E_BACKUP_DIR/group-existed" ] && getent group "$E2E_GROUP" >/dev/null; then
		# Only if no account still uses it as primary group.
		local gid
		gid=$(getent group "$E2E_GROUP" | cut -d: -f3)
		if [ -z "$(getent passwd | awk -F: -v g="$gid" '$4 == g { print $1 }')" ]; then
			groupdel "$E2E_GROUP" || rc=1
		fi
	fi
	[ "$rc" -ne 0 ] || rm -rf "$E2E_BACKUP_DIR"
	E2E__RECORDED=
	return "$rc"
}

# Delete host accounts named e2e-* whose primary group is $E2E_GROUP, and their
# key files.
e2e_delete_accounts() {
	local -
	set +e # failures are handled explicitly (callers may use set -e)
	e2e_lock || return 1
	local gid u rc=0
	gid=$(getent group "$E2E_GROUP" | cut -d: -f3)
	if [ -n "$gid" ]; then
		for u in $(getent passwd | awk -F: -v g="$gid" '$1 ~ /^e2e-/ && $4 == g { print $1 }'); do
			userdel "$u" 2>/dev/null || userdel -f "$u" || rc=1
		done
	fi
	rm -f "$E2E_ETC_DIR"/keys/e2e-*
	return "$rc"
}

# e2e_start_syslog: an rsyslogd writing /var/log/auth.log (Debian's own
# configuration), reused when one is running; a started one is stopped by
# e2e_cleanup, by PID. Start it before the bastion sshd (which logs to
# /dev/log).
e2e_start_syslog() {
	local -
	set +e # failures are handled explicitly (callers may use set -e)
	e2e_lock || return 1
	local pid i
	pid=$(pgrep -xo rsyslogd)
	if [ -n "$pid" ]; then
		e2e_log "reusing rsyslogd $pid"
		return 0
	fi
	rm -f /run/rsyslogd.pid
	rsyslogd -i /run/rsyslogd.pid {E2E_LOCK_FD}>&- || e2e_die "rsyslogd did not start" || return 1
	for ((i = 0; i < 50; i++)); do
		E2E_RSYSLOGD_PID=$(cat /run/rsyslogd.pid 2>/dev/null)
		[ -n "$E2E_RSYSLOGD_PID" ] && [ -S /dev/log ] && break
		sleep 0.1
	done
	e2e__pid_is "$E2E_RSYSLOGD_PID" rsyslogd || e2e_die "rsyslogd did not write its pid" || return 1
	e2e_log "rsyslogd $E2E_RSYSLOGD_PID (auth log: $E2E_AUTH_LOG)"
}

e2e_stop_syslog() {
	[ -n "$E2E_RSYSLOGD_PID" ] || return 0
	e2e__stop_pid "$E2E_RSYSLOGD_PID" rsyslogd
	E2E_RSYSLOGD_PID=
}

# e2e_start_bastion_sshd: host sshd (the system config, drop-ins included) on
# $E2E_BASTION_HOST:$E2E_BASTION_PORT. Sets E2E_SSHD_PID. After changing
# sshd_config or a drop-in, run e2e_reload_bastion_sshd (sshd keeps the config
# it read at start for new connections).
e2e_start_bastion_sshd() {
	local -
	set +e # failures are handled explicitly (callers may use set -e)
	e2e_lock || return 1
	local old i
	e2e__init_state || return 1
	e2e__record_host_state || return 1
	old=$(cat "$E2E_SSHD_PIDFILE" 2>/dev/null)
	if e2e__pid_is "$old" sshd; then
		e2e_log "stopping bastion sshd $old left by an earlier run"
		e2e__stop_pid "$old" sshd
	fi
	rm -f "$E2E_SSHD_PIDFILE"
	if ss -Hltn "sport = :$E2E_BASTION_PORT" | e2e_grep -q .; then
		e2e_die "port $E2E_BASTION_PORT is in use by something else"
		return 1
	fi
	ssh-keygen -A >/dev/null || return 1
	mkdir -p /run/sshd && chmod 0755 /run/sshd
	# Logs go to syslog (rsyslogd: e2e_start_syslog), not -E: fail2ban cannot
	# date -E's lines, and audit reads the real auth log.
	/usr/sbin/sshd -f /etc/ssh/sshd_config -p "$E2E_BASTION_PORT" \
		-o ListenAddress="$E2E_BASTION_HOST" -o PidFile="$E2E_SSHD_PIDFILE" \
		{E2E_LOCK_FD}>&- || {
		tail -n 20 "$E2E_AUTH_LOG" >&2
		e2e_die "sshd did not start"
		return 1
	}
	for ((i = 0; i < 50; i++)); do
		E2E_SSHD_PID=$(cat "$E2E_SSHD_PIDFILE" 2>/dev/null)
		[ -n "$E2E_SSHD_PID" ] && ss -Hltn "sport = :$E2E_BASTION_PORT" | e2e_grep -q . && break
		sleep 0.1
	done
	e2e__pid_is "$E2E_SSHD_PID" sshd || {
		e2e_die "sshd did not write $E2E_SSHD_PIDFILE"
		return 1
	}
	e2e_log "bastion sshd on $E2E_BASTION_HOST:$E2E_BASTION_PORT, pid $E2E_SSHD_PID"
}

# Make the bastion sshd re-read its configuration (SIGHUP; same PID).
e2e_reload_bastion_sshd() {
	local -
	set +e # failures are handled explicitly (callers may use set -e)
	local i
	e2e__pid_is "$E2E_SSHD_PID" sshd || e2e_die "bastion sshd not running" || return 1
	/usr/sbin/sshd -t -f /etc/ssh/sshd_config || e2e_die "sshd -t failed" || return 1
	kill -HUP "$E2E_SSHD_PID"
	for ((i = 0; i < 50; i++)); do
		sleep 0.1
		ss -Hltn "sport = :$E2E_BASTION_PORT" | e2e_grep -q . && return 0
	done
	e2e_die "bastion sshd not listening after reload"
}

e2e_stop_bastion_sshd() {
	local -
	set +e # failures are handled explicitly (callers may use set -e)
	local pid=${E2E_SSHD_PID:-$(cat "$E2E_SSHD_PIDFILE" 2>/dev/null)}
	if e2e__pid_is "$pid" sshd; then
		e2e__stop_pid "$pid" sshd
	fi
	rm -f "$E2E_SSHD_PIDFILE"
	E2E_SSHD_PID=
}

# ---------------------------------------------------------------------------
# e2e_cleanup: delete everything this suite created and restore the host.
# Safe to call more than once and from an EXIT trap; keeps the exit status.
# ---------------------------------------------------------------------------
e2e_cleanup() {
	local rc=$?
	local -
	set +e +u
	# Never clean up under another run's feet.
	e2e_try_flock E2E_LOCK_FD "$E2E_LOCK_FILE" || {
		[ $? -eq 2 ] || e2e_log "another e2e run holds $E2E_LOCK_FILE; not cleaning up"
		return "$rc"
	}
	e2e_log "cleaning up"
	local hook
	for hook in "${E2E_CLEANUP_HOOKS[@]}"; do "$hook"; done
	e2e_stop_bastion_sshd
	e2e_stop_syslog
	e2e_delete_incus_objects || e2e_log "warning: some Incus objects could not be deleted"
	if e2e_incus_up && incus image info --project default "$E2E_NOCLOUD_IMAGE" >/dev/null 2>&1; then
		incus image delete --project default "$E2E_NOCLOUD_IMAGE" >/dev/null 2>&1
	fi
	if [ "$E2E_DELETE_IMAGE" = 1 ] && e2e_incus_up; then
		incus image delete --project default "$E2E_IMAGE" >/dev/null 2>&1
		incus image delete --project default "$E2E_IMAGE_TRIXIE" >/dev/null 2>&1
	fi
	e2e_delete_accounts || e2e_log "warning: some e2e-* accounts could not be deleted"
	e2e__restore_host_state || e2e_log "warning: host state not fully restored (see $E2E_BACKUP_DIR)"
	e2e_stop_incusd
	e2e__unlock
	return "$rc"
}
