# shellcheck shell=bash
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# restore-trust: a backup file is hostile input. One that was changed after
# backup wrote it (a member added, its .sha256 recomputed) fails its HMAC
# and nothing is imported; the same backup unedited restores (the control);
# with --untrusted the changed one restores. One that asks for root on the
# host (security.privileged and the host's / as a disk) is refused before
# anything of it starts, --untrusted or not; so is a tarball with a member
# outside backup/. A snapshot such a file carries (an `ssh` device listening
# on the bastion, 64 CPUs) is re-authored by `snapshot restore`.

# rt__drop_index_copy TREE: drops the copy of the config that Incus 6.0
# writes into index.yaml (optional, as Incus reads it), as an editor of
# backup.yaml would, so the two still agree.
rt__drop_index_copy() {
	/usr/bin/python3 - "$1/backup/index.yaml" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
at = text.find("\nconfig:\n")
if at >= 0:
    open(path, "w").write(text[: at + 1])
PY
}

test_restore_trust() {
	local work=$E2E_WORK u=e2e-rt dir=$E2E_WORK/rt file evil tree old_mac planted outside
	e2e_client "$u" "$work"
	mkdir -p "$dir"
	check "create $u" ctm create "$u" --ssh-key "$work/keys/$u.pub" --no-docker
	check "backup $u" ctm backup "$u" --output "$dir"
	file=$(ls "$dir/$u"-container-*.tar.gz)
	check "the backup is 0600 and root's (it holds host keys and /etc/shadow)" \
		bash -c "[ \"\$(stat -c '%a %U' '$file')\" = '600 root' ]"
	check "its digest is recorded beside it, as sha256sum writes it" \
		bash -c "cd '$dir' && sha256sum -c --quiet '$(basename "$file").sha256'"
	check "its HMAC is beside it: one HMAC-SHA256 line, 0600 root" \
		bash -c "[ \"\$(stat -c '%a %U' '$file.hmac')\" = '600 root' ] && grep -qxE 'HMAC-SHA256 [0-9a-f]{64}' '$file.hmac'"
	old_mac=$(incus --project "$E2E_PROJECT" config get "$u-container" volatile.eth0.hwaddr)
	check "delete $u" ctm delete "$u" --force

	tree=$work/rt-tree
	rm -rf "$tree" && mkdir -p "$tree"
	tar -C "$tree" -xzf "$file"
	# The attack on authentication: one member added to the tarball, its
	# digest recomputed with sha256sum, the HMAC file copied along.
	echo planted >"$tree/backup/container/rootfs/etc/ctme2e-planted"
	planted=$work/rt-planted/$(basename "$file")
	mkdir -p "$(dirname "$planted")"
	tar -C "$tree" -czf "$planted" backup
	rm -f "$tree/backup/container/rootfs/etc/ctme2e-planted"
	(cd "$(dirname "$planted")" && sha256sum "$(basename "$planted")" >"$planted.sha256")
	cp "$file.hmac" "$planted.hmac"
	check "the planted backup passes its recomputed digest" \
		bash -c "cd '$(dirname "$planted")' && sha256sum -c --quiet '$(basename "$planted").sha256'"
	one_line_error "a backup changed after backup wrote it fails its HMAC" "fails its HMAC-SHA256 check" \
		ctm restore "$planted"
	check "and nothing of it was imported" not e2e_incus info "$u-container"
	rm -f "$planted.hmac"
	one_line_error "without its .hmac it is refused too" "has no .*\\.hmac" ctm restore "$planted"
	check "still nothing imported" not e2e_incus info "$u-container"

	# The attack on the allow-list: a few lines added to backup.yaml.
	# As text, the way a person would edit it: the rest stays byte for byte.
	/usr/bin/python3 - "$tree/backup/container/backup.yaml" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
text = text.replace("\n  config:\n", '\n  config:\n    security.privileged: "true"\n', 1)
text = text.replace("\n  devices:\n", "\n  devices:\n    host:\n      path: /mnt/host\n      source: /\n      type: disk\n", 1)
open(path, "w").write(text)
PY
	rt__drop_index_copy "$tree"
	evil=$work/rt-evil/$(basename "$file")
	mkdir -p "$(dirname "$evil")"
	tar -C "$tree" -czf "$evil" backup
	cp "$file.sha256" "$evil.sha256"
	cp "$file.hmac" "$evil.hmac"
	one_line_error "an edited backup fails its HMAC" "fails its HMAC-SHA256 check" \
		ctm restore "$evil"
	one_line_error "--untrusted: an edited backup does not match its digest" "does not match its digest" \
		ctm restore "$evil" --untrusted
	rm -f "$evil.sha256"
	one_line_error "--untrusted, without a digest: the allow-list refuses security.privileged and the host's /" \
		"config key security.privileged; device host (disk) is not one containarium makes" ctm restore "$evil" --untrusted
	check "nothing of it was left: no container, no account, no key file" bash -c \
		"! incus --project $E2E_PROJECT info $u-container >/dev/null 2>&1 && ! getent passwd $u && [ ! -e /etc/containarium/keys/$u ]"
	check "with --untrusted --strip it comes back without them" ctm restore "$evil" --untrusted --strip
	check "the stripped container is unprivileged and has no host disk" bash -c \
		"incus --project $E2E_PROJECT info $u-container >/dev/null && [ -z \"\$(incus --project $E2E_PROJECT config get $u-container security.privileged)\" ] && ! incus --project $E2E_PROJECT config device show $u-container | e2e_grep -q '^host:'"
	check "its NIC is filtered and its MAC is new" bash -c \
		"[ \"\$(incus --project $E2E_PROJECT config device get $u-container eth0 security.ipv4_filtering)\" = true ] && [ \"\$(incus --project $E2E_PROJECT config get $u-container volatile.eth0.hwaddr)\" != '$old_mac' ]"
	check "delete the stripped one" ctm delete "$u" --force

	# The attack on what the allow-list let through: values it accepts,
	# which restore kept as the file said them (limits.cpu "64" was kept),
	# and an ssh device onto an address of the bastion's choosing (one this
	# test owns: 127.0.0.1 and a free port). Restored, the container is
	# re-authored: config.toml's quotas, no expiry or set, no such device.
	local lie port=18091
	while ss -Htln | e2e_grep -q ":$port "; do port=$((port + 1)); done
	tar -C "$tree" -xzf "$file" backup/container/backup.yaml backup/index.yaml
	/usr/bin/python3 - "$tree/backup/container/backup.yaml" "$port" <<'PY'
import sys
path, port = sys.argv[1], sys.argv[2]
text = open(path).read()
text = text.replace('limits.cpu: "1"', 'limits.cpu: "64"')
text = text.replace("\n  config:\n", '\n  config:\n    user.containarium.expires: "2000-01-01T00:00:00Z"\n    user.containarium.set: workshop\n', 1)
text = text.replace("\n  devices:\n", "\n  devices:\n    ssh:\n      connect: tcp:127.0.0.1:22\n      listen: tcp:127.0.0.1:%s\n      type: proxy\n" % port, 1)
open(path, "w").write(text)
PY
	rt__drop_index_copy "$tree"
	lie=$work/rt-lie/$(basename "$file")
	mkdir -p "$(dirname "$lie")"
	tar -C "$tree" -czf "$lie" backup
	check "a backup asking for 64 CPUs, a past expiry, a set and an ssh device on 127.0.0.1:$port restores (--untrusted)" \
		ctm restore "$lie" --untrusted
	check "  re-authored: config.toml's limits.cpu, not 64" \
		bash -c "[ \"\$(incus --project $E2E_PROJECT config get $u-container limits.cpu)\" = 1 ]"
	check "  no expiry, no set from the file" bash -c \
		"[ -z \"\$(incus --project $E2E_PROJECT config get $u-container user.containarium.expires)\$(incus --project $E2E_PROJECT config get $u-container user.containarium.set)\" ]"
	check "  no ssh device, and nothing listens on 127.0.0.1:$port" bash -c \
		"! incus --project $E2E_PROJECT config device show $u-container | e2e_grep -q '^ssh:' && ! ss -Htln | e2e_grep -q ':$port '"
	check "  the jump key permits only its own address" \
		bash -c "e2e_grep -q 'permitopen=\"$(ip_of "$u"):22\"' /etc/containarium/keys/$u"
	check "  control: and is reachable through its jump" jump "$u" "$(ip_of "$u")" true
	check "delete $u" ctm delete "$u" --force
	# The control: the backup as containarium wrote it restores.
	check "control: the unedited backup restores" ctm restore "$file"
	check "control: and is reachable through its jump" jump "$u" "$(ip_of "$u")" true
	check "delete $u" ctm delete "$u" --force
	# The admin who knows where a file came from: --untrusted restores the
	# planted one, with a warning, through every other check.
	check "--untrusted restores the changed backup" bash -c "'$BIN' --project $E2E_PROJECT restore '$planted' --untrusted 2>'$work/rt-untrusted.err'"
	check "--untrusted warned" grep -q "^warning: --untrusted: .* is not authenticated" "$work/rt-untrusted.err"
	check "the planted member is there" bash -c "[ \"\$(incus --project $E2E_PROJECT exec $u-container -- cat /etc/ctme2e-planted)\" = planted ]"
	check "its NIC is filtered" bash -c \
		"[ \"\$(incus --project $E2E_PROJECT config device get $u-container eth0 security.ipv4_filtering)\" = true ]"
	check "delete $u" ctm delete "$u" --force
	# Members outside backup/ are refused, --untrusted or not.
	outside=$work/rt-outside/$(basename "$file")
	mkdir -p "$(dirname "$outside")"
	tar -czPf "$outside" -C "$tree" backup/index.yaml /etc/hostname
	one_line_error "a member at an absolute path is refused" "member \"/etc/hostname\" is an absolute path" \
		ctm restore "$outside" --untrusted
	check "and nothing was imported" not e2e_incus info "$u-container"
	one_line_error "--as without the new owner's key is refused" "ssh-key" ctm restore "$file" --as e2e-rt2
	restore_trust__snapshot
}

# restore_trust__snapshot: a backup whose snapshot carries an `ssh` proxy
# device listening on 127.0.0.1 at a free port (this test's own address),
# and 64 CPUs, restored with --untrusted; `snapshot restore` of it brings
# neither back: no device, no listener, the current limits.cpu, MAC and
# address, and the jump key's permitopen the pinned address. Controls: the
# user still gets through with ssh -J, and an untouched snapshot restores
# as before.
restore_trust__snapshot() {
	local work=$E2E_WORK u=e2e-rts dir=$E2E_WORK/rts tree=$E2E_WORK/rts-tree file hostile port ip mac cpu key_file
	key_file=$E2E_ETC_DIR/keys/$u
	for ((port = 18091; port < 18191; port++)); do
		ss -Hltn "sport = :$port" | e2e_grep -q . || break
	done
	rm -rf "$dir" "$tree" && mkdir -p "$dir" "$tree"
	e2e_client "$u" "$work"
	check "create $u" ctm create "$u" --ssh-key "$work/keys/$u.pub" --no-docker
	check "snapshot $u as kept" ctm snapshot create "$u" kept
	check "backup $u with its snapshot" ctm backup "$u" --output "$dir"
	file=$(ls "$dir/$u"-container-*.tar.gz)
	check "delete $u" ctm delete "$u" --force
	tar -C "$tree" -xzf "$file"
	# The attack: the snapshot's devices and config in backup.yaml, edited
	# as text (the rest byte for byte); read back with a YAML parser.
	check "the backup's snapshot kept now has an ssh device on 127.0.0.1:$port and 64 CPUs" \
		/usr/bin/python3 - "$tree/backup/container/backup.yaml" "$port" <<'PY'
import re, sys, yaml
path, port = sys.argv[1], sys.argv[2]
text = open(path).read()
ip = yaml.safe_load(text)["container"]["devices"]["eth0"]["ipv4.address"]
head, tail = text.split("\nsnapshots:\n", 1)
tail = re.sub(r"\n    limits\.cpu: [^\n]*", '\n    limits.cpu: "64"', tail, count=1)
ssh = f"    ssh:\n      connect: tcp:{ip}:22\n      listen: tcp:127.0.0.1:{port}\n      type: proxy\n"
assert "\n  devices:\n" in tail
tail = tail.replace("\n  devices:\n", "\n  devices:\n" + ssh, 1)
text = head + "\nsnapshots:\n" + tail
open(path, "w").write(text)
snap = [s for s in yaml.safe_load(text)["snapshots"] if s["name"] == "kept"][0]
assert snap["config"]["limits.cpu"] == "64", snap["config"]
assert snap["devices"]["ssh"]["listen"] == f"tcp:127.0.0.1:{port}", snap["devices"]
PY
	rt__drop_index_copy "$tree"
	hostile=$work/rts-hostile/$(basename "$file")
	mkdir -p "$(dirname "$hostile")"
	tar -C "$tree" -czf "$hostile" backup
	check "--untrusted restores the backup with the hostile snapshot" ctm restore "$hostile" --untrusted
	check "(the attack is real) Incus holds the snapshot as the file has it" bash -c \
		"incus query '/1.0/instances/$u-container/snapshots/kept?project=$E2E_PROJECT' | e2e_jq -e '.devices.ssh.listen == \"tcp:127.0.0.1:$port\" and .config[\"limits.cpu\"] == \"64\"'"
	ip=$(ip_of "$u") || ip=
	mac=$(incus query "/1.0/instances/$u-container/state?project=$E2E_PROJECT" | jq -r .network.eth0.hwaddr) || mac=
	cpu=$(e2e_incus config get "$u-container" limits.cpu) || cpu=
	check "  its address, MAC and limits.cpu are known ($ip, $mac, $cpu)" test -n "$ip" -a -n "$mac" -a -n "$cpu"
	check "  its MAC is not the snapshot's (restore gave a fresh one)" bash -c \
		"[ -n '$mac' ] && [ \"\$(incus query '/1.0/instances/$u-container/snapshots/kept?project=$E2E_PROJECT' | jq -r '.config[\"volatile.eth0.hwaddr\"]')\" != '$mac' ]"
	check "snapshot restore $u kept" ctm snapshot restore "$u" kept
	check "  no ssh device" bash -c "! incus --project $E2E_PROJECT config device show $u-container | e2e_grep -q '^ssh:'"
	check "  nothing listens on 127.0.0.1:$port" bash -c "! ss -Hltn 'sport = :$port' | e2e_grep -q ."
	check "  limits.cpu is the current one ($cpu), not 64" bash -c \
		"[ \"\$(incus --project $E2E_PROJECT config get $u-container limits.cpu)\" = '$cpu' ]"
	check "  the MAC is unchanged" bash -c \
		"[ \"\$(incus query '/1.0/instances/$u-container/state?project=$E2E_PROJECT' | jq -r .network.eth0.hwaddr)\" = '$mac' ]"
	check "  the pinned address is unchanged" bash -c \
		"[ \"\$(incus --project $E2E_PROJECT config device get $u-container eth0 ipv4.address)\" = '$ip' ]"
	check "  the jump key's permitopen is the pinned address" bash -c \
		"grep -q 'permitopen=\"$ip:22\"' '$key_file' && ! grep -q 'permitopen=\"127.0.0.1' '$key_file'"
	check "  host doctor's ssh-devices passes" bash -c \
		"'$BIN' --project $E2E_PROJECT host doctor --json 2>/dev/null | e2e_jq -e '.checks[] | select(.name == \"ssh-devices\") | .status == \"ok\"'"
	check "control: $u still reaches the container with ssh -J" jump "$u" "$ip" true
	# The control: an untouched snapshot restores as before.
	check "control: snapshot $u as clean" ctm snapshot create "$u" clean
	check "  write a file after it" jump "$u" "$ip" sh -c "echo after >/home/$u/marker"
	check "  snapshot restore $u clean" ctm snapshot restore "$u" clean
	check "  the file is gone: the disk is the snapshot's" bash -c "! incus --project $E2E_PROJECT exec $u-container -- test -e /home/$u/marker"
	check "  and $u reaches it with ssh -J" jump "$u" "$ip" true
	check "delete $u" ctm delete "$u" --force
	rm -rf "$dir" "$tree" "$(dirname "$hostile")"
}
