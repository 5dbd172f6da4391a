# shellcheck shell=bash
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# trixie: the core path on a Debian 13 image (scripts/build-image.sh --suite
# trixie: systemd 257, OpenSSH 10 with sshd-session, cloud-init 25), as the
# other suites run it on Debian 12: create with --image, ssh -J in, the
# exported config with the container's host key pinned, keys add and
# remove, delete. The image is built once per build-image.sh version and
# cached like the Debian 12 one (tests/e2e/includes/env.sh, e2e_image).

test_trixie() {
	local work=$E2E_WORK bastion=$E2E_BASTION_HOST port=$E2E_BASTION_PORT
	local u=e2e-trx image=$E2E_IMAGE_TRIXIE ip export_file=$E2E_WORK/trixie.conf

	if e2e_image trixie "$image"; then
		pass "the Debian 13 image $image (build-image.sh --suite trixie; cached)"
	else
		fail "the Debian 13 image $image (build-image.sh --suite trixie; cached)"
		return 0
	fi
	e2e_log "trixie image: built or taken from the cache and imported in $E2E_IMAGE_MS ms, unpacked onto the pool in $E2E_IMAGE_WARM_MS ms"
	e2e_client "$u" "$work"
	if ctm create "$u" --ssh-key "$work/keys/$u.pub" --image "$image" >"$work/trixie-create.out" 2>&1; then
		pass "create $u --image $image"
	else
		fail "create $u --image $image"
		tail -n 20 "$work/trixie-create.out" | sed 's/^/    | /'
		return 0
	fi
	ip=$(ip_of "$u")
	sed 's/^/    create| /' "$work/trixie-create.out"
	# cloud-init 24.1+ stamps status.json with the uptime, not the epoch.
	# shellcheck disable=SC2016 # the backquotes are create's words
	check "create read cloud-init 25's status.json itself (no fallback to cloud-init status --wait)" \
		not grep -q 'asking `cloud-init status --wait` instead' "$work/trixie-create.out"

	# What makes it Debian 13, read inside (as a tenant with sudo could).
	debian13() {
		local out
		# shellcheck disable=SC2016 # expanded inside the container
		out=$(in_container "$u" sh -c '. /etc/os-release && echo "$VERSION_ID" &&
			for p in openssh-server systemd cloud-init; do dpkg-query -W -f "\${Version}\n" $p; done &&
			ls /usr/lib/openssh/sshd-session') || return 1
		echo "$out"
		[ "$(sed -n 1p <<<"$out")" = 13 ] && [[ $(sed -n 2p <<<"$out") == 1:10.* ]] &&
			[[ $(sed -n 3p <<<"$out") == 257.* ]] && [[ $(sed -n 4p <<<"$out") == 25.* ]] &&
			[ "$(sed -n 5p <<<"$out")" = /usr/lib/openssh/sshd-session ]
	}
	check "the container runs Debian 13, OpenSSH 10 with sshd-session, systemd 257, cloud-init 25" debian13
	check "cloud-init 25 finished without errors or warnings" in_container "$u" cloud-init status --wait
	in_container "$u" cat /var/lib/cloud/data/status.json | sed 's/^/    status.json| /'
	check "systemd 257 is running with no failed unit" in_container "$u" systemctl is-system-running --wait
	in_container "$u" systemctl --failed --no-legend | sed 's/^/    failed| /'
	check "ssh -J into the Debian 13 container" hostname_is "$u-container" jump "$u" "$ip"
	check "$u has passwordless sudo there" jump "$u" "$ip" sudo -n true
	check "the container's sshd is OpenSSH 10 (its banner)" bash -c "timeout 5 bash -c 'exec 3<>/dev/tcp/$ip/22; head -n 1 <&3' | e2e_grep -q '^SSH-2.0-OpenSSH_10\\.'"

	# export pins the container's own host key; the file connects as it is.
	check "export $u" ctm export "$u" --jump-ip "$bastion" --jump-port "$port" --key "$work/keys/$u" --output "$export_file"
	pinned_key_is_the_containers() {
		local key
		key=$(in_container "$u" cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1-2)
		[ -n "$key" ] && grep -qF "KnownHostsCommand /bin/echo \"$u-dev $key\"" "$export_file"
	}
	check "the export pins the Debian 13 container's ed25519 host key" pinned_key_is_the_containers
	check "the exported config connects as it is (StrictHostKeyChecking yes)" \
		hostname_is "$u-container" ssh -F "$export_file" -o BatchMode=yes "$u-dev"

	# A new laptop's key works at once; the removed one is refused.
	ssh-keygen -q -t ed25519 -N '' -C "$u@new-laptop" -f "$work/keys/$u-new"
	sed "s|$work/keys/$u\$|$work/keys/$u-new|" "$work/ssh-$u.conf" >"$work/ssh-$u-new.conf"
	new_jump() { ssh -F "$work/ssh-$u-new.conf" -J "$u@$bastion:$port" "$u@$ip" "$@"; }
	keys_add_gets_through() { ctm keys add "$u" "$work/keys/$u-new.pub" && new_jump true; }
	check "keys add: the new key gets through at once" keys_add_gets_through
	check "keys remove the old key" ctm keys remove "$u" "$u@laptop"
	refused "the removed key no longer gets through" "Permission denied" jump "$u" "$ip" true
	check "the new key still does" new_jump true
	check "the new key is in the container's authorized_keys, the old one is not" \
		bash -c "keys=\$(incus --project $E2E_PROJECT exec $u-container -- cat /home/$u/.ssh/authorized_keys); grep -q '$u@new-laptop' <<<\"\$keys\" && ! grep -q '$u@laptop\$' <<<\"\$keys\""

	# (host doctor exits 1 when any check of the host FAILs: only these matter here.)
	doctor_passes_the_container() {
		local report
		report=$(ctm host doctor --json) || [ -n "$report" ] || return 1
		e2e_jq '[.checks[] | select(.name | IN("privilege", "quotas", "nic-isolation", "jump-accounts", "key-files")) | .status] |
			length == 5 and all(. == "ok")' <<<"$report"
	}
	check "host doctor finds nothing wrong with the Debian 13 container" doctor_passes_the_container

	check "delete $u" ctm delete "$u" --force
	check "nothing of $u is left" bash -c "! incus --project $E2E_PROJECT info $u-container >/dev/null 2>&1 && ! getent passwd $u && [ ! -e /etc/containarium/keys/$u ]"
}
