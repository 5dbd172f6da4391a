# shellcheck shell=bash
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# restore-trust: a backup file is hostile input. One that asks for root on
# the host (security.privileged and the host's / as a disk) is refused
# before anything of it starts; the same backup unedited restores (the
# control); a changed file is caught by its digest.

test_restore_trust() {
	local work=$E2E_WORK u=e2e-rt dir=$E2E_WORK/rt file evil tree old_mac
	e2e_client "$u" "$work"
	mkdir -p "$dir"
	check "create $u" ctm create "$u" --ssh-key "$work/keys/$u.pub" --no-docker
	check "backup $u" ctm backup "$u" --output "$dir"
	file=$(ls "$dir/$u"-container-*.tar.gz)
	check "the backup is 0600 and root's (it holds host keys and /etc/shadow)" \
		bash -c "[ \"\$(stat -c '%a %U' '$file')\" = '600 root' ]"
	check "its digest is recorded beside it, as sha256sum writes it" \
		bash -c "cd '$dir' && sha256sum -c --quiet '$(basename "$file").sha256'"
	old_mac=$(incus --project "$E2E_PROJECT" config get "$u-container" volatile.eth0.hwaddr)
	check "delete $u" ctm delete "$u" --force

	# The attack: a few lines added to backup.yaml.
	tree=$work/rt-tree
	rm -rf "$tree" && mkdir -p "$tree"
	tar -C "$tree" -xzf "$file"
	# As text, the way a person would edit it: the rest stays byte for byte.
	/usr/bin/python3 - "$tree/backup/container/backup.yaml" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
text = text.replace("\n  config:\n", '\n  config:\n    security.privileged: "true"\n', 1)
text = text.replace("\n  devices:\n", "\n  devices:\n    host:\n      path: /mnt/host\n      source: /\n      type: disk\n", 1)
open(path, "w").write(text)
PY
	evil=$work/rt-evil/$(basename "$file")
	mkdir -p "$(dirname "$evil")"
	tar -C "$tree" -czf "$evil" backup
	cp "$file.sha256" "$evil.sha256"
	one_line_error "an edited backup does not match its digest" "does not match its digest" \
		ctm restore "$evil"
	rm -f "$evil.sha256"
	one_line_error "without a digest, the allow-list refuses security.privileged and the host's /" \
		"config key security.privileged; device host (disk) is not one containarium makes" ctm restore "$evil"
	check "nothing of it was left: no container, no account, no key file" bash -c \
		"! incus --project $E2E_PROJECT info $u-container >/dev/null 2>&1 && ! getent passwd $u && [ ! -e /etc/containarium/keys/$u ]"
	check "with --strip it comes back without them" ctm restore "$evil" --strip
	check "the stripped container is unprivileged and has no host disk" bash -c \
		"incus --project $E2E_PROJECT info $u-container >/dev/null && [ -z \"\$(incus --project $E2E_PROJECT config get $u-container security.privileged)\" ] && ! incus --project $E2E_PROJECT config device show $u-container | e2e_grep -q '^host:'"
	check "its NIC is filtered and its MAC is new" bash -c \
		"[ \"\$(incus --project $E2E_PROJECT config device get $u-container eth0 security.ipv4_filtering)\" = true ] && [ \"\$(incus --project $E2E_PROJECT config get $u-container volatile.eth0.hwaddr)\" != '$old_mac' ]"
	check "delete the stripped one" ctm delete "$u" --force
	# The control: the backup as containarium wrote it restores.
	check "control: the unedited backup restores" ctm restore "$file"
	check "control: and is reachable through its jump" jump "$u" "$(ip_of "$u")" true
	check "delete $u" ctm delete "$u" --force
	one_line_error "--as without the new owner's key is refused" "ssh-key" ctm restore "$file" --as e2e-rt2
}
