# shellcheck shell=bash
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# backup: backup and restore round trips, delete --backup, restore --as.

test_backup() {
	local work=$E2E_WORK bastion=$E2E_BASTION_HOST port=$E2E_BASTION_PORT
	local u=e2e-bk ip sum_before backups=$E2E_WORK/backups dave_ip
	e2e_client "$u" "$work"
	e2e_client e2e-dave "$work"
	check "create $u" ctm create "$u" --ssh-key "$work/keys/$u.pub" --no-docker
	ip=$(ip_of "$u")
	jump "$u" "$ip" sh -c "head -c 1048576 /dev/urandom >/home/$u/data.bin"
	sum_before=$(jump "$u" "$ip" sha256sum "/home/$u/data.bin")
	mkdir -p "$work/bk1" "$backups"
	check "backup" ctm backup "$u" --output "$work/bk1"
	check "delete" ctm delete "$u" --force
	check "restore from the backup" ctm restore "$(ls "$work"/bk1/"$u"-container-*.tar.gz)"
	check "the file is byte-identical after restore" bash -c "[ \"\$(ssh -F '$work/ssh-$u.conf' -J $u@$bastion:$port $u@$ip sha256sum /home/$u/data.bin)\" = '$sum_before' ]"
	check "the restored container keeps its pinned address" bash -c "[ \"\$('$BIN' --project $E2E_PROJECT info $u --json | jq -r .ipv4)\" = '$ip' ]"

	check "delete with --backup" ctm delete "$u" --force --backup "$backups"
	check "the backup is a non-empty file" bash -c "[ -s \"\$(ls $backups/$u-container-*.tar.gz)\" ]"
	check "container, account and key file are gone" bash -c "! incus --project $E2E_PROJECT info $u-container >/dev/null 2>&1 && ! getent passwd $u && [ ! -e /etc/containarium/keys/$u ]"
	# The same backup, restored for another user with their own key: the login
	# inside is renamed.
	check "restore the backup as e2e-dave" ctm restore "$(ls "$backups/$u"-container-*.tar.gz)" --as e2e-dave --ssh-key "$work/keys/e2e-dave.pub"
	dave_ip=$(ip_of e2e-dave)
	check "dave logs in as himself with his key" bash -c "[ \"\$(ssh -F '$work/ssh-e2e-dave.conf' -J e2e-dave@$bastion:$port e2e-dave@$dave_ip whoami)\" = e2e-dave ]"
	refused "the old owner's key does not open dave's account" "Permission denied" \
		ssh -F "$work/ssh-$u.conf" -J "e2e-dave@$bastion:$port" "e2e-dave@$dave_ip" true
	check "dave has passwordless sudo" jump e2e-dave "$dave_ip" sudo -n true
	check "delete dave" ctm delete e2e-dave --force
}
