#!/usr/bin/env bash
# End-to-end suite: containarium against a real Incus, a real sshd bastion on
# 127.0.0.1 and real jump accounts, on this machine, as root.
#
#   sudo scripts/e2e.sh            # builds target/release/containarium first
#
# It installs and starts what it needs (scripts/e2e-env.sh), works only in the
# Incus project "ctme2e" on a bridge it creates (10.197.83.0/24, no NAT), names
# every host account "e2e-*", and removes all of it on exit, even on failure.
# Prints one "PASS"/"FAIL" line per check, the P1 ratio, and a closing
# "N passed, N failed" line.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/e2e-env.sh
. scripts/e2e-env.sh
trap e2e_cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'PASS %s\n' "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s\n' "$1"; }
# check NAME CMD...: runs CMD, PASS when it succeeds.
check() {
	local name=$1
	shift
	if "$@" >"$E2E_STATE_DIR/check.out" 2>&1; then
		pass "$name"
	else
		fail "$name"
		sed 's/^/    | /' "$E2E_STATE_DIR/check.out" | tail -n 20
	fi
}
# refused NAME PATTERN CMD...: CMD must fail and print PATTERN.
refused() {
	local name=$1 pattern=$2
	shift 2
	if "$@" >"$E2E_STATE_DIR/check.out" 2>&1; then
		fail "$name (it succeeded)"
	elif grep -q -- "$pattern" "$E2E_STATE_DIR/check.out"; then
		pass "$name"
	else
		fail "$name (no \"$pattern\")"
		sed 's/^/    | /' "$E2E_STATE_DIR/check.out" | tail -n 20
	fi
}

e2e_install_deps
e2e_start_incusd
e2e_setup_incus
e2e_image
work=$E2E_STATE_DIR/work
e2e_containarium "$work"
ctm() { "$BIN" --project "$E2E_PROJECT" "$@"; }

# The drop-in goes in before the bastion's sshd starts, as on a real host.
check "host init" ctm host init
check "host init is idempotent" bash -c "'$BIN' host init 2>&1 | grep -q '^sshd drop-in .*: unchanged$'"
e2e_start_bastion_sshd
bastion="$E2E_BASTION_HOST"
port="$E2E_BASTION_PORT"

# jump USER IP CMD...: ssh -J through USER's jump account into USER@IP.
jump() {
	local user=$1 ip=$2
	shift 2
	ssh -F "$work/ssh-$user.conf" -J "$user@$bastion:$port" "$user@$ip" "$@"
}
# hostname_is NAME CMD...: CMD (an ssh command line) runs `hostname` and gets NAME.
hostname_is() {
	local expected=$1
	shift
	[ "$("$@" hostname </dev/null)" = "$expected" ]
}
ip_of() { ctm list --json | jq -r --arg u "$1" '.[] | select(.user == $u) | .ipv4'; }

for user in e2e-alice e2e-bob; do e2e_client "$user" "$work"; done
for i in $(seq -w 1 10); do e2e_client "e2e-p$i" "$work"; done

# --- create, and the first ssh -J ---------------------------------------------------
check "create e2e-alice (default: docker on)" ctm create e2e-alice --ssh-key "$work/keys/e2e-alice.pub"
alice_ip=$(ip_of e2e-alice)
check "ssh -J into alice's container" jump e2e-alice "$alice_ip" true

check "create e2e-bob" ctm create e2e-bob --ssh-key "$work/keys/e2e-bob.pub" --no-docker
bob_ip=$(ip_of e2e-bob)

# --- the user's path ---------------------------------------------------------
check "alice runs a command in her container" hostname_is e2e-alice-container jump e2e-alice "$alice_ip"
check "bob runs a command in his container" hostname_is e2e-bob-container jump e2e-bob "$bob_ip"
check "alice has passwordless sudo" jump e2e-alice "$alice_ip" sudo -n true
check "addresses are distinct and on our bridge" bash -c "[ '$alice_ip' != '$bob_ip' ] && [[ '$alice_ip' == 10.197.83.* ]] && [[ '$bob_ip' == 10.197.83.* ]]"
check "the address is pinned" bash -c "incus --project $E2E_PROJECT config device get e2e-alice-container eth0 ipv4.address | grep -qx '$alice_ip'"
check "the container is unprivileged" bash -c "[ -z \"\$(incus --project $E2E_PROJECT config get e2e-alice-container security.privileged)\" ]"
check "metadata lives in Incus" bash -c "incus --project $E2E_PROJECT config get e2e-alice-container user.containarium.state | grep -qx ready"
check "the jump account is proxy-only" bash -c "getent passwd e2e-alice | grep -q ':/usr/sbin/nologin$' && [ \"\$(id -gn e2e-alice)\" = containarium ]"
check "jump accounts take no subordinate ID ranges" bash -c "! grep -q '^e2e-alice:' /etc/subuid /etc/subgid"

# --- Docker, socket-activated, as the user through the jump -----------------------
docker_idle=$(incus --project "$E2E_PROJECT" exec e2e-alice-container -- systemctl is-active docker.service || true)
check "dockerd is not running while Docker is unused ($docker_idle)" test "$docker_idle" = inactive
check "alice is in the docker group" bash -c "ssh -F '$work/ssh-e2e-alice.conf' -J e2e-alice@$bastion:$port e2e-alice@$alice_ip id -nG | grep -qw docker"
# No registry is reachable: import a busybox rootfs made on the host.
mkdir -p "$work/busybox/bin"
cp /bin/busybox "$work/busybox/bin/busybox"
ln -sf busybox "$work/busybox/bin/sh"
tar -C "$work/busybox" -cf "$work/busybox.tar" .
incus --project "$E2E_PROJECT" file push --mode 0644 "$work/busybox.tar" e2e-alice-container/tmp/busybox.tar
docker_says() { [ "$(jump e2e-alice "$alice_ip" 'docker import /tmp/busybox.tar e2e/busybox >/dev/null && docker run --rm e2e/busybox sh -c "echo hello from docker"')" = "hello from docker" ]; }
check "alice runs docker run in her unprivileged container" docker_says

# --- what the jump accounts must not do ---------------------------------------
refused "alice cannot reach bob's container" "administratively prohibited" \
	ssh -F "$work/ssh-e2e-alice.conf" -o LogLevel=INFO -p "$port" -W "$bob_ip:22" "e2e-alice@$bastion"
refused "alice cannot ProxyJump to bob's container, even with bob's key" "administratively prohibited\|Permission denied\|closed" \
	ssh -F "$work/ssh-e2e-bob.conf" -o "ProxyCommand=ssh -F $work/ssh-e2e-alice.conf -p $port -W %h:%p e2e-alice@$bastion" "e2e-bob@$bob_ip" true
refused "alice cannot forward to a host port" "administratively prohibited" \
	ssh -F "$work/ssh-e2e-alice.conf" -o LogLevel=INFO -p "$port" -W "127.0.0.1:$port" "e2e-alice@$bastion"
refused "alice cannot forward to another port of her container" "administratively prohibited" \
	ssh -F "$work/ssh-e2e-alice.conf" -o LogLevel=INFO -p "$port" -W "$alice_ip:80" "e2e-alice@$bastion"
refused "alice gets no shell on the bastion" "not available" \
	ssh -F "$work/ssh-e2e-alice.conf" -p "$port" "e2e-alice@$bastion" id
refused "alice's key does not open bob's jump account" "Permission denied" \
	ssh -F "$work/ssh-e2e-alice.conf" -p "$port" -W "$bob_ip:22" "e2e-bob@$bastion"
refused "no remote forwarding from the bastion" "forwarding failed\|remote port forwarding failed\|administratively" \
	ssh -F "$work/ssh-e2e-alice.conf" -p "$port" -o ExitOnForwardFailure=yes -N -R "127.0.0.1:40222:127.0.0.1:22" "e2e-alice@$bastion"

# --- list, info, export -------------------------------------------------------
check "list shows both, with eth0 addresses" bash -c "'$BIN' --project $E2E_PROJECT list | grep -q '^e2e-alice-container  *e2e-alice  *running  *$alice_ip ' && '$BIN' --project $E2E_PROJECT list | grep -q '^e2e-bob-container .*$bob_ip '"
check "list --json is JSON with autostart" bash -c "'$BIN' --project $E2E_PROJECT list --json | jq -e '.[] | select(.user == \"e2e-alice\") | .autostart == true and .disk == \"3GiB\"'"
check "info shows quota, usage and key" bash -c "'$BIN' --project $E2E_PROJECT info e2e-alice --json | jq -e '.disk_quota == \"3GiB\" and .memory_used > 0 and .jump_account == \"present\" and (.keys | length) == 1 and .uptime_seconds >= 0'"
export_file=$work/exported.conf
check "export alice" ctm export e2e-alice --jump-ip "$bastion" --jump-port "$port" --key "$work/keys/e2e-alice" --output "$export_file"
check "export bob to the same file" ctm export e2e-bob --jump-ip "$bastion" --jump-port "$port" --key "$work/keys/e2e-bob" --output "$export_file"
check "the exported config connects alice as is (pinned host keys)" hostname_is e2e-alice-container ssh -F "$export_file" -o BatchMode=yes e2e-alice-dev
check "the exported config connects bob as is" hostname_is e2e-bob-container ssh -F "$export_file" -o BatchMode=yes e2e-bob-dev
check "the export uses ProxyJump, never ProxyCommand" bash -c "grep -q 'ProxyJump e2e-alice-jump' '$export_file' && ! grep -q ProxyCommand '$export_file'"

# --- bad input is refused and changes nothing ----------------------------------
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

# --- another program holds the account database's lock (as cloud agents do) --------
# useradd fails while /etc/passwd.lock names a live process; create must wait it
# out with backoff. The lock file is ours (made here, removed by its releaser).
if [ ! -e /etc/passwd.lock ]; then
	sleep 300 &
	holder=$!
	printf %s "$holder" >/etc/passwd.lock # no newline: useradd reads a bare PID
	# Released once create reports that it is waiting (at most 60 s).
	(
		for _ in $(seq 120); do
			grep -q "retrying" "$work/carol.out" 2>/dev/null && break
			sleep 0.5
		done
		rm -f /etc/passwd.lock
		kill "$holder"
	) &
	releaser=$!
	create_carol() { ctm create e2e-carol --ssh-key "$work/keys/e2e-alice.pub" --no-docker >"$work/carol.out" 2>&1; }
	check "create waits out a foreign lock on /etc/passwd" create_carol
	wait "$releaser" || true
	check "it said it was retrying" grep -q "locked by another program; retrying" "$work/carol.out"
	check "delete carol" ctm delete e2e-carol --force
else
	printf 'SKIP lock contention: /etc/passwd.lock exists and is not ours\n'
fi

# --- the disk quota is real (btrfs) ------------------------------------------------
refused "the 3GiB root quota is enforced" "Disk quota exceeded\|No space left" \
	jump e2e-bob "$bob_ip" dd if=/dev/zero of=/home/e2e-bob/fill bs=1M count=4096 status=none
jump e2e-bob "$bob_ip" rm -f /home/e2e-bob/fill || true

# --- ten creates in parallel, from a shell loop ----------------------------------
pwck_before=$(pwck -r 2>&1 || true)
pids=()
for i in $(seq -w 1 10); do
	ctm create "e2e-p$i" --ssh-key "$work/keys/e2e-p$i.pub" --no-docker --memory 512MiB >"$work/p$i.out" 2>&1 &
	pids+=("$!")
done
ok=0
for pid in "${pids[@]}"; do if wait "$pid"; then ok=$((ok + 1)); fi; done
if [ "$ok" -eq 10 ]; then pass "10 parallel creates all succeed"; else fail "10 parallel creates: only $ok succeeded"; tail -n 5 "$work"/p*.out; fi
check "the 10 addresses are unique" bash -c "'$BIN' --project $E2E_PROJECT list --json | jq -e '[.[] | select(.user | startswith(\"e2e-p\")) | .ipv4] | (length == 10) and (unique | length == 10)'"
check "pwck -r finds nothing new" bash -c "diff <(printf '%s\n' \"\$1\") <(pwck -r 2>&1 || true)" _ "$pwck_before"
check "one of them is reachable through its jump account" jump e2e-p07 "$(ip_of e2e-p07)" true
for i in $(seq -w 1 10); do ctm delete "e2e-p$i" --force >/dev/null 2>&1 || fail "delete e2e-p$i"; done

# --- living with the containers (lifecycle) --------------------------------------
pid_of() { incus query "/1.0/instances/$1-container/state?project=$E2E_PROJECT" | jq -r .pid; }
bob_pid=$(pid_of e2e-bob)
check "resize bob live" ctm resize e2e-bob --disk 4GiB --memory 768MiB --cpu 2
check "the new disk quota is visible inside" bash -c "[ \"\$(ssh -F '$work/ssh-e2e-bob.conf' -J e2e-bob@$bastion:$port e2e-bob@$bob_ip df -BG --output=size / | tail -n1 | tr -dc 0-9)\" -ge 4 ]"
check "resize did not restart the container" test "$(pid_of e2e-bob)" = "$bob_pid"
refused "resize refuses to shrink below what is used" "cannot shrink" ctm resize e2e-bob --disk 1MiB

# A new laptop: its key works through the jump at once; the old one is removed.
ssh-keygen -q -t ed25519 -N '' -C e2e-bob@new-laptop -f "$work/keys/e2e-bob-new"
sed "s|$work/keys/e2e-bob\$|$work/keys/e2e-bob-new|" "$work/ssh-e2e-bob.conf" >"$work/ssh-e2e-bob-new.conf"
new_jump() { ssh -F "$work/ssh-e2e-bob-new.conf" -J "e2e-bob@$bastion:$port" "e2e-bob@$bob_ip" "$@"; }
check "keys add" ctm keys add e2e-bob "$work/keys/e2e-bob-new.pub"
check "the new key works through the jump at once" new_jump true
check "keys list shows both" bash -c "[ \"\$('$BIN' --project $E2E_PROJECT keys list e2e-bob | wc -l)\" -eq 2 ]"
check "keys remove the old key" ctm keys remove e2e-bob e2e-bob@laptop
refused "the removed key no longer gets through" "Permission denied" jump e2e-bob "$bob_ip" true
check "the remaining key still works" new_jump true
cp "$work/ssh-e2e-bob-new.conf" "$work/ssh-e2e-bob.conf"

check "snapshot create" ctm snapshot create e2e-bob before
check "write a file after the snapshot" jump e2e-bob "$bob_ip" sh -c 'echo after >/home/e2e-bob/marker'
check "snapshot list" bash -c "'$BIN' --project $E2E_PROJECT snapshot list e2e-bob | grep -q '^before '"
check "snapshot restore" ctm snapshot restore e2e-bob before
check "the container is back to the snapshot" bash -c "! ssh -F '$work/ssh-e2e-bob.conf' -J e2e-bob@$bastion:$port e2e-bob@$bob_ip test -e /home/e2e-bob/marker"
check "snapshot delete" ctm snapshot delete e2e-bob before

check "stop bob" ctm stop e2e-bob
refused "a stopped container is unreachable" "Connection refused\|No route\|timed out\|closed\|open failed" jump e2e-bob "$bob_ip" true
check "start bob" ctm start e2e-bob
check "bob is reachable after start" jump e2e-bob "$bob_ip" true
check "restart bob" ctm restart e2e-bob
check "bob is reachable after restart" jump e2e-bob "$bob_ip" true

# A spot bastion recreated with a fresh root disk: accounts and key files are
# gone, Incus (and its metadata) survived.
userdel e2e-bob
rm -f /etc/containarium/keys/e2e-bob
refused "without its account bob cannot get in" "Permission denied" jump e2e-bob "$bob_ip" true
check "sync-accounts rebuilds from Incus metadata" ctm sync-accounts
check "bob gets in again" jump e2e-bob "$bob_ip" true
check "sync-accounts again changes nothing" bash -c "'$BIN' --project $E2E_PROJECT sync-accounts | grep -q ', 0 changes made$'"

# Host restart: incusd (and with it the containers) stops and comes back.
if [ -n "$E2E_INCUSD_PID" ]; then
	incus admin shutdown
	E2E_INCUSD_PID=
	e2e_start_incusd
	check "after a host restart, autostart brings bob back" bash -c "for i in \$(seq 60); do ssh -F '$work/ssh-e2e-bob.conf' -J e2e-bob@$bastion:$port e2e-bob@$bob_ip true && exit 0; sleep 1; done; exit 1"
else
	printf 'SKIP host restart: incusd was already running before the suite; not ours to stop\n'
fi

# Backup and restore round trip: a file is byte-identical afterwards.
jump e2e-bob "$bob_ip" sh -c 'head -c 1048576 /dev/urandom >/home/e2e-bob/data.bin'
sum_before=$(jump e2e-bob "$bob_ip" sha256sum /home/e2e-bob/data.bin)
check "backup bob" ctm backup e2e-bob --output "$work"
check "delete bob" ctm delete e2e-bob --force
check "restore bob from the backup" ctm restore "$(ls "$work"/e2e-bob-container-*.tar.gz)"
check "bob's file is byte-identical after restore" bash -c "[ \"\$(ssh -F '$work/ssh-e2e-bob.conf' -J e2e-bob@$bastion:$port e2e-bob@$bob_ip sha256sum /home/e2e-bob/data.bin)\" = '$sum_before' ]"
check "restored bob keeps his pinned address" bash -c "[ \"\$('$BIN' --project $E2E_PROJECT info e2e-bob --json | jq -r .ipv4)\" = '$bob_ip' ]"

# --- delete --backup -----------------------------------------------------------
backups=$work/backups
mkdir -p "$backups"
check "delete alice with --backup" ctm delete e2e-alice --force --backup "$backups"
check "the backup is a non-empty file" bash -c "[ -s \"\$(ls $backups/e2e-alice-container-*.tar.gz)\" ]"
check "alice's container, account and key file are gone" bash -c "! incus --project $E2E_PROJECT info e2e-alice-container >/dev/null 2>&1 && ! getent passwd e2e-alice && [ ! -e /etc/containarium/keys/e2e-alice ]"
# The same backup, restored for another user: the login inside is renamed.
check "restore alice's backup as e2e-dave" ctm restore "$(ls "$backups"/e2e-alice-container-*.tar.gz)" --as e2e-dave
cp "$work/ssh-e2e-alice.conf" "$work/ssh-e2e-dave.conf" # dave has alice's key now
dave_ip=$(ip_of e2e-dave)
check "dave logs in as himself with the restored key" bash -c "[ \"\$(ssh -F '$work/ssh-e2e-dave.conf' -J e2e-dave@$bastion:$port e2e-dave@$dave_ip whoami)\" = e2e-dave ]"
check "dave has passwordless sudo" jump e2e-dave "$dave_ip" sudo -n true
check "delete dave" ctm delete e2e-dave --force
check "bob is untouched" jump e2e-bob "$bob_ip" true
check "delete bob for good" ctm delete e2e-bob --force
check "delete of the absent succeeds" ctm delete e2e-bob --force

# --- P1: create-to-SSH-ready against bare Incus, same image, user-data and config -----
e2e_client e2e-perf "$work"
e2e_p1 5 "$work" e2e-perf || fail "P1 measurement"

printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
