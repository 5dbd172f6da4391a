#!/usr/bin/env bash
# quickstart.sh: from a bare Debian machine to a working Containarium bastion
# with one user, in one command (as root, through sudo):
#
#   sudo scripts/quickstart.sh [options] [USER] [PUBKEY]
#
#   USER     the user to create (default: the invoking user's name with "-box"
#            appended: SUDO_USER's own name is their host account, and a jump
#            account needs a name of its own)
#   PUBKEY   their public key (default: the invoking user's
#            ~/.ssh/id_ed25519.pub, generated, owned by them, when missing)
#
# Steps, each printed with what it did or that it was unchanged:
#   packages   Incus (bookworm-backports on Debian 12) and the tools, by
#              scripts/install-deps.sh
#   incusd     started when it is not answering: its systemd units, or by
#              hand on a machine without systemd
#   pool       an Incus storage pool: ZFS when the zfs module is loaded, else
#              btrfs, on a loop file
#   bridge     the tenant network, with an explicit subnet, no IPv6, and no NAT
#              unless --nat (without it tenants reach nothing beyond the host,
#              DNS included)
#   project    only with --project NAME other than default
#   image      scripts/build-image.sh, its tarballs cached in --image-cache
#   binary     built from this checkout with cargo (as the checkout's owner),
#              or --deb/--binary; installed by scripts/install.sh
#   config     image, storage-pool and network in config.toml, in a block of
#              ours at the top of the file
#   host init  `containarium host init` (it changes only what differs)
#   sshd       the system's sshd, started when it is not running (its own
#              port and configuration; host init adds the drop-in)
#   key        the invoking user's key, generated when missing
#   user       `containarium create USER --ssh-key PUBKEY`
# Then it prints (on stdout) the `ssh -J` line and the `containarium export`
# ssh config, both for the invoking user on this machine.
#
# Idempotent: a second run changes nothing and says so, step by step. It
# never touches what it did not make: the pool, bridge and project it makes
# carry user.containarium.quickstart=true; an existing one without it, an
# image alias not built by build-image.sh, a config.toml key set outside our
# block to something else, a host account containarium did not make, or a
# tenant ACL already guarding another network is refused in one line (exit 2)
# before any of them is made (only missing packages and a stopped incusd,
# which the probes need, come first).
#
# Options (the environment variable in brackets works too):
#   --pool NAME          [QS_POOL] storage pool (default containarium)
#   --pool-size SIZE     [QS_POOL_SIZE] its loop file (default 20GiB)
#   --pool-driver D      [QS_POOL_DRIVER] zfs, btrfs or dir (default: zfs when
#                        the module is loaded, else btrfs)
#   --bridge NAME        [QS_BRIDGE] tenant bridge (default ctmbr0)
#   --subnet CIDR        [QS_SUBNET] its gateway address/prefix (default
#                        10.100.0.1/24)
#   --nat                [QS_NAT=1] tenants reach the Internet through this host
#   --project NAME       [QS_PROJECT] Incus project (default: default)
#   --image-suite S      [QS_IMAGE_SUITE] bookworm (default) or trixie
#   --image ALIAS        [QS_IMAGE] image alias (default containarium-debian12,
#                        containarium-debian13 for trixie)
#   --image-cache DIR    [QS_IMAGE_CACHE] image tarballs (default
#                        /var/cache/containarium/images)
#   --deb FILE           install this package instead of building
#   --binary FILE        install this binary instead of building
#   --prefix DIR         where a binary goes (default /usr/local/bin)
#   --jump-host HOST     [QS_JUMP_HOST] the bastion as seen from this machine
#                        (default 127.0.0.1)
#   --jump-port N        [QS_JUMP_PORT] its sshd port (default: sshd -T's)
#   --sshd-pidfile FILE  [QS_SSHD_PIDFILE] the pid file of the sshd clients reach,
#                        which must be running: quickstart starts only the
#                        system's own (/run/sshd.pid)
#   --dry-run            print every step and what it would do; change nothing
#   -h, --help
# CONTAINARIUM_CONFIG names another config.toml, as for containarium itself.
#
# Exit status: 0 done; 1 a step failed (what is done stays done: run it
# again); 2 refused, nothing changed.
set -euo pipefail

prog=quickstart
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf '%s: %s\n' "$prog" "$*" >&2; }
refuse() {
	printf '%s: error: %s\n' "$prog" "$*" >&2
	exit 2
}
die() {
	printf '%s: error: %s\n' "$prog" "$*" >&2
	exit 1
}
usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; }

pool=${QS_POOL:-containarium}
pool_size=${QS_POOL_SIZE:-20GiB}
pool_driver=${QS_POOL_DRIVER:-}
bridge=${QS_BRIDGE:-ctmbr0}
subnet=${QS_SUBNET:-10.100.0.1/24}
nat=${QS_NAT:-0}
project=${QS_PROJECT:-default}
image_suite=${QS_IMAGE_SUITE:-bookworm}
image=${QS_IMAGE:-}
image_cache=${QS_IMAGE_CACHE:-/var/cache/containarium/images}
deb=
binary=
prefix=/usr/local/bin
jump_host=${QS_JUMP_HOST:-127.0.0.1}
jump_port=${QS_JUMP_PORT:-}
sshd_pidfile=${QS_SSHD_PIDFILE:-}
dry_run=0
args=()
while [ $# -gt 0 ]; do
	case $1 in
	--pool) pool=${2:?--pool needs a name}; shift 2 ;;
	--pool-size) pool_size=${2:?--pool-size needs a size}; shift 2 ;;
	--pool-driver) pool_driver=${2:?--pool-driver needs zfs, btrfs or dir}; shift 2 ;;
	--bridge) bridge=${2:?--bridge needs a name}; shift 2 ;;
	--subnet) subnet=${2:?--subnet needs ADDRESS/PREFIX}; shift 2 ;;
	--nat) nat=1; shift ;;
	--project) project=${2:?--project needs a name}; shift 2 ;;
	--image-suite) image_suite=${2:?--image-suite needs bookworm or trixie}; shift 2 ;;
	--image) image=${2:?--image needs an alias}; shift 2 ;;
	--image-cache) image_cache=${2:?--image-cache needs a directory}; shift 2 ;;
	--deb) deb=${2:?--deb needs a file}; shift 2 ;;
	--binary) binary=${2:?--binary needs a file}; shift 2 ;;
	--prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
	--jump-host) jump_host=${2:?--jump-host needs a host}; shift 2 ;;
	--jump-port) jump_port=${2:?--jump-port needs a port}; shift 2 ;;
	--sshd-pidfile) sshd_pidfile=${2:?--sshd-pidfile needs a file}; shift 2 ;;
	--dry-run) dry_run=1; shift ;;
	-h | --help) usage; exit 0 ;;
	-*) refuse "unknown option: $1 (see --help)" ;;
	*) args+=("$1"); shift ;;
	esac
done
[ "${#args[@]}" -le 2 ] || refuse "too many arguments: give USER and PUBKEY at most (see --help)"
user=${args[0]:-}
pubkey=${args[1]:-}

# --- checks of the input: nothing is changed before the probes ------------
[ "$(id -u)" -eq 0 ] || refuse "run as root: sudo $0 $*"
case $image_suite in
bookworm) image=${image:-containarium-debian12} ;;
trixie) image=${image:-containarium-debian13} ;;
*) refuse "--image-suite must be bookworm or trixie" ;;
esac
incus_name() { { [[ $2 =~ ^[a-z0-9][a-z0-9-]*$ ]] && [ "${#2}" -le "$3" ]; } || refuse "invalid $1 name \"$2\": a-z, 0-9 and -, at most $3 characters"; }
incus_name pool "$pool" 63
incus_name bridge "$bridge" 15
incus_name project "$project" 63
incus_name image "$image" 63
[ "$nat" = 0 ] || [ "$nat" = 1 ] || refuse "QS_NAT must be 0 or 1"
case $pool_driver in
"") if [ -e /sys/module/zfs ] && command -v zpool >/dev/null; then pool_driver=zfs; else pool_driver=btrfs; fi ;;
zfs | btrfs | dir) ;;
*) refuse "--pool-driver must be zfs, btrfs or dir" ;;
esac
[[ $pool_size =~ ^[0-9]+(MiB|GiB|TiB)$ ]] || refuse "invalid --pool-size \"$pool_size\": give e.g. 20GiB"
[[ $jump_host =~ ^[A-Za-z0-9.:-]+$ ]] || refuse "invalid --jump-host \"$jump_host\""
[ -z "$jump_port" ] || [[ $jump_port =~ ^[1-9][0-9]{0,4}$ ]] || refuse "invalid --jump-port \"$jump_port\""

# The subnet: a host address (the gateway) and a prefix of /8 to /30.
[[ $subnet =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})/([0-9]{1,2})$ ]] ||
	refuse "invalid --subnet \"$subnet\": give the gateway address and prefix, e.g. 10.100.0.1/24"
prefix_len=${BASH_REMATCH[5]}
ip_int=0
for i in 1 2 3 4; do
	[ "${BASH_REMATCH[$i]}" -le 255 ] || refuse "invalid --subnet \"$subnet\""
	ip_int=$((ip_int * 256 + BASH_REMATCH[i]))
done
{ [ "$prefix_len" -ge 8 ] && [ "$prefix_len" -le 30 ]; } || refuse "--subnet prefix must be /8 to /30"
mask=$(((0xffffffff << (32 - prefix_len)) & 0xffffffff))
net_int=$((ip_int & mask))
{ [ "$ip_int" -ne "$net_int" ] && [ "$ip_int" -ne $((net_int | (~mask & 0xffffffff))) ]; } ||
	refuse "--subnet $subnet: give the gateway's address, not the network or broadcast address"
network_cidr="$((net_int >> 24)).$(((net_int >> 16) & 255)).$(((net_int >> 8) & 255)).$((net_int & 255))/$prefix_len"

# Who runs it: their name, their key, the user made for them.
owner=${SUDO_USER:-root}
owner_home=$(getent passwd "$owner" | cut -d: -f6) || refuse "no host account $owner (SUDO_USER)"
if [ -z "$user" ]; then
	[ "$owner" != root ] || refuse "give USER (no SUDO_USER to name the user after)"
	user=$owner-box
fi
{ [[ $user =~ ^[a-z][a-z0-9-]*[a-z0-9]$ ]] && [ "${#user}" -le 31 ]; } ||
	refuse "invalid user name \"$user\": 2 to 31 of a-z, 0-9 and -, starting with a letter, not ending with - (give USER)"
generate_key=0
if [ -z "$pubkey" ]; then
	pubkey=$owner_home/.ssh/id_ed25519.pub
	if [ ! -e "$pubkey" ]; then
		[ ! -e "${pubkey%.pub}" ] || refuse "${pubkey%.pub} exists without ${pubkey##*/}: give PUBKEY"
		generate_key=1
	fi
else
	[ -f "$pubkey" ] || refuse "no public key file $pubkey"
fi
# The private half, for the exported config (none when only the .pub is here).
private_key=${pubkey%.pub}
[ "$generate_key" = 1 ] || [ -f "$private_key" ] || private_key=

# Where the binary comes from: a package, a binary, or cargo in this checkout,
# run as the checkout's owner (their rustup, their target directory:
# scripts/build.sh).
builder='' build_line=''
if [ -n "$deb" ] && [ -n "$binary" ]; then refuse "give --deb or --binary, not both"; fi
if [ -n "$deb" ]; then
	[ -f "$deb" ] || refuse "no package $deb"
	deb=$(realpath -- "$deb")
elif [ -n "$binary" ]; then
	{ [ -f "$binary" ] && [ -x "$binary" ]; } || refuse "no executable $binary"
	binary=$(realpath -- "$binary")
else
	[ -f "$repo/Cargo.toml" ] || refuse "no checkout at $repo to build: give --deb FILE or --binary FILE"
	builder=$(stat -c %U "$repo")
	build_line=$("$repo/scripts/build.sh" --print 2>&1) ||
		refuse "${build_line#build.sh: error: }, or give --deb FILE or --binary FILE"
fi
config=${CONTAINARIUM_CONFIG:-/etc/containarium/config.toml}

# --- helpers ----------------------------------------------------------------
changes=0
# done_ WHAT HOW: a step that changed something; same WHAT HOW: one that did not.
done_() {
	changes=$((changes + 1))
	say "$1: $2"
}
same() { say "$1: $2, unchanged"; }
would() {
	changes=$((changes + 1))
	say "$1: would $2"
}
incus_up() { timeout 10 incus query /1.0 >/dev/null 2>&1; }
# query PATH: the object as JSON, or nothing (exit 1) when there is none.
query() { incus query "$1" 2>/dev/null; }
ours() { jq -e '.config["user.containarium.quickstart"] == "true"' >/dev/null <<<"$1"; }
marker=user.containarium.quickstart=true
pargs=()
[ "$project" = default ] || pargs=(--project "$project")
has_systemd() { [ -d /run/systemd/system ]; }

# --- packages and incusd: what the probes need --------------------------------
if [ "$dry_run" = 1 ]; then
	out=$("$repo/scripts/install-deps.sh" --dry-run) || exit
else
	out=$("$repo/scripts/install-deps.sh") || exit
fi
while IFS= read -r line; do
	case $line in
	*unchanged) say "$line" ;;
	*) changes=$((changes + 1)) && say "$line" ;;
	esac
done <<<"$out"

if command -v incus >/dev/null && incus_up; then
	same incusd running
elif [ "$dry_run" = 1 ]; then
	would incusd "start it"
elif has_systemd; then
	systemctl enable --now incus.socket incus.service
	incus admin waitready --timeout 120
	done_ incusd "started (systemctl enable --now incus.service)"
else
	# No systemd (a container or a CI machine): start it by hand, as the e2e
	# harness does. It does not come back after a reboot.
	mkdir -p /var/log/incus
	group=incus-admin
	getent group "$group" >/dev/null || group=root
	PATH=/usr/libexec/incus:/usr/sbin:/usr/bin:/sbin:/bin setsid /usr/libexec/incus/incusd \
		--group "$group" --logfile /var/log/incus/incusd.log </dev/null >>/var/log/incus/incusd.out 2>&1 &
	incus admin waitready --timeout 120 || die "incusd did not start (see /var/log/incus/incusd.log)"
	done_ incusd "started by hand (pid $(incus query /1.0 | jq -r .environment.server_pid); no systemd: it does not start again at boot)"
fi

# --- probes: refuse before anything is made -----------------------------------
probing=0
incus_up && probing=1
pool_json='' bridge_json='' project_json=''
if [ "$probing" = 1 ]; then
	if pool_json=$(query "/1.0/storage-pools/$pool"); then
		ours "$pool_json" || refuse "storage pool $pool exists and was not made by quickstart (no $marker); give --pool NAME"
	fi
	if bridge_json=$(query "/1.0/networks/$bridge"); then
		ours "$bridge_json" || refuse "network $bridge exists and was not made by quickstart (no $marker); give --bridge NAME"
		have=$(jq -r '.config["ipv4.address"] // ""' <<<"$bridge_json")
		[ "$have" = "$subnet" ] || refuse "network $bridge (ours) has ipv4.address $have, not $subnet: give --subnet $have"
		have=$(jq -r '.config["ipv4.nat"] // "false"' <<<"$bridge_json")
		want=$([ "$nat" = 1 ] && echo true || echo false)
		[ "$have" = "$want" ] || refuse "network $bridge (ours) has ipv4.nat=$have: $([ "$nat" = 1 ] && echo "incus network set $bridge ipv4.nat=true raw.dnsmasq= first" || echo "give --nat")"
	else
		! ip link show "$bridge" >/dev/null 2>&1 || refuse "$bridge is a network interface of this host already; give --bridge NAME"
		route=$(ip -4 route show "$network_cidr")
		[ -z "$route" ] || refuse "subnet $network_cidr is routed on this host already ($route); give --subnet"
	fi
	if [ "$project" != default ] && project_json=$(query "/1.0/projects/$project"); then
		ours "$project_json" || refuse "project $project exists and was not made by quickstart (no $marker); give --project NAME"
	fi
	# One tenant ACL per host: its rules name the tenant subnet.
	if acl=$(query /1.0/network-acls/containarium-tenants); then
		other=$(jq -r --arg b "/1.0/networks/$bridge" \
			'[.used_by[] | select(startswith("/1.0/networks/") and (split("?")[0] != $b)) | split("/")[3] | split("?")[0]] | join(", ")' <<<"$acl")
		[ -z "$other" ] || refuse "this host has a Containarium tenant network already ($other carries the containarium-tenants ACL); use it with containarium, not quickstart"
	fi
	if alias_json=$(query "/1.0/images/aliases/$image"); then
		fp=$(jq -r .target <<<"$alias_json")
		query "/1.0/images/$fp" | jq -e '.properties["containarium.docker"] != null' >/dev/null ||
			refuse "image alias $image names an image that scripts/build-image.sh did not build; give --image ALIAS"
	fi
	if inst=$(query "/1.0/instances/$user-container?project=$project"); then
		jq -e '.config["user.containarium.owner"] != null' >/dev/null <<<"$inst" ||
			refuse "an instance $user-container exists and is not managed by containarium; give another USER"
	fi
fi
if account=$(getent passwd "$user"); then
	[ "$(getent group containarium | cut -d: -f3)" = "$(cut -d: -f4 <<<"$account")" ] ||
		refuse "host account $user exists and was not made by containarium; give another USER"
fi

# config.toml: our keys go in a block of ours at the top; a key set outside it
# must already say what we would.
begin='# containarium quickstart: begin (scripts/quickstart.sh keeps these lines)'
end='# containarium quickstart: end'
outside() {
	[ -f "$config" ] || return 0
	awk -v b="$begin" -v e="$end" '
		$0 == b { inside = 1; next }
		$0 == e { inside = 0; next }
		inside { next }
		/^[ \t]*\[/ { exit }
		match($0, /^[ \t]*(image|storage-pool|network)[ \t]*=[ \t]*/) {
			key = $0; sub(/[ \t]*=.*/, "", key); gsub(/[ \t]/, "", key)
			value = substr($0, RLENGTH + 1); sub(/[ \t]*(#.*)?$/, "", value)
			print key " " value
		}' "$config"
}
block='' settings=''
while read -r key want; do
	found=$(outside | awk -v k="$key" '$1 == k && !seen { print substr($0, length(k) + 2); seen = 1 }')
	if [ -z "$found" ]; then
		block+="$key = \"$want\""$'\n'
		settings+="${settings:+, }$key = \"$want\""
	elif [ "$found" != "\"$want\"" ]; then
		refuse "$config sets $key = $found, not \"$want\": remove that line or give the matching option"
	fi
done <<EOF
image $image
storage-pool $pool
network $bridge
EOF
if [ -e "$config" ]; then
	{ [ -f "$config" ] && [ ! -L "$config" ]; } || refuse "$config is not a regular file"
	[ "$(stat -c %u "$config")" = 0 ] || refuse "$config is not owned by root"
fi

# The bastion's sshd: its port, as clients reach it. Only the system's own is
# ever started; one named by --sshd-pidfile is someone else's to run.
sshd_pid=$(cat "${sshd_pidfile:-/run/sshd.pid}" 2>/dev/null || true)
sshd_running=0
if [ -n "$sshd_pid" ] && [ "$(cat "/proc/$sshd_pid/comm" 2>/dev/null)" = sshd ] &&
	[ "$(stat -c %u "/proc/$sshd_pid")" = 0 ]; then
	sshd_running=1
fi
[ "$sshd_running" = 1 ] || [ -z "$sshd_pidfile" ] ||
	refuse "no sshd is running with the pid file $sshd_pidfile (--sshd-pidfile): start it, or leave the option out to use the system's sshd"
if [ -z "$jump_port" ]; then
	# sshd -T says more than one pipe write (4404 bytes on a stock Debian 12):
	# read all of it before looking, or sshd dies of SIGPIPE (exit 141).
	if [ -x /usr/sbin/sshd ] && effective=$(/usr/sbin/sshd -T 2>/dev/null); then
		jump_port=$(awk '$1 == "port" && !seen { print $2; seen = 1 }' <<<"$effective")
	fi
	jump_port=${jump_port:-22}
fi

# --- the steps ----------------------------------------------------------------
run_or_would() { # WHAT HOW CMD...: run CMD and report HOW, or say it would
	local what=$1 how=$2
	shift 2
	if [ "$dry_run" = 1 ]; then
		would "$what" "$how: $*"
	else
		"$@" >/dev/null
		done_ "$what" "$how"
	fi
}

if [ -n "$pool_json" ]; then
	same "pool $pool" "exists ($(jq -r .driver <<<"$pool_json"))"
else
	size=(size="$pool_size")
	[ "$pool_driver" != dir ] || size=()
	run_or_would "pool $pool" "created ($pool_driver, ${pool_size} loop file)" \
		incus storage create "$pool" "$pool_driver" "${size[@]}" "$marker"
fi

if [ -n "$bridge_json" ]; then
	same "bridge $bridge" "exists ($subnet)"
else
	# Without NAT, dnsmasq forwards no DNS queries either: nothing leaves.
	net=(ipv4.address="$subnet" ipv6.address=none)
	if [ "$nat" = 1 ]; then net+=(ipv4.nat=true); else net+=(ipv4.nat=false raw.dnsmasq=no-resolv); fi
	run_or_would "bridge $bridge" "created ($subnet, $([ "$nat" = 1 ] && echo NAT || echo 'no NAT'))" \
		incus network create "$bridge" "${net[@]}" "$marker"
fi

if [ "$project" != default ]; then
	if [ -n "$project_json" ]; then
		same "project $project" exists
	else
		run_or_would "project $project" created \
			incus project create "$project" -c features.images=false -c features.profiles=true -c "$marker"
	fi
fi

if [ "$probing" = 1 ] && [ -n "${alias_json:-}" ]; then
	same "image $image" "exists (${fp:0:12}; delete the alias to rebuild it)"
else
	# The e2e harness caches its image the same way (tests/e2e/includes/env.sh).
	debs=$image_cache/debs
	[ "$image_suite" = bookworm ] || debs+=-$image_suite
	run_or_would "image $image" "imported (Debian $image_suite, tarballs cached in $image_cache)" \
		"$repo/scripts/build-image.sh" --suite "$image_suite" --cache "$image_cache" \
		--deb-cache "$debs" --alias "$image" --project default
fi

# The binary: built as the owner of the checkout, installed by install.sh.
install=(bash "$repo/scripts/install.sh" --no-host-init)
if [ -n "$deb" ]; then
	install+=("$deb")
	bin=/usr/bin/containarium
else
	if [ -z "$binary" ]; then
		if [ "$dry_run" = 1 ]; then
			binary=${CARGO_TARGET_DIR:-$repo/target}/release/containarium
			say "binary: would build it in $repo: $build_line"
		else
			say "binary: building it in $repo as $builder (cargo build --release --locked)"
			binary=$("$repo/scripts/build.sh") || die "cargo build failed"
		fi
	fi
	install+=(--binary "$binary" --prefix "$prefix")
	bin=$prefix/containarium
fi
if [ "$dry_run" = 1 ]; then
	would binary "install it: ${install[*]}"
else
	out=$("${install[@]}") || die "install.sh failed: $out"
	grep 'warning' <<<"$out" | sed "s/^/$prog: binary: /" >&2 || true
	if grep -q ': installed' <<<"$out"; then
		done_ binary "installed $bin ($(grep -c ': installed' <<<"$out") files)"
	else
		same binary "$bin is this build"
	fi
fi
ctm() { "$bin" "${pargs[@]}" "$@"; }

# config.toml: our block, first in the file.
new=$(
	if [ -n "$block" ]; then printf '%s\n%s%s\n' "$begin" "$block" "$end"; fi
	if [ -f "$config" ]; then
		awk -v b="$begin" -v e="$end" '$0 == b { inside = 1; next } $0 == e { inside = 0; next } !inside' "$config"
	fi
)
if [ -f "$config" ] && [ "$new" = "$(cat "$config")" ]; then
	same "config $config" "has the pool, bridge and image"
elif [ "$dry_run" = 1 ]; then
	would "config $config" "set $settings"
else
	mkdir -p "$(dirname "$config")"
	printf '%s\n' "$new" >"$config.quickstart"
	chmod 0644 "$config.quickstart"
	mv -f "$config.quickstart" "$config"
	done_ "config $config" "set $settings"
fi

# host init: run every time (it changes only what differs, and proves sshd's
# policy with a jump account); its steps other than checks are the changes.
if [ "$dry_run" = 1 ]; then
	would "host init" "run: $bin host init"
else
	out=$(ctm host init 2>&1) || die "host init failed: $out"
	made=$(grep -E '\.\.\. done' <<<"$out" | sed 's/\.\.\. done.*//' | grep -v '^check ' || true)
	if [ -z "$made" ]; then
		same "host init" "$(grep -c ': unchanged$' <<<"$out") settings checked"
	else
		done_ "host init" "done: $(paste -sd ';' <<<"$made" | sed 's/;/; /g')"
	fi
	grep '^warning' <<<"$out" | sed "s/^/$prog: host init: /" >&2 || true
fi

# The bastion's sshd: the system's own.
if [ "$sshd_running" = 1 ]; then
	same sshd "running (pid $sshd_pid, port $jump_port)"
elif [ "$dry_run" = 1 ]; then
	would sshd "start the system's sshd"
elif has_systemd; then
	systemctl enable --now ssh.service
	done_ sshd "started (systemctl enable --now ssh.service)"
else
	mkdir -p /run/sshd
	chmod 0755 /run/sshd
	ssh-keygen -A >/dev/null
	/usr/sbin/sshd
	done_ sshd "started /usr/sbin/sshd by hand (no systemd: it does not start again at boot)"
fi
# (host init's reload makes sshd re-execute itself: its listener is gone for
# a moment, so this waits up to 5 s for one.)
listening() { [ -n "$(ss -Hltn "sport = :$jump_port")" ]; }
if [ "$dry_run" = 0 ] && ! listening; then
	for _ in $(seq 50); do
		sleep 0.1
		! listening || break
	done
	listening || die "nothing listens on port $jump_port: is sshd's port another one? give --jump-port"
fi

# The key: the owner's, made by them, in their home.
if [ "$generate_key" = 0 ]; then
	same "key $pubkey" exists
elif [ "$dry_run" = 1 ]; then
	would "key $pubkey" "generate it as $owner: ssh-keygen -t ed25519"
else
	runuser -u "$owner" -- mkdir -p -m 0700 "$owner_home/.ssh"
	runuser -u "$owner" -- ssh-keygen -q -t ed25519 -N '' -C "$owner@$(hostname)" -f "${pubkey%.pub}"
	private_key=${pubkey%.pub}
	done_ "key $pubkey" "generated (ed25519, owned by $owner)"
fi

# The user.
if [ "$dry_run" = 1 ]; then
	if [ "$probing" = 1 ] && [ -n "${inst:-}" ]; then
		same "user $user" exists
	else
		would "user $user" "create it: $bin ${pargs[*]} create $user --ssh-key $pubkey"
	fi
else
	state=$(ctm list --json | jq -r --arg u "$user" '.[] | select(.user == $u) | .state')
	fingerprint=$(ssh-keygen -lf "$pubkey" | awk '{ print $2 }')
	case $state in
	"" | pending)
		out=$(ctm create "$user" --ssh-key "$pubkey" 2>&1) || die "containarium create $user failed: $(tail -n 3 <<<"$out")"
		done_ "user $user" "created ($user-container, key $fingerprint)"
		;;
	*)
		if [ "$state" != running ]; then
			ctm start "$user" >/dev/null 2>&1 || die "containarium start $user failed"
			done_ "user $user" "started"
		fi
		if ctm keys list "$user" --json | jq -e --arg f "$fingerprint" 'any(.[]; .fingerprint == $f)' >/dev/null; then
			same "user $user" "exists, with key $fingerprint"
		else
			ctm keys add "$user" "$pubkey" >/dev/null 2>&1 || die "containarium keys add $user failed"
			done_ "user $user" "exists; added key $fingerprint"
		fi
		;;
	esac
fi

if [ "$changes" = 0 ]; then say "nothing changed"; else say "$changes change$([ "$changes" = 1 ] || echo s)$([ "$dry_run" = 0 ] || echo ' would be made; nothing changed')"; fi

# --- what to type -----------------------------------------------------------------
jump=$user@$jump_host
[ "$jump_port" = 22 ] || jump+=:$jump_port
if [ "$dry_run" = 1 ]; then
	echo "ssh -J $jump $user@ADDRESS"
	exit 0
fi
ip=$(ctm list --json | jq -r --arg u "$user" '.[] | select(.user == $u) | .ipv4')
key_args=()
[ -z "$private_key" ] || key_args=(--key "$private_key")
echo "# As $owner, on this machine:"
echo "ssh -J $jump $user@$ip"
case ${private_key##*/} in
id_ed25519 | id_rsa | id_ecdsa | id_ecdsa_sk | id_ed25519_sk) ;;
*) echo "# (ssh offers ${private_key:-your private key} only from ssh-agent: ssh-add it first, or use the config below)" ;;
esac
echo "# Or with both host keys pinned: save the lines below as FILE and run: ssh -F FILE $user-dev"
echo "# (from another machine: containarium ${pargs[*]:+${pargs[*]} }export $user --jump-ip THIS-HOST)"
ctm export "$user" --jump-ip "$jump_host" --jump-port "$jump_port" "${key_args[@]}"
