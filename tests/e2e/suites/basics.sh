# shellcheck shell=bash
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# basics: host init, the first create, the user's path through ssh -J,
# Docker inside, what a jump account must not do, list/info/export, and bad
# input that changes nothing.

test_basics() {
	local work=$E2E_WORK bastion=$E2E_BASTION_HOST port=$E2E_BASTION_PORT
	local alice_ip bob_ip docker_idle export_file
	e2e_client e2e-alice "$work"
	e2e_client e2e-bob "$work"

	check "create e2e-alice (default: docker on)" ctm create e2e-alice --ssh-key "$work/keys/e2e-alice.pub"
	alice_ip=$(ip_of e2e-alice)
	check "ssh -J into alice's container" jump e2e-alice "$alice_ip" true
	check "create e2e-bob" ctm create e2e-bob --ssh-key "$work/keys/e2e-bob.pub" --no-docker
	bob_ip=$(ip_of e2e-bob)

	# --- the user's path ----------------------------------------------------------
	check "alice runs a command in her container" hostname_is e2e-alice-container jump e2e-alice "$alice_ip"
	check "bob runs a command in his container" hostname_is e2e-bob-container jump e2e-bob "$bob_ip"
	check "alice has passwordless sudo" jump e2e-alice "$alice_ip" sudo -n true
	check "addresses are distinct and on our bridge" bash -c "[ '$alice_ip' != '$bob_ip' ] && [[ '$alice_ip' == 10.197.83.* ]] && [[ '$bob_ip' == 10.197.83.* ]]"
	check "the address is pinned" bash -c "incus --project $E2E_PROJECT config device get e2e-alice-container eth0 ipv4.address | e2e_grep -qx '$alice_ip'"
	check "the container is unprivileged" bash -c "[ -z \"\$(incus --project $E2E_PROJECT config get e2e-alice-container security.privileged)\" ]"
	check "metadata lives in Incus" bash -c "incus --project $E2E_PROJECT config get e2e-alice-container user.containarium.state | e2e_grep -qx ready"
	check "the jump account is proxy-only" bash -c "getent passwd e2e-alice | e2e_grep -q ':/usr/sbin/nologin$' && [ \"\$(id -gn e2e-alice)\" = containarium ]"
	check "jump accounts take no subordinate ID ranges" bash -c "! grep -q '^e2e-alice:' /etc/subuid /etc/subgid"

	# --- Docker, socket-activated, as the user through the jump -------------------
	docker_idle=$(in_container e2e-alice systemctl is-active docker.service || true)
	check "dockerd is not running while Docker is unused ($docker_idle)" test "$docker_idle" = inactive
	check "alice is in the docker group" bash -c "ssh -F '$work/ssh-e2e-alice.conf' -J e2e-alice@$bastion:$port e2e-alice@$alice_ip id -nG | e2e_grep -qw docker"
	# No registry is reachable: import a busybox rootfs made on the host.
	mkdir -p "$work/busybox/bin"
	cp /bin/busybox "$work/busybox/bin/busybox"
	ln -sf busybox "$work/busybox/bin/sh"
	tar -C "$work/busybox" -cf "$work/busybox.tar" .
	e2e_incus file push -q --mode 0644 "$work/busybox.tar" e2e-alice-container/tmp/busybox.tar
	docker_says() { [ "$(jump e2e-alice "$alice_ip" 'docker import /tmp/busybox.tar e2e/busybox >/dev/null && docker run --rm e2e/busybox sh -c "echo hello from docker"')" = "hello from docker" ]; }
	check "alice runs docker run in her unprivileged container" docker_says

	# --- what the jump accounts must not do -----------------------------------------
	refused "alice cannot reach bob's container" "administratively prohibited" \
		ssh -F "$work/ssh-e2e-alice.conf" -o LogLevel=INFO -p "$port" -W "$bob_ip:22" "e2e-alice@$bastion"
	refused "alice cannot ProxyJump to bob's container, even with bob's key" "administratively prohibited\|Permission denied\|closed" \
		ssh -F "$work/ssh-e2e-bob.conf" -o "ProxyCommand=ssh -F $work/ssh-e2e-alice.conf -p $port -W %h:%p e2e-alice@$bastion" "e2e-bob@$bob_ip" true
	refused "alice cannot forward to a host port" "administratively prohibited" \
		ssh -F "$work/ssh-e2e-alice.conf" -o LogLevel=INFO -p "$port" -W "127.0.0.1:$port" "e2e-alice@$bastion"
	refused "alice cannot forward to another port of her container" "administratively prohibited" \
		ssh -F "$work/ssh-e2e-alice.conf" -o LogLevel=INFO -p "$port" -W "$alice_ip:80" "e2e-alice@$bastion"
	refused "alice gets no shell on the bastion" "not available\|closed\|failed" \
		ssh -F "$work/ssh-e2e-alice.conf" -o LogLevel=INFO -p "$port" "e2e-alice@$bastion" id
	refused "alice's key does not open bob's jump account" "Permission denied" \
		ssh -F "$work/ssh-e2e-alice.conf" -p "$port" -W "$bob_ip:22" "e2e-bob@$bastion"
	refused "no remote forwarding from the bastion" "forwarding failed\|remote port forwarding failed\|administratively" \
		ssh -F "$work/ssh-e2e-alice.conf" -p "$port" -o ExitOnForwardFailure=yes -N -R "127.0.0.1:40222:127.0.0.1:22" "e2e-alice@$bastion"

	# --- list, info, export ---------------------------------------------------------
	check "list shows both, with their addresses" bash -c "'$BIN' --project $E2E_PROJECT list | e2e_grep -q '^e2e-alice-container  *e2e-alice  *running  *$alice_ip ' && '$BIN' --project $E2E_PROJECT list | e2e_grep -q '^e2e-bob-container .*$bob_ip '"
	check "list --json is JSON with autostart" bash -c "'$BIN' --project $E2E_PROJECT list --json | e2e_jq '.[] | select(.user == \"e2e-alice\") | .autostart == true and .disk == \"3GiB\"'"
	check "info shows quota, usage and key" bash -c "'$BIN' --project $E2E_PROJECT info e2e-alice --json | e2e_jq '.disk_quota == \"3GiB\" and .memory_used > 0 and .jump_account == \"present\" and (.keys | length) == 1 and .uptime_seconds >= 0'"
	export_file=$work/exported.conf
	check "export alice" ctm export e2e-alice --jump-ip "$bastion" --jump-port "$port" --key "$work/keys/e2e-alice" --output "$export_file"
	check "export bob to the same file" ctm export e2e-bob --jump-ip "$bastion" --jump-port "$port" --key "$work/keys/e2e-bob" --output "$export_file"
	check "the exported config connects alice as is (pinned host keys)" hostname_is e2e-alice-container ssh -F "$export_file" -o BatchMode=yes e2e-alice-dev
	check "the exported config connects bob as is" hostname_is e2e-bob-container ssh -F "$export_file" -o BatchMode=yes e2e-bob-dev
	check "the export uses ProxyJump, never ProxyCommand" bash -c "grep -q 'ProxyJump e2e-alice-jump' '$export_file' && ! grep -q ProxyCommand '$export_file'"

	# --- bad input is refused and changes nothing ------------------------------------
	refused "a second create of alice is refused" "already exists" ctm create e2e-alice --ssh-key "$work/keys/e2e-alice.pub"
	refused "an existing host account is refused" "was not made by containarium" ctm create daemon --ssh-key "$work/keys/e2e-alice.pub"
	refused "a private key is refused" "PRIVATE key" ctm create e2e-carol --ssh-key "$work/keys/e2e-alice"
	refused "a missing image is refused" "is not available" ctm create e2e-carol --ssh-key "$work/keys/e2e-alice.pub" --image ctme2e-no-such-image
	check "nothing was made for carol" bash -c "! getent passwd e2e-carol && ! incus --project $E2E_PROJECT info e2e-carol-container"
	# An image whose cloud-init is disabled: nothing would set up the user. create
	# sees /run/cloud-init/disabled, asks `cloud-init status --wait`, says so and
	# undoes everything.
	nocloud_image() {
		e2e_incus init "$E2E_IMAGE" ctme2e-nocloud-src &&
			e2e_incus file push - ctme2e-nocloud-src/etc/cloud/cloud-init.disabled </dev/null &&
			e2e_incus publish ctme2e-nocloud-src --alias "$E2E_NOCLOUD_IMAGE" --compression none &&
			e2e_incus delete ctme2e-nocloud-src
	}
	check "an image with cloud-init disabled (published here)" nocloud_image
	refused "create says cloud-init is disabled in it" "cloud-init is disabled in e2e-dave-container" \
		ctm create e2e-dave --ssh-key "$work/keys/e2e-alice.pub" --image "$E2E_NOCLOUD_IMAGE"
	check "nothing was left for dave" bash -c "! getent passwd e2e-dave && ! incus --project $E2E_PROJECT info e2e-dave-container && [ ! -e /etc/containarium/keys/e2e-dave ]"
	check "the image with cloud-init disabled is deleted" incus image delete "$E2E_NOCLOUD_IMAGE"

	# --- the disk quota is real (btrfs) ----------------------------------------------
	refused "the 3GiB root quota is enforced" "Disk quota exceeded\|No space left" \
		jump e2e-bob "$bob_ip" dd if=/dev/zero of=/home/e2e-bob/fill bs=1M count=4096 status=none
	jump e2e-bob "$bob_ip" rm -f /home/e2e-bob/fill || true

	check "delete alice" ctm delete e2e-alice --force
	check "delete bob" ctm delete e2e-bob --force
	check "alice's container, account and key file are gone" bash -c "! incus --project $E2E_PROJECT info e2e-alice-container >/dev/null 2>&1 && ! getent passwd e2e-alice && [ ! -e /etc/containarium/keys/e2e-alice ]"
	check "delete of the absent succeeds" ctm delete e2e-bob --force
}
