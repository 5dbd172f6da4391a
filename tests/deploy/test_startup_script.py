"""Decisions of scripts/bastion-startup.sh, run against fake zpool/zfs/incus/blkid.

The fakes (fakes/fake.py) log each argv and keep a small simulated world in a
JSON file, so the tests can assert exactly which commands were issued, and run
the script a second time to show that a second boot changes nothing.
"""
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SCRIPTS

SCRIPT = SCRIPTS / "bastion-startup.sh"
FAKE = Path(__file__).parent / "fakes" / "fake.py"
FAKED = ["zpool", "zfs", "incus", "blkid", "wipefs", "systemctl", "containarium",
         "logger", "udevadm", "modprobe"]
POOL = "containarium"
STATE_DS = "containarium/incus-state"

# Commands that change something; a second boot must issue none of them.
MUTATING = [
    ("zpool", "create"), ("zpool", "import"), ("zfs", "create"), ("zfs", "mount"),
    ("zfs", "set"), ("zfs", "destroy"), ("incus", "admin", "init"),
    ("systemctl", "stop"), ("systemctl", "start"), ("mv",),
]


class World:
    def __init__(self, tmp_path, disk="blank", **state):
        self.tmp = tmp_path
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for name in FAKED:
            # a wrapper rather than a symlink: the interpreter running the tests
            # starts much faster than a `python3` shim found on PATH
            wrapper = self.bin / name
            wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -I -S "{FAKE}" {name} "$@"\n')
            wrapper.chmod(0o755)
        byid = tmp_path / "by-id"
        byid.mkdir()
        self.disk = byid / "google-containarium-data"
        self.disk.write_bytes(b"")
        self.incus_dir = tmp_path / "var-lib-incus"
        self.state_file = tmp_path / "state.json"
        self.log_file = tmp_path / "calls.log"
        world = {
            "disk": disk,
            "imported": [],
            "foreign_hostid": False,
            "datasets": {},
            "bootdisk_incus_initialised": False,
            "state_dataset": STATE_DS,
        }
        world.update(state)
        self.state_file.write_text(json.dumps(world))

    @property
    def state(self):
        return json.loads(self.state_file.read_text())

    def run(self, **env_over):
        self.log_file.write_text("")
        env = {
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "FAKE_STATE": str(self.state_file),
            "FAKE_LOG": str(self.log_file),
            "DATA_DISK": str(self.disk),
            "INCUS_DIR": str(self.incus_dir),
            "DISK_WAIT_SECONDS": "1",
            "LANG": "C",
        }
        env.update(env_over)
        env = {k: v for k, v in env.items() if v is not None}
        proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True,
                              text=True, timeout=60)
        self.rc, self.stderr = proc.returncode, proc.stderr
        self.calls = [shlex.split(line) for line in self.log_file.read_text().splitlines()]
        # `run` logs every state-changing command, including non-faked ones (mv)
        # (faked commands are already in self.calls)
        self.ran = [c for c in (shlex.split(line.split("running: ", 1)[1])
                                for line in self.stderr.splitlines() if "running: " in line)
                    if c[0] not in FAKED]
        return self

    def issued(self, *prefix):
        return [c for c in self.calls + self.ran if tuple(c[:len(prefix)]) == prefix]

    def mutations(self):
        return [c for c in self.calls + self.ran
                if any(tuple(c[:len(m)]) == m for m in MUTATING)]

    def preseed(self):
        return (self.tmp / "state.json.preseed").read_text()


def assert_never_forced_create(w):
    for c in w.issued("zpool", "create"):
        assert "-f" not in c and "--force" not in c, c


def test_blank_disk_creates_pool_initialises_incus_and_accounts(tmp_path):
    w = World(tmp_path, disk="blank")
    w.incus_dir.mkdir()
    (w.incus_dir / "database").mkdir()  # fresh Incus started from the boot disk
    w.run()
    assert w.rc == 0, w.stderr
    [create] = w.issued("zpool", "create")
    assert_never_forced_create(w)
    assert create[-2:] == [POOL, str(w.disk)]
    assert "compression=lz4" in create
    assert not w.issued("zpool", "import")
    assert w.issued("zfs", "create") == [["zfs", "create", "-o", f"mountpoint={w.incus_dir}", STATE_DS]]
    [moved] = w.issued("mv")
    assert moved[2] == str(w.incus_dir) and ".boot-disk." in moved[3]
    assert w.issued("incus", "admin", "init") == [["incus", "admin", "init", "--preseed"]]
    preseed = w.preseed()
    assert "driver: zfs" in preseed
    assert "source: containarium/incus" in preseed
    assert "type: bridge" in preseed
    assert "ipv4.address: 10.100.0.1/20" in preseed
    names = [" ".join(c) for c in w.calls]
    assert names.index("containarium host init --harden") < names.index("containarium sync-accounts")
    assert names.index("incus admin init --preseed") < names.index("containarium host init --harden")
    assert w.issued("logger", "-t", "containarium-startup")


def test_second_boot_changes_nothing(tmp_path):
    w = World(tmp_path, disk="blank")
    assert w.run().rc == 0, w.stderr
    assert w.mutations()
    w.run()
    assert w.rc == 0, w.stderr
    assert w.mutations() == []
    assert w.issued("containarium", "host", "init")
    assert w.issued("containarium", "sync-accounts")


def test_bridge_subnet_and_names_are_configurable(tmp_path):
    w = World(tmp_path, disk="blank")
    w.run(INCUS_BRIDGE_ADDRESS="10.100.16.1/20", ZPOOL_NAME="tank",
          INCUS_STATE_DATASET=None)
    assert w.rc == 0, w.stderr
    assert w.issued("zpool", "create")[0][-2] == "tank"
    assert w.issued("zfs", "create")[0][-1] == "tank/incus-state"
    assert "ipv4.address: 10.100.16.1/20" in w.preseed()
    assert "source: tank/incus" in w.preseed()


def recreated_boot_disk_world(tmp_path, **state):
    """Data disk holds our pool with the Incus state; the boot disk is new."""
    w = World(tmp_path, disk=f"pool:{POOL}",
              datasets={STATE_DS: {"mounted": False, "incus_initialised": True},
                        "containarium/incus": {"mounted": False, "incus_initialised": False}},
              **state)
    w.incus_dir.mkdir()
    (w.incus_dir / "database").mkdir()
    return w


def test_disk_with_pool_is_imported_not_created(tmp_path):
    w = recreated_boot_disk_world(tmp_path)
    w.run()
    assert w.rc == 0, w.stderr
    assert w.issued("zpool", "import") == [
        ["zpool", "import", "-N", "-d", str(w.disk.parent), POOL]]
    assert not w.issued("zpool", "create")
    assert not w.issued("zfs", "create")
    assert w.issued("zfs", "mount") == [["zfs", "mount", STATE_DS]]
    # the state dataset is mounted with Incus stopped, then Incus is started again
    seq = [" ".join(c[:2]) for c in w.calls if c[0] in ("systemctl", "zfs")]
    assert seq.index("systemctl stop") < seq.index("zfs mount") < seq.index("systemctl start")
    # Incus finds its database on the data disk: no second initialisation
    assert not w.issued("incus", "admin", "init")
    assert w.issued("containarium", "sync-accounts")
    assert w.run().mutations() == []


def test_pool_from_previous_boot_disk_needs_force_import_opt_in(tmp_path):
    w = recreated_boot_disk_world(tmp_path, foreign_hostid=True)
    w.run()
    assert w.rc != 0
    assert [c for c in w.issued("zpool", "import") if "-f" in c] == []
    assert not w.issued("zpool", "create")
    assert not w.issued("containarium")
    assert "ZPOOL_FORCE_IMPORT" in w.stderr

    w.run(ZPOOL_FORCE_IMPORT="1")
    assert w.rc == 0, w.stderr
    imports = w.issued("zpool", "import")
    assert imports[-1] == ["zpool", "import", "-N", "-f", "-d", str(w.disk.parent), POOL]
    assert not w.issued("zpool", "create")
    assert not w.issued("incus", "admin", "init")


@pytest.mark.parametrize("disk", ["ext4", "gpt", "pool:otherpool", "hidden:LVM2_member"])
def test_disk_with_foreign_data_is_never_touched(tmp_path, disk):
    w = World(tmp_path, disk=disk)
    w.run()
    assert w.rc != 0
    assert "refusing to touch" in w.stderr
    assert w.mutations() == []
    assert not w.issued("containarium")
    assert w.state["disk"] == disk
    # it probed before deciding
    assert w.issued("blkid", "-p")


def test_probe_failure_counts_as_foreign(tmp_path):
    w = World(tmp_path, disk="blank")
    (w.bin / "wipefs").unlink()
    (w.bin / "wipefs").write_text("#!/bin/sh\necho 'wipefs: cannot open' >&2\nexit 1\n")
    (w.bin / "wipefs").chmod(0o755)
    w.run()
    assert w.rc != 0
    assert w.mutations() == []


def test_imported_pool_but_incus_not_initialised(tmp_path):
    w = World(tmp_path, disk=f"pool:{POOL}", imported=[POOL],
              datasets={STATE_DS: {"mounted": True, "incus_initialised": False}})
    w.run()
    assert w.rc == 0, w.stderr
    assert not w.issued("zpool", "create") and not w.issued("zpool", "import")
    assert not w.issued("blkid")  # an imported pool is never re-probed
    assert w.issued("incus", "admin", "init") == [["incus", "admin", "init", "--preseed"]]
    assert not w.issued("systemctl", "stop")
    assert w.run().mutations() == []


def test_incus_already_initialised_is_left_alone(tmp_path):
    w = World(tmp_path, disk=f"pool:{POOL}", imported=[POOL],
              datasets={STATE_DS: {"mounted": True, "incus_initialised": True}})
    w.run()
    assert w.rc == 0, w.stderr
    assert w.mutations() == []
    assert w.issued("incus", "storage", "show", "default")


def test_missing_disk_fails_without_touching_anything(tmp_path):
    w = World(tmp_path)
    w.disk.unlink()
    w.run()
    assert w.rc != 0
    assert "did not appear" in w.stderr
    assert w.mutations() == []
    assert not w.issued("containarium")


def test_default_disk_path_comes_from_device_name(tmp_path):
    w = World(tmp_path)
    w.run(DATA_DISK=None, DATA_DISK_NAME="containarium-data-7", DISK_WAIT_SECONDS="0")
    assert w.rc != 0
    assert "/dev/disk/by-id/google-containarium-data-7" in w.stderr


def test_script_never_forces_pool_creation():
    text = SCRIPT.read_text()
    for line in text.splitlines():
        if "zpool create" in line and not line.lstrip().startswith("#"):
            assert " -f" not in line
