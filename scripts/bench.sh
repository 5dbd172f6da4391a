#!/usr/bin/env bash
# Benchmarks, each against a baseline measured in the same run on the same
# host (never a timed test):
#
#   P1   create-to-SSH-ready: `containarium create` + first `ssh -J`, against
#        bare `incus launch` + `cloud-init status --wait` + first ssh with the
#        same image, the same user-data and the same security config.
#        Median of ROUNDS (default 5). Target: ratio <= 1.10.
#   M1   idle memory of a container with Docker enabled but unused (dockerd
#        socket-activated), against the same container with dockerd always
#        running. Target: <= 45 MiB.
#   S1   `sync-accounts` rebuilding 50 users' jump accounts and key files
#        from Incus metadata. Target: < 10 s.
#
#   sudo scripts/bench.sh [ROUNDS]
#
# Uses the same environment as scripts/e2e.sh (project ctme2e, bridge
# 10.197.83.0/24 without NAT, loopback sshd) and cleans up the same way.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
for include in env tenants p1; do
	# shellcheck source=/dev/null
	. "tests/e2e/includes/$include.sh"
done
trap e2e_cleanup EXIT
trap 'exit 130' INT TERM

rounds=${1:-5}
e2e_install_deps
e2e_start_incusd
e2e_setup_incus
e2e_image
work=$E2E_WORK
e2e_containarium "$work"

ctm host init >/dev/null 2>&1
e2e_start_syslog
e2e_start_bastion_sshd
e2e_client e2e-perf "$work"
key=$work/keys/e2e-perf

# --- P1 ------------------------------------------------------------------------
e2e_p1 "$rounds" "$work" e2e-perf

# --- M1 ------------------------------------------------------------------------
# Resident memory of the container's processes, from its memory cgroup on the
# host: total_rss under cgroup v1, anon under v2. Page cache is left out: it
# depends on what ran before, not on what keeps running.
rss_mib() {
	local dir
	dir=$(find /sys/fs/cgroup/memory /sys/fs/cgroup -maxdepth 1 -type d -name "lxc.payload.${E2E_PROJECT}_$1" 2>/dev/null | head -n1)
	awk '$1 == "total_rss" || $1 == "anon" { printf "%.1f", $2 / 1048576; exit }' "$dir/memory.stat"
}
usage_mib() { incus query "/1.0/instances/$1/state?project=$E2E_PROJECT" | jq -r '.memory.usage / 1048576 | floor'; }
ctm create e2e-mem-a --ssh-key "$key.pub" >/dev/null 2>&1
ctm create e2e-mem-b --ssh-key "$key.pub" >/dev/null 2>&1
e2e_incus exec e2e-mem-b-container -- systemctl enable --now docker.service containerd.service >/dev/null 2>&1
sleep 20
docker_a=$(e2e_incus exec e2e-mem-a-container -- systemctl is-active docker.service || true)
printf 'M1 idle memory, docker socket-activated (dockerd %s): %s MiB resident, %s MiB with page cache\n' \
	"$docker_a" "$(rss_mib e2e-mem-a-container)" "$(usage_mib e2e-mem-a-container)"
printf 'M1 idle memory, dockerd always running:            %s MiB resident, %s MiB with page cache (target for the first: <= 45 MiB)\n' \
	"$(rss_mib e2e-mem-b-container)" "$(usage_mib e2e-mem-b-container)"
# Socket activation still works: the first docker command starts dockerd.
e2e_incus exec e2e-mem-a-container -- docker info --format '{{.ServerVersion}}' >/dev/null &&
	printf 'M1 first docker info in the socket-activated container started dockerd: %s\n' \
		"$(e2e_incus exec e2e-mem-a-container -- systemctl is-active docker.service)"
ctm delete e2e-mem-a --force >/dev/null
ctm delete e2e-mem-b --force >/dev/null

# --- S1 ------------------------------------------------------------------------
# 50 users as Incus holds them (stopped containers with our metadata and a
# pinned address); no jump accounts yet, as after a bastion rebuild.
pubkey=$(cat "$key.pub")
for i in $(seq -w 1 50); do
	e2e_incus init "$E2E_IMAGE" "e2e-s$i-container" \
		-c "user.containarium.owner=e2e-s$i" -c "user.containarium.jump-account=e2e-s$i" \
		-c user.containarium.state=ready -c "user.containarium.keys=$pubkey" \
		-d "eth0,ipv4.address=10.197.83.$((100 + 10#$i))" >/dev/null
done
t0=$(e2e_now_ms)
ctm sync-accounts >"$work/sync.out" 2>&1
s1_ms=$(($(e2e_now_ms) - t0))
t0=$(e2e_now_ms)
ctm sync-accounts >"$work/sync2.out" 2>&1
s1_again_ms=$(($(e2e_now_ms) - t0))
printf 'S1 sync-accounts for 50 users: %s ms (%s); again, nothing to do: %s ms (%s) (target < 10000 ms)\n' \
	"$s1_ms" "$(tail -n1 "$work/sync.out")" "$s1_again_ms" "$(tail -n1 "$work/sync2.out")"
for i in $(seq -w 1 50); do ctm delete "e2e-s$i" --force >/dev/null; done
