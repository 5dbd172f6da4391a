#!/usr/bin/env bash
# containarium bastion startup: run at every boot by containarium-startup.service
# (installed by cloud-init/bastion.yaml as /usr/local/lib/containarium/bastion-startup.sh).
# Every bastion is a member of one Incus cluster; see docs/scale-out.md.
#
#   bastion-startup.sh                  the boot sequence below
#   bastion-startup.sh publish-tokens   step 7 only (containarium-join-tokens.timer, every minute)
#   bastion-startup.sh lb-hold          step 0 only (containarium-lb-hold.service, at every boot)
#
# What it does, each step only when needed, so a second boot changes nothing:
#   0. (lb-hold, before the network and sshd are up) with a load balancer
#      (LB_ADDRESS): hold this bastion out of it. The balancer passes packets
#      through with the destination unchanged, its address, which the guest
#      agent makes local; its TCP health check on port 22 goes there too. An
#      nftables table of our own (inet containarium_lb) answers a connection to
#      LB_ADDRESS:22 with a TCP reset, so the health check fails and no user is
#      sent here, while the bastion's own addresses still reach sshd (admins);
#   1. wait for the data disk (stable /dev/disk/by-id/google-* name on GCE);
#   2. ZFS pool on that disk: already imported -> nothing; the disk holds our
#      pool -> import it; the disk is blank -> create the pool (compression=lz4);
#      anything else on the disk -> refuse and fail, touching nothing;
#   3. keep the Incus state directory (/var/lib/incus) on a dataset of that pool,
#      so a recreated boot disk (or a Spot restart) finds every container again;
#   4. Incus cluster membership, decided from the data disk first:
#      - $INCUS_DIR/cluster.crt exists: already a member (a restart, a recreated
#        boot disk); nothing to join, only wait for Incus, which itself waits
#        for the cluster database's quorum;
#      - Incus initialised but not clustered: refuse (a member must join empty);
#      - no join state published yet and this is the bootstrap member: create
#        the cluster (preseed: core.https_address, ZFS storage pool, bridge with
#        the fixed tenant subnet, cluster enabled);
#      - otherwise: wait (bounded) for this member's join token in the join
#        state (a Secret Manager secret only the bastions can read), then join.
#        A name the cluster already has, on a blank disk (a replaced VM or
#        disk), is never removed from the cluster here: it waits for an admin
#        to restore the disk or run `incus cluster remove --force NAME`;
#   5. host certificate: the trusted host CA keys and this bastion's principals
#      come from the instance metadata; the CA's private key is fetched from
#      Secret Manager into a private directory on tmpfs, only when the host key
#      must be (re)signed (no certificate, another CA, other principals), and
#      shredded right after `containarium host sign`;
#   6. the backup key, the same on every bastion: only when
#      /etc/containarium/backup.key is missing (a first boot, a recreated boot
#      disk), it is fetched from Secret Manager (base64 of 32 bytes), checked
#      and linked into place, 0600 root; a key that is there is never read,
#      replaced or changed here (host init checks it); a secret that is not
#      32 bytes of base64 stops the run, nothing is written and no key is made;
#      then `containarium host init --harden` and `containarium sync-accounts`, both
#      idempotent: the jump accounts come back after the boot disk was recreated;
#      only once both succeeded is the hold of step 0 released (the table
#      deleted): the balancer sends users here once every jump account is here;
#   7. publish-tokens (on the database leader only): a join token for every
#      expected member (instance metadata containarium-members) that is not in
#      the cluster, refreshed before it expires, written to the join state
#      with the members' names; nothing is written when nothing changed;
#   8. enable the timers on every member: sync-accounts, join tokens and reap
#      (each member reaps the containers it runs).
#
# Everything is logged to the journal (logger -t containarium-startup) and stderr.
# Exit status: 0 done; 1 failed, retried by systemd (Restart=on-failure: a
# token not there yet, the cluster database without quorum, a network error);
# 2 refused, not retried (data on the disk that is not ours, a bastion from
# before the cluster, a CA key that is not the one the metadata names).
# No secret is ever put on a command line: tokens and keys go through files
# in a private directory and through stdin.
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
#   INCUS_BRIDGE_ADDRESS    bridge address/prefix, the same on every member (default 10.100.0.1/20)
#   INCUS_WAIT_SECONDS      how long to wait for Incus to be ready (default 600: a member
#                           waits for the cluster database)
#   CLUSTER_MEMBER_NAME     this member's name, the instance name (default: hostname)
#   CLUSTER_ADDRESS         this member's internal address; Incus listens on ADDRESS:8443
#   CLUSTER_BOOTSTRAP       name of the member that creates the cluster
#   CLUSTER_JOIN_SECRET     projects/P/secrets/S holding the join state
#   HOST_CA_KEY_SECRET      projects/P/secrets/S holding the host CA's private key
#   BACKUP_KEY_SECRET       projects/P/secrets/S holding the backup key (base64 of 32 bytes)
#   BACKUP_KEY              where containarium reads the backup key
#                           (default /etc/containarium/backup.key)
#   JOIN_WAIT_SECONDS       how long one run waits for a join token (default 900)
#   JOIN_POLL_SECONDS       how often it looks (default 15)
#   TOKEN_REFRESH_SECONDS   a pending token expiring sooner than this is replaced (default 1800)
#   SSH_HOST_KEY            the host key to certify (default /etc/ssh/ssh_host_ed25519_key)
#   HOST_CA_PUB             the trusted host CA keys, for `containarium export --host-ca`
#                           (default /etc/containarium/host-ca.pub)
#   RUNTIME_DIR             tmpfs for the private work directory (default /run)
#   STATE_DIR               what the token publisher last wrote (default /var/lib/containarium-startup)
#   METADATA_URL, SECRETS_URL   the GCE metadata server and the Secret Manager API
#   LB_ADDRESS              the SSH load balancer's address (IPv4); empty (the default):
#                           no balancer, nothing is held or released
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
INCUS_WAIT_SECONDS=${INCUS_WAIT_SECONDS:-600}
CLUSTER_MEMBER_NAME=${CLUSTER_MEMBER_NAME:-$(hostname -s)}
CLUSTER_ADDRESS=${CLUSTER_ADDRESS:-}
CLUSTER_BOOTSTRAP=${CLUSTER_BOOTSTRAP:-}
CLUSTER_JOIN_SECRET=${CLUSTER_JOIN_SECRET:-}
HOST_CA_KEY_SECRET=${HOST_CA_KEY_SECRET:-}
BACKUP_KEY_SECRET=${BACKUP_KEY_SECRET:-}
BACKUP_KEY=${BACKUP_KEY:-/etc/containarium/backup.key}
JOIN_WAIT_SECONDS=${JOIN_WAIT_SECONDS:-900}
JOIN_POLL_SECONDS=${JOIN_POLL_SECONDS:-15}
TOKEN_REFRESH_SECONDS=${TOKEN_REFRESH_SECONDS:-1800}
SSH_HOST_KEY=${SSH_HOST_KEY:-/etc/ssh/ssh_host_ed25519_key}
HOST_CA_PUB=${HOST_CA_PUB:-/etc/containarium/host-ca.pub}
RUNTIME_DIR=${RUNTIME_DIR:-/run}
STATE_DIR=${STATE_DIR:-/var/lib/containarium-startup}
METADATA_URL=${METADATA_URL:-http://metadata.google.internal/computeMetadata/v1}
SECRETS_URL=${SECRETS_URL:-https://secretmanager.googleapis.com/v1}
LB_ADDRESS=${LB_ADDRESS:-}
CONTAINARIUM=${CONTAINARIUM:-containarium}

# The nftables table holding this bastion out of the load balancer (step 0).
readonly LB_TABLE=containarium_lb

# Private work directory for tokens, the CA key and API responses (mktemp -d is 0700).
WORK=""
SIGNED=0
# The backup key being written, beside BACKUP_KEY until it is linked into place.
BACKUP_KEY_TMP=""

log() {
    # log LEVEL MESSAGE...   (LEVEL: info, warning, err)
    local level=$1
    shift
    printf '%s[%s]: %s\n' "$TAG" "$level" "$*" >&2
    logger -t "$TAG" -p "daemon.${level}" -- "$*" 2>/dev/null || true
}

# die: a failure systemd retries (the cause may go away: a token not yet there,
# no quorum, the network).
die() {
    log err "$*"
    exit 1
}

# refuse: a failure that retrying cannot fix (RestartPreventExitStatus=2).
refuse() {
    log err "$*"
    exit 2
}

on_error() {
    log err "failed (exit $1) at line $2: $3"
}
# exit 1 whatever the failed command returned, so that only refuse() means "do not retry"
trap 'on_error $? $LINENO "$BASH_COMMAND"; exit 1' ERR

cleanup() {
    local f
    if [ -n "$BACKUP_KEY_TMP" ] && [ -e "$BACKUP_KEY_TMP" ]; then
        shred -u -- "$BACKUP_KEY_TMP" || rm -f -- "$BACKUP_KEY_TMP"
    fi
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        for f in "$WORK/host-ca-key" "$WORK/backup-key.b64"; do
            if [ -e "$f" ]; then
                shred -u -- "$f" || rm -f -- "$f"
            fi
        done
        rm -rf -- "$WORK"
    fi
}
trap cleanup EXIT

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
                refuse "could not import ZFS pool $ZPOOL_NAME from $DATA_DISK (set ZPOOL_FORCE_IMPORT=1 if it was last used by a previous boot disk of this VM)"
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
            refuse "refusing to touch $DATA_DISK: it holds other data (${state#foreign:}); attach a blank disk or one holding ZFS pool $ZPOOL_NAME"
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

# The Incus database, its cluster certificate and config live in $INCUS_DIR;
# keeping that on the data disk means a recreated boot disk (or a restarted
# Spot VM) is still the same cluster member, with every container, and needs
# no new join token.
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

incus_ready() {
    # incus_ready WHY: wait for incusd (a member's incusd is ready only once the
    # cluster database answers, which needs a majority of its database members).
    incus admin waitready --timeout="$INCUS_WAIT_SECONDS" ||
        die "Incus was not ready within ${INCUS_WAIT_SECONDS}s ($1); containarium-startup.service tries again in a minute"
}

# What every member shares (the pool, the bridge with the tenant subnet, the
# default profile), defined once by the member that creates the cluster.
bootstrap_preseed() {
    cat <<EOF_PRESEED
config:
  core.https_address: ${CLUSTER_ADDRESS}:8443
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
cluster:
  server_name: ${CLUSTER_MEMBER_NAME}
  enabled: true
EOF_PRESEED
}

# join_preseed TOKEN: a joining member brings only what is its own (its address,
# its pool's dataset); the token names the cluster's addresses and the
# fingerprint of the cluster certificate that Incus checks before it trusts it.
join_preseed() {
    cat <<EOF_PRESEED
cluster:
  enabled: true
  server_name: ${CLUSTER_MEMBER_NAME}
  server_address: ${CLUSTER_ADDRESS}:8443
  cluster_token: $1
  member_config:
  - entity: storage-pool
    name: ${INCUS_STORAGE_POOL}
    key: source
    value: ${INCUS_STORAGE_SOURCE}
EOF_PRESEED
}

# instance_attr NAME: a custom metadata value of this instance. Terraform keeps
# these current in place (members, host CA keys, principals), while the
# user-data is read by cloud-init once.
instance_attr() {
    curl -fsS --retry 5 --max-time 10 -H 'Metadata-Flavor: Google' \
        "$METADATA_URL/instance/attributes/$1"
}

# api_auth: the service account's Authorization header, in a file of the work
# directory (never on a command line).
api_auth() {
    curl -fsS --retry 5 --max-time 10 -H 'Metadata-Flavor: Google' \
        "$METADATA_URL/instance/service-accounts/default/token" |
        python3 -c 'import json, sys; print("Authorization: Bearer " + json.load(sys.stdin)["access_token"])' \
            >"$WORK/auth" ||
        die "no access token from the metadata server"
}

# secret_get SECRET FILE: the payload of the secret's latest version into FILE.
# Returns 3 when the secret has no version yet; every other failure dies, so a
# network or permission error is never taken for "nothing published".
secret_get() {
    local code
    api_auth
    code=$(curl -sS --retry 5 --max-time 20 -H @"$WORK/auth" -o "$WORK/response" \
        -w '%{http_code}' "$SECRETS_URL/$1/versions/latest:access") ||
        die "reading secret $1 failed (network?)"
    case "$code" in
        200)
            python3 -c 'import base64, json, sys; sys.stdout.buffer.write(base64.b64decode(json.load(open(sys.argv[1]))["payload"]["data"]))' \
                "$WORK/response" >"$2" || die "reading secret $1: unexpected answer"
            ;;
        404) return 3 ;;
        *) die "reading secret $1: HTTP $code: $(head -c 300 -- "$WORK/response" | tr '\n' ' ')" ;;
    esac
}

# secret_put SECRET FILE: FILE as the secret's new version. The version before it
# is destroyed, so no consumed or expired token is kept and versions do not pile up.
secret_put() {
    local code version
    api_auth
    python3 -c 'import base64, json, sys; print(json.dumps({"payload": {"data": base64.b64encode(open(sys.argv[1], "rb").read()).decode()}}))' \
        "$2" >"$WORK/request" || die "encoding the new version of $1 failed"
    log info "adding a version to secret $1"
    code=$(curl -sS --max-time 20 -H @"$WORK/auth" -H 'Content-Type: application/json' \
        --data-binary @"$WORK/request" -o "$WORK/response" -w '%{http_code}' \
        "$SECRETS_URL/$1:addVersion") || die "writing secret $1 failed (network?)"
    [ "$code" = 200 ] ||
        die "writing secret $1: HTTP $code: $(head -c 300 -- "$WORK/response" | tr '\n' ' ')"
    version=$(python3 -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["name"].rsplit("/", 1)[1]))' \
        "$WORK/response") || die "writing secret $1: unexpected answer"
    if [ "$version" -gt 1 ]; then
        code=$(curl -sS --max-time 20 -H @"$WORK/auth" -H 'Content-Type: application/json' \
            --data-binary '{}' -o "$WORK/response" -w '%{http_code}' \
            "$SECRETS_URL/$1/versions/$((version - 1)):destroy") || code=000
        [ "$code" = 200 ] ||
            log warning "could not destroy version $((version - 1)) of secret $1 (HTTP $code)"
    fi
}

# token_expires TOKEN: when an Incus join token expires, in seconds since the
# epoch (a token is base64 of JSON with expires_at); read from stdin.
token_expires() {
    printf '%s' "$1" | python3 -c '
import base64, datetime, json, sys
token = json.loads(base64.b64decode(sys.stdin.read()))
print(int(datetime.datetime.fromisoformat(token["expires_at"]).timestamp()))'
}

replaced_message() {
    local me=$CLUSTER_MEMBER_NAME
    echo "the cluster already has a member $me, but this VM's data disk holds no Incus state (the VM or its data disk was replaced). To bring that member back with its containers, restore its data disk from a snapshot and restart this VM. To give up its containers and join afresh, run 'incus cluster remove --force $me' on any member: a fresh join token follows within a minute and this VM joins"
}

# Step 4: bootstrap, join or nothing, decided from this VM's own disk first, so
# a member that restarts never needs the cluster or a token to know what it is.
ensure_cluster_member() {
    local rc=0
    if [ -e "$INCUS_DIR/cluster.crt" ]; then
        log info "already cluster member $CLUSTER_MEMBER_NAME (its Incus state is on the data disk)"
        incus_ready "a member waits for the cluster database: a majority of the database members (incus admin cluster list-database) must be up; after a permanent loss see incus admin cluster recover-from-quorum-loss"
        return 0
    fi
    incus_ready "not a cluster member yet"
    if incus storage show "$INCUS_STORAGE_POOL" >/dev/null 2>&1; then
        refuse "Incus on this data disk is initialised but is not a cluster member (a bastion from before the cluster deployment?): it cannot join, a member joins empty. Move its users to the cluster (containarium backup, then restore on a member) and give this VM a blank data disk"
    fi
    if [ -z "$CLUSTER_ADDRESS" ] || [ -z "$CLUSTER_BOOTSTRAP" ] || [ -z "$CLUSTER_JOIN_SECRET" ]; then
        refuse "CLUSTER_ADDRESS, CLUSTER_BOOTSTRAP and CLUSTER_JOIN_SECRET must be set (/etc/default/containarium-startup)"
    fi
    secret_get "$CLUSTER_JOIN_SECRET" "$WORK/join-state" || rc=$?
    if [ "$rc" = 3 ] && [ "$CLUSTER_MEMBER_NAME" = "$CLUSTER_BOOTSTRAP" ]; then
        log info "no cluster yet: creating it as $CLUSTER_MEMBER_NAME on $CLUSTER_ADDRESS:8443 (storage pool $INCUS_STORAGE_POOL on $INCUS_STORAGE_SOURCE, bridge $INCUS_NETWORK $INCUS_BRIDGE_ADDRESS)"
        bootstrap_preseed | run incus admin init --preseed
        return 0
    fi
    # A published join state means the cluster exists, also for the bootstrap
    # member: one whose disk is new joins like any other and never makes a second cluster.
    join_cluster
}

join_cluster() {
    local me=$CLUSTER_MEMBER_NAME deadline=$((SECONDS + JOIN_WAIT_SECONDS))
    local rc reason last="" token expires
    while :; do
        rc=0
        secret_get "$CLUSTER_JOIN_SECRET" "$WORK/join-state" || rc=$?
        token=""
        if [ "$rc" = 3 ]; then
            reason="no join state published yet (the bootstrap member $CLUSTER_BOOTSTRAP publishes it within a minute of creating the cluster)"
        else
            token=$(awk -v m="$me" '$1 == "token" && $2 == m { print $3 }' "$WORK/join-state")
            if [ -n "$token" ]; then
                expires=$(token_expires "$token") || expires=0
                if [ "$expires" -gt $(($(date +%s) + 60)) ]; then
                    break
                fi
                reason="its join token has expired (the cluster's database leader publishes a fresh one within a minute)"
            elif grep -qx "member $me" "$WORK/join-state"; then
                reason=$(replaced_message)
            else
                reason="no join token for $me yet (the cluster's database leader publishes one within a minute for every name in the instance metadata containarium-members)"
            fi
        fi
        if [ "$reason" != "$last" ]; then
            log info "waiting to join the cluster: $reason"
            last=$reason
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            die "no usable join token for $me after ${JOIN_WAIT_SECONDS}s: $reason. containarium-startup.service tries again in a minute"
        fi
        sleep "$JOIN_POLL_SECONDS"
    done
    log info "joining the cluster as $me on $CLUSTER_ADDRESS:8443"
    join_preseed "$token" | run incus admin init --preseed
}

# Step 5. The first key of containarium-host-ca signs; all of them are trusted
# (during a rotation both), which is what export's @cert-authority lines list.
ensure_host_cert() {
    local principals ca_fp
    [ -n "$HOST_CA_KEY_SECRET" ] || refuse "HOST_CA_KEY_SECRET must be set (/etc/default/containarium-startup)"
    # one key a line, ending with a newline (the metadata value may not)
    { instance_attr containarium-host-ca && echo; } | sed '/^$/d' >"$WORK/host-ca.pub"
    principals=$(instance_attr containarium-host-principals)
    [[ $principals =~ ^[A-Za-z0-9.:-]+(,[A-Za-z0-9.:-]+)*$ ]] ||
        die "instance metadata containarium-host-principals is not a comma-separated list of names and addresses"
    ssh-keygen -l -f "$WORK/host-ca.pub" >/dev/null ||
        die "instance metadata containarium-host-ca holds no OpenSSH public keys"
    head -n 1 -- "$WORK/host-ca.pub" >"$WORK/signing-ca.pub"
    ca_fp=$(ssh-keygen -l -f "$WORK/signing-ca.pub" | awk '{ print $2 }')
    if ! cmp -s -- "$WORK/host-ca.pub" "$HOST_CA_PUB"; then
        run install -D -m 0644 -- "$WORK/host-ca.pub" "$HOST_CA_PUB"
    fi
    if host_cert_current "$ca_fp" "$principals"; then
        log info "host certificate is current (CA $ca_fp, principals $principals)"
        return 0
    fi
    sign_host_key "$principals"
}

# host_cert_current CA_FINGERPRINT PRINCIPALS: the certificate is of this host
# key, by this CA, for exactly these principals.
host_cert_current() {
    local cert=$SSH_HOST_KEY-cert.pub out host_fp have want
    [ -e "$cert" ] || return 1
    out=$(ssh-keygen -L -f "$cert" 2>/dev/null) || return 1
    host_fp=$(ssh-keygen -l -f "$SSH_HOST_KEY.pub" | awk '{ print $2 }') || return 1
    grep -qF "Public key: ED25519-CERT $host_fp" <<<"$out" || return 1
    grep -qF "Signing CA: ED25519 $1 " <<<"$out" || return 1
    have=$(sed -n '/^[[:space:]]*Principals:/,/^[[:space:]]*Critical Options:/p' <<<"$out" |
        sed '1d;$d' | tr -d '[:blank:]' | LC_ALL=C sort | paste -sd, -)
    want=$(tr ',' '\n' <<<"$2" | LC_ALL=C sort | paste -sd, -)
    [ "$have" = "$want" ]
}

sign_host_key() {
    local key=$WORK/host-ca-key rc=0
    log info "signing the host key for $1"
    (umask 077 && : >"$key")
    secret_get "$HOST_CA_KEY_SECRET" "$key" || rc=$?
    [ "$rc" = 0 ] || die "secret $HOST_CA_KEY_SECRET has no version yet (terraform apply writes it)"
    if [ "$(ssh-keygen -y -f "$key" | awk '{ print $1, $2 }')" != "$(awk '{ print $1, $2 }' "$WORK/signing-ca.pub")" ]; then
        die "the host CA key in $HOST_CA_KEY_SECRET is not the first key of the instance metadata containarium-host-ca (a terraform apply half done?)"
    fi
    run "$CONTAINARIUM" host sign --ca-key "$key" --principals "$1"
    run shred -u -- "$key"
    SIGNED=1
}

# Step 6, first: the backup key, under which `containarium backup` authenticates
# what it writes and `restore` checks it, so the same on every bastion. Only a
# missing file is written: a key that is there (this boot disk's, or one an
# admin put there) is never read, replaced or changed here; `host init` refuses
# one that is not a regular 0600 root file of 32 bytes. The secret holds one
# line of base64; anything that does not decode to exactly 32 bytes stops the
# run (retried a minute later) with nothing written: containarium would
# otherwise make a key of its own, which no other bastion has.
ensure_backup_key() {
    local b64=$WORK/backup-key.b64 dir rc=0 size
    if [ -e "$BACKUP_KEY" ] || [ -L "$BACKUP_KEY" ]; then
        log info "backup key $BACKUP_KEY is there: kept as it is"
        return 0
    fi
    [ -n "$BACKUP_KEY_SECRET" ] || refuse "BACKUP_KEY_SECRET must be set (/etc/default/containarium-startup): there is no backup key $BACKUP_KEY to keep"
    log info "no backup key $BACKUP_KEY: fetching it from $BACKUP_KEY_SECRET"
    (umask 077 && : >"$b64")
    secret_get "$BACKUP_KEY_SECRET" "$b64" || rc=$?
    [ "$rc" = 0 ] || die "secret $BACKUP_KEY_SECRET has no version yet (terraform apply writes it)"
    # 32 bytes are 43 base64 characters and one '=' (a final newline is allowed)
    if [ "$(wc -l <"$b64")" -gt 1 ] || ! grep -Eqx -- '[A-Za-z0-9+/]{43}=' "$b64"; then
        die "secret $BACKUP_KEY_SECRET is not one line of base64 of 32 bytes: no backup key written (fix the secret's latest version; docs/scale-out.md)"
    fi
    dir=$(dirname -- "$BACKUP_KEY")
    mkdir -p -- "$dir"
    # a 0600 file of root's (the unit's user), beside the key: linked into place
    BACKUP_KEY_TMP=$(mktemp -- "$dir/.backup.key.XXXXXX")
    base64 -d <"$b64" >"$BACKUP_KEY_TMP" ||
        die "secret $BACKUP_KEY_SECRET does not decode: no backup key written"
    size=$(stat -c %s -- "$BACKUP_KEY_TMP")
    [ "$size" = 32 ] ||
        die "secret $BACKUP_KEY_SECRET decodes to $size bytes, not 32: no backup key written"
    chmod 0600 -- "$BACKUP_KEY_TMP"
    sync -- "$BACKUP_KEY_TMP"
    # a link, not a rename: it never replaces a key written meanwhile (host init's way)
    run ln -- "$BACKUP_KEY_TMP" "$BACKUP_KEY"
    rm -f -- "$BACKUP_KEY_TMP"
    BACKUP_KEY_TMP=""
    shred -u -- "$b64"
    log info "backup key $BACKUP_KEY written from $BACKUP_KEY_SECRET (32 bytes, 0600)"
}

# Step 7, on the database leader only (exactly one member answers for the
# cluster; Incus cancels a name's older token when another is issued, so two
# publishers would undo each other).
publish_tokens() {
    local me=$CLUSTER_MEMBER_NAME leader name token expires now expected
    local -a names
    local -A pending=()
    if [ ! -e "$INCUS_DIR/cluster.crt" ]; then
        log info "not a cluster member yet: no join tokens to publish"
        return 0
    fi
    mkdir -p -- "$STATE_DIR"
    exec 9>"$STATE_DIR/publish-tokens.lock"
    flock 9
    incus query '/1.0/cluster/members?recursion=1' | python3 -c '
import json, sys
for m in json.load(sys.stdin):
    print(m["server_name"], "leader" if "database-leader" in (m.get("roles") or []) else "-")' \
        >"$WORK/members"
    leader=$(awk '$2 == "leader" { print $1 }' "$WORK/members")
    if [ "$leader" != "$me" ]; then
        return 0
    fi
    expected=$(instance_attr containarium-members)
    incus cluster list-tokens --format csv >"$WORK/tokens"
    while IFS=, read -r name token _; do
        if [ -n "$name" ]; then
            pending[$name]=$token
        fi
    done <"$WORK/tokens"
    now=$(date +%s)
    awk '{ print "member " $1 }' "$WORK/members" >"$WORK/join-state.new"
    IFS=, read -r -a names <<<"$expected"
    for name in "${names[@]}"; do
        if ! [[ $name =~ ^[a-z][a-z0-9-]{0,62}$ ]]; then
            log warning "instance metadata containarium-members: skipping '$name', not a member name"
            continue
        fi
        if awk -v m="$name" '$1 == m { found = 1 } END { exit !found }' "$WORK/members"; then
            continue
        fi
        token=${pending[$name]:-}
        expires=0
        if [ -n "$token" ]; then
            expires=$(token_expires "$token") || expires=0
        fi
        if [ "$expires" -le $((now + TOKEN_REFRESH_SECONDS)) ]; then
            token=$(run incus cluster add "$name" --quiet)
        fi
        echo "token $name $token" >>"$WORK/join-state.new"
    done
    LC_ALL=C sort -o "$WORK/join-state.new" -- "$WORK/join-state.new"
    if cmp -s -- "$WORK/join-state.new" "$STATE_DIR/join-state"; then
        return 0
    fi
    secret_put "$CLUSTER_JOIN_SECRET" "$WORK/join-state.new"
    install -m 0600 -- "$WORK/join-state.new" "$STATE_DIR/join-state"
    log info "published the join state: $(awk '{ print $1, $2 }' "$WORK/join-state.new" | paste -sd, -)"
}

# ensure_timer UNIT: enabled and started, unless it already is.
ensure_timer() {
    if systemctl is-enabled --quiet "$1" && systemctl is-active --quiet "$1"; then
        return 0
    fi
    run systemctl enable --now "$1"
}

# Step 0: the ruleset of the hold. `nft -f` applies a file as one transaction;
# declaring then flushing the table first makes a second hold replace the first.
lb_hold_ruleset() {
    cat <<EOF_NFT
table inet ${LB_TABLE}
flush table inet ${LB_TABLE}
table inet ${LB_TABLE} {
    chain input {
        type filter hook input priority -10; policy accept;
        ip daddr ${LB_ADDRESS} tcp dport 22 reject with tcp reset
    }
}
EOF_NFT
}

lb_hold() {
    if [ -z "$LB_ADDRESS" ]; then
        log info "no load balancer (LB_ADDRESS is empty): nothing to hold"
        return 0
    fi
    [[ $LB_ADDRESS =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}$ ]] ||
        refuse "LB_ADDRESS '$LB_ADDRESS' is not an IPv4 address (/etc/default/containarium-startup)"
    lb_hold_ruleset | run nft -f -
    log info "holding this bastion out of the load balancer: $LB_ADDRESS:22 is refused until containarium-startup finds it ready"
}

# The end of step 6: ready (a member, host init done, the jump accounts synced).
lb_release() {
    if [ -z "$LB_ADDRESS" ] || ! nft list table inet "$LB_TABLE" >/dev/null 2>&1; then
        return 0
    fi
    run nft delete table inet "$LB_TABLE"
    log info "ready: released the load balancer hold ($LB_ADDRESS:22 reaches sshd)"
}

main() {
    log info "starting (data disk $DATA_DISK, pool $ZPOOL_NAME, member $CLUSTER_MEMBER_NAME)"
    command -v "$CONTAINARIUM" >/dev/null 2>&1 || die "containarium binary not found ($CONTAINARIUM)"
    wait_for_disk
    if [ ! -e /dev/zfs ]; then
        run modprobe zfs
    fi
    ensure_pool
    ensure_incus_state
    ensure_cluster_member
    ensure_host_cert
    ensure_backup_key
    run "$CONTAINARIUM" host init --harden
    if [ "$SIGNED" = 1 ]; then
        # host init reloads sshd only when its drop-in changed; a new certificate
        # at the same path needs the reload too
        run systemctl try-reload-or-restart ssh.service
    fi
    run "$CONTAINARIUM" sync-accounts
    # only here: every failure above exits, and the hold stays
    lb_release
    ensure_timer containarium-sync-accounts.timer
    ensure_timer containarium-join-tokens.timer
    # Each member reaps the containers it runs, judged from its own kernel's
    # connection tables: the members' sets never overlap (docs/scale-out.md).
    ensure_timer containarium-reap.timer
    log info "done"
}

WORK=$(mktemp -d -- "$RUNTIME_DIR/containarium-startup.XXXXXX")
case "${1:-}" in
    "") main ;;
    publish-tokens) publish_tokens ;;
    lb-hold) lb_hold ;;
    *)
        echo "usage: $0 [publish-tokens|lb-hold]" >&2
        exit 2
        ;;
esac
