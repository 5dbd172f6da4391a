# shellcheck shell=bash
# tenants.sh: containarium itself and its users, for the suites: the binary
# and its config, client key pairs, and ssh -J through a jump account.
# Sourced after env.sh.

# ---------------------------------------------------------------------------
# containarium itself, for the suites that drive it (e2e.sh, bench.sh)
# ---------------------------------------------------------------------------

# e2e_containarium DIR: builds the release binary as the checkout's owner
# (scripts/build.sh; unless CONTAINARIUM_BIN names one) and sets BIN; writes DIR/config.toml pointing at the test image
# with small quotas and exports CONTAINARIUM_CONFIG; sets E2E_SAME_CONFIG to
# the `incus launch` options containarium uses for such a container with
# Docker, so bare baselines run with the same config.
e2e_containarium() {
	local dir=$1
	# shellcheck disable=SC2034 # used by the sourcing scripts
	BIN=${CONTAINARIUM_BIN:-}
	if [ -z "$BIN" ]; then
		BIN=$("$E2E_SCRIPTS_DIR/build.sh") || return 1
	fi
	rm -rf "$dir"
	mkdir -p "$dir/keys"
	cat >"$dir/config.toml" <<EOF
image = "$E2E_IMAGE"
disk = "3GiB"
cpu = 1
memory = "1GiB"
# An address of the test's own namespace (tests/e2e/includes/netlab.sh).
deny-egress = ["10.197.84.0/24"]
EOF
	export CONTAINARIUM_CONFIG=$dir/config.toml
	# shellcheck disable=SC2034 # used by the sourcing scripts
	E2E_SAME_CONFIG=(-c limits.cpu=1 -c limits.memory=1GiB -c limits.processes=4096 -c security.nesting=true
		-c security.syscalls.intercept.mknod=true -c security.syscalls.intercept.setxattr=true
		-d "root,size=3GiB")
}

# e2e_client USER DIR: a key pair DIR/keys/USER(.pub) and an ssh client config
# DIR/ssh-USER.conf that uses it. Pass the config with -F: ssh hands -F on to
# the ProxyJump hop, while -i and -o stay on the first connection.
e2e_client() {
	local user=$1 dir=$2
	ssh-keygen -q -t ed25519 -N '' -C "$user@laptop" -f "$dir/keys/$user" || return 1
	cat >"$dir/ssh-$user.conf" <<EOF
Host *
    IdentityFile $dir/keys/$user
    IdentitiesOnly yes
    BatchMode yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
    ConnectTimeout 15
EOF
}

# ---------------------------------------------------------------------------
# Users, from the suites' side
# ---------------------------------------------------------------------------

# Where suites keep keys, client configs and scratch files.
E2E_WORK=${E2E_WORK:-$E2E_STATE_DIR/work}

# ctm ARGS...: containarium in the test project.
ctm() { "$BIN" --project "$E2E_PROJECT" "$@"; }

# jump USER IP CMD...: ssh -J through USER's jump account into USER@IP.
jump() {
	local user=$1 ip=$2
	shift 2
	ssh -F "$E2E_WORK/ssh-$user.conf" -J "$user@$E2E_BASTION_HOST:$E2E_BASTION_PORT" "$user@$ip" "$@"
}

# hostname_is NAME CMD...: CMD (an ssh command line) runs `hostname` and gets NAME.
hostname_is() {
	local expected=$1
	shift
	[ "$("$@" hostname </dev/null)" = "$expected" ]
}

# ip_of USER: the address containarium lists for USER's container.
ip_of() { ctm list --json | jq -r --arg u "$1" '.[] | select(.user == $u) | .ipv4'; }

# in_container USER CMD...: CMD as root inside USER's container (what a
# tenant with sudo can do), without going through ssh.
in_container() {
	local user=$1
	shift
	e2e_incus exec "$user-container" -- "$@"
}
