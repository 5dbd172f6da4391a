# shellcheck shell=bash
# p2.sh: the P2 figure, a cohort from one file. Sourced after env.sh,
# tenants.sh and p1.sh (e2e_bare_baseline).

# e2e_p2 N DIR: `containarium apply` of one file of N users (e2e-pa01...) to
# every one of them answering `ssh -J` through its jump account, against the
# same N users made one after the other the way an admin would by hand: bare
# `incus launch` + `cloud-init status --wait` + the first ssh, with the
# user-data containarium rendered for each and the same config
# (e2e_bare_baseline). Sets E2E_P2_APPLY_MS, E2E_P2_BARE_MS and
# E2E_P2_RATIO; deletes the users (apply of the empty set with --prune).
# (apply's rerun with nothing to do is timed on the density set.)
e2e_p2() {
	local -
	set +e # failures are handled explicitly (callers may use set -e)
	local n=$1 dir=$2 key file t0 i u bare_one
	key=$dir/keys/e2e-p2
	file=$dir/p2.toml
	[ -e "$key" ] || e2e_client e2e-p2 "$dir" || return 1
	{
		printf 'set = "e2e-p2"\n'
		for i in $(seq -w 1 "$n"); do
			printf '[[user]]\nname = "e2e-pa%s"\nkeys = ["%s"]\n' "$i" "$(cat "$key.pub")"
		done
	} >"$file"
	t0=$(e2e_now_ms)
	"$BIN" --project "$E2E_PROJECT" apply "$file" >"$dir/p2-apply.out" 2>&1 ||
		{ tail -n 20 "$dir/p2-apply.out" >&2; return 1; }
	"$BIN" --project "$E2E_PROJECT" list --json |
		jq -r '.[] | select(.user | startswith("e2e-pa")) | "\(.user) \(.ipv4)"' >"$dir/p2-targets"
	# shellcheck disable=SC2016 # expanded by the inner shell
	xargs -P 10 -L 1 sh -c 'ssh -F "$0/ssh-e2e-p2.conf" -J "$2@$1" "$2@$3" true' \
		"$dir" "$E2E_BASTION_HOST:$E2E_BASTION_PORT" <"$dir/p2-targets" ||
		{ echo "P2: not every user answered ssh -J" >&2; return 1; }
	E2E_P2_APPLY_MS=$(($(e2e_now_ms) - t0))
	[ "$(wc -l <"$dir/p2-targets")" -eq "$n" ] || { echo "P2: $(wc -l <"$dir/p2-targets") of $n users" >&2; return 1; }
	for i in $(seq -w 1 "$n"); do
		e2e_incus config get "e2e-pa$i-container" cloud-init.user-data >"$dir/p2-user-data-$i" || return 1
	done
	printf 'set = "e2e-p2"\n' >"$file"
	"$BIN" --project "$E2E_PROJECT" apply "$file" --prune >"$dir/p2-prune.out" 2>&1 || return 1
	E2E_P2_BARE_MS=0
	for i in $(seq -w 1 "$n"); do
		u=e2e-pa$i
		bare_one=$(e2e_bare_baseline "$u" "$key.pub" "$key" "$dir/p2-user-data-$i" "${E2E_SAME_CONFIG[@]}") || return 1
		E2E_P2_BARE_MS=$((E2E_P2_BARE_MS + bare_one))
	done
	# shellcheck disable=SC2034 # read by bench.sh
	E2E_P2_RATIO=$(awk -v a="$E2E_P2_APPLY_MS" -v b="$E2E_P2_BARE_MS" 'BEGIN { printf "%.2f", a / b }')
}
