# shellcheck shell=bash
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# tenant-data: what a tenant writes in their container (/etc/passwd, the host
# key, the address eth0 reports) is data, never a path, config or a trusted
# address; key files that are not keys; --output that is not ours; removed
# keys a snapshot would bring back; test-only redirections in a real build;
# a fork bomb, stopped at limits.processes while a neighbour keeps working.
# Each attack is beside a control that does the same thing the normal way.

test_tenant_data() {
	local work=$E2E_WORK bastion=$E2E_BASTION_HOST port=$E2E_BASTION_PORT
	local t=e2e-tdmal c=e2e-tdok t_ip c_ip scratch=$E2E_STATE_DIR/tenant-data
	local victim=e2e-tdmal-container-x-container shared jump_sum host_key start took rc
	rm -rf "$scratch"
	mkdir -p "$scratch"
	e2e_client "$t" "$work"
	e2e_client "$c" "$work"
	e2e_client "$c-2" "$work" # a second key of the control user's
	e2e_client "$t-2" "$work" # and of the tenant's

	check "create $t" ctm create "$t" --ssh-key "$work/keys/$t.pub" --no-docker
	check "create $c" ctm create "$c" --ssh-key "$work/keys/$c.pub" --no-docker
	t_ip=$(ip_of "$t")
	c_ip=$(ip_of "$c")
	# The instance a home of `-x-container/...` names: `incus file push
	# $t-container-x-container/...` is what keys add ran before.
	check "an instance named $victim (never started)" e2e_incus init "$E2E_IMAGE" "$victim"

	# --- a hostile home in the container's /etc/passwd --------------------------------
	# set_home HOME: as root in the tenant's container, $t's home becomes HOME.
	set_home() {
		in_container "$t" sh -s -- "$t" "$1" <<-'EOF'
			awk -F: -v OFS=: -v u="$1" -v h="$2" '$1 == u { $6 = h } 1' /etc/passwd >/etc/passwd.new
			cat /etc/passwd.new >/etc/passwd && rm /etc/passwd.new
		EOF
	}
	# The tenant does it themselves: sudo through their own ssh -J.
	tenant_sets_home() {
		jump "$t" "$t_ip" sudo sh -s -- "$t" -x-container/home/a <<-'EOF' &&
			awk -F: -v OFS=: -v u="$1" -v h="$2" '$1 == u { $6 = h } 1' /etc/passwd >/etc/passwd.new
			cat /etc/passwd.new >/etc/passwd && rm /etc/passwd.new
		EOF
			in_container "$t" grep -qx "$t:x:[0-9]*:[0-9]*:[^:]*:-x-container/home/a:/bin/bash" /etc/passwd
	}
	check "the tenant writes a home of -x-container/home/a (sudo through ssh -J)" tenant_sets_home
	jump_sum=$(sha256sum "/etc/containarium/keys/$t" 2>&1 || true)
	for home in -x-container/home/a /../../etc /home/./a; do
		check "the tenant's home is now $home" set_home "$home"
		one_line_error "keys add refuses a home of $home" "error: $t-container: $t's home \"$home\" in /etc/passwd is not" \
			ctm keys add "$t" "$work/keys/$t-2.pub"
	done
	check "nothing was written into $victim" bash -c "! incus --project $E2E_PROJECT file pull $victim/home/a/.ssh/authorized_keys - >/dev/null 2>&1"
	check "nothing was written under /etc in the container" bash -c "! incus --project $E2E_PROJECT exec $t-container -- test -e /etc/.ssh"
	check "the metadata still holds one key" bash -c "[ \"\$('$BIN' --project $E2E_PROJECT keys list $t | wc -l)\" = 1 ]"
	check "the jump key file is unchanged" bash -c "[ \"\$(sha256sum /etc/containarium/keys/$t)\" = '$jump_sum' ]"
	check "info still works, with the pinned address" bash -c "'$BIN' --project $E2E_PROJECT info $t --json | e2e_jq '.ipv4 == \"$t_ip\"'"
	# The control: the real home again, and the same keys add works.
	check "the tenant's home is /home/$t again" set_home "/home/$t"
	check "keys add with a normal home works" ctm keys add "$t" "$work/keys/$t-2.pub"
	check "and the new key opens the tenant's container" bash -c "ssh -F '$work/ssh-$t-2.conf' -J '$t@$bastion:$port' '$t@$t_ip' true </dev/null"
	check "the instance $victim is deleted" e2e_incus delete "$victim"

	# --- a hostile host key -----------------------------------------------------------
	shared=$work/tenant-data-shared.conf
	check "export the control user into a shared file" ctm export "$c" --jump-ip "$bastion" --jump-port "$port" --key "$work/keys/$c" --output "$shared"
	cp "$shared" "$scratch/shared.before"
	host_key=$(in_container "$t" cat /etc/ssh/ssh_host_ed25519_key.pub)
	# write_host_key TEXT: as root in the tenant's container.
	write_host_key() { printf '%b' "$1" | in_container "$t" sh -c 'cat >/etc/ssh/ssh_host_ed25519_key.pub'; }
	local -A hostile_keys=(
		["garbage"]='garbage\n'
		["the key, then a ProxyCommand line"]="$host_key\nProxyCommand touch $scratch/pwned\n"
		["the key, then a Host block"]="$host_key\nHost *\n    ProxyCommand touch $scratch/pwned\n"
		["the key, a CR and ProxyCommand in one line"]="${host_key% *}\rProxyCommand touch $scratch/pwned\n"
		["two keys"]="$host_key\n$host_key\n"
	)
	for what in "${!hostile_keys[@]}"; do
		check "the tenant's host key file is $what" write_host_key "${hostile_keys[$what]}"
		one_line_error "  export refuses it" "error: $t-container's /etc/ssh/ssh_host_ed25519_key.pub" \
			ctm export "$t" --jump-ip "$bastion" --jump-port "$port" --output "$shared"
		check "  and the shared export file is unchanged" cmp -s "$shared" "$scratch/shared.before"
	done
	check "no ProxyCommand ran" test ! -e "$scratch/pwned"
	check "the tenant puts the real host key back" write_host_key "$host_key\n"
	check "the real host key exports into the shared file" ctm export "$t" --jump-ip "$bastion" --jump-port "$port" --key "$work/keys/$t" --output "$shared"
	check "the control user's block is kept as it was" bash -c "cmp -s -n \$(stat -c %s '$scratch/shared.before') '$shared' '$scratch/shared.before'"
	check "the exported file connects the tenant (pinned key)" hostname_is "$t-container" ssh -F "$shared" -o BatchMode=yes "$t-dev"
	check "and the control user" hostname_is "$c-container" ssh -F "$shared" -o BatchMode=yes "$c-dev"
	if [ "$(wc -w <<<"$host_key")" -eq 3 ]; then
		check "the host key's comment is not in the export" bash -c "! grep -qF '${host_key##* }' '$shared'"
	fi

	# --- --output that is not ours ----------------------------------------------------
	printf '# containarium: made by the test\nsecret line\n' >"$scratch/target"
	ln -s "$scratch/target" "$scratch/link.conf"
	one_line_error "export --output at a symlink is refused" "is a symbolic link" \
		ctm export "$c" --jump-ip "$bastion" --output "$scratch/link.conf"
	check "  the link and its target are unchanged" bash -c "[ -L '$scratch/link.conf' ] && [ \"\$(cat '$scratch/target')\" = \"\$(printf '# containarium: made by the test\nsecret line')\" ]"
	printf 'Host mine\n' >"$scratch/mine.conf"
	one_line_error "export --output at a file it did not write is refused" "was not written by" \
		ctm export "$c" --jump-ip "$bastion" --output "$scratch/mine.conf"
	cp "$scratch/target" "$scratch/nobody.conf"
	chown nobody "$scratch/nobody.conf"
	one_line_error "export --output at a file not owned by root is refused" "not root" \
		ctm export "$c" --jump-ip "$bastion" --output "$scratch/nobody.conf"
	check "  both unchanged" bash -c "[ \"\$(cat '$scratch/mine.conf')\" = 'Host mine' ] && cmp -s '$scratch/target' '$scratch/nobody.conf'"

	# --- the address the guest reports -------------------------------------------------
	# As root in the container: eth0 claims another address on the bridge.
	check "the tenant moves eth0 to 10.197.83.250" in_container "$t" sh -c 'ip addr flush dev eth0 && ip addr add 10.197.83.250/24 dev eth0'
	reports() { e2e_incus list "$t-container" --format json | e2e_jq '.[0].state.network.eth0.addresses[] | select(.family == "inet") | .address == "10.197.83.250"' >/dev/null; }
	check "Incus now reports 10.197.83.250" reports
	check "list shows the pinned address" bash -c "'$BIN' --project $E2E_PROJECT list | e2e_grep -q '^$t-container .* $t_ip ' && ! '$BIN' --project $E2E_PROJECT list | e2e_grep -q 10.197.83.250"
	check "info shows the pinned address" bash -c "'$BIN' --project $E2E_PROJECT info $t | e2e_grep -qx 'ipv4: *$t_ip'"
	check "export uses the pinned address" bash -c "'$BIN' --project $E2E_PROJECT export $t --jump-ip $bastion | e2e_grep -qx '    HostName $t_ip'"
	check "keys remove writes the pinned address into the jump key file" bash -c "'$BIN' --project $E2E_PROJECT keys remove $t $t-2@laptop >/dev/null && grep -q 'permitopen=\"$t_ip:22\"' /etc/containarium/keys/$t && ! grep -q 10.197.83.250 /etc/containarium/keys/$t"
	check "restart gives eth0 its address back" ctm restart "$t"
	check "the tenant is reachable again" jump "$t" "$t_ip" true

	# --- every address of the subnet, claimed from inside -------------------------------
	# As root in the container: its loopback holds every address of the
	# bridge's subnet (no dummy module in a container). Incus reports them
	# all; only pinned addresses count.
	# shellcheck disable=SC2016 # expanded by the container's sh
	check "the tenant puts every address of 10.197.83.0/24 on its loopback" \
		in_container "$t" sh -c 'for i in $(seq 2 254); do ip addr add "10.197.83.$i/32" dev lo || exit 1; done'
	reports_all() {
		local n
		n=$(incus query "/1.0/instances/$t-container/state?project=$E2E_PROJECT" |
			jq '[.network.lo.addresses[] | select(.family == "inet" and (.address | startswith("10.197.83.")))] | length')
		[ "$n" = 253 ] || { echo "Incus reports $n such addresses on lo"; return 1; }
	}
	check "  (control) Incus reports all 253 of them" reports_all
	e2e_client e2e-tdsq "$work"
	check "create still finds a free address for another user" ctm create e2e-tdsq --ssh-key "$work/keys/e2e-tdsq.pub" --no-docker
	check "  and that user is reachable" jump e2e-tdsq "$(ip_of e2e-tdsq)" true
	check "delete e2e-tdsq" ctm delete e2e-tdsq --force
	check "the tenant drops them" in_container "$t" ip addr flush dev lo to 10.197.83.0/24

	# --- a file too large to read ---------------------------------------------------------
	# As root in the container: /etc/passwd grows past 4 MiB (a comment line).
	check "the tenant grows its /etc/passwd to 5 MiB" in_container "$t" sh -c \
		'cp /etc/passwd /root/passwd.ctme2e && { printf "#"; head -c 5242880 /dev/zero | tr "\\0" x; echo; } >>/etc/passwd'
	one_line_error "keys add refuses to read more than 4 MiB of it" "printed more than 4194304 bytes" \
		ctm keys add "$t" "$work/keys/$t-2.pub"
	check "the tenant puts its /etc/passwd back" in_container "$t" cp /root/passwd.ctme2e /etc/passwd
	check "  (control) keys add reads it and adds the key" ctm keys add "$t" "$work/keys/$t-2.pub"
	check "  and removes it again" ctm keys remove "$t" "$t-2@laptop"

	# --- key files that are not keys ---------------------------------------------------
	rc=0
	ctm create e2e-tdx --ssh-key /etc/shadow >"$scratch/shadow.out" 2>&1 || rc=$?
	check "--ssh-key /etc/shadow is refused (exit 2)" test "$rc" = 2
	# The exact message, so nothing of /etc/shadow can be in it.
	check "  with exactly the one-line message" bash -c "diff <(printf '%s\n' 'error: /etc/shadow line 1: not a public key: a key line starts with its type, one of ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, sk-ssh-ed25519@openssh.com') '$scratch/shadow.out'"
	check "  and no line of /etc/shadow" bash -c "! grep -qFf <(grep -v '^\$' /etc/shadow) '$scratch/shadow.out'"
	one_line_error "keys add /etc/shadow is refused the same way" "^error: /etc/shadow line 1: not a public key" \
		ctm keys add "$c" /etc/shadow
	start=$(e2e_now_ms)
	one_line_error "--ssh-key /dev/zero is refused" "^error: /dev/zero is not a regular file" \
		timeout 10 "$BIN" --project "$E2E_PROJECT" create e2e-tdx --ssh-key /dev/zero
	took=$(($(e2e_now_ms) - start))
	check "  at once (${took} ms)" test "$took" -lt 2000
	ssh-keygen -q -t rsa -b 1024 -N '' -C weak -f "$scratch/weak"
	one_line_error "a 1024-bit RSA key is refused" "1024 bits is too weak" ctm keys add "$c" "$scratch/weak.pub"
	printf 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n' >"$scratch/hollow.pub"
	one_line_error "an ed25519 key without key bytes is refused" "not a complete ssh-ed25519 key" ctm keys add "$c" "$scratch/hollow.pub"
	check "nothing was made for e2e-tdx" bash -c "! getent passwd e2e-tdx && ! incus --project $E2E_PROJECT info e2e-tdx-container >/dev/null 2>&1"

	# --- snapshot restore and keys removed since ---------------------------------------
	check "the control user adds a second key" ctm keys add "$c" "$work/keys/$c-2.pub"
	check "snapshot with both keys" ctm snapshot create "$c" both
	check "the second key is removed (a lost laptop)" ctm keys remove "$c" "$c-2@laptop"
	second_key() { ssh -F "$work/ssh-$c-2.conf" -J "$c@$bastion:$port" "$c@$c_ip" true </dev/null; }
	refused "the removed key opens nothing" "Permission denied" second_key
	check "snapshot restore" bash -c "'$BIN' --project $E2E_PROJECT snapshot restore $c both >'$scratch/restore.out' 2>&1"
	check "  warns about the removed key and re-applies the current keys" \
		grep -q "warning: snapshot both holds keys removed since it was taken; re-applying the current keys .*($c-2@laptop)" "$scratch/restore.out"
	refused "after the restore the removed key still opens nothing" "Permission denied" second_key
	check "  nor is it in the container's authorized_keys" bash -c "! incus --project $E2E_PROJECT exec $c-container -- grep -q '$c-2@laptop' /home/$c/.ssh/authorized_keys"
	check "the current key still works" jump "$c" "$c_ip" true
	check "restore --keep-snapshot-keys" bash -c "'$BIN' --project $E2E_PROJECT snapshot restore $c both --keep-snapshot-keys >'$scratch/keep.out' 2>&1"
	check "  says it brought the removed key back" grep -q "brought back keys removed since it was taken; they work again: .*($c-2@laptop)" "$scratch/keep.out"
	check "  and then the second key works again" second_key
	check "delete the snapshot" ctm snapshot delete "$c" both

	# --- sync-accounts and one user's malformed metadata --------------------------------
	check "the tenant's keys metadata is garbled" e2e_incus config set "$t-container" user.containarium.keys="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"
	rm -f "/etc/containarium/keys/$c"
	check "sync-accounts succeeds" bash -c "'$BIN' --project $E2E_PROJECT sync-accounts >'$scratch/sync.out' 2>&1"
	check "  warning that it skipped the tenant" grep -q "warning: $t-container user.containarium.keys: .*; $t skipped" "$scratch/sync.out"
	check "  the control user's key file is rebuilt" jump "$c" "$c_ip" true
	check "  the tenant's key file is left as it was" grep -q "permitopen=\"$t_ip:22\"" "/etc/containarium/keys/$t"
	check "the tenant's metadata is put back" e2e_incus config set "$t-container" user.containarium.keys="$(cat "$work/keys/$t.pub")"
	check "  and reads as one key" bash -c "[ \"\$('$BIN' --project $E2E_PROJECT keys list $t | wc -l)\" = 1 ]"

	# --- test-only redirections in a real build -----------------------------------------
	CONTAINARIUM_ROOT="$scratch/root" "$BIN" --project "$E2E_PROJECT" host init --dry-run >"$scratch/root.out" 2>&1 || true
	check "a release build ignores CONTAINARIUM_ROOT" bash -c "grep -q 'key directory /etc/containarium/keys' '$scratch/root.out' && ! grep -q '$scratch/root' '$scratch/root.out'"
	cp "$CONTAINARIUM_CONFIG" "$scratch/open.toml"
	chmod 0664 "$scratch/open.toml"
	one_line_error "a group-writable CONTAINARIUM_CONFIG is refused" "is writable by group or others" \
		env CONTAINARIUM_CONFIG="$scratch/open.toml" "$BIN" --project "$E2E_PROJECT" create e2e-tdx --ssh-key "$work/keys/$c.pub" --dry-run
	chmod 0644 "$scratch/open.toml"
	check "  the same file, root's alone, is used" env CONTAINARIUM_CONFIG="$scratch/open.toml" "$BIN" --project "$E2E_PROJECT" create e2e-tdx --ssh-key "$work/keys/$c.pub" --dry-run

	# --- a fork bomb ------------------------------------------------------------------
	# As root in the tenant's container: fork `sleep` children until fork
	# fails or limit+500 run, under timeout. limits.processes (config.toml's
	# default, which create set) stops it at the limit with EAGAIN; the
	# neighbour still logs in through ssh -J and starts a process. Then the
	# bomb kills its own children, by PID, inside that container.
	local limit cgroup bomb hold got fork_bomb
	# python3 fork_bomb CAP: prints "forked N ERRNO" (OK: none failed), waits
	# for stdin to close, kills its N children and prints "killed N".
	read -r -d '' fork_bomb <<-'EOF' || true
		import errno, os, sys
		cap, pids, err = int(sys.argv[1]), [], "OK"
		while len(pids) < cap:
		    try:
		        pid = os.fork()
		    except OSError as e:
		        err = errno.errorcode.get(e.errno, str(e.errno))
		        break
		    if pid == 0:
		        try:
		            os.execv("/bin/sleep", ["sleep", "300"])
		        finally:
		            os._exit(127)
		    pids.append(pid)
		print("forked", len(pids), err, flush=True)
		sys.stdin.read()
		for pid in pids:
		    os.kill(pid, 9)
		for pid in pids:
		    os.waitpid(pid, 0)
		print("killed", len(pids), flush=True)
	EOF
	limit=$(e2e_incus config get "$t-container" limits.processes)
	check "create gave the tenant limits.processes=4096, the default" test "$limit" = 4096
	state() { incus query "/1.0/instances/$t-container/state?project=$E2E_PROJECT"; }
	# The container's pids cgroup: cgroup v1's pids hierarchy (hybrid hosts,
	# such as these machines) or the unified one.
	cgroup=$(sed -n -e 's|^[0-9]*:pids:\(/lxc\.payload\.[^/]*\).*|/sys/fs/cgroup/pids\1|p' \
		-e 's|^0::\(/lxc\.payload\.[^/]*\).*|/sys/fs/cgroup\1|p' "/proc/$(state | jq -r .pid)/cgroup")
	cgroup=${cgroup%%$'\n'*}
	check "  and the kernel holds it: the container's pids.max is 4096" test "$(cat "$cgroup/pids.max")" = 4096
	mkfifo "$scratch/bomb.in"
	e2e_incus exec -T "$t-container" -- timeout 300 python3 -c "$fork_bomb" "$((${limit:-4096} + 500))" \
		<"$scratch/bomb.in" >"$scratch/bomb.out" 2>&1 &
	bomb=$!
	exec {hold}>"$scratch/bomb.in" # the bomb's stdin: closing it ends the bomb
	bomb_forked() { for _ in $(seq 240); do grep -q '^forked ' "$scratch/bomb.out" && return 0; sleep 0.5; done; return 1; }
	check "the tenant's fork bomb stops forking within 120 s" bomb_forked
	got=$(sed -n 's/^forked \([0-9]*\) .*/\1/p' "$scratch/bomb.out")
	e2e_log "fork bomb: $(head -n 1 "$scratch/bomb.out"); $cgroup: pids.current $(cat "$cgroup/pids.current"), pids.events $(cat "$cgroup/pids.events"); memory in use $(($(state | jq .memory.usage) >> 20)) MiB"
	check "  refused at the limit: fork fails with EAGAIN short of 4096 children (cap 4596)" \
		bash -c "grep -qx 'forked [0-9]* EAGAIN' '$scratch/bomb.out' && [ '${got:-0}' -gt 3800 ] && [ '${got:-0}' -lt 4096 ]"
	check "  the kernel counted refused forks (pids.events max > 0)" bash -c "[ \"\$(awk '\$1 == \"max\" { print \$2 }' '$cgroup/pids.events')\" -gt 0 ]"
	check "  (control) the neighbour logs in through ssh -J and starts a process" \
		bash -c "[ \"\$(ssh -F '$work/ssh-$c.conf' -J '$c@$bastion:$port' '$c@$c_ip' 'sleep 0 & wait \$! && echo started' </dev/null)\" = started ]"
	exec {hold}>&-
	bomb_killed() { for _ in $(seq 120); do grep -qx "killed ${got:-0}" "$scratch/bomb.out" && return 0; sleep 0.5; done; return 1; }
	check "the bomb kills its children by PID, inside its container" bomb_killed
	wait "$bomb" || true
	check "  and the tenant starts processes again" in_container "$t" true

	check "delete $t" ctm delete "$t" --force
	check "delete $c" ctm delete "$c" --force
	rm -rf "$scratch"
}
