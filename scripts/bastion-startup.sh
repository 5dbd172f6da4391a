#!/usr/bin/env bash
# containarium bastion startup: run at every boot by containarium-startup.service
# (installed by cloud-init/bastion.yaml as /usr/local/lib/containarium/bastion-startup.sh).
#
# What it does, each step only when needed, so a second boot changes nothing:
#   1. wait for the data disk (stable /dev/disk/by-id/google-* name on GCE);
#   2. ZFS pool on that disk: already imported -> nothing; the disk holds our
#      pool -> import it; the disk is blank -> create the pool (compression=lz4);
#      anything else on the disk -> refuse and fail, touching nothing;
#   3. keep the Incus state directory (/var/lib/incus) on a dataset of that pool,
#      so a recreated boot disk finds every container again;
#   4. initialise Incus with a preseed (ZFS storage pool, bridge with a fixed
#      subnet) only when it is not initialised yet;
#   5. `containarium host init --harden` and `containarium sync-accounts`, both idempotent:
#      the jump accounts come back after the boot disk was recreated.
#
# Everything is logged to the journal (logger -t containarium-startup) and stderr.
#
# Settings (environment; the systemd unit reads /etc/default/containarium-startup):
#   DATA_DISK               block device; default /dev/disk/by-id/google-$DATA_DISK_NAME
#   DATA_DISK_NAME          GCE device_name of the data disk (default containarium-data)
#   DISK_WAIT_SECONDS       how long to wait for the disk to appear (default 120)
#   ZPOOL_NAME              ZFS pool name (default containarium)
#   ZPOOL_FORCE_IMPORT      1: if a plain import of *our* pool fails (it was last used
#                           by another host id, i.e. the boot disk was recreated),
#                           retry with `zpool import -f`. Safe on GCE, where a
#                           persistent disk is attached read-write to one VM only.
#                           (default 0)
#   INCUS_DIR               Incus state directory (default /var/lib/incus)
#   INCUS_STATE_DATASET     dataset holding INCUS_DIR (default $ZPOOL_NAME/incus-state)
#   INCUS_STORAGE_POOL      Incus storage pool name (default default)
#   INCUS_STORAGE_SOURCE    dataset given to Incus (default $ZPOOL_NAME/incus)
#   INCUS_NETWORK           Incus bridge name (default incusbr0)
#   INCUS_BRIDGE_ADDRESS    bridge address/prefix (default 10.100.0.1/20)
#   CONTAINARIUM            containarium binary (default: containarium on PATH)
set -Eeuo pipefail

readonly TAG=containarium-startup

DATA_DISK_NAME=${DATA_DISK_NAME:-containarium-data}
DATA_DISK=${DATA_DISK:-/dev/disk/by-id/google-${DATA_DISK_NAME}}
DISK_WAIT_SECONDS=${DISK_WAIT_SECONDS:-120}
ZPOOL_NAME=${ZPOOL_NAME:-containarium}
ZPOOL_FORCE_IMPORT=${ZPOOL_FORCE_IMPORT:-0}
INCUS_DIR=${INCUS_DIR:-/var/lib/incus}
INCUS_STATE_DATASET=${INCUS_STATE_DATASET:-${ZPOOL_NAME}/incus-state}
INCUS_STORAGE_POOL=${INCUS_STORAGE_POOL:-default}
INCUS_STORAGE_SOURCE=${INCUS_STORAGE_SOURCE:-${ZPOOL_NAME}/incus}
INCUS_NETWORK=${INCUS_NETWORK:-incusbr0}
INCUS_BRIDGE_ADDRESS=${INCUS_BRIDGE_ADDRESS:-10.100.0.1/20}
CONTAINARIUM=${CONTAINARIUM:-containarium}

log() {
    # log LEVEL MESSAGE...   (LEVEL: info, warning, err)
    local level=$1
    shift
    printf '%s[%s]: %s\n' "$TAG" "$level" "$*" >&2
    logger -t "$TAG" -p "daemon.${level}" -- "$*" 2>/dev/null || true
}

die() {
    log err "$*"
    exit 1
}

on_error() {
    log err "failed (exit $1) at line $2: $3"
}
trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR

# run CMD...: log a command, then run it (used for every command that changes state).
run() {
    log info "running: $*"
    "$@"
}

wait_for_disk() {
    local waited=0
    if command -v udevadm >/dev/null 2>&1; then
        udevadm settle --timeout=30 || true
    fi
    while [ ! -e "$DATA_DISK" ]; do
        if [ "$waited" -ge "$DISK_WAIT_SECONDS" ]; then
            die "data disk $DATA_DISK did not appear within ${DISK_WAIT_SECONDS}s; is it attached with device_name=$DATA_DISK_NAME?"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log info "data disk: $DATA_DISK -> $(readlink -f -- "$DATA_DISK")"
}

# probe_disk: print what the data disk holds, without writing to it:
#   ours              a ZFS member of pool $ZPOOL_NAME
#   blank             no filesystem, partition table, RAID or other signature
#   foreign:<detail>  anything else (including probe failures): never touch it
probe_disk() {
    local out rc=0 type="" pttype="" label="" line sigs
    out=$(blkid -p -o export -- "$DATA_DISK" 2>&1) || rc=$?
    case "$rc" in
        0)
            while IFS= read -r line; do
                case "$line" in
                    TYPE=*) type=${line#TYPE=} ;;
                    PTTYPE=*) pttype=${line#PTTYPE=} ;;
                    LABEL=*) label=${line#LABEL=} ;;
                esac
            done <<<"$out"
            if [ "$type" = zfs_member ] && [ "$label" = "$ZPOOL_NAME" ] && [ -z "$pttype" ]; then
                echo ours
            elif [ "$type" = zfs_member ]; then
                echo "foreign:zfs_member of pool '${label}'"
            else
                echo "foreign:${type:-?}${pttype:+ partition table $pttype}"
            fi
            return 0
            ;;
        2) ;; # blkid found nothing; double-check with wipefs below
        *)
            echo "foreign:blkid failed (exit $rc): ${out//$'\n'/ }"
            return 0
            ;;
    esac
    rc=0
    sigs=$(wipefs --no-act --noheadings --output TYPE -- "$DATA_DISK" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "foreign:wipefs failed (exit $rc): ${sigs//$'\n'/ }"
    elif [ -n "$sigs" ]; then
        echo "foreign:signatures ${sigs//$'\n'/ }"
    else
        echo blank
    fi
}

ensure_pool() {
    if zpool list -H -o name "$ZPOOL_NAME" >/dev/null 2>&1; then
        log info "ZFS pool $ZPOOL_NAME is already imported"
        return 0
    fi
    local state
    state=$(probe_disk)
    log info "data disk probe: $state"
    case "$state" in
        ours)
            local dir
            dir=$(dirname -- "$DATA_DISK")
            if run zpool import -N -d "$dir" "$ZPOOL_NAME"; then
                return 0
            fi
            if [ "$ZPOOL_FORCE_IMPORT" = 1 ]; then
                log warning "plain import of $ZPOOL_NAME failed (last used by another host id?); forcing it, the disk is attached read-write to this VM only"
                run zpool import -N -f -d "$dir" "$ZPOOL_NAME"
            else
                die "could not import ZFS pool $ZPOOL_NAME from $DATA_DISK (set ZPOOL_FORCE_IMPORT=1 if it was last used by a previous boot disk of this VM)"
            fi
            ;;
        blank)
            log info "data disk is blank: creating ZFS pool $ZPOOL_NAME"
            # Never -f: zpool refuses a disk that is in use or holds another pool.
            run zpool create -o ashift=12 \
                -O compression=lz4 -O atime=off -O xattr=sa -O acltype=posixacl \
                -O mountpoint=none \
                "$ZPOOL_NAME" "$DATA_DISK"
            ;;
        *)
            die "refusing to touch $DATA_DISK: it holds other data (${state#foreign:}); attach a blank disk or one holding ZFS pool $ZPOOL_NAME"
            ;;
    esac
}

stop_incus() {
    log info "stopping Incus to mount its state directory"
    systemctl stop incus.socket incus.service incus-user.socket incus-user.service 2>/dev/null || true
}

start_incus() {
    run systemctl start incus.socket incus.service
}

# The Incus database and config live in $INCUS_DIR; keeping that on the data disk
# means a recreated boot disk still knows every container (and so sync-accounts
# can rebuild the jump accounts).
ensure_incus_state() {
    local create=0 mounted
    if zfs list -H -o name "$INCUS_STATE_DATASET" >/dev/null 2>&1; then
        mounted=$(zfs get -H -o value mounted "$INCUS_STATE_DATASET")
        if [ "$mounted" = yes ]; then
            log info "Incus state dataset $INCUS_STATE_DATASET is mounted"
            return 0
        fi
    else
        create=1
    fi
    stop_incus
    if [ -d "$INCUS_DIR" ] && ! mountpoint -q -- "$INCUS_DIR" \
        && [ -n "$(ls -A -- "$INCUS_DIR")" ]; then
        # State of an Incus started from the (new) boot disk: keep it aside.
        run mv -- "$INCUS_DIR" "${INCUS_DIR}.boot-disk.$(date +%Y%m%d%H%M%S)"
    fi
    if [ "$create" = 1 ]; then
        run zfs create -o mountpoint="$INCUS_DIR" "$INCUS_STATE_DATASET"
    else
        run zfs mount "$INCUS_STATE_DATASET"
    fi
    start_incus
}

preseed() {
    cat <<EOF
config: {}
storage_pools:
- name: ${INCUS_STORAGE_POOL}
  driver: zfs
  config:
    source: ${INCUS_STORAGE_SOURCE}
networks:
- name: ${INCUS_NETWORK}
  type: bridge
  config:
    ipv4.address: ${INCUS_BRIDGE_ADDRESS}
    ipv4.nat: "true"
    ipv6.address: none
profiles:
- name: default
  devices:
    root:
      path: /
      pool: ${INCUS_STORAGE_POOL}
      type: disk
    eth0:
      name: eth0
      network: ${INCUS_NETWORK}
      type: nic
EOF
}

ensure_incus_initialised() {
    incus admin waitready --timeout=120
    if incus storage show "$INCUS_STORAGE_POOL" >/dev/null 2>&1; then
        log info "Incus is already initialised (storage pool $INCUS_STORAGE_POOL exists)"
        return 0
    fi
    log info "initialising Incus: storage pool $INCUS_STORAGE_POOL on $INCUS_STORAGE_SOURCE, bridge $INCUS_NETWORK $INCUS_BRIDGE_ADDRESS"
    preseed | run incus admin init --preseed
}

main() {
    log info "starting (data disk $DATA_DISK, pool $ZPOOL_NAME)"
    command -v "$CONTAINARIUM" >/dev/null 2>&1 || die "containarium binary not found ($CONTAINARIUM)"
    wait_for_disk
    if [ ! -e /dev/zfs ]; then
        run modprobe zfs
    fi
    ensure_pool
    ensure_incus_state
    ensure_incus_initialised
    run "$CONTAINARIUM" host init --harden
    run "$CONTAINARIUM" sync-accounts
    log info "done"
}

main "$@"
