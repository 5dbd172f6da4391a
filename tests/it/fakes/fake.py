#!/usr/bin/env python3
"""Stand-in for incus, useradd, usermod, userdel, groupadd, groupdel, sshd
and fail2ban-client.

Installed under each of those names in a directory put first on PATH. Every
call is appended to $FAKE_LOG as one line: the program's name and its
arguments, each argument cut at its first newline. A call whose line contains
$FAKE_FAIL fails with exit 1. The fake incus keeps its instances as JSON
files in $FAKE_STATE and answers like the real one for what containarium
uses; instances get the address $FAKE_IP when started. `sshd -T` prints
real captured output (tests/fixtures/sshd-T-jump.txt: our Match block in
effect), or, when its -C spec contains $FAKE_SSHD_T_HOSTILE, the output for
a connection that an earlier hostile Match block wins
(sshd-T-hostile-match.txt). The fake fail2ban-client keeps its sshd jail's
bans in $FAKE_STATE/_fail2ban.json and prints what fail2ban 1.0.2 prints
(tests/fixtures/fail2ban-*.txt); with $FAKE_F2B_DOWN set no server answers,
with $FAKE_F2B_NO_JAIL set there is no sshd jail. Once a call containing
$FAKE_INCUS_DOWN_AFTER has run, the daemon is gone: every later incus call
fails as the real client does when nothing listens on its socket. A call
whose line contains $FAKE_SLOW takes two seconds (a test signals the binary
meanwhile). With $FAKE_CLUSTER set ("m1=ADDR,m2=ADDR,...") the server is a
cluster member: instances have a location (--target's, else the second
member: the scheduler's pick), `move --target` moves them, and the members
in $FAKE_CLUSTER_DOWN are offline.
"""
import json
import os
import sys
import time

prog = os.path.basename(sys.argv[0])
args = sys.argv[1:]
line = " ".join([prog] + [a.split("\n")[0] + ("…" if "\n" in a else "") for a in args])
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(line + "\n")
down_after = os.environ.get("FAKE_INCUS_DOWN_AFTER")
down_marker = os.path.join(os.environ.get("FAKE_STATE", "/nonexistent"), "_incus_down")
if prog == "incus" and down_after and os.path.exists(down_marker):
    sys.stderr.write('Error: Get "http://unix.socket/1.0": dial unix /var/lib/incus/unix.socket: '
                     "connect: no such file or directory\n")
    sys.exit(1)
if prog == "incus" and down_after and down_after in line:
    open(down_marker, "w").close()
# Once a call containing $FAKE_INCUS_STOPPING_AFTER has run, the daemon is
# stopping: it refuses every change, while GET /1.0 still answers.
stopping_after = os.environ.get("FAKE_INCUS_STOPPING_AFTER")
stopping_marker = os.path.join(os.environ.get("FAKE_STATE", "/nonexistent"), "_incus_stopping")
if (prog == "incus" and stopping_after and os.path.exists(stopping_marker)
        and "/1.0" not in sys.argv[-1:]):
    sys.stderr.write("Error: Shutting down\n")
    sys.exit(1)
if prog == "incus" and stopping_after and stopping_after in line:
    open(stopping_marker, "w").close()
slow = os.environ.get("FAKE_SLOW")
if slow and slow in line:
    time.sleep(2)
# $FAKE_FAIL_ONCE: only the first call that contains it fails.
fail_once = os.environ.get("FAKE_FAIL_ONCE")
failed_once = os.path.join(os.environ.get("FAKE_STATE", "/nonexistent"), "_failed_once")
if fail_once and fail_once in line and not os.path.exists(failed_once):
    open(failed_once, "w").close()
    sys.stderr.write(f"Error: injected failure of {fail_once!r}\n")
    sys.exit(1)
fail = os.environ.get("FAKE_FAIL")
if fail and fail in line:
    sys.stderr.write(f"Error: injected failure of {fail!r}\n")
    sys.exit(1)
if prog == "sshd" and "-T" in args:
    fixtures = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "fixtures")
    spec = args[args.index("-C") + 1] if "-C" in args else ""
    hostile = os.environ.get("FAKE_SSHD_T_HOSTILE")
    name = "sshd-T-hostile-match.txt" if hostile and hostile in spec else "sshd-T-jump.txt"
    with open(os.path.join(fixtures, name)) as f:
        sys.stdout.write(f.read())
    sys.exit(0)
if prog == "fail2ban-client":
    if os.environ.get("FAKE_F2B_DOWN"):
        sys.stderr.write("2026-12-01 13:44:40,094 fail2ban                [24049]: ERROR   Failed to access "
                         "socket path: /var/run/fail2ban/fail2ban.sock. Is fail2ban running?\n")
        sys.exit(255)
    if args == ["ping"]:
        print("Server replied: pong")
        sys.exit(0)
    if args == ["reload"]:
        print("OK")
        sys.exit(0)
    if os.environ.get("FAKE_F2B_NO_JAIL") or os.environ.get("FAKE_F2B") == "nojail" or len(args) < 2 or args[1] != "sshd":
        print(f"Sorry but the jail '{args[1] if len(args) > 1 else ''}' does not exist")
        sys.exit(255)
    f2b = os.path.join(os.environ["FAKE_STATE"], "_fail2ban.json")
    try:
        with open(f2b) as f:
            jail = json.load(f)
    except FileNotFoundError:
        jail = {"banned": [], "total": 0}
    if args[0] == "status":
        sys.stdout.write(
            "Status for the jail: sshd\n|- Filter\n|  |- Currently failed:\t2\n|  |- Total failed:\t7\n"
            "|  `- File list:\t/var/log/auth.log\n`- Actions\n"
            f"   |- Currently banned:\t{len(jail['banned'])}\n   |- Total banned:\t{jail['total']}\n"
            f"   `- Banned IP list:\t{' '.join(jail['banned'])}\n")
    elif args[0] == "get" and args[2:] == ["banip", "--with-time"]:
        print("\n".join(f"{ip} \t2026-12-01 13:44:42 + 3600 = 2026-12-01 14:44:42" for ip in jail["banned"]))
    elif args[0] == "set" and args[2] in ("banip", "unbanip"):
        ip, banned = args[3], jail["banned"]
        if args[2] == "banip":
            changed = ip not in banned
            if changed:
                banned.append(ip)
                jail["total"] += 1
        else:
            changed = ip in banned
            if changed:
                banned.remove(ip)
        with open(f2b, "w") as f:
            json.dump(jail, f)
        print(1 if changed else 0)
    sys.exit(0)
if prog == "ss":
    sys.stdout.write(os.environ.get("FAKE_SS", ""))
    sys.exit(0)
if prog != "incus":
    sys.exit(0)

state = os.environ["FAKE_STATE"]
if args[:1] == ["--project"]:
    args = args[2:]


def path(name):
    return os.path.join(state, name + ".json")


def load(name):
    try:
        with open(path(name)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def save(inst):
    with open(path(inst["name"]), "w") as f:
        json.dump(inst, f)


def opts(args, flag):
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def instances():
    return sorted(f[:-5] for f in os.listdir(state) if f.endswith(".json") and not f.startswith("_"))


def network():
    config = {"ipv4.address": os.environ["FAKE_GATEWAY"],
              "ipv6.address": os.environ.get("FAKE_IPV6", "none"),
              "security.acls": os.environ.get("FAKE_ACLS", "containarium-tenants")}
    # What `host init` sets (the fake keeps `network set` in _network.json).
    # By default, as if `host init` had run: a range outside the sandbox's
    # small subnet (FAKE_DHCP_RANGES="": unset, as before host init).
    top = os.environ["FAKE_GATEWAY"].rsplit(".", 1)[0]
    config["ipv4.dhcp.ranges"] = os.environ.get("FAKE_DHCP_RANGES", f"{top}.250-{top}.254")
    config.update({k: v for k, v in (load("_network") or {}).items() if k != "name"})
    config = {k: v for k, v in config.items() if v}
    return {"managed": True, "type": "bridge", "config": config}


def members():
    down = os.environ.get("FAKE_CLUSTER_DOWN", "").split(",")
    out = []
    for spec in filter(None, os.environ.get("FAKE_CLUSTER", "").split(",")):
        name, addr = spec.split("=")
        out.append({"server_name": name, "url": f"https://{addr}:8443",
                    "status": "Offline" if name in down else "Online",
                    "message": "No heartbeat for 20s" if name in down else "Fully operational"})
    return out


def snapshot_json(snap):
    """A snapshot as `incus query` shows it (Incus 6.0's shape): its own
    config and devices, and both expanded (the fake has no profiles)."""
    return {"name": snap["name"], "created_at": snap["created_at"], "stateful": False,
            "ephemeral": False, "profiles": ["default"], "config": snap["config"],
            "devices": snap.get("devices", {}), "expanded_config": snap["config"],
            "expanded_devices": snap.get("devices", {})}


verb = args[0]
if verb == "query":
    what = args[1].split("?")[0]
    if what == "/1.0":
        print(json.dumps({"environment": {"firewall": os.environ.get("FAKE_FIREWALL", "nftables"),
                                          "server_version": "6.0.4",
                                          "server_clustered": bool(members()),
                                          "server_name": members()[0]["server_name"] if members() else "none"}}))
    elif what.startswith("/1.0/cluster/members/"):
        found = [m for m in members() if m["server_name"] == what.split("/")[-1]]
        if not found:
            sys.stderr.write("Error: Cluster member not found\n")
            sys.exit(1)
        print(json.dumps(found[0]))
    elif what == "/1.0/profiles/default":
        print(json.dumps({"devices": {"eth0": {"type": "nic", "name": "eth0", "network": "br0"},
                                      "root": {"type": "disk", "path": "/", "pool": "default"}}}))
    elif what == "/1.0/storage-pools/default":
        print(json.dumps({"driver": "btrfs", "config": {"size": "10GiB"}}))
    elif what == "/1.0/storage-pools/default/resources":
        used = int(os.environ.get("FAKE_POOL_USED", str(1 << 30)))
        print(json.dumps({"space": {"used": used, "total": 10 << 30}, "inodes": {"used": 0, "total": 0}}))
    elif what == "/1.0/networks/br0":
        print(json.dumps(network()))
    elif what.startswith("/1.0/network-acls/"):
        acl = load("_acl")
        if acl is None:
            sys.stderr.write("Error: Network ACL not found\n")
            sys.exit(1)
        print(json.dumps(acl))
    elif what.endswith("/snapshots"):
        # recursion=1: each snapshot with its config and devices, as Incus.
        inst = load(what.split("/")[3]) or {}
        print(json.dumps([snapshot_json(s) for s in inst.get("snapshots", [])]))
    elif "/snapshots/" in what:
        inst = load(what.split("/")[3]) or {}
        found = [s for s in inst.get("snapshots", []) if s["name"] == what.split("/")[-1]]
        if not found:
            sys.stderr.write("Error: Instance snapshot not found\n")
            sys.exit(1)
        print(json.dumps(snapshot_json(found[0])))
    elif what == "/1.0/instances":
        # recursion=1: no state, and the project's instances or everyone's.
        everyone = [{"project": "default", **load(n)} for n in instances()]
        if "all-projects=true" not in args[1]:
            everyone = [i for i in everyone if i["project"] == "default"]
        print(json.dumps([{k: v for k, v in i.items() if k != "state"} for i in everyone]))
    elif what.startswith("/1.0/instances/"):
        inst = load(what.split("/")[3])
        if inst is None:
            sys.stderr.write("Error: Instance not found\n")
            sys.exit(1)
        print(json.dumps({"profiles": ["default"], **inst}))
    else:
        sys.stderr.write(f"Error: fake incus cannot query {what}\n")
        sys.exit(1)
elif verb == "network" and args[1] == "acl":
    acl = json.loads(sys.stdin.read())
    acl["name"] = args[3]
    with open(path("_acl"), "w") as f:
        json.dump(acl, f)
elif verb == "network" and args[1] == "set":
    net = load("_network") or {"name": "_network"}
    for kv in args[3:]:
        k, v = kv.split("=", 1)
        net[k] = v
    save(net)
elif verb == "cluster" and args[1] == "list":
    if not members():
        sys.stderr.write("Error: This server is not clustered\n")
        sys.exit(1)
    print(json.dumps(members()))
elif verb == "move":
    inst = load(args[1])
    inst["location"] = args[args.index("--target") + 1]
    save(inst)
elif verb == "config" and args[1] == "device" and args[2] == "add":
    inst, dev = load(args[3]), args[4]
    spec = {"type": args[5], **dict(kv.split("=", 1) for kv in args[6:])}
    inst["devices"][dev] = spec
    inst["expanded_devices"][dev] = dict(spec)
    save(inst)
elif verb == "list" and "--all-projects" in args:
    print(json.dumps([{"project": "default", **load(n)} for n in instances()]))
elif verb == "list":
    # The current project is "default"; state files may name another.
    here = [i for i in ({"project": "default", **load(n)} for n in instances())
            if i["project"] == "default"]
    want = [a for a in args[1:] if not a.startswith("--") and a != "json"]
    if want:
        here = [i for i in here if f"^{i['name']}$" == want[0]]
    print(json.dumps(here))
elif verb == "image":
    if args[-1] == "missing":
        sys.stderr.write("Error: Image not found\n")
        sys.exit(1)
elif verb == "init":
    image, name = args[args.index("--") + 1:][:2]
    if load(name):
        sys.stderr.write(f'Error: Failed creating instance record: Instance "{name}" already exists\n')
        sys.exit(1)
    config = dict(kv.split("=", 1) for kv in opts(args, "--config"))
    devices = {}
    for spec in opts(args, "--device"):
        dev, kv = spec.split(",", 1)
        k, v = kv.split("=", 1)
        devices.setdefault(dev, {})[k] = v
    expanded = {**devices, "eth0": {"type": "nic", "network": "br0", **devices.get("eth0", {})},
                "root": {"type": "disk", "path": "/", "pool": "default", **devices.get("root", {})}}
    # Like the real client: a device given with -d overrides the profile's
    # and becomes the instance's own, whole.
    devices = {dev: dict(expanded[dev]) for dev in devices}
    target = opts(args, "--target")
    location = "none"
    if members():
        location = target[0] if target and not target[0].startswith("@") else members()[1]["server_name"]
    save({"name": name, "status": "Stopped", "config": config, "expanded_config": config,
          "devices": devices, "expanded_devices": expanded, "state": None, "last_used_at": "",
          "location": location})
elif verb in ("start", "restart"):
    inst = load(args[1])
    inst["status"] = "Running"
    inst["state"] = {"pid": 0, "disk": {"root": {"usage": 1 << 30}}, "memory": {"usage": 300 << 20},
                     "network": {"eth0": {"addresses": [
                         {"family": "inet", "address": os.environ["FAKE_IP"], "scope": "global"}]}}}
    save(inst)
elif verb == "stop":
    inst = load(args[1])
    inst["status"] = "Stopped"
    inst["state"] = None
    save(inst)
elif verb == "snapshot":
    inst = load(args[2])
    snaps = inst.setdefault("snapshots", [])
    if args[1] == "list":
        print(json.dumps(snaps))
    elif args[1] == "create":
        # Like Incus: the snapshot holds the config, the devices and the
        # disk (our files).
        snaps.append({"name": args[3], "created_at": "2026-11-24T01:02:03Z",
                      "config": dict(inst["config"]),
                      "devices": json.loads(json.dumps(inst["devices"])),
                      "files": dict(inst.get("files", {}))})
    elif args[1] == "restore":
        # Like Incus: config and devices, all of them, as the snapshot has
        # them (restarted when it ran).
        snap = next(x for x in snaps if x["name"] == args[3])
        inst["config"], inst["expanded_config"] = dict(snap["config"]), dict(snap["config"])
        inst["devices"] = json.loads(json.dumps(snap.get("devices", {})))
        profile = {"eth0": {"type": "nic", "network": "br0"},
                   "root": {"type": "disk", "path": "/", "pool": "default"}}
        inst["expanded_devices"] = {dev: {**profile.get(dev, {}), **spec}
                                    for dev, spec in {**profile, **inst["devices"]}.items()}
        inst["files"] = dict(snap["files"])
    elif args[1] == "delete":
        inst["snapshots"] = [x for x in snaps if x["name"] != args[3]]
    save(inst)
elif verb == "file" and args[1] == "pull":
    name, target = args[2].split("/", 1)
    inst, target = load(name), "/" + target
    user = inst["config"]["user.containarium.owner"]
    if target in inst.get("files", {}):
        sys.stdout.write(inst["files"][target])
    elif target == "/etc/passwd":
        print(f"root:x:0:0:root:/root:/bin/bash\n{user}:x:1000:1000::/home/{user}:/bin/bash")
    elif target.endswith("/.ssh/authorized_keys"):
        for l in inst["config"]["cloud-init.user-data"].splitlines():
            l = l.strip()
            if l.startswith('- "ssh-'):
                print(json.loads(l[2:]))
    elif target == "/var/lib/cloud/data/status.json":
        # This boot's status: FAKE_CLOUD_INIT is done (default), errors,
        # warnings, garbled or disabled (no status.json).
        how, now = os.environ.get("FAKE_CLOUD_INIT", "done"), time.time()
        final = {"errors": [], "start": now - 0.002, "finished": now}
        if how == "errors":
            final["errors"] = ["('scripts_user', RuntimeError('Runparts: 1 failures'))"]
        if how == "warnings":
            final["recoverable_errors"] = {"WARNING": ["Invalid cloud-config key"]}
        status = {"v1": {"stage": None, "init": {"errors": [], "start": now - 0.004, "finished": now - 0.003},
                         "modules-final": final}}
        if how == "disabled":
            sys.stderr.write("Error: Not Found\n")
            sys.exit(1)
        print("not json" if how == "garbled" else json.dumps(status))
    elif target == "/var/log/cloud-init-output.log":
        print("\n".join(f"log line {i}" for i in range(1, 31)))
    elif target == "/etc/ssh/ssh_host_ed25519_key.pub":
        print("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJjbB0uWhNOpnyPRUnDbE0pvkO4EWFdVnFNMB18lQuXi root@container")
    else:
        sys.stderr.write("Error: Not Found\n")
        sys.exit(1)
elif verb == "file" and args[1] == "push":
    name, target = args[-1].split("/", 1)
    inst = load(name)
    inst.setdefault("files", {})["/" + target] = sys.stdin.read()
    save(inst)
elif verb == "import":
    # Like Incus 6.0: the instance and its snapshots as backup.yaml has
    # them (the fixtures write it as JSON, which is YAML too), stopped; the
    # root disk in the pool --storage names.
    import tarfile
    name, tarball = args[-1], args[-2]
    with tarfile.open(tarball) as tar:
        exported = json.load(tar.extractfile("backup/container/backup.yaml"))
    container = exported["container"]
    config = dict(container.get("config") or {})
    devices = {k: dict(v) for k, v in (container.get("devices") or {}).items()}
    pool = opts(args, "--storage")
    if pool and "root" in devices:
        devices["root"]["pool"] = pool[0]
    snapshots = [{"name": x["name"], "created_at": "2026-11-24T01:02:03Z",
                  "config": dict(x.get("config") or {}), "devices": dict(x.get("devices") or {}),
                  "profiles": x.get("profiles", ["default"]), "files": {}}
                 for x in exported.get("snapshots") or []]
    save({"name": name, "status": "Stopped", "config": config, "expanded_config": dict(config),
          "devices": devices, "expanded_devices": {k: dict(v) for k, v in devices.items()},
          "profiles": container.get("profiles", ["default"]), "snapshots": snapshots,
          "state": None, "last_used_at": ""})
elif verb == "config" and args[1] == "set":
    inst = load(args[2])
    for kv in args[3:]:
        k, v = kv.split("=", 1)
        inst["config"][k] = v
        inst["expanded_config"][k] = v
    save(inst)
elif verb == "config" and args[1] == "device" and args[2] in ("set", "override"):
    inst, dev = load(args[3]), args[4]
    for kv in args[5:]:
        k, v = kv.split("=", 1)
        inst["devices"].setdefault(dev, {})[k] = v
        inst["expanded_devices"].setdefault(dev, {})[k] = v
    save(inst)
elif verb == "exec":
    inst = load(args[1])
    argv = args[args.index("--") + 1:]
    user = inst["config"]["user.containarium.owner"]
    if argv[:1] == ["timeout"] and argv[2:4] == ["sh", "-c"] and "cloud-init/result.json" in argv[4]:
        # cloud-init's wait script: 3 means cloud-init is not enabled.
        sys.exit(3 if os.environ.get("FAKE_CLOUD_INIT") == "disabled" else 0)
    elif argv[-3:] == ["cloud-init", "status", "--wait"]:
        print("status: disabled" if os.environ.get("FAKE_CLOUD_INIT") == "disabled" else "status: done")
    elif argv[:1] == ["getent"]:
        print(f"{user}:x:1000:1000::/home/{user}:/bin/bash")
    elif argv[:1] == ["cat"] and argv[1] in inst.get("files", {}):
        sys.stdout.write(inst["files"][argv[1]])
    elif argv[:1] == ["cat"] and argv[1].endswith("authorized_keys"):
        data = inst["config"]["cloud-init.user-data"]
        for l in data.splitlines():
            l = l.strip()
            if l.startswith('- "ssh-'):
                print(json.loads(l[2:]))
    elif argv[:1] == ["cat"]:
        print("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJjbB0uWhNOpnyPRUnDbE0pvkO4EWFdVnFNMB18lQuXi root@container")
elif verb == "delete":
    inst = load(args[-1])
    if inst is None:
        sys.stderr.write(f'Error: Failed checking instance exists "local:{args[-1]}": Instance not found\n')
        sys.exit(1)
    # incusd, started again, starts in the background what ran when it
    # stopped: the client's --force found the instance stopped, the delete
    # finds it running (what Incus 6.0 said in CI).
    started_behind = os.path.join(os.environ["FAKE_STATE"], "_started_behind")
    if os.environ.get("FAKE_STARTED_BEHIND") and not os.path.exists(started_behind):
        open(started_behind, "w").close()
        sys.stderr.write(f'Error: Failed deleting instance "{args[-1]}" in project "default": Instance is running\n')
        sys.exit(1)
    if os.environ.get("FAKE_QUOTA_FULL") and inst["devices"].get("root", {}).get("size"):
        sys.stderr.write('Error: Failed deleting subvolume: ERROR: Could not destroy subvolume/snapshot: Disk quota exceeded\n')
        sys.exit(1)
    os.remove(path(args[-1]))
elif verb == "config" and args[1] == "unset":
    inst = load(args[2])
    inst["config"].pop(args[3], None)
    inst["expanded_config"].pop(args[3], None)
    save(inst)
elif verb == "config" and args[1] == "device" and args[2] == "remove":
    inst = load(args[3])
    inst["devices"].pop(args[4], None)
    inst["expanded_devices"].pop(args[4], None)
    save(inst)
elif verb == "config" and args[1] == "device" and args[2] == "unset":
    inst = load(args[3])
    inst["devices"].get(args[4], {}).pop(args[5], None)
    inst["expanded_devices"].get(args[4], {}).pop(args[5], None)
    save(inst)
elif verb == "export":
    with open(args[2], "wb") as f:
        f.write(b"fake backup\n")
