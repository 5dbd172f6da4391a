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
	# The tenant ACL back on the main bridge, with its rules (host init).
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
	no_sshd_on_22() { [ -z "$(ss -Hltn 'sport = :22')" ]; }
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
}
