"""Decisions of scripts/bastion-startup.sh, run against fake zpool/zfs/incus/blkid/curl.

The fakes (fakes/fake.py) log each argv and keep a small simulated world in a
JSON file: the data disk, the cluster's shared database, the instance metadata
and the Secret Manager secrets. So the tests can assert exactly which commands
were issued, and run the script again to show what a second boot, another
member or the token timer does. ssh-keygen, shred and python3 are the real ones.
"""
import base64
import datetime
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SCRIPTS, require_tool

SCRIPT = SCRIPTS / "bastion-startup.sh"
FAKE = Path(__file__).parent / "fakes" / "fake.py"
FAKED = ["zpool", "zfs", "incus", "blkid", "wipefs", "systemctl", "containarium",
         "logger", "udevadm", "modprobe", "curl", "nft"]
# The real tools the script hands data to, wrapped to log their argv
# ($FAKE_LOG.argv), so a test can show no secret is ever on a command line.
PASSED_THROUGH = ["python3", "ssh-keygen", "awk", "grep", "sed", "install", "shred", "cmp",
                  "head", "sort", "tr", "paste", "cat", "mktemp", "flock", "base64", "wc",
                  "stat", "chmod", "ln", "sync"]
# logger is called for every line the script logs: a plain sh stand-in is much
# cheaper than starting Python, and it keeps its lines apart (fake.log.logger)
LOGGER = '#!/bin/sh\nprintf "%s\\n" "$*" >>"$FAKE_LOG.logger"\n'
POOL = "containarium"
STATE_DS = "containarium/incus-state"
MEMBERS = ["b-0", "b-1", "b-2"]
JOIN_SECRET = "projects/p/secrets/c-cluster-join"
CA_SECRET = "projects/p/secrets/c-host-ca-key"
BACKUP_SECRET = "projects/p/secrets/c-backup-key"
METADATA_URL = "http://metadata.test/computeMetadata/v1"
SECRETS_URL = "https://secretmanager.test/v1"
SA_TOKEN = "fake-sa-access-token"

# Commands that change something; a second boot must issue none of them.
MUTATING = [
    ("zpool", "create"), ("zpool", "import"), ("zfs", "create"), ("zfs", "mount"),
    ("zfs", "set"), ("zfs", "destroy"), ("incus", "admin", "init"),
    ("incus", "cluster", "add"), ("incus", "cluster", "remove"),
    ("systemctl", "stop"), ("systemctl", "start"), ("systemctl", "enable"),
    ("systemctl", "try-reload-or-restart"), ("containarium", "host", "sign"),
    ("mv",), ("install",), ("shred",), ("nft", "-f"), ("nft", "delete"), ("ln",),
]


def keygen(path, comment):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True)
    return path.read_text(), (path.parent / (path.name + ".pub")).read_text().strip()


def fingerprint(pub_line):
    proc = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=pub_line + "\n",
                          capture_output=True, text=True, check=True)
    return proc.stdout.split()[1]


def make_token(name, seconds):
    """An Incus join token (base64 of JSON) expiring in SECONDS."""
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    doc = {"server_name": name, "fingerprint": "ab" * 32, "addresses": ["10.20.0.10:8443"],
           "secret": os.urandom(16).hex(), "expires_at": expires.isoformat()}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def address(member):
    return f"10.20.0.{10 + MEMBERS.index(member)}"


class World:
    def __init__(self, tmp_path, disk="blank", member="b-0", real=(), **state):
        """real: commands of FAKED to run for real instead (passed through)."""
        self.tmp = tmp_path
        self.member = member
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for name in [n for n in FAKED if n not in real]:
            # a wrapper rather than a symlink: the interpreter running the tests
            # starts much faster than a `python3` shim found on PATH
            wrapper = self.bin / name
            wrapper.write_text(LOGGER if name == "logger" else
                               f'#!/bin/sh\nexec "{sys.executable}" -I -S "{FAKE}" {name} "$@"\n')
            wrapper.chmod(0o755)
        for name in [*PASSED_THROUGH, *real]:
            real = shutil.which(name)
            wrapper = self.bin / name
            wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "{name} $*" >>"$FAKE_LOG.argv"\n'
                               f'exec "{real}" "$@"\n')
            wrapper.chmod(0o755)
        byid = tmp_path / "by-id"
        byid.mkdir()
        self.disk = byid / "google-containarium-data"
        self.disk.write_bytes(b"")
        self.incus_dir = tmp_path / "var-lib-incus"
        self.state_file = tmp_path / "state.json"
        self.log_file = tmp_path / "calls.log"
        self.runtime = tmp_path / "run"
        self.runtime.mkdir()
        self.state_dir = tmp_path / "state"
        self.host_ca_pub = tmp_path / "etc" / "host-ca.pub"
        self.backup_key = tmp_path / "etc" / "backup.key"
        # what terraform's random_bytes makes; the secret holds its base64 (.base64)
        self.key = os.urandom(32)
        keys = tmp_path / "keys"
        keys.mkdir()
        (tmp_path / "ssh").mkdir()
        self.host_key = tmp_path / "ssh" / "ssh_host_ed25519_key"
        keygen(self.host_key, "host")
        # ca[id] = (private key text, public key line)
        self.ca = {i: keygen(keys / i, i) for i in ("ca-1", "ca-2")}
        world = {
            "disk": disk,
            "imported": [],
            "foreign_hostid": False,
            "datasets": {},
            "bootdisk_incus_initialised": False,
            "state_dataset": STATE_DS,
            "metadata": {
                "containarium-members": ",".join(MEMBERS),
                "containarium-host-ca": self.ca["ca-1"][1] + "\n",
                "containarium-host-principals": self.principals(),
            },
            "secrets": {CA_SECRET: [self.ca["ca-1"][0]],
                        BACKUP_SECRET: [base64.b64encode(self.key).decode()]},
            "units": [],
        }
        world.update(state)
        self.state_file.write_text(json.dumps(world))

    def principals(self, *extra):
        return ",".join([self.member, address(self.member), "34.0.0.1", "203.0.113.9", *extra])

    @property
    def state(self):
        return json.loads(self.state_file.read_text())

    def update(self, **changes):
        st = self.state
        st.update(changes)
        self.state_file.write_text(json.dumps(st))

    def run(self, *args, prefix=(), **env_over):
        """Run the script (in PREFIX, e.g. `ip netns exec NS`) with the test's settings."""
        self.log_file.write_text("")
        Path(f"{self.log_file}.logger").write_text("")
        Path(f"{self.log_file}.argv").write_text("")
        env = {
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "FAKE_STATE": str(self.state_file),
            "FAKE_LOG": str(self.log_file),
            "DATA_DISK": str(self.disk),
            "INCUS_DIR": str(self.incus_dir),
            "DISK_WAIT_SECONDS": "1",
            "INCUS_WAIT_SECONDS": "5",
            "CLUSTER_MEMBER_NAME": self.member,
            "CLUSTER_ADDRESS": address(self.member),
            "CLUSTER_BOOTSTRAP": "b-0",
            "CLUSTER_JOIN_SECRET": JOIN_SECRET,
            "HOST_CA_KEY_SECRET": CA_SECRET,
            "BACKUP_KEY_SECRET": BACKUP_SECRET,
            "BACKUP_KEY": str(self.backup_key),
            "JOIN_WAIT_SECONDS": "2",
            "JOIN_POLL_SECONDS": "1",
            "METADATA_URL": METADATA_URL,
            "SECRETS_URL": SECRETS_URL,
            "RUNTIME_DIR": str(self.runtime),
            "STATE_DIR": str(self.state_dir),
            "SSH_HOST_KEY": str(self.host_key),
            "HOST_CA_PUB": str(self.host_ca_pub),
            "LANG": "C",
        }
        env.update(env_over)
        env = {k: v for k, v in env.items() if v is not None}
        proc = subprocess.run([*prefix, "bash", str(SCRIPT), *args], env=env, capture_output=True,
                              text=True, timeout=60)
        self.rc, self.stderr = proc.returncode, proc.stderr
        self.calls = [shlex.split(line) for line in self.log_file.read_text().splitlines()]
        self.logged = Path(f"{self.log_file}.logger").read_text().splitlines()
        self.argv = Path(f"{self.log_file}.argv").read_text()
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
                if any(tuple(c[:len(m)]) == m for m in MUTATING)
                or (c[0] == "curl" and any(":addVersion" in a or ":destroy" in a for a in c))]

    def reads(self, secret):
        """How often the script read SECRET in its last run (curl calls to it)."""
        return len([c for c in self.calls if c[0] == "curl"
                    and f"{SECRETS_URL}/{secret}/versions/latest:access" in c])

    def preseed(self):
        return (self.tmp / "state.json.preseed").read_text()

    def publish(self, *lines):
        """A join state as the cluster's database leader would have written it."""
        st = self.state
        st["secrets"].setdefault(JOIN_SECRET, []).append("".join(line + "\n" for line in lines))
        self.state_file.write_text(json.dumps(st))

    def join_state(self):
        return self.state["secrets"][JOIN_SECRET][-1]

    def cert(self):
        return subprocess.run(["ssh-keygen", "-L", "-f", f"{self.host_key}-cert.pub"],
                              capture_output=True, text=True, check=True).stdout


def member_world(tmp_path, member="b-1", **state):
    """A member on the boot disk it has booted from before (a Spot restart):
    the pool is imported, the Incus state dataset mounted and a cluster member's."""
    w = World(tmp_path, disk=f"pool:{POOL}", member=member, imported=[POOL],
              datasets={STATE_DS: {"mounted": True, "incus_initialised": True,
                                   "cluster_member": True}},
              cluster={"members": {"b-0": ["database-leader", "database"],
                                   "b-1": ["database"], "b-2": ["database"]}, "tokens": {}},
              **state)
    w.incus_dir.mkdir()
    (w.incus_dir / "cluster.crt").write_text("")
    return w


def joining_world(tmp_path, member="b-1", token=None, **state):
    """A new VM on a blank disk; the cluster exists with b-0 (and maybe a token for MEMBER)."""
    tokens = {member: token} if token else {}
    return World(tmp_path, disk="blank", member=member,
                 cluster={"members": {"b-0": ["database-leader", "database"]}, "tokens": tokens},
                 **state)


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
    # today's network semantics: the tenant bridge NATs, no IPv6
    assert 'ipv4.nat: "true"' in preseed and "ipv6.address: none" in preseed
    names = [" ".join(c) for c in w.calls]
    assert names.index("containarium host init --harden") < names.index("containarium sync-accounts")
    assert names.index("incus admin init --preseed") < names.index("containarium host init --harden")
    assert "-t containarium-startup -p daemon.info -- done" in w.logged


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
    w = World(tmp_path, disk=f"pool:{POOL}", member="b-1",
              datasets={STATE_DS: {"mounted": False, "incus_initialised": True,
                                   "cluster_member": True},
                        "containarium/incus": {"mounted": False, "incus_initialised": False}},
              cluster={"members": {"b-0": ["database-leader", "database"], "b-1": ["database"]},
                       "tokens": {}},
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
    # Incus finds its database and cluster certificate on the data disk: the
    # same member, no second initialisation and no join token needed
    assert not w.issued("incus", "admin", "init")
    assert w.reads(JOIN_SECRET) == 0
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
    assert w.rc == 2, "refused: systemd must not retry (RestartPreventExitStatus=2)"
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
    w.incus_dir.mkdir()
    w.run()
    assert w.rc == 0, w.stderr
    assert not w.issued("zpool", "create") and not w.issued("zpool", "import")
    assert not w.issued("blkid")  # an imported pool is never re-probed
    assert w.issued("incus", "admin", "init") == [["incus", "admin", "init", "--preseed"]]
    assert not w.issued("systemctl", "stop")
    assert w.run().mutations() == []


def test_a_restarted_member_does_not_rejoin(tmp_path):
    """A Spot restart: the boot disk is kept, the pool comes back imported and
    the Incus state is a member's. Nothing is joined and no token is read."""
    w = member_world(tmp_path, units=["containarium-sync-accounts.timer",
                                      "containarium-join-tokens.timer"])
    w.run()
    assert w.rc == 0, w.stderr
    assert not w.issued("incus", "admin", "init")
    assert w.reads(JOIN_SECRET) == 0
    assert w.issued("incus", "admin", "waitready", "--timeout=5")
    assert w.issued("containarium", "sync-accounts")
    # the first run signs the host key; after that a restart changes nothing
    assert w.issued("containarium", "host", "sign")
    assert w.run().mutations() == []
    assert w.reads(CA_SECRET) == 0


def test_a_member_without_quorum_waits_for_incus_and_is_retried(tmp_path):
    w = member_world(tmp_path, waitready_fails=True)
    w.run()
    assert w.rc == 1, "retried by systemd"
    assert "recover-from-quorum-loss" in w.stderr and "majority" in w.stderr
    assert w.mutations() == []
    assert not w.issued("containarium")


def test_standalone_incus_is_refused_never_joined(tmp_path):
    """Incus initialised without a cluster (a bastion from before): a member
    must join empty, so nothing is joined or bootstrapped, and it is not retried."""
    w = World(tmp_path, disk=f"pool:{POOL}", imported=[POOL],
              datasets={STATE_DS: {"mounted": True, "incus_initialised": True}})
    w.incus_dir.mkdir()
    w.run()
    assert w.rc == 2
    assert "not a cluster member" in w.stderr and "backup" in w.stderr
    assert w.mutations() == []
    assert w.reads(JOIN_SECRET) == 0


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


# --- the cluster: bootstrap, join, tokens -------------------------------------

def test_the_bootstrap_member_creates_the_cluster_when_nothing_is_published(tmp_path):
    w = World(tmp_path, disk="blank", member="b-0")
    w.run()
    assert w.rc == 0, w.stderr
    assert w.reads(JOIN_SECRET) == 1  # nothing published: no cluster exists yet
    preseed = w.preseed()
    assert "core.https_address: 10.20.0.10:8443" in preseed
    assert "cluster:\n  server_name: b-0\n  enabled: true\n" in preseed
    assert "cluster_token" not in preseed
    assert w.state["cluster"]["members"] == {"b-0": ["database-leader", "database"]}
    assert (w.incus_dir / "cluster.crt").exists()
    # timers: sync-accounts, join tokens and reap, on every member
    assert w.issued("systemctl", "enable", "--now") == [
        ["systemctl", "enable", "--now", u] for u in (
            "containarium-sync-accounts.timer", "containarium-join-tokens.timer",
            "containarium-reap.timer")]


def test_the_leader_publishes_a_token_for_each_expected_member(tmp_path):
    w = World(tmp_path, disk="blank", member="b-0")
    assert w.run().rc == 0, w.stderr
    w.run("publish-tokens")
    assert w.rc == 0, w.stderr
    assert w.issued("incus", "cluster", "add") == [
        ["incus", "cluster", "add", "b-1", "--quiet"], ["incus", "cluster", "add", "b-2", "--quiet"]]
    tokens = w.state["cluster"]["tokens"]
    assert w.join_state() == f"member b-0\ntoken b-1 {tokens['b-1']}\ntoken b-2 {tokens['b-2']}\n"
    # the next minute: the pending tokens are still good, nothing is written
    w.run("publish-tokens")
    assert w.rc == 0, w.stderr
    assert w.mutations() == []
    # scale-out: Terraform adds b-3 to the metadata; only b-3 gets a token
    st = w.state
    st["metadata"]["containarium-members"] = "b-0,b-1,b-2,b-3"
    w.state_file.write_text(json.dumps(st))
    w.run("publish-tokens")
    assert w.issued("incus", "cluster", "add") == [["incus", "cluster", "add", "b-3", "--quiet"]]
    assert w.state["cluster"]["tokens"]["b-1"] == tokens["b-1"]
    assert "token b-3 " in w.join_state()
    # one version is kept: the one before is destroyed
    assert w.state["secrets"][JOIN_SECRET][:-1] == [None]


def test_a_member_joins_with_its_token(tmp_path):
    token = make_token("b-1", 3 * 3600)
    w = joining_world(tmp_path, token=token)
    w.publish("member b-0", f"token b-1 {token}", f"token b-2 {make_token('b-2', 3 * 3600)}")
    w.run()
    assert w.rc == 0, w.stderr
    [init] = w.issued("incus", "admin", "init")
    assert init == ["incus", "admin", "init", "--preseed"]
    preseed = w.preseed()
    assert f"cluster_token: {token}\n" in preseed
    assert "server_name: b-1" in preseed and "server_address: 10.20.0.11:8443" in preseed
    assert "key: source\n    value: containarium/incus" in preseed
    # the pool, the bridge and the profile come from the cluster
    assert "storage_pools:" not in preseed and "networks:" not in preseed
    assert "b-1" in w.state["cluster"]["members"]
    assert w.issued("containarium", "sync-accounts")
    assert ["systemctl", "enable", "--now", "containarium-reap.timer"] in w.calls
    assert ["systemctl", "enable", "--now", "containarium-sync-accounts.timer"] in w.calls
    # its next boot is a member's: no second join
    w.run()
    assert w.rc == 0, w.stderr
    assert w.mutations() == [] and w.reads(JOIN_SECRET) == 0


def test_a_member_waits_a_bounded_time_for_its_token_then_fails_clearly(tmp_path):
    w = joining_world(tmp_path)
    w.run()
    assert w.rc == 1, "retried by systemd"
    assert "no usable join token for b-1 after 2s: no join state published yet" in w.stderr
    assert "the bootstrap member b-0 publishes it" in w.stderr
    assert w.reads(JOIN_SECRET) >= 2, "it polls"
    assert w.stderr.count("waiting to join the cluster") == 1, "said once, not at every poll"
    assert not w.issued("incus", "admin", "init")
    assert not w.issued("containarium")
    # a join state without this member's token: the same wait, another reason
    w.publish("member b-0", f"token b-2 {make_token('b-2', 3 * 3600)}")
    w.run()
    assert w.rc == 1
    assert "no join token for b-1 yet" in w.stderr
    assert not w.issued("incus", "admin", "init")


def test_a_member_joins_once_its_token_is_published_during_the_wait(tmp_path):
    token = make_token("b-1", 3 * 3600)
    w = joining_world(tmp_path, token=token,
                      later_versions={JOIN_SECRET: [3, f"member b-0\ntoken b-1 {token}\n"]})
    w.run(JOIN_WAIT_SECONDS="10")
    assert w.rc == 0, w.stderr
    assert "waiting to join the cluster: no join state published yet" in w.stderr
    assert f"cluster_token: {token}" in w.preseed()


def test_an_expired_token_is_not_used(tmp_path):
    token = make_token("b-1", -60)
    w = joining_world(tmp_path, token=token)
    w.publish("member b-0", f"token b-1 {token}")
    w.run()
    assert w.rc == 1
    assert "its join token has expired" in w.stderr
    assert not w.issued("incus", "admin", "init")


def test_a_replaced_member_is_never_removed_and_joins_after_the_admin_removed_it(tmp_path):
    """b-1's VM (or data disk) was replaced: the cluster still lists b-1 (its
    containers may come back with a snapshot of the old disk). The script
    removes nothing; once an admin ran `incus cluster remove --force b-1`, the
    leader publishes a fresh token and the VM joins."""
    w = joining_world(tmp_path)
    st = w.state
    st["cluster"]["members"]["b-1"] = ["database"]
    w.state_file.write_text(json.dumps(st))
    w.publish("member b-0", "member b-1")
    w.run()
    assert w.rc == 1
    assert "the cluster already has a member b-1" in w.stderr
    assert "incus cluster remove --force b-1" in w.stderr and "snapshot" in w.stderr
    assert not w.issued("incus", "admin", "init")
    assert not w.issued("incus", "cluster")
    # the admin removed b-1; the leader (b-0) issued a fresh token
    token = make_token("b-1", 3 * 3600)
    st = w.state
    del st["cluster"]["members"]["b-1"]
    st["cluster"]["tokens"]["b-1"] = token
    w.state_file.write_text(json.dumps(st))
    w.publish("member b-0", f"token b-1 {token}")
    w.run()
    assert w.rc == 0, w.stderr
    assert f"cluster_token: {token}" in w.preseed()


def test_a_replaced_bootstrap_member_never_creates_a_second_cluster(tmp_path):
    w = joining_world(tmp_path, member="b-0")
    w.publish("member b-0", "member b-1", "member b-2")
    w.run()
    assert w.rc == 1
    assert "the cluster already has a member b-0" in w.stderr
    assert not w.issued("incus", "admin", "init")


def test_a_secret_manager_error_is_never_taken_for_no_cluster(tmp_path):
    """A 403 (IAM not propagated yet) must not make the bootstrap member create
    a second cluster: only a 404 means nothing was published."""
    w = World(tmp_path, disk="blank", member="b-0", secrets_denied=True)
    w.run()
    assert w.rc == 1
    assert "HTTP 403" in w.stderr
    assert not w.issued("incus", "admin", "init")


def test_only_the_database_leader_publishes_tokens(tmp_path):
    w = member_world(tmp_path, member="b-1")
    st = w.state
    del st["cluster"]["members"]["b-2"]
    w.state_file.write_text(json.dumps(st))
    w.run("publish-tokens")
    assert w.rc == 0, w.stderr
    assert w.issued("incus", "query", "/1.0/cluster/members?recursion=1")
    assert w.mutations() == []
    assert w.reads(JOIN_SECRET) == 0


def test_the_leader_replaces_expiring_tokens_and_lists_joined_members(tmp_path):
    old = make_token("b-2", 600)  # expires within TOKEN_REFRESH_SECONDS
    w = member_world(tmp_path, member="b-0")
    st = w.state
    del st["cluster"]["members"]["b-2"]
    st["cluster"]["tokens"]["b-2"] = old
    w.state_file.write_text(json.dumps(st))
    w.publish("member b-0", f"token b-1 {make_token('b-1', 3 * 3600)}", f"token b-2 {old}")
    w.run("publish-tokens")
    assert w.rc == 0, w.stderr
    assert w.issued("incus", "cluster", "add") == [["incus", "cluster", "add", "b-2", "--quiet"]]
    new = w.state["cluster"]["tokens"]["b-2"]
    assert new != old
    # b-1 joined meanwhile: listed as a member, its consumed token gone
    assert w.join_state() == f"member b-0\nmember b-1\ntoken b-2 {new}\n"
    assert w.state["secrets"][JOIN_SECRET][0] is None


def test_publish_tokens_before_joining_does_nothing(tmp_path):
    w = joining_world(tmp_path)
    w.run("publish-tokens")
    assert w.rc == 0, w.stderr
    assert w.calls == []
    assert w.logged == ["-t containarium-startup -p daemon.info -- "
                        "not a cluster member yet: no join tokens to publish"]


# --- the host certificate ------------------------------------------------------

def test_the_host_key_is_signed_by_the_ca_and_the_ca_key_shredded(tmp_path):
    w = World(tmp_path, disk="blank", member="b-0")
    w.run()
    assert w.rc == 0, w.stderr
    [sign] = w.issued("containarium", "host", "sign")
    assert sign[3] == "--ca-key" and sign[4].startswith(str(w.runtime) + "/")
    assert sign[5:] == ["--principals", w.principals()]
    cert = w.cert()
    assert f"Signing CA: ED25519 {fingerprint(w.ca['ca-1'][1])} " in cert
    assert "host certificate" in cert
    for p in w.principals().split(","):
        assert f"\n                {p}\n" in cert
    # the CA key lived in a private directory on tmpfs, and was shredded
    assert w.issued("shred", "-u", "--", sign[4])
    assert list(w.runtime.iterdir()) == []
    assert w.host_ca_pub.read_text() == w.ca["ca-1"][1] + "\n"
    names = [" ".join(c[:3]) for c in w.calls]
    assert names.index("containarium host sign") < names.index("containarium host init")
    assert ["systemctl", "try-reload-or-restart", "ssh.service"] in w.calls
    # the next boot: the certificate is current, the CA key is not even read
    w.run()
    assert w.rc == 0, w.stderr
    assert w.reads(CA_SECRET) == 0
    assert w.mutations() == []


def test_changed_principals_are_signed_again(tmp_path):
    w = member_world(tmp_path, member="b-1")
    assert w.run().rc == 0, w.stderr
    st = w.state
    st["metadata"]["containarium-host-principals"] = w.principals("ssh.example.com")
    w.state_file.write_text(json.dumps(st))
    w.run()
    assert w.rc == 0, w.stderr
    assert w.issued("containarium", "host", "sign")
    assert "\n                ssh.example.com\n" in w.cert()


def test_rotation_trusts_both_cas_and_signs_with_the_new_one(tmp_path):
    w = member_world(tmp_path, member="b-1")
    assert w.run().rc == 0, w.stderr
    # step 1 of a rotation: the new CA is trusted, the old one still signs
    st = w.state
    st["metadata"]["containarium-host-ca"] = w.ca["ca-1"][1] + "\n" + w.ca["ca-2"][1] + "\n"
    w.state_file.write_text(json.dumps(st))
    w.run()
    assert w.rc == 0, w.stderr
    assert not w.issued("containarium", "host", "sign")
    assert w.host_ca_pub.read_text().splitlines() == [w.ca["ca-1"][1], w.ca["ca-2"][1]]
    # step 2: the new CA signs
    st = w.state
    st["metadata"]["containarium-host-ca"] = w.ca["ca-2"][1] + "\n" + w.ca["ca-1"][1] + "\n"
    st["secrets"][CA_SECRET].append(w.ca["ca-2"][0])
    w.state_file.write_text(json.dumps(st))
    w.run()
    assert w.rc == 0, w.stderr
    assert w.issued("containarium", "host", "sign")
    assert f"Signing CA: ED25519 {fingerprint(w.ca['ca-2'][1])} " in w.cert()
    # step 3: the old CA is dropped from what export trusts
    st = w.state
    st["metadata"]["containarium-host-ca"] = w.ca["ca-2"][1] + "\n"
    w.state_file.write_text(json.dumps(st))
    w.run()
    assert w.rc == 0, w.stderr
    assert not w.issued("containarium", "host", "sign")
    assert w.host_ca_pub.read_text() == w.ca["ca-2"][1] + "\n"


def test_a_ca_key_that_is_not_the_signing_ca_is_never_used(tmp_path):
    w = member_world(tmp_path, member="b-1")
    st = w.state
    st["secrets"][CA_SECRET] = [w.ca["ca-2"][0]]  # the metadata names ca-1
    w.state_file.write_text(json.dumps(st))
    w.run()
    assert w.rc == 1
    assert "is not the first key of the instance metadata containarium-host-ca" in w.stderr
    assert not w.issued("containarium", "host", "sign")
    assert list(w.runtime.iterdir()) == [], "the fetched key is removed on the way out"


def test_no_secret_is_ever_on_a_command_line(tmp_path):
    """Tokens, the CA key and the access token go through files and stdin only:
    none is in the argv of any command the script runs (the fakes, and the real
    tools it hands data to, wrapped), nor in its log."""
    runs = []

    def watched(world, *args):
        world.run(*args)
        assert world.rc == 0, world.stderr
        runs.append("\n".join(" ".join(c) for c in world.calls + world.ran)
                    + world.argv + world.stderr + "\n".join(world.logged))

    w = World(tmp_path, disk="blank", member="b-0")
    watched(w)  # bootstrap, and the host key signed with the CA key
    watched(w, "publish-tokens")
    token = w.state["cluster"]["tokens"]["b-1"]
    (tmp_path / "b-1").mkdir()
    j = joining_world(tmp_path / "b-1", token=token)
    j.publish("member b-0", f"token b-1 {token}")
    watched(j)
    # they were watched: the CA key was checked, tokens and payloads decoded
    assert "ssh-keygen -y -f" in runs[0] and "python3 -c" in runs[1] and "python3 -c" in runs[2]
    assert "base64 -d" in runs[0], "the backup key was decoded"
    ca_key_lines = [ln for ln in w.ca["ca-1"][0].splitlines() if "PRIVATE KEY" not in ln]
    backup_keys = [base64.b64encode(w.key).decode(), w.key.hex(),
                   base64.b64encode(j.key).decode(), j.key.hex()]
    for seen in runs:
        for secret in [token, SA_TOKEN, *ca_key_lines, *backup_keys]:
            assert secret not in seen
    # positive control: the backup keys did reach their files
    assert w.backup_key.read_bytes() == w.key and j.backup_key.read_bytes() == j.key
    # positive control: the token did reach Incus, through the preseed on stdin
    assert token in j.preseed()


# --- the load balancer hold --------------------------------------------------

LB = "203.0.113.80"
HOLD = "inet containarium_lb"
HOLD_RULE = f"ip daddr {LB} tcp dport 22 reject with tcp reset"


@pytest.mark.parametrize("failing", ["no join token", "host init", "sync-accounts"])
def test_the_hold_is_released_only_once_the_bastion_is_ready(tmp_path, failing):
    """Held at boot (containarium-lb-hold.service runs `lb-hold`); while the
    bastion has not joined, or host init or the first sync-accounts fails, the
    hold stays; it is released right after sync-accounts succeeded, once."""
    if failing == "no join token":
        w = joining_world(tmp_path)
    else:
        w = member_world(tmp_path, containarium_fails=[failing])
    w.run("lb-hold", LB_ADDRESS=LB)
    assert w.rc == 0, w.stderr
    assert w.issued("nft", "-f", "-")
    assert HOLD_RULE in w.state["nft"][HOLD]
    w.run(LB_ADDRESS=LB)
    assert w.rc == 1
    assert HOLD in w.state["nft"], "still held"
    assert not w.issued("nft", "delete")
    assert "released the load balancer hold" not in w.stderr
    # the cause goes away (a token is published, containarium works again)
    if failing == "no join token":
        token = make_token("b-1", 3 * 3600)
        st = w.state
        st["cluster"]["tokens"]["b-1"] = token
        w.state_file.write_text(json.dumps(st))
        w.publish("member b-0", f"token b-1 {token}")
    else:
        w.update(containarium_fails=[])
    w.run(LB_ADDRESS=LB)
    assert w.rc == 0, w.stderr
    assert HOLD not in w.state["nft"], "released"
    names = [" ".join(c[:3]) for c in w.calls]
    assert names.index("containarium host init") < names.index("containarium sync-accounts") \
        < names.index("nft delete table")
    assert "-t containarium-startup -p daemon.info -- " \
        f"ready: released the load balancer hold ({LB}:22 reaches sshd)" in w.logged
    # the service runs again (a restart): nothing to release, nothing held again
    w.run(LB_ADDRESS=LB)
    assert w.rc == 0, w.stderr
    assert not w.issued("nft", "delete") and not w.issued("nft", "-f")


def test_without_a_load_balancer_nothing_is_held(tmp_path):
    w = World(tmp_path, disk="blank")
    w.run("lb-hold", LB_ADDRESS="")
    assert w.rc == 0, w.stderr
    assert not w.issued("nft")
    assert "no load balancer (LB_ADDRESS is empty): nothing to hold" in w.stderr
    w.run()
    assert w.rc == 0, w.stderr
    assert not w.issued("nft")
    assert w.state.get("nft", {}) == {}


@pytest.mark.parametrize("bad", ["203.0.113.80; flush ruleset", "2001:db8::1", "lb.example.com"])
def test_a_load_balancer_address_that_is_not_one_is_refused(tmp_path, bad):
    w = World(tmp_path)
    w.run("lb-hold", LB_ADDRESS=bad)
    assert w.rc == 2
    assert "is not an IPv4 address" in w.stderr
    assert not w.issued("nft")
    # control: a good one is held
    assert w.run("lb-hold", LB_ADDRESS=LB).rc == 0, w.stderr
    assert w.issued("nft", "-f", "-")


# A real network namespace with real nftables: LB_IP stands for the balancer's
# address (the guest agent makes it local on GCE), OWN_IP for the VM's own.
LB_IP, OWN_IP = "10.197.89.10", "10.197.89.11"
LISTENER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 22))
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"SSH-2.0-ctmlb-test\\r\\n")
    c.close()
"""
CONNECT = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], 22), timeout=3)
    print("open" if c.recv(64).startswith(b"SSH-2.0-ctmlb-test") else "other")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print(type(e).__name__)
"""


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("needs root: the test makes a network namespace")
    require_tool("nft")
    require_tool("ip")
    name = f"ctmlb-{os.getpid()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)  # a killed run's, same pid
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"ip netns add failed: {made.stderr.strip()}")
    nsx = ["ip", "netns", "exec", name]
    listener = None
    try:
        for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", f"{LB_IP}/32", "dev", "lo"],
                    ["ip", "addr", "add", f"{OWN_IP}/32", "dev", "lo"]):
            subprocess.run(nsx + cmd, check=True)
        listener = subprocess.Popen(nsx + [sys.executable, "-c", LISTENER],
                                    stdout=subprocess.PIPE, text=True)
        assert listener.stdout.readline().strip() == "ready"
        yield nsx
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        subprocess.run(["ip", "netns", "del", name], check=True)


def connect(nsx, addr):
    return subprocess.run(nsx + [sys.executable, "-c", CONNECT, addr], capture_output=True,
                          text=True, check=True, timeout=20).stdout.strip()


def test_the_real_hold_refuses_the_balancer_address_until_ready(tmp_path, netns):
    """The script's own hold (`lb-hold`, real nft) in a namespace of the test's:
    a connection to the balancer's address is reset while held, also after a
    failed sync-accounts; the VM's own address still reaches sshd (admins); the
    release after a successful run lets the balancer's connections in."""
    assert connect(netns, LB_IP) == "open" and connect(netns, OWN_IP) == "open", "control"
    w = member_world(tmp_path, real=("nft",), containarium_fails=["sync-accounts"])
    for _ in range(2):  # a second hold replaces the first
        w.run("lb-hold", prefix=netns, LB_ADDRESS=LB_IP)
        assert w.rc == 0, w.stderr
    table = subprocess.run(netns + ["nft", "list", "table", "inet", "containarium_lb"],
                           capture_output=True, text=True, check=True).stdout
    assert table.count("reject with tcp reset") == 1, table
    assert connect(netns, LB_IP) == "refused"
    assert connect(netns, OWN_IP) == "open"
    w.run(prefix=netns, LB_ADDRESS=LB_IP)
    assert w.rc == 1
    assert connect(netns, LB_IP) == "refused", "not ready: still held"
    assert connect(netns, OWN_IP) == "open"
    w.update(containarium_fails=[])
    w.run(prefix=netns, LB_ADDRESS=LB_IP)
    assert w.rc == 0, w.stderr
    assert connect(netns, LB_IP) == "open", "released"
    assert connect(netns, OWN_IP) == "open"
    tables = subprocess.run(netns + ["nft", "list", "tables"], capture_output=True, text=True,
                            check=True).stdout
    assert "containarium_lb" not in tables


# --- the backup key ------------------------------------------------------------

def key_dir_leftovers(w):
    """Anything beside the key in its directory (a temporary file left behind)."""
    return sorted(p.name for p in w.backup_key.parent.iterdir()
                  if p.name not in ("backup.key", "host-ca.pub"))


def test_the_backup_key_is_fetched_and_put_in_place_before_host_init(tmp_path):
    w = World(tmp_path, disk="blank", member="b-0")
    w.run()
    assert w.rc == 0, w.stderr
    assert w.reads(BACKUP_SECRET) == 1
    # exactly the 32 bytes terraform made, a regular 0600 file (root's, as the unit runs)
    assert w.backup_key.read_bytes() == w.key
    st = w.backup_key.lstat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid() and st.st_nlink == 1
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (0, 0)
    # linked into place from a temporary file beside it, nothing left behind
    [link] = w.issued("ln")
    assert link[1] == "--" and link[-1] == str(w.backup_key)
    assert Path(link[2]).parent == w.backup_key.parent and ".backup.key." in link[2]
    assert key_dir_leftovers(w) == []
    assert list(w.runtime.iterdir()) == [], "the base64 in the work directory is gone"
    # before host init (which would otherwise make a key of its own)
    err = w.stderr
    assert err.index(f"running: ln -- {link[2]}") < err.index("running: containarium host init")
    assert "-t containarium-startup -p daemon.info -- " \
        f"backup key {w.backup_key} written from {BACKUP_SECRET} (32 bytes, 0600)" in w.logged
    # the next boot: the key is there, the secret is not even read
    w.run()
    assert w.rc == 0, w.stderr
    assert w.reads(BACKUP_SECRET) == 0
    assert w.mutations() == []
    assert w.backup_key.read_bytes() == w.key


def test_a_recreated_boot_disk_gets_the_same_backup_key(tmp_path):
    """The key is on the boot disk: a recreated one reads it again from the
    secret, the same bytes every other bastion has."""
    w = recreated_boot_disk_world(tmp_path)
    w.run()
    assert w.rc == 0, w.stderr
    assert w.reads(BACKUP_SECRET) == 1
    assert w.backup_key.read_bytes() == w.key


def test_a_backup_key_that_is_there_is_never_read_replaced_or_changed(tmp_path):
    w = member_world(tmp_path)
    w.backup_key.parent.mkdir(parents=True)
    mine = os.urandom(32)
    w.backup_key.write_bytes(mine)
    w.backup_key.chmod(0o600)
    w.run()
    assert w.rc == 0, w.stderr
    assert w.reads(BACKUP_SECRET) == 0
    assert w.backup_key.read_bytes() == mine
    assert not w.issued("ln")
    # not even a wrong one (host init refuses it, in one line): never overwritten
    w.backup_key.chmod(0o644)
    w.run()
    assert w.reads(BACKUP_SECRET) == 0 and not w.issued("ln")
    assert w.backup_key.read_bytes() == mine
    assert stat.S_IMODE(w.backup_key.stat().st_mode) == 0o644
    # a dangling symbolic link is not written through either
    w.backup_key.unlink()
    w.backup_key.symlink_to(tmp_path / "elsewhere")
    w.run()
    assert w.reads(BACKUP_SECRET) == 0 and not w.issued("ln")
    assert not (tmp_path / "elsewhere").exists()


GOOD = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize("payload,why", [
    (GOOD + "\n", None),  # gcloud users' echo: one final newline is fine
    (base64.b64encode(bytes(31)).decode(), "not one line of base64 of 32 bytes"),
    (base64.b64encode(bytes(33)).decode(), "not one line of base64 of 32 bytes"),
    (base64.b64encode(bytes(64)).decode(), "not one line of base64 of 32 bytes"),
    (GOOD.rstrip("="), "not one line of base64 of 32 bytes"),  # unpadded
    (GOOD + "\n" + GOOD + "\n", "not one line of base64 of 32 bytes"),
    (GOOD[:22] + "\n" + GOOD[22:] + "\n", "not one line of base64 of 32 bytes"),
    (GOOD.replace("A", "-").replace("B", "_"), "not one line of base64 of 32 bytes"),  # url-safe
    (" " + GOOD, "not one line of base64 of 32 bytes"),
    (bytes(range(32)).hex(), "not one line of base64 of 32 bytes"),
    ("", "not one line of base64 of 32 bytes"),
    ("A" * 43 + "=", None),  # 32 zero bytes: well formed, so taken
])
def test_a_secret_that_is_not_a_32_byte_key_stops_the_run_and_writes_nothing(tmp_path, payload, why):
    w = member_world(tmp_path)
    st = w.state
    st["secrets"][BACKUP_SECRET] = [payload]
    w.state_file.write_text(json.dumps(st))
    w.run()
    if why is None:
        assert w.rc == 0, w.stderr
        assert len(w.backup_key.read_bytes()) == 32
        assert w.backup_key.read_bytes() == base64.b64decode(payload)
        return
    assert w.rc == 1, "retried by systemd once the secret is fixed"
    assert f"secret {BACKUP_SECRET} is {why}: no backup key written" in w.stderr
    assert not w.backup_key.exists() and not w.backup_key.is_symlink()
    assert key_dir_leftovers(w) == []
    assert list(w.runtime.iterdir()) == []
    # host init never ran, so it made no key of its own
    assert not w.issued("containarium", "host", "init")
    assert not w.issued("containarium", "sync-accounts")
    # the secret is fixed: the next run writes it
    st = w.state
    st["secrets"][BACKUP_SECRET].append(base64.b64encode(w.key).decode())
    w.state_file.write_text(json.dumps(st))
    w.run()
    assert w.rc == 0, w.stderr
    assert w.backup_key.read_bytes() == w.key


def test_a_key_that_does_not_decode_to_32_bytes_is_never_put_in_place(tmp_path):
    """The decoded size is checked too, whatever let the text through: a
    base64 that decodes short (here: a base64 -d that stops early) is refused."""
    w = member_world(tmp_path)
    fake = w.bin / "base64"
    fake.write_text("#!/bin/sh\nhead -c 31 /dev/zero\n")
    fake.chmod(0o755)
    w.run()
    assert w.rc == 1
    assert f"secret {BACKUP_SECRET} decodes to 31 bytes, not 32: no backup key written" in w.stderr
    assert not w.backup_key.exists()
    assert key_dir_leftovers(w) == []
    assert not w.issued("containarium", "host", "init")


def test_no_backup_key_version_yet_stops_the_run(tmp_path):
    w = member_world(tmp_path)
    st = w.state
    del st["secrets"][BACKUP_SECRET]
    w.state_file.write_text(json.dumps(st))
    w.run()
    assert w.rc == 1
    assert f"secret {BACKUP_SECRET} has no version yet (terraform apply writes it)" in w.stderr
    assert not w.backup_key.exists()
    assert not w.issued("containarium", "host", "init")


def test_a_secret_manager_error_writes_no_backup_key(tmp_path):
    w = member_world(tmp_path)
    w.run()  # signs the host key, writes the backup key
    assert w.rc == 0, w.stderr
    w.backup_key.unlink()
    w.update(secrets_denied=True)
    w.run()
    assert w.rc == 1
    assert "HTTP 403" in w.stderr
    assert not w.backup_key.exists()
    assert key_dir_leftovers(w) == []
    assert not w.issued("containarium", "host", "init")


def test_the_backup_key_secret_must_be_set(tmp_path):
    w = member_world(tmp_path)
    w.run(BACKUP_KEY_SECRET=None)
    assert w.rc == 2
    assert "BACKUP_KEY_SECRET must be set" in w.stderr
    assert not w.backup_key.exists()
    assert not w.issued("containarium", "host", "init")
    # only a missing key needs it: a bastion that has one keeps going without
    w.backup_key.parent.mkdir(parents=True, exist_ok=True)
    w.backup_key.write_bytes(w.key)
    w.backup_key.chmod(0o600)
    w.run(BACKUP_KEY_SECRET=None)
    assert w.rc == 0, w.stderr
    assert w.backup_key.read_bytes() == w.key
