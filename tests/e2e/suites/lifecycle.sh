# shellcheck shell=bash
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# lifecycle: living with a container: resize, keys, snapshots, power,
# a bastion that lost its accounts, a host restart.

test_lifecycle() {
	local work=$E2E_WORK bastion=$E2E_BASTION_HOST port=$E2E_BASTION_PORT
	local u=e2e-lc ip pid
	e2e_client "$u" "$work"
	check "create $u" ctm create "$u" --ssh-key "$work/keys/$u.pub" --no-docker
	ip=$(ip_of "$u")
	pid_of() { incus query "/1.0/instances/$1-container/state?project=$E2E_PROJECT" | jq -r .pid; }
	pid=$(pid_of "$u")
	check "resize live" ctm resize "$u" --disk 4GiB --memory 768MiB --cpu 2
	check "the new disk quota is visible inside" bash -c "[ \"\$(ssh -F '$work/ssh-$u.conf' -J $u@$bastion:$port $u@$ip df -BG --output=size / | tail -n1 | tr -dc 0-9)\" -ge 4 ]"
	check "resize did not restart the container" test "$(pid_of "$u")" = "$pid"
	refused "resize refuses to shrink below what is used" "cannot shrink" ctm resize "$u" --disk 1MiB

	# A new laptop: its key works through the jump at once; the old one is removed.
	ssh-keygen -q -t ed25519 -N '' -C "$u@new-laptop" -f "$work/keys/$u-new"
	sed "s|$work/keys/$u\$|$work/keys/$u-new|" "$work/ssh-$u.conf" >"$work/ssh-$u-new.conf"
	new_jump() { ssh -F "$work/ssh-$u-new.conf" -J "$u@$bastion:$port" "$u@$ip" "$@"; }
	check "keys add" ctm keys add "$u" "$work/keys/$u-new.pub"
	check "the new key works through the jump at once" new_jump true
	check "keys list shows both" bash -c "[ \"\$('$BIN' --project $E2E_PROJECT keys list $u | wc -l)\" -eq 2 ]"
	check "keys remove the old key" ctm keys remove "$u" "$u@laptop"
	refused "the removed key no longer gets through" "Permission denied" jump "$u" "$ip" true
	check "the remaining key still works" new_jump true
	cp "$work/ssh-$u-new.conf" "$work/ssh-$u.conf"

	check "snapshot create" ctm snapshot create "$u" before
	check "write a file after the snapshot" jump "$u" "$ip" sh -c "echo after >/home/$u/marker"
	check "snapshot list" bash -c "'$BIN' --project $E2E_PROJECT snapshot list $u | e2e_grep -q '^before '"
	check "snapshot restore" ctm snapshot restore "$u" before
	check "the container is back to the snapshot" bash -c "! ssh -F '$work/ssh-$u.conf' -J $u@$bastion:$port $u@$ip test -e /home/$u/marker"
	check "snapshot delete" ctm snapshot delete "$u" before

	check "stop" ctm stop "$u"
	refused "a stopped container is unreachable" "Connection refused\|No route\|timed out\|closed\|open failed" jump "$u" "$ip" true
	check "start" ctm start "$u"
	check "reachable after start" jump "$u" "$ip" true
	check "restart" ctm restart "$u"
	check "reachable after restart" jump "$u" "$ip" true

	# A spot bastion recreated with a fresh root disk: accounts and key files are
	# gone, Incus (and its metadata) survived.
	userdel "$u"
	rm -f "/etc/containarium/keys/$u"
	refused "without its account the user cannot get in" "Permission denied" jump "$u" "$ip" true
	check "sync-accounts rebuilds from Incus metadata" ctm sync-accounts
	check "the user gets in again" jump "$u" "$ip" true
	check "sync-accounts again changes nothing" bash -c "'$BIN' --project $E2E_PROJECT sync-accounts | e2e_grep -q ', 0 changes made$'"

	# Host restart: incusd (and with it the containers) stops and comes back.
	if [ -n "$E2E_INCUSD_PID" ]; then
		incus admin shutdown
		E2E_INCUSD_PID=
		e2e_start_incusd
		check "after a host restart, autostart brings the container back" bash -c "for i in \$(seq 60); do ssh -F '$work/ssh-$u.conf' -J $u@$bastion:$port $u@$ip true && exit 0; sleep 1; done; exit 1"
	else
		skip "host restart: incusd was already running before the suite; not ours to stop"
	fi
	check "delete $u" ctm delete "$u" --force
}
