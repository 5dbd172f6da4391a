# shellcheck shell=bash
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# apply-trust (issue 20, items 3 and 4): what a helper's apply file or a
# relabelled instance says never decides what root does to another user.
# (a) A helper's file listing e2e-atbob, whom plain `create` made, is
# refused and bob keeps his key and sudo; controls: the same file with
# --adopt plans the takeover, and a file for its own set applies. (b) An
# instance relabelled `user.containarium.owner=e2e-atbob` with a past
# expiry (what a restored backup edited that way gives): reap touches
# neither it nor bob's container, account or key file; control: an
# honestly expired container is reaped.

apply_trust__cleanup() {
	local u
	# The relabelled one is nobody's until its label is its name's again.
	e2e_incus config set e2e-atalice-container user.containarium.owner=e2e-atalice >/dev/null 2>&1 || true
	for u in e2e-atbob e2e-atalice e2e-atcarol; do
		ctm delete "$u" --force >/dev/null 2>&1 || true
	done
}

# apply_trust__reaches USER KEYUSER: ssh -J through USER's jump account
# with KEYUSER's key runs hostname in USER's container.
apply_trust__reaches() {
	local user=$1 conf=$E2E_WORK/ssh-$2.conf
	[ "$(ssh -F "$conf" -J "$user@$E2E_BASTION_HOST:$E2E_BASTION_PORT" \
		"$user@$(ip_of "$user")" hostname </dev/null)" = "$user-container" ]
}

apply_trust__status() {
	local json
	json=$(e2e_incus list --format json "^$1-container\$") || return 1
	jq -r '.[0].status // "absent"' <<<"$json"
}

test_apply_trust() {
	local work=$E2E_WORK dir=$E2E_WORK/at helper out plan bob_keys doctor
	e2e_on_cleanup apply_trust__cleanup
	e2e_client e2e-atbob "$work"
	e2e_client e2e-athelp "$work"
	e2e_client e2e-atalice "$work"
	rm -rf "$dir" && mkdir -p "$dir"
	cp "$work/keys/e2e-athelp.pub" "$dir/helper.pub"
	helper=$dir/workshop.toml

	check "create e2e-atbob (plain create)" ctm create e2e-atbob --ssh-key "$work/keys/e2e-atbob.pub" --no-docker
	bob_keys=$(cat "$E2E_ETC_DIR/keys/e2e-atbob")

	# (a) The helper's file: bob, with the helper's key.
	printf 'set = "e2e-workshop"\n[defaults]\ndocker = false\n[[user]]\nname = "e2e-atbob"\nkey-files = ["helper.pub"]\n' >"$helper"
	one_line_error "a helper's file listing e2e-atbob (made by plain create) is refused in one line" \
		'e2e-atbob (line 4) exists and was not made by set "e2e-workshop": take them over with --adopt e2e-atbob' \
		ctm apply "$helper"
	check "  bob's key still opens his jump account and container" apply_trust__reaches e2e-atbob e2e-atbob
	check "  bob still has sudo inside" jump e2e-atbob "$(ip_of e2e-atbob)" sudo -n true
	refused "  the helper's key does not open bob's account" "Permission denied" apply_trust__reaches e2e-atbob e2e-athelp
	check "  bob's key file is unchanged" test "$(cat "$E2E_ETC_DIR/keys/e2e-atbob")" = "$bob_keys"
	check "  bob's container carries no set" test -z "$(e2e_incus config get e2e-atbob-container user.containarium.set)"
	plan=$(ctm apply "$helper" --adopt e2e-atbob --dry-run 2>&1) || plan="exit $?: $plan"
	check "control: with --adopt e2e-atbob the takeover is planned, keys by fingerprint and comment" \
		grep -qx "~ e2e-atbob update keys +1 -1 (+SHA256:[^ ]* e2e-athelp@laptop, -SHA256:[^ ]* e2e-atbob@laptop); set - -> e2e-workshop" <<<"$plan"
	check "  (a dry run: bob's key file is unchanged)" test "$(cat "$E2E_ETC_DIR/keys/e2e-atbob")" = "$bob_keys"

	# Refusals that need no container: nothing is asked of Incus.
	printf 'set = "e2e-workshop"\n[[user]]\nname = "e2e-atcarol"\nkey-files = ["/etc/ssh/ssh_host_ed25519_key.pub"]\n' >"$dir/abs.toml"
	one_line_error "an absolute key-files path is refused" "is not a relative path inside the file's directory" \
		ctm apply "$dir/abs.toml"
	printf 'set = "e2e-workshop"\n[[user]]\nname = "e2e-atcarol"\nkey-files = ["../keys/e2e-atbob.pub"]\n' >"$dir/up.toml"
	one_line_error "a key-files path with .. is refused" "is not a relative path inside the file's directory" \
		ctm apply "$dir/up.toml"
	mkfifo "$dir/fifo.pub"
	printf 'set = "e2e-workshop"\n[[user]]\nname = "e2e-atcarol"\nkey-files = ["fifo.pub"]\n' >"$dir/fifo.toml"
	one_line_error "a FIFO as a key file is refused at once (apply)" "fifo.pub is not a regular file" \
		timeout 20 "$BIN" --project "$E2E_PROJECT" apply "$dir/fifo.toml"
	one_line_error "a FIFO as a key file is refused at once (create --ssh-key)" "fifo.pub is not a regular file" \
		timeout 20 "$BIN" --project "$E2E_PROJECT" create e2e-atcarol --ssh-key "$dir/fifo.pub"

	# The control: a file for its own set applies (carol, who expires soon).
	printf 'set = "e2e-workshop"\n[defaults]\ndocker = false\n[[user]]\nname = "e2e-atcarol"\nkey-files = ["helper.pub"]\nexpires = "30s"\n' >"$dir/own.toml"
	check "control: a file for its own set applies" ctm apply "$dir/own.toml"
	check "  its user is reachable with the helper's key" apply_trust__reaches e2e-atcarol e2e-athelp
	sed 's/^expires = .*/expires = "2000-01-01"/' "$dir/own.toml" >"$dir/past.toml"
	one_line_error "an existing user's expiry set in the past is refused" \
		"would expire at 2000-01-01T00:00:00Z, which has passed" ctm apply "$dir/past.toml"

	# (b) alice's container relabelled as bob's, with a past expiry.
	check "create e2e-atalice (plain create)" ctm create e2e-atalice --ssh-key "$work/keys/e2e-atalice.pub" --no-docker
	check "relabel e2e-atalice-container owner=e2e-atbob, expired in 2000" \
		e2e_incus config set e2e-atalice-container user.containarium.owner=e2e-atbob \
		user.containarium.expires=2000-01-01T00:00:00Z user.containarium.expires-set=2000-01-01T00:00:00Z
	local end
	end=$(date -d "$(e2e_incus config get e2e-atcarol-container user.containarium.expires)" +%s) || end=0
	while [ "$(date +%s)" -lt $((end + 2)) ]; do sleep 1; done
	out=$(ctm reap --delete-after 1s 2>&1) || out="exit $?: $out"
	printf '%s\n' "$out" | sed 's/^/    reap: /'
	check "reap does not touch e2e-atbob-container" test "$(apply_trust__status e2e-atbob)" = Running
	check "  nor bob's account or key file" bash -c \
		"getent passwd e2e-atbob >/dev/null && [ \"\$(cat $E2E_ETC_DIR/keys/e2e-atbob)\" = \"\$1\" ]" _ "$bob_keys"
	check "  bob's key still gets through" apply_trust__reaches e2e-atbob e2e-atbob
	check "  nor the relabelled e2e-atalice-container" test "$(apply_trust__status e2e-atalice)" != absent
	check "  and it says it skipped it" grep -q "^warning: e2e-atalice-container records owner \"e2e-atbob\", which is not the user its name says; skipped" <<<"$out"
	check "control: reap deletes the honestly expired e2e-atcarol-container" \
		grep -q "^deleted e2e-atcarol-container: expired at " <<<"$out"
	check "  nothing of it is left" bash -c \
		"! incus --project $E2E_PROJECT info e2e-atcarol-container >/dev/null 2>&1 && ! getent passwd e2e-atcarol && [ ! -e $E2E_ETC_DIR/keys/e2e-atcarol ]"
	doctor=$(ctm host doctor --json 2>/dev/null) || true
	check "host doctor fails owners, naming the fix" e2e_jq \
		'.checks[] | select(.name == "owners") | .status == "fail" and (.fix | test("config set e2e-atalice-container user.containarium.owner=e2e-atalice$"))' <<<"$doctor"
	check "  and does not call bob's key file drifted" e2e_jq \
		'[.checks[] | select(.name == "jump-accounts") | .detail | test("e2e-atbob")] | any | not' <<<"$doctor"
	apply_trust__cleanup
}
