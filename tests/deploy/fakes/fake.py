#!/usr/bin/env python3
"""Stateful stand-in for zpool, zfs, incus, blkid, wipefs, systemctl, curl, nft, ...

Called by the tests' wrapper scripts as `fake.py NAME ARGS...`. Every call is
appended to $FAKE_LOG (one shell-quoted argv per line); the simulated world
lives in the JSON file $FAKE_STATE and is updated by commands that change it,
so running the startup script twice shows what a second boot would do.

State keys:
  disk: "blank" | "pool:<name>" | "ext4" | "gpt" | "hidden:<sig>"
        (hidden: blkid finds nothing, wipefs finds <sig>)
  imported: [pool names currently imported]
  foreign_hostid: true when the pool was last imported by another host id
  datasets: {name: {"mounted": bool, "incus_initialised": bool}}
  bootdisk_incus_initialised: Incus state on the boot disk (when the state
        dataset is not mounted)
  state_dataset: name of the dataset holding /var/lib/incus
  datasets[...]["cluster_member"]: that Incus state is a cluster member's (so
        mounting it brings $INCUS_DIR/cluster.crt, as the real dataset would)
  cluster: the cluster's shared database as every member sees it:
        {"members": {name: [roles]}, "tokens": {name: token}}, or absent
  waitready_fails: incusd never gets ready (a member without quorum)
  metadata: {attribute: value} of this instance (the GCE metadata server)
  secrets: {"projects/P/secrets/S": [payload or null (destroyed), ...]}
  later_versions: {secret: [after_reads, payload]}: the payload is added once
        the secret was read that often (someone else publishes during a wait)
  reads: {secret: number of reads}
  units: systemd units enabled (and started)
  containarium_fails: containarium verbs that fail ("host init", "sync-accounts")
  nft: {"FAMILY NAME": ruleset text} the nftables tables there are (`nft -f -`
        adds the tables its ruleset declares)
"""
import base64
import datetime
import json
import os
import secrets as random
import shlex
import subprocess
import sys

METADATA = "http://metadata.test/computeMetadata/v1"
SECRETS = "https://secretmanager.test/v1"
SA_TOKEN = "fake-sa-access-token"

STATE = os.environ["FAKE_STATE"]
LOG = os.environ["FAKE_LOG"]


def load():
    with open(STATE) as f:
        return json.load(f)


def save(state):
    with open(STATE, "w") as f:
        json.dump(state, f, indent=1)


def out(msg="", rc=0, err=""):
    if msg:
        sys.stdout.write(msg if msg.endswith("\n") else msg + "\n")
    if err:
        sys.stderr.write(err + "\n")
    sys.exit(rc)


def pool_on_disk(state):
    d = state["disk"]
    return d.split(":", 1)[1] if d.startswith("pool:") else None


def zpool(args, state):
    cmd = args[0] if args else ""
    name = args[-1] if args else ""
    if cmd == "list":
        if name in state["imported"]:
            out(name)
        out(err=f"cannot open '{name}': no such pool", rc=1)
    if cmd == "import":
        if pool_on_disk(state) != name:
            out(err=f"cannot import '{name}': no such pool available", rc=1)
        if state.get("foreign_hostid") and "-f" not in args:
            out(err=f"cannot import '{name}': pool was previously in use from another system.", rc=1)
        state["imported"].append(name)
        state["foreign_hostid"] = False
        save(state)
        out()
    if cmd == "create":
        if state["disk"] != "blank" and "-f" not in args:
            out(err="invalid vdev specification: disk contains a filesystem", rc=1)
        pool = args[-2]
        state["disk"] = "pool:" + pool
        state["imported"].append(pool)
        save(state)
        out()
    out(err=f"fake zpool: unsupported {args}", rc=99)


def zfs(args, state):
    cmd = args[0] if args else ""
    name = args[-1] if args else ""
    ds = state["datasets"]
    pool = name.split("/")[0]
    if cmd == "list":
        if pool in state["imported"] and name in ds:
            out(name)
        out(err=f"cannot open '{name}': dataset does not exist", rc=1)
    if cmd == "get" and "mounted" in args:
        if pool not in state["imported"] or name not in ds:
            out(err=f"cannot open '{name}': dataset does not exist", rc=1)
        out("yes" if ds[name]["mounted"] else "no")
    if cmd == "create":
        if pool not in state["imported"]:
            out(err=f"cannot create '{name}': no such pool '{pool}'", rc=1)
        ds[name] = {"mounted": True, "incus_initialised": False}
        for a in args:
            if a.startswith("mountpoint="):
                os.makedirs(a.split("=", 1)[1], exist_ok=True)
        save(state)
        out()
    if cmd == "mount":
        ds[name]["mounted"] = True
        if name == state["state_dataset"]:
            # what the dataset holds appears at its mountpoint
            os.makedirs(os.environ["INCUS_DIR"], exist_ok=True)
            if ds[name].get("cluster_member"):
                open(os.path.join(os.environ["INCUS_DIR"], "cluster.crt"), "w").close()
        save(state)
        out()
    out(err=f"fake zfs: unsupported {args}", rc=99)


def incus_initialised(state):
    sd = state["datasets"].get(state["state_dataset"])
    if sd and sd["mounted"] and state["state_dataset"].split("/")[0] in state["imported"]:
        return sd, sd["incus_initialised"]
    return None, state["bootdisk_incus_initialised"]


def make_token(name, ttl):
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=ttl)
    doc = {"server_name": name, "fingerprint": "ab" * 32, "addresses": ["10.20.0.10:8443"],
           "secret": random.token_hex(32), "expires_at": expires.isoformat()}
    return base64.b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()


def token_doc(token):
    return json.loads(base64.b64decode(token))


def preseed_value(text, key):
    for line in text.splitlines():
        if line.strip().startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    return None


def incus(args, state):
    if args[:2] == ["admin", "waitready"]:
        if state.get("waitready_fails"):
            out(err="Error: Daemon still not running after 600s timeout", rc=1)
        out()
    if args[:2] == ["storage", "show"]:
        _, init = incus_initialised(state)
        if init:
            out("name: " + args[2])
        out(err="Error: Storage pool not found", rc=1)
    if args[:2] == ["admin", "init"] and "--preseed" in args:
        preseed = sys.stdin.read()
        with open(os.environ["FAKE_STATE"] + ".preseed", "w") as f:
            f.write(preseed)
        sd, _ = incus_initialised(state)
        if "cluster:" in preseed:
            name = preseed_value(preseed, "server_name")
            token = preseed_value(preseed, "cluster_token")
            cluster = state.get("cluster")
            if token is None:
                state["cluster"] = {"members": {name: ["database-leader", "database"]}, "tokens": {}}
            else:
                if not cluster or cluster["tokens"].get(name) != token:
                    out(err="Error: Failed to join cluster: no such join token", rc=1)
                expires = datetime.datetime.fromisoformat(token_doc(token)["expires_at"])
                if expires < datetime.datetime.now(datetime.timezone.utc):
                    out(err="Error: Failed to join cluster: join token has expired", rc=1)
                del cluster["tokens"][name]
                cluster["members"][name] = ["database"]
            if sd is not None:
                sd["cluster_member"] = True
            open(os.path.join(os.environ["INCUS_DIR"], "cluster.crt"), "w").close()
        if sd is not None:
            sd["incus_initialised"] = True
        else:
            state["bootdisk_incus_initialised"] = True
        save(state)
        out()
    cluster = state.get("cluster")
    if args[:1] == ["query"] and args[1] == "/1.0/cluster/members?recursion=1":
        if not cluster:
            out(err="Error: Server isn't part of a cluster", rc=1)
        out(json.dumps([{"server_name": n, "roles": r, "status": "Online"}
                        for n, r in sorted(cluster["members"].items())]))
    if args[:2] == ["cluster", "add"]:
        name = args[2]
        if name in cluster["members"]:
            out(err=f"Error: The cluster already has a member with name: {name}", rc=1)
        # like Incus: a new token for a name cancels that name's older one
        cluster["tokens"][name] = make_token(name, state.get("token_ttl", 3 * 3600))
        save(state)
        out(cluster["tokens"][name] if "--quiet" in args else f"Member {name} join token:\n" + cluster["tokens"][name])
    if args[:2] == ["cluster", "list-tokens"]:
        out("".join(f"{n},{t},2099/01/01 00:00 UTC\n" for n, t in sorted(cluster["tokens"].items())))
    out(err=f"fake incus: unsupported {args}", rc=99)


def curl(args, state):
    """The GCE metadata server and the Secret Manager REST API, as the script calls them."""
    headers, out_file, fmt, data, fail, url = [], None, None, None, False, None
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-H", "-o", "-w", "--data-binary", "--retry", "--max-time"):
            v = args[i + 1]
            if a == "-H":
                headers += open(v[1:]).read().splitlines() if v.startswith("@") else [v]
            elif a == "-o":
                out_file = v
            elif a == "-w":
                fmt = v
            elif a == "--data-binary":
                data = open(v[1:]).read() if v.startswith("@") else v
            i += 2
            continue
        if a.startswith("-") and not a.startswith("--"):
            fail = fail or "f" in a
        elif a.startswith("http"):
            url = a
        else:
            out(err=f"fake curl: unsupported argument {a}", rc=99)
        i += 1
    status, body = route(url, headers, data, state)
    save(state)
    if out_file:
        with open(out_file, "w") as f:
            f.write(body)
    elif not (fail and status >= 400):
        sys.stdout.write(body)
    if fmt:
        sys.stdout.write(fmt.replace("%{http_code}", str(status)))
    if fail and status >= 400:
        out(err=f"curl: (22) The requested URL returned error: {status}", rc=22)
    out()


def route(url, headers, data, state):
    if url.startswith(METADATA + "/"):
        if "Metadata-Flavor: Google" not in headers:
            return 403, "Missing Metadata-Flavor:Google header."
        path = url[len(METADATA):]
        if path == "/instance/service-accounts/default/token":
            return 200, json.dumps({"access_token": SA_TOKEN, "expires_in": 3599, "token_type": "Bearer"})
        if path.startswith("/instance/attributes/"):
            value = state.get("metadata", {}).get(path.rsplit("/", 1)[1])
            return (404, "not found") if value is None else (200, value)
        return 404, "not found"
    if url.startswith(SECRETS + "/"):
        if f"Authorization: Bearer {SA_TOKEN}" not in headers:
            return 401, json.dumps({"error": {"code": 401, "status": "UNAUTHENTICATED"}})
        if state.get("secrets_denied"):
            return 403, json.dumps({"error": {"code": 403, "status": "PERMISSION_DENIED"}})
        path = url[len(SECRETS) + 1:]
        store = state.setdefault("secrets", {})
        if path.endswith("/versions/latest:access") and data is None:
            secret = path[: -len("/versions/latest:access")]
            state.setdefault("reads", {})[secret] = state.get("reads", {}).get(secret, 0) + 1
            later = state.get("later_versions", {}).get(secret)
            if later and state["reads"][secret] >= later[0]:
                store.setdefault(secret, []).append(later[1])
                del state["later_versions"][secret]
            versions = store.get(secret, [])
            if not versions:
                return 404, json.dumps({"error": {"code": 404, "status": "NOT_FOUND"}})
            if versions[-1] is None:
                return 400, json.dumps({"error": {"code": 400, "status": "FAILED_PRECONDITION"}})
            payload = base64.b64encode(versions[-1].encode()).decode()
            return 200, json.dumps({"name": f"{secret}/versions/{len(versions)}", "payload": {"data": payload}})
        if path.endswith(":addVersion") and data is not None:
            secret = path[: -len(":addVersion")]
            payload = base64.b64decode(json.loads(data)["payload"]["data"]).decode()
            store.setdefault(secret, []).append(payload)
            return 200, json.dumps({"name": f"{secret}/versions/{len(store[secret])}", "state": "ENABLED"})
        if path.endswith(":destroy") and data is not None:
            secret, number = path[: -len(":destroy")].rsplit("/versions/", 1)
            versions = store.get(secret, [])
            if not 1 <= int(number) <= len(versions) or versions[int(number) - 1] is None:
                return 400, json.dumps({"error": {"code": 400, "status": "FAILED_PRECONDITION"}})
            versions[int(number) - 1] = None
            return 200, json.dumps({"name": path[: -len(":destroy")], "state": "DESTROYED"})
        return 404, json.dumps({"error": {"code": 404, "status": "NOT_FOUND"}})
    return 599, f"fake curl: no route to {url}"


def systemctl(args, state):
    units = state.setdefault("units", [])
    quiet = [a for a in args if a != "--quiet"]
    if quiet[:1] in (["is-enabled"], ["is-active"]):
        out(rc=0 if quiet[1] in units else 1)
    if quiet[:2] == ["enable", "--now"]:
        units.append(quiet[2])
        save(state)
    out()


def containarium(args, state):
    verb = " ".join(args[:2]) if args[:1] == ["host"] else " ".join(args[:1])
    if verb in state.get("containarium_fails", []):
        out(err=f"Error: fake containarium {verb} failed", rc=1)
    if args[:2] == ["host", "sign"]:
        # what the real verb does: ssh-keygen -s -h on the host's ed25519 key
        ca = args[args.index("--ca-key") + 1]
        principals = args[args.index("--principals") + 1]
        host_pub = os.environ["SSH_HOST_KEY"] + ".pub"
        subprocess.run(["ssh-keygen", "-q", "-s", ca, "-I", "fake-host", "-h", "-n", principals,
                        host_pub], check=True)
    out()


def nft(args, state):
    tables = state.setdefault("nft", {})
    if args == ["-f", "-"]:
        ruleset = sys.stdin.read()
        for line in ruleset.splitlines():
            words = line.split()
            if words[:1] == ["table"] and len(words) >= 3:
                tables[f"{words[1]} {words[2]}"] = ruleset
        save(state)
        out()
    if args[:2] in (["list", "table"], ["delete", "table"]) and len(args) == 4:
        name = f"{args[2]} {args[3]}"
        if name not in tables:
            out(err=f"Error: No such file or directory; did you mean table '{args[3]}'?", rc=1)
        if args[0] == "list":
            out(tables[name])
        del tables[name]
        save(state)
        out()
    out(err=f"fake nft: unsupported {args}", rc=99)


def blkid(args, state):
    d = state["disk"]
    dev = args[-1]
    if d == "blank" or d.startswith("hidden:"):
        out(rc=2)
    if d.startswith("pool:"):
        out(f"DEVNAME={dev}\nLABEL={d[5:]}\nUUID=123\nUUID_SUB=456\nVERSION=5000\nTYPE=zfs_member\nUSAGE=filesystem")
    if d == "gpt":
        out(f"DEVNAME={dev}\nPTUUID=abc\nPTTYPE=gpt")
    out(f"DEVNAME={dev}\nUUID=abc\nBLOCK_SIZE=4096\nTYPE={d}\nUSAGE=filesystem")


def wipefs(args, state):
    if "-a" in args or "--all" in args:
        out(err="fake wipefs: refusing to wipe", rc=99)
    d = state["disk"]
    if d == "blank":
        out()
    if d.startswith("hidden:"):
        out(d.split(":", 1)[1])
    if d.startswith("pool:"):
        out("zfs_member")
    out(d)


def main():
    # called as `fake.py NAME ARGS...` by the wrappers the tests write
    name = sys.argv[1]
    args = sys.argv[2:]
    with open(LOG, "a") as f:
        f.write(shlex.join([name] + args) + "\n")
    state = load()
    handlers = {"zpool": zpool, "zfs": zfs, "incus": incus, "blkid": blkid, "wipefs": wipefs,
                "curl": curl, "systemctl": systemctl, "containarium": containarium, "nft": nft}
    if name in handlers:
        handlers[name](args, state)
    # logger, udevadm, modprobe: log and succeed
    out()


main()
