#!/usr/bin/env python3
"""Stateful stand-in for zpool, zfs, incus, blkid, wipefs, systemctl, ...

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
"""
import json
import os
import shlex
import sys

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
        save(state)
        out()
    if cmd == "mount":
        ds[name]["mounted"] = True
        save(state)
        out()
    out(err=f"fake zfs: unsupported {args}", rc=99)


def incus_initialised(state):
    sd = state["datasets"].get(state["state_dataset"])
    if sd and sd["mounted"] and state["state_dataset"].split("/")[0] in state["imported"]:
        return sd, sd["incus_initialised"]
    return None, state["bootdisk_incus_initialised"]


def incus(args, state):
    if args[:2] == ["admin", "waitready"]:
        out()
    if args[:2] == ["storage", "show"]:
        _, init = incus_initialised(state)
        if init:
            out("name: " + args[2])
        out(err="Error: Storage pool not found", rc=1)
    if args[:2] == ["admin", "init"] and "--preseed" in args:
        with open(os.environ["FAKE_STATE"] + ".preseed", "w") as f:
            f.write(sys.stdin.read())
        sd, _ = incus_initialised(state)
        if sd is not None:
            sd["incus_initialised"] = True
        else:
            state["bootdisk_incus_initialised"] = True
        save(state)
        out()
    out(err=f"fake incus: unsupported {args}", rc=99)


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
    handlers = {"zpool": zpool, "zfs": zfs, "incus": incus, "blkid": blkid, "wipefs": wipefs}
    if name in handlers:
        handlers[name](args, state)
    # systemctl, containarium, logger, udevadm, modprobe: log and succeed
    out()


main()
