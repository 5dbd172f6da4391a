# shellcheck shell=bash
# shellcheck disable=SC2016 # jq programs for e2e_jq, single-quoted
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# quickstart: the README's first command, scripts/quickstart.sh, for real on
# this (used) machine, with names of its own: pool ctme2e-qs, bridge
# ctme2eqs0 on 10.197.88.1/24 (not the main bridge's subnet), project
# ctme2e-qs, image alias ctme2e-qs-debian12 (the e2e image cache: no build),
# the user e2e-qs, made for a host account e2e-qsa that plays the admin
# running it through sudo (SUDO_USER). The bastion is the run's sshd on
# 127.0.0.1:$E2E_BASTION_PORT. Proves: a same-named bridge it did not make is
# refused in one line and left as it was; the printed ssh -J line and the
# exported config log in as e2e-qsa; a second run changes nothing and says so
# step by step. Everything it made is removed at the end, and on failure by
# the cleanup hook.

E2E_QS_POOL=ctme2e-qs
E2E_QS_BRIDGE=ctme2eqs0
E2E_QS_SUBNET=10.197.88.1/24
E2E_QS_PROJECT=ctme2e-qs
E2E_QS_IMAGE=ctme2e-qs-debian12
E2E_QS_USER=e2e-qs
E2E_QS_ADMIN=e2e-qsa
E2E_QS_GECOS="containarium e2e quickstart admin"

# The one tenant ACL of a host names one tenant subnet, so quickstart's own
# bridge can have it only while the main bridge does not: the suite detaches
# it from the main bridge and this hook puts it back with the run's host init.
e2e__quickstart_cleanup() {
	local -
	set +e
	local n
	e2e_incus_up || return 0
	if incus project show "$E2E_QS_PROJECT" >/dev/null 2>&1; then
		"$BIN" --project "$E2E_QS_PROJECT" delete "$E2E_QS_USER" --force >/dev/null 2>&1
		for n in $(incus list --project "$E2E_QS_PROJECT" --format csv -c n); do
			incus delete --project "$E2E_QS_PROJECT" --force "$n" >/dev/null
		done
		incus project delete "$E2E_QS_PROJECT" >/dev/null
	fi
	if incus network show "$E2E_QS_BRIDGE" >/dev/null 2>&1; then
		incus network delete "$E2E_QS_BRIDGE" >/dev/null || true
	fi
	if incus storage show "$E2E_QS_POOL" >/dev/null 2>&1; then
		for n in $(incus storage volume list "$E2E_QS_POOL" --all-projects --format json |
			jq -r '.[] | select(.type == "image") | "\(.project)/\(.name)"'); do
			incus storage volume delete --project "${n%%/*}" "$E2E_QS_POOL" "image/${n#*/}" >/dev/null
		done
		incus storage delete "$E2E_QS_POOL" >/dev/null
	fi
	if incus image alias list --project default --format csv | e2e_grep -q "^$E2E_QS_IMAGE,"; then
		incus image alias delete --project default "$E2E_QS_IMAGE"
	fi
	if getent passwd "$E2E_QS_USER" >/dev/null && [ "$(id -gn "$E2E_QS_USER")" = "$E2E_GROUP" ]; then
		userdel "$E2E_QS_USER"
	fi
	rm -f "$E2E_ETC_DIR/keys/$E2E_QS_USER"
	if [ "$(getent passwd "$E2E_QS_ADMIN" | cut -d: -f5)" = "$E2E_QS_GECOS" ]; then
		userdel -r "$E2E_QS_ADMIN" 2>/dev/null
	fi
	rm -rf "$E2E_WORK/qs"
	e2e__quickstart_acl_back
}

# The tenant ACL back on the main bridge, with its rules (host init).
e2e__quickstart_acl_back() {
	if incus network show "$E2E_BRIDGE" >/dev/null 2>&1; then
		ctm host init >"$E2E_LOG_DIR/quickstart-host-init.log" 2>&1 ||
			e2e_log "warning: host init did not restore the tenant ACL (see $E2E_LOG_DIR/quickstart-host-init.log)"
	fi
}

test_quickstart() {
	local qs=$E2E_WORK/qs admin=$E2E_QS_ADMIN u=$E2E_QS_USER home out1 out2 line t0 first_ms second_ms
	local before after
	e2e_on_cleanup e2e__quickstart_cleanup
	e2e__quickstart_cleanup # what a crashed run left
	# The bastion is the run's sshd: quickstart is told its pid file, and
	# refuses when it is not running (it starts only the system's own).
	if ! e2e__pid_is "$E2E_SSHD_PID" sshd; then
		fail "the run's bastion sshd is running (pid ${E2E_SSHD_PID:-none})"
		return 0
	fi
	mkdir -p "$qs"
	check "a host account $admin, the admin who runs quickstart through sudo" \
		useradd -m -s /bin/bash -c "$E2E_QS_GECOS" "$admin"
	home=$(getent passwd "$admin" | cut -d: -f6)

	# The binary: built by quickstart's own cargo step (a no-op: the runner
	# built it), unless the run was given one.
	local from=()
	[ -z "${CONTAINARIUM_BIN:-}" ] || from=(--binary "$BIN")
	# The real script, with the suite's names; as if `sudo` by $admin.
	quickstart() {
		SUDO_USER=$admin CONTAINARIUM_CONFIG=$qs/config.toml CONTAINARIUM_UNITS_DIR=$qs/units \
			"$E2E_SCRIPTS_DIR/quickstart.sh" --pool "$E2E_QS_POOL" --pool-size 4GiB \
			--bridge "$E2E_QS_BRIDGE" --subnet "$E2E_QS_SUBNET" --project "$E2E_QS_PROJECT" \
			--image "$E2E_QS_IMAGE" --image-cache "$E2E_CACHE_DIR/images" "${from[@]}" --prefix "$qs/bin" \
			--jump-host "$E2E_BASTION_HOST" --jump-port "$E2E_BASTION_PORT" \
			--sshd-pidfile "$E2E_SSHD_PIDFILE" "$@"
	}
	# qs_refused NAME PATTERN ARGS...: quickstart exits 2 and its one error
	# line, the last, holds PATTERN.
	qs_refused() {
		local name=$1 pattern=$2 rc=0
		shift 2
		quickstart "$@" >"$qs/refused.out" 2>&1 || rc=$?
		if [ "$rc" -eq 2 ] && tail -n 1 "$qs/refused.out" | e2e_grep -q "^quickstart: error: .*$pattern" &&
			[ "$(grep -c 'error' "$qs/refused.out")" -eq 1 ]; then
			pass "$name"
		else
			fail "$name (exit $rc)"
			sed 's/^/    | /' "$qs/refused.out" | tail -n 10
		fi
	}
	nothing_made() {
		! incus storage show "$E2E_QS_POOL" >/dev/null 2>&1 &&
			! incus project show "$E2E_QS_PROJECT" >/dev/null 2>&1 &&
			[ ! -e "$qs/config.toml" ] && [ ! -e "$home/.ssh/id_ed25519" ] && [ ! -e "$qs/bin" ] &&
			! getent passwd "$u" >/dev/null
	}

	# --- a same-named bridge it did not make ---------------------------------
	check "(a bridge $E2E_QS_BRIDGE made by hand, as quickstart would make it but unmarked)" \
		incus network create "$E2E_QS_BRIDGE" ipv4.address="$E2E_QS_SUBNET" ipv4.nat=false \
		ipv6.address=none raw.dnsmasq=no-resolv
	before=$(incus network show "$E2E_QS_BRIDGE" || true)
	qs_refused "a bridge $E2E_QS_BRIDGE it did not make is refused in one line" \
		"network $E2E_QS_BRIDGE exists and was not made by quickstart" "$u"
	check "that bridge is left as it was" test "$(incus network show "$E2E_QS_BRIDGE")" = "$before"
	check "nothing was made (pool, project, config, key, binary, account)" nothing_made
	incus network delete "$E2E_QS_BRIDGE" >/dev/null || true

	# --- the tenant ACL guards the main bridge: quickstart's would rewrite it --
	qs_refused "a host whose tenant ACL guards another network is refused" \
		"$E2E_BRIDGE carries the containarium-tenants ACL" "$u"
	check "(the suite takes the tenant ACL off the main bridge; the cleanup puts it back)" \
		incus network unset "$E2E_BRIDGE" security.acls
	qs_refused "the admin's own host account is refused as USER" \
		"host account $admin exists and was not made by containarium" "$admin"
	nothing_made_nor_a_bridge() { nothing_made && ! incus network show "$E2E_QS_BRIDGE" >/dev/null 2>&1; }
	check "nothing was made by either (nor a bridge)" nothing_made_nor_a_bridge
	qs_refused "an sshd named by --sshd-pidfile that is not running is refused, never started" \
		"no sshd is running with the pid file $qs/no-such.pid" "$u" --sshd-pidfile "$qs/no-such.pid"
	no_sshd_on_22() { ! ss -Hltnp 'sport = :22' | e2e_grep -q '"sshd"'; }
	check "(no sshd was started: nothing listens on port 22)" no_sshd_on_22

	# --- a dry run: every step, nothing done -----------------------------------
	dry_run_says_it_all() {
		local out
		out=$(quickstart --dry-run 2>&1) || { echo "$out"; return 1; }
		echo "$out"
		grep -q "^quickstart: pool $E2E_QS_POOL: would " <<<"$out" &&
			grep -q "^quickstart: bridge $E2E_QS_BRIDGE: would " <<<"$out" &&
			grep -q "^quickstart: key $home/.ssh/id_ed25519.pub: would generate it as $admin" <<<"$out" &&
			grep -q "^quickstart: user $admin-box: would create it" <<<"$out" &&
			grep -q "^quickstart: .* changes would be made; nothing changed$" <<<"$out"
	}
	check "--dry-run prints every step, for the default user $admin-box (SUDO_USER's name)" dry_run_says_it_all
	check "the dry run made nothing" nothing_made_nor_a_bridge

	# --- the first run ------------------------------------------------------------
	first_run() { quickstart "$u" >"$qs/first.out" 2>"$qs/first.err"; }
	t0=$(e2e_now_ms)
	if first_run; then
		pass "the first run (user $u, the key made for $admin)"
		first_ms=$(($(e2e_now_ms) - t0))
		sed 's/^/    | /' "$qs/first.err"
	else
		fail "the first run (user $u, the key made for $admin)"
		sed 's/^/    | /' "$qs/first.err" || true
		return 0
	fi
	out1=$(cat "$qs/first.err")
	says() { grep -q "^quickstart: $1" <<<"$out1"; }
	made_each_part() {
		says "pool $E2E_QS_POOL: created (btrfs" && says "bridge $E2E_QS_BRIDGE: created ($E2E_QS_SUBNET, no NAT)" &&
			says "project $E2E_QS_PROJECT: created" && says "image $E2E_QS_IMAGE: imported"
	}
	check "it made the pool, bridge, project and image, and said so" made_each_part
	did_each_step() {
		{ [ "${#from[@]}" -gt 0 ] || says "binary: building it in $E2E_REPO as root"; } &&
			says "binary: installed $qs/bin/containarium" && says "config $qs/config.toml: set image" &&
			says "host init: done" && says "sshd: running (pid $E2E_SSHD_PID, port $E2E_BASTION_PORT), unchanged" &&
			says "key $home/.ssh/id_ed25519.pub: generated" && says "user $u: created"
	}
	check "it built and installed the binary, wrote the config, ran host init, made the key and the user, and said so" did_each_step
	check "the binary it installed is the one built from this checkout" cmp "$BIN" "$qs/bin/containarium"
	marked() { incus query "$1" | e2e_jq '.config["user.containarium.quickstart"] == "true"' >/dev/null; }
	marked_all() { marked "/1.0/storage-pools/$E2E_QS_POOL" && marked "/1.0/networks/$E2E_QS_BRIDGE" && marked "/1.0/projects/$E2E_QS_PROJECT"; }
	check "what it made carries user.containarium.quickstart=true" marked_all
	isolated_bridge() {
		incus query "/1.0/networks/$E2E_QS_BRIDGE" | e2e_jq --arg s "$E2E_QS_SUBNET" '.config["ipv4.address"] == $s and
			.config["ipv4.nat"] == "false" and .config["ipv6.address"] == "none" and .config["raw.dnsmasq"] == "no-resolv"'
	}
	check "the bridge has the explicit subnet, no NAT, no IPv6, no DNS forwarding" isolated_bridge
	same_image() {
		local ours theirs
		ours=$(incus query "/1.0/images/aliases/$E2E_QS_IMAGE" | jq -r .target) &&
			theirs=$(incus query "/1.0/images/aliases/$E2E_IMAGE" | jq -r .target) &&
			[ -n "$ours" ] && [ "$ours" = "$theirs" ]
	}
	check "the image is the run's own $E2E_IMAGE, from the e2e cache (no build)" same_image
	admins_key() {
		[ "$(stat -c %U:%a "$home/.ssh/id_ed25519")" = "$admin:600" ] &&
			[ "$(stat -c %U "$home/.ssh/id_ed25519.pub")" = "$admin" ] &&
			[ "$(stat -c %U:%a "$home/.ssh")" = "$admin:700" ]
	}
	check "the key pair was generated by and for $admin" admins_key
	placed() {
		incus query "/1.0/instances/$u-container?project=$E2E_QS_PROJECT" |
			e2e_jq --arg p "$E2E_QS_POOL" --arg b "$E2E_QS_BRIDGE" '.expanded_devices.root.pool == $p and .expanded_devices.eth0.network == $b'
	}
	check "$u's container is in $E2E_QS_PROJECT, on $E2E_QS_POOL and $E2E_QS_BRIDGE" placed

	# The printed ssh -J line, run as $admin with their default key; only host
	# key prompts are switched off (the exported config pins the keys).
	line=$(grep -m1 '^ssh -J ' "$qs/first.out" || true)
	runuser -u "$admin" -- tee "$home/tofu.conf" >/dev/null <<EOF
Host *
    BatchMode yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
    ConnectTimeout 15
EOF
	printed_line() { [[ $line =~ ^"ssh -J $u@$E2E_BASTION_HOST:$E2E_BASTION_PORT $u@${E2E_QS_SUBNET%.*}."[0-9]+$ ]]; }
	check "it printed the ssh -J line: $line" printed_line
	# shellcheck disable=SC2086 # the printed line, split as a shell would
	check "the printed ssh -J line logs $admin in (hostname is the container's)" \
		hostname_is "$u-container" runuser -u "$admin" -- ssh -F "$home/tofu.conf" ${line#ssh }
	sed -n '/^# containarium: /,$p' "$qs/first.out" | runuser -u "$admin" -- tee "$home/exported.conf" >/dev/null || true
	check "the printed config logs $admin in as it is (host keys pinned)" \
		hostname_is "$u-container" runuser -u "$admin" -- ssh -F "$home/exported.conf" -o BatchMode=yes "$u-dev"

	# --- the second run: nothing changes, and it says so ---------------------------
	state() {
		incus network show "$E2E_QS_BRIDGE" && incus storage show "$E2E_QS_POOL" &&
			incus project show "$E2E_QS_PROJECT" && incus query "/1.0/images/aliases/$E2E_QS_IMAGE" &&
			incus query "/1.0/instances/$u-container?project=$E2E_QS_PROJECT" | jq -S 'del(.state)' &&
			incus query /1.0/network-acls/containarium-tenants &&
			sha256sum "$qs/config.toml" "$home/.ssh/id_ed25519.pub" "$qs/bin/containarium" "$E2E_ETC_DIR/keys/$u" &&
			getent passwd "$u"
	}
	before=$(state 2>&1 || true)
	t0=$(e2e_now_ms)
	second_run() { quickstart "$u" >"$qs/second.out" 2>"$qs/second.err"; }
	check "the second run" second_run
	out2=$(cat "$qs/second.err" || true)
	second_ms=$(($(e2e_now_ms) - t0))
	sed 's/^/    | /' "$qs/second.err" || true
	check "the second run says nothing changed" grep -qx 'quickstart: nothing changed' <<<"$out2"
	every_step_unchanged() {
		local steps
		# (The cargo build's progress line is no step: the step is the install.)
		steps=$(grep '^quickstart: ' <<<"$out2" | grep -v -e '^quickstart: nothing changed$' -e '^quickstart: binary: building it ')
		[ "$(wc -l <<<"$steps")" -ge 10 ] && ! grep -v ', unchanged$' <<<"$steps"
	}
	check "every step of the second run says unchanged (pool $E2E_QS_POOL: exists, unchanged, ...)" every_step_unchanged
	after=$(state 2>&1 || true)
	check "the second run changed nothing (bridge, pool, project, image, container, ACL, config, key, binary, account)" \
		test "$after" = "$before"
	check "the second run prints the same ssh -J line" grep -qxF "$line" "$qs/second.out"

	e2e_log "quickstart: first run $first_ms ms, second run $second_ms ms"
	e2e__quickstart_cleanup
	left() {
		! incus project show "$E2E_QS_PROJECT" >/dev/null 2>&1 && ! incus network show "$E2E_QS_BRIDGE" >/dev/null 2>&1 &&
			! incus storage show "$E2E_QS_POOL" >/dev/null 2>&1 &&
			! incus image alias list --project default --format csv | e2e_grep -q "^$E2E_QS_IMAGE," &&
			! getent passwd "$u" >/dev/null && ! getent passwd "$admin" >/dev/null && [ ! -e "$qs" ]
	}
	check "everything quickstart made is gone" left
	acl_back() {
		incus query /1.0/network-acls/containarium-tenants |
			e2e_jq --arg b "/1.0/networks/$E2E_BRIDGE" --arg net "${E2E_BRIDGE_CIDR%.*}.0/24" \
				'(.used_by | any(startswith($b))) and (.egress | any(.destination == $net))'
	}
	check "the main bridge carries the tenant ACL again, with its own subnet's rules" acl_back

	e2e__quickstart_readme
	check "the main bridge carries the tenant ACL again, with its own subnet's rules" acl_back
}

# --- The README's command, exactly as printed: `sudo scripts/quickstart.sh` ----
# A newcomer account, e2e-qsr, runs it through real sudo with no argument, so
# every default is the one a person gets: pool containarium, bridge ctmbr0 on
# 10.100.0.1/24 (no NAT), project default, image containarium-debian12, user
# e2e-qsr-box, the key generated in ~e2e-qsr, the system's sshd found by
# /run/sshd.pid and its port by `sshd -T`. The system is a machine of the
# suite's own: a mount namespace, held by a sleeping process, with a private
# /etc (the host's, less its host keys, jump accounts and what containarium
# and the e2e put there; sudoers lets e2e-qsr run anything and keeps
# CARGO_TARGET_DIR, so quickstart's cargo build is the runner's own, a no-op),
# /run (its sshd.pid and containarium's locks, with the host's /run/ctme2e at
# the same path), /usr/local/bin (where the binary goes) and
# /var/cache/containarium/images (the e2e's image cache: nothing is built).
# Its sshd is /usr/sbin/sshd started with no option; its sshd_config says
# Port P, ListenAddress 127.0.0.1 (a free loopback port, not 22). Incus, the
# network and the kernel are the host's. The first run makes the pool,
# bridge, image and user; E2E_QSR_RUNS (default 20) runs in all, each followed
# by a login through the line it printed. Names a real install would use (the
# pool, bridge, image alias) are touched only when they carry this suite's
# nonce (user.ctme2e.qsr, the alias's description), set right after the
# first run on what $E2E_QSR_RECORD says did not exist before it; any other
# is a real install's (or a killed run's: remove it by hand) and the part is
# skipped.
E2E_QSR_ADMIN=e2e-qsr
E2E_QSR_USER=e2e-qsr-box
E2E_QSR_GECOS="containarium e2e newcomer"
E2E_QSR_POOL=containarium
E2E_QSR_BRIDGE=ctmbr0
E2E_QSR_SUBNET=10.100.0.0/24
E2E_QSR_IMAGE=containarium-debian12
E2E_QSR_CACHE=/var/cache/containarium
E2E_QSR_DIR=$E2E_STATE_DIR/qsr
E2E_QSR_RECORD=$E2E_CACHE_DIR/quickstart-readme.made
E2E_QSR_RUNS=${E2E_QSR_RUNS:-20}

# The machine's mount namespace: copies of the host's mounts under /run and
# Incus's are detached first (a copy keeps a network namespace or a pool
# busy), then the private trees go on. $1: the machine's tree, $2: the
# host's /run/ctme2e, $3: the e2e's image cache.
# shellcheck disable=SC2016 # expanded by the holder's sh
E2E__QSR_HOLDER_SH='set -e
awk '\''$5 ~ "^/run/|^/var/lib/incus/|^/var/lib/lxcfs|^/var/lib/incus-lxcfs" { print $5 }'\'' /proc/self/mountinfo | sort -r |
	while read -r m; do umount -l "$m" 2>/dev/null || true; done
mount --bind "$1/etc" /etc
mount --bind "$1/usr-local-bin" /usr/local/bin
mount --bind "$3" /var/cache/containarium/images
mount --bind "$2" "$1/run/ctme2e"
mount --rbind "$1/run" /run
exec sleep infinity'

# The holder's PID, when it is alive and the one recorded.
e2e__qsr_holder() {
	local pid
	pid=$(cat "$E2E_QSR_DIR/holder.pid" 2>/dev/null) && e2e__pid_is "$pid" sleep &&
		[ "$(readlink "/proc/$pid/ns/mnt")" = "$(cat "$E2E_QSR_DIR/holder.mnt" 2>/dev/null)" ] && echo "$pid"
}

# e2e__qsr CMD...: CMD on the newcomer's machine (working directory: the
# checkout), without our lock open.
e2e__qsr() {
	local pid
	pid=$(e2e__qsr_holder) || { echo "the newcomer's machine is not up" >&2; return 1; }
	nsenter -t "$pid" -m -- sh -c 'cd "$1" && shift && exec "$@"' _ "$E2E_REPO" "$@" {E2E_LOCK_FD}>&-
}

# Whether this suite made NAME (a line "KIND NAME" in the record).
e2e__qsr_ours() { [ -f "$E2E_QSR_RECORD" ] && grep -qxF -- "$1" "$E2E_QSR_RECORD"; }
e2e__qsr_nonce() { [ -f "$E2E_QSR_RECORD" ] && sed -n 's/^nonce //p' "$E2E_QSR_RECORD"; }

# e2e__qsr_mine pool|network|alias: it exists and carries this suite's nonce.
e2e__qsr_mine() {
	local nonce path field
	nonce=$(e2e__qsr_nonce) && [ -n "$nonce" ] || return 1
	case $1 in
	pool) path=/1.0/storage-pools/$E2E_QSR_POOL field='.config["user.ctme2e.qsr"]' ;;
	network) path=/1.0/networks/$E2E_QSR_BRIDGE field='.config["user.ctme2e.qsr"]' ;;
	alias) path=/1.0/images/aliases/$E2E_QSR_IMAGE field='.description | ltrimstr("ctme2e-qsr ")' ;;
	esac
	[ "$(incus query "$path" 2>/dev/null | jq -r "($field) // \"\"")" = "$nonce" ]
}

# After the first run: the nonce on what it made (what the record says did
# not exist before it).
e2e__qsr_tag() {
	local nonce
	nonce=$(e2e__qsr_nonce) || return 1
	if e2e__qsr_ours "pool $E2E_QSR_POOL" && incus storage show "$E2E_QSR_POOL" >/dev/null 2>&1; then
		incus storage set "$E2E_QSR_POOL" "user.ctme2e.qsr=$nonce" || return 1
	fi
	if e2e__qsr_ours "network $E2E_QSR_BRIDGE" && incus network show "$E2E_QSR_BRIDGE" >/dev/null 2>&1; then
		incus network set "$E2E_QSR_BRIDGE" "user.ctme2e.qsr=$nonce" || return 1
	fi
	if e2e__qsr_ours "alias $E2E_QSR_IMAGE" && incus query "/1.0/images/aliases/$E2E_QSR_IMAGE" >/dev/null 2>&1; then
		incus query -X PATCH "/1.0/images/aliases/$E2E_QSR_IMAGE" \
			--data "{\"description\": \"ctme2e-qsr $nonce\"}" >/dev/null || return 1
	fi
}

e2e__quickstart_readme_cleanup() {
	local -
	set +e
	local pid mnt p n
	# Every process of the machine, by PID: the holder, its sshd, sessions;
	# only while its holder lives (a namespace's number is reused after).
	if e2e__qsr_holder >/dev/null && mnt=$(cat "$E2E_QSR_DIR/holder.mnt") && [ -n "$mnt" ]; then
		for p in /proc/[0-9]*; do
			[ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$mnt" ] && kill -KILL "${p#/proc/}" 2>/dev/null
		done
	fi
	pid=$(cat "$E2E_QSR_DIR/holder.pid" 2>/dev/null)
	e2e__pid_is "$pid" sleep && kill -KILL "$pid"
	if e2e_incus_up; then
		if incus info --project default "$E2E_QSR_USER-container" >/dev/null 2>&1 &&
			[ "$(incus config get --project default "$E2E_QSR_USER-container" user.containarium.owner)" = "$E2E_QSR_USER" ]; then
			incus delete --project default --force "$E2E_QSR_USER-container" >/dev/null
		fi
		if e2e__qsr_mine network; then
			incus network delete "$E2E_QSR_BRIDGE" >/dev/null
		fi
		if e2e__qsr_mine alias; then
			incus image alias delete --project default "$E2E_QSR_IMAGE" >/dev/null
		fi
		if e2e__qsr_mine pool; then
			for n in $(incus storage volume list "$E2E_QSR_POOL" --all-projects --format json |
				jq -r '.[] | select(.type == "image") | "\(.project)/\(.name)"'); do
				incus storage volume delete --project "${n%%/*}" "$E2E_QSR_POOL" "image/${n#*/}" >/dev/null
			done
			incus storage delete "$E2E_QSR_POOL" >/dev/null
		fi
	fi
	e2e__qsr_ours "home /home/$E2E_QSR_ADMIN" && rm -rf "/home/${E2E_QSR_ADMIN:?}"
	e2e__qsr_ours "dir $E2E_QSR_CACHE/images" && rmdir "$E2E_QSR_CACHE/images" 2>/dev/null
	e2e__qsr_ours "dir $E2E_QSR_CACHE" && rmdir "$E2E_QSR_CACHE" 2>/dev/null
	rm -rf "$E2E_QSR_DIR"
	e2e__quickstart_acl_back
	if ! incus storage show "$E2E_QSR_POOL" >/dev/null 2>&1 && ! incus network show "$E2E_QSR_BRIDGE" >/dev/null 2>&1 &&
		[ ! -e "/home/$E2E_QSR_ADMIN" ] && [ ! -e "$E2E_QSR_CACHE" ]; then
		rm -f "$E2E_QSR_RECORD"
	fi
}

# What of the README's defaults is here and not this suite's: a real install.
e2e__qsr_foreign() {
	local route
	if incus storage show "$E2E_QSR_POOL" >/dev/null 2>&1 && ! e2e__qsr_mine pool; then
		echo "storage pool $E2E_QSR_POOL"
	fi
	if incus network show "$E2E_QSR_BRIDGE" >/dev/null 2>&1 && ! e2e__qsr_mine network; then
		echo "network $E2E_QSR_BRIDGE"
	elif ! incus network show "$E2E_QSR_BRIDGE" >/dev/null 2>&1 && route=$(ip -4 route show "$E2E_QSR_SUBNET") && [ -n "$route" ]; then
		echo "a route to $E2E_QSR_SUBNET ($route)"
	fi
	if incus query "/1.0/images/aliases/$E2E_QSR_IMAGE" >/dev/null 2>&1 && ! e2e__qsr_mine alias; then
		echo "image alias $E2E_QSR_IMAGE"
	fi
	if [ -e "/home/$E2E_QSR_ADMIN" ] && ! e2e__qsr_ours "home /home/$E2E_QSR_ADMIN"; then
		echo "/home/$E2E_QSR_ADMIN"
	fi
}

# The newcomer's machine, up: the record first (what the runs will make), then
# the private trees, the namespace, the account and the sshd.
e2e__qsr_machine_up() {
	local -
	set +e
	local etc=$E2E_QSR_DIR/etc run=$E2E_QSR_DIR/run gid u pid i port nonce
	nonce=$(e2e__qsr_nonce || true)
	{
		incus storage show "$E2E_QSR_POOL" >/dev/null 2>&1 || echo "pool $E2E_QSR_POOL"
		incus network show "$E2E_QSR_BRIDGE" >/dev/null 2>&1 || echo "network $E2E_QSR_BRIDGE"
		incus query "/1.0/images/aliases/$E2E_QSR_IMAGE" >/dev/null 2>&1 || echo "alias $E2E_QSR_IMAGE"
		[ -e "/home/$E2E_QSR_ADMIN" ] || echo "home /home/$E2E_QSR_ADMIN"
		[ -e "$E2E_QSR_CACHE" ] || echo "dir $E2E_QSR_CACHE"
		[ -e "$E2E_QSR_CACHE/images" ] || echo "dir $E2E_QSR_CACHE/images"
		[ ! -f "$E2E_QSR_RECORD" ] || grep -v '^nonce ' "$E2E_QSR_RECORD"
		echo "nonce ${nonce:-$(date +%s%N)}"
	} | sort -u >"$E2E_QSR_RECORD.new" && mv "$E2E_QSR_RECORD.new" "$E2E_QSR_RECORD" || return 1
	mkdir -p "$E2E_QSR_CACHE/images" "$E2E_QSR_DIR/usr-local-bin" "$run/sshd" "$run/ctme2e" || return 1
	chmod 0755 "$run" "$run/sshd" || return 1
	cp -a /etc "$etc" || return 1
	rm -f "$etc"/ssh/ssh_host_* "$etc"/passwd.lock "$etc"/shadow.lock "$etc"/group.lock \
		"$etc"/gshadow.lock "$etc"/subuid.lock "$etc"/subgid.lock "$etc"/.pwd.lock \
		"$E2E_QSR_DIR$E2E_FAIL2BAN_TEST_CONF" "$etc"/sudoers.d/ctme2e-* || return 1
	for f in "${E2E_HOST_FILES[@]}"; do rm -f "$E2E_QSR_DIR$f"; done
	# shellcheck disable=SC2086 # the glob is the point
	rm -f $E2E_QSR_DIR$E2E_TEST_DROPINS
	rm -rf "$E2E_QSR_DIR$E2E_ETC_DIR" "$etc/systemd/system/containarium"*
	# Accounts it makes get ids of their own: no process of the host shares them.
	sed -i -E 's/^(UID_MIN|GID_MIN)([[:space:]]+).*/\1\271000/; s/^(UID_MAX|GID_MAX)([[:space:]]+).*/\1\271999/' \
		"$etc/login.defs" || return 1
	port=$(for ((i = 22100; i < 22200; i++)); do [ -n "$(ss -Hltn "sport = :$i")" ] || { echo "$i"; break; }; done)
	[ -n "$port" ] || { e2e_log "no free port in 22100..22199"; return 1; }
	printf '# The newcomer machine'\''s sshd (tests/e2e/suites/quickstart.sh)\nPort %s\nListenAddress 127.0.0.1\n' "$port" \
		>"$etc/ssh/sshd_config.d/50-ctme2e-newcomer.conf" || return 1
	printf '%s ALL=(ALL) NOPASSWD: ALL\nDefaults:%s env_keep += "CARGO_TARGET_DIR"\n' "$E2E_QSR_ADMIN" "$E2E_QSR_ADMIN" \
		>"$etc/sudoers.d/ctme2e-newcomer" && chmod 0440 "$etc/sudoers.d/ctme2e-newcomer" || return 1

	( exec setsid unshare -m --propagation private -- sh -c "$E2E__QSR_HOLDER_SH" newcomer \
		"$E2E_QSR_DIR" "$E2E_STATE_DIR" "$E2E_CACHE_DIR/images" ) </dev/null >>"$E2E_LOG_DIR/newcomer-holder.log" 2>&1 {E2E_LOCK_FD}>&- &
	pid=$!
	disown "$pid"
	echo "$pid" >"$E2E_QSR_DIR/holder.pid"
	for ((i = 0; i < 100; i++)); do
		e2e__pid_is "$pid" sleep && break
		sleep 0.05
	done
	e2e__pid_is "$pid" sleep || { tail -n 5 "$E2E_LOG_DIR/newcomer-holder.log" >&2; return 1; }
	readlink "/proc/$pid/ns/mnt" >"$E2E_QSR_DIR/holder.mnt"

	# The host's jump accounts (the main e2e's) are not this machine's.
	gid=$(e2e__qsr getent group "$E2E_GROUP" | cut -d: -f3)
	if [ -n "$gid" ]; then
		for u in $(e2e__qsr getent passwd | awk -F: -v g="$gid" '$4 == g { print $1 }'); do
			e2e__qsr userdel "$u" || return 1
		done
		e2e__qsr groupdel "$E2E_GROUP" || return 1
	fi
	rm -rf "/home/${E2E_QSR_ADMIN:?}"
	e2e__qsr useradd -m -s /bin/bash -c "$E2E_QSR_GECOS" "$E2E_QSR_ADMIN" || return 1
	e2e__qsr ssh-keygen -A >/dev/null || return 1
	e2e__qsr /usr/sbin/sshd || return 1
	for ((i = 0; i < 50; i++)); do
		E2E_QSR_SSHD=$(cat "$run/sshd.pid" 2>/dev/null)
		e2e__pid_is "$E2E_QSR_SSHD" sshd && [ -n "$(ss -Hltn "sport = :$port")" ] && break
		sleep 0.1
	done
	e2e__pid_is "$E2E_QSR_SSHD" sshd || { e2e_log "the newcomer's sshd did not start"; return 1; }
	E2E_QSR_PORT=$port
	e2e_log "newcomer machine: namespace $pid, sshd $E2E_QSR_SSHD on 127.0.0.1:$port"
}

e2e__quickstart_readme() {
	local foreign home=/home/$E2E_QSR_ADMIN run ok=0 line first_line='' ms times=()
	e2e_on_cleanup e2e__quickstart_readme_cleanup
	e2e__quickstart_readme_cleanup # what a crashed run left
	foreign=$(e2e__qsr_foreign)
	if [ -n "$foreign" ]; then
		skip "the README's command as printed: this host has $(paste -sd, <<<"$foreign") of its own (a real install?): not touched"
		return 0
	fi
	# The tenant ACL is one per host (see above): off the main bridge meanwhile.
	check "(the suite takes the tenant ACL off the main bridge; the cleanup puts it back)" \
		incus network unset "$E2E_BRIDGE" security.acls
	if ! e2e__qsr_machine_up >"$E2E_STATE_DIR/check.out" 2>&1; then
		fail "the newcomer's machine: a namespace with its own /etc, /run and sshd"
		sed 's/^/    | /' "$E2E_STATE_DIR/check.out" | tail -n 20
		return 0
	fi
	pass "the newcomer's machine: its own /etc, /run, /usr/local/bin and sshd (on 127.0.0.1:$E2E_QSR_PORT, not 22)"
	sshd_t_is_long() { [ "$(e2e__qsr /usr/sbin/sshd -T | wc -c)" -gt 4096 ]; }
	check "(its sshd -T says more than one pipe write, as a stock Debian 12's: the case that failed)" sshd_t_is_long

	# A newcomer answers "yes" to host key prompts; their ssh config says so.
	e2e__qsr runuser -u "$E2E_QSR_ADMIN" -- sh -c 'mkdir -p -m 0700 ~/.ssh &&
		printf "Host *\n    StrictHostKeyChecking accept-new\n    BatchMode yes\n    ConnectTimeout 15\n    LogLevel ERROR\n" >~/.ssh/config'
	for ((run = 1; run <= E2E_QSR_RUNS; run++)); do
		local t0 rc=0
		t0=$(e2e_now_ms)
		# The README's line, as the newcomer types it in the checkout.
		e2e__qsr runuser -u "$E2E_QSR_ADMIN" -- sudo scripts/quickstart.sh \
			>"$E2E_QSR_DIR/run$run.out" 2>"$E2E_QSR_DIR/run$run.err" || rc=$?
		ms=$(($(e2e_now_ms) - t0))
		times+=("$ms")
		line=$(grep -m1 '^ssh -J ' "$E2E_QSR_DIR/run$run.out" || true)
		[ -n "$first_line" ] || first_line=$line
		# shellcheck disable=SC2086 # the printed line, split as a shell would
		if [ "$rc" -eq 0 ] && [ -n "$line" ] && [ "$line" = "$first_line" ] &&
			hostname_is "$E2E_QSR_USER-container" e2e__qsr runuser -u "$E2E_QSR_ADMIN" -- ${line}; then
			ok=$((ok + 1))
		else
			echo "    | run $run: exit $rc, printed: ${line:-no ssh -J line}"
			sed 's/^/    | /' "$E2E_QSR_DIR/run$run.err" | tail -n 8
		fi
		if [ "$run" -eq 1 ]; then
			check "(what the first run made carries the suite's nonce)" e2e__qsr_tag
			sed 's/^/    | /' "$E2E_QSR_DIR/run1.err"
			# said NAME STEP: the first run printed `quickstart: STEP`.
			said() { check "$1" grep -q "^quickstart: $2" "$E2E_QSR_DIR/run1.err"; }
			said "the first run made the pool, bridge, image and user with the README's names" \
				"pool $E2E_QSR_POOL: created"
			said "  the bridge $E2E_QSR_BRIDGE on 10.100.0.1/24 without NAT" \
				"bridge $E2E_QSR_BRIDGE: created (10.100.0.1/24, no NAT)"
			said "  the image $E2E_QSR_IMAGE, from the cache (no build)" "image $E2E_QSR_IMAGE: imported"
			said "  the key, generated for $E2E_QSR_ADMIN (SUDO_USER)" "key $home/.ssh/id_ed25519.pub: generated"
			said "  the user $E2E_QSR_USER (SUDO_USER's name with -box)" "user $E2E_QSR_USER: created"
			said "  the system's sshd found by /run/sshd.pid, its port by sshd -T" \
				"sshd: running (pid $E2E_QSR_SSHD, port $E2E_QSR_PORT), unchanged"
			printed_line() { [[ $first_line =~ ^"ssh -J $E2E_QSR_USER@127.0.0.1:$E2E_QSR_PORT $E2E_QSR_USER@10.100.0."[0-9]+$ ]]; }
			check "  it printed the ssh -J line: $first_line" printed_line
			sed -n '/^# containarium: /,$p' "$E2E_QSR_DIR/run$run.out" |
				e2e__qsr runuser -u "$E2E_QSR_ADMIN" -- tee "$home/exported.conf" >/dev/null
			check "  the config it printed logs $E2E_QSR_ADMIN in as it is (host keys pinned)" \
				hostname_is "$E2E_QSR_USER-container" e2e__qsr runuser -u "$E2E_QSR_ADMIN" -- \
				ssh -F "$home/exported.conf" -o BatchMode=yes "$E2E_QSR_USER-dev"
		fi
	done
	check "the README's command as printed succeeded $ok of $E2E_QSR_RUNS times, each logging in through the line it printed" \
		test "$ok" -eq "$E2E_QSR_RUNS"
	check "  the last run changed nothing, and said so" grep -qx 'quickstart: nothing changed' "$E2E_QSR_DIR/run$E2E_QSR_RUNS.err"
	e2e_log "quickstart as the README prints it: first run ${times[0]} ms, then $(printf '%s ' "${times[@]:1}")ms"
	e2e__quickstart_readme_cleanup
	left() {
		! incus storage show "$E2E_QSR_POOL" >/dev/null 2>&1 && ! incus network show "$E2E_QSR_BRIDGE" >/dev/null 2>&1 &&
			! incus info --project default "$E2E_QSR_USER-container" >/dev/null 2>&1 &&
			! incus query "/1.0/images/aliases/$E2E_QSR_IMAGE" >/dev/null 2>&1 &&
			[ ! -e "$home" ] && [ ! -e "$E2E_QSR_DIR" ] && [ ! -e "$E2E_QSR_RECORD" ]
	}
	check "everything the README's runs made is gone" left
}
