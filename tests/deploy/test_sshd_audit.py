"""The bastion's own sshd against a real auditor: an sshd started on a free
loopback port with exactly the sshd configuration cloud-init/bastion.yaml
writes (on Debian's sshd_config), audited by ssh-audit. Control: the same
sshd without our hardening drop-in fails the audit on the six algorithms
OpenSSH 9.2 offers by default, so a broken audit cannot pass."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import CLOUD_INIT, require_tool
from test_cloud_init import TEST_VALUES, render

HARDENING = "/etc/ssh/sshd_config.d/00-containarium-hardening.conf"
SSH_AUDIT = Path(sys.executable).parent / "ssh-audit"

# Debian 12's /etc/ssh/sshd_config, comments dropped, its Include pointed at
# the scratch directory.
DEBIAN_SSHD_CONFIG = """\
Include {dropins}/*.conf
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding yes
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sshd_dropins():
    doc = yaml.safe_load(render(CLOUD_INIT.read_text(), TEST_VALUES))
    return {
        f["path"]: f["content"]
        for f in doc["write_files"]
        if f["path"].startswith("/etc/ssh/sshd_config.d/")
    }


def audit(tmp_path, dropins):
    """Start sshd with `dropins` ({path: text}) and Debian's sshd_config on
    127.0.0.1, audit it, stop it by PID; ssh-audit's JSON report."""
    sshd = require_tool("sshd") if os.geteuid() == 0 else pytest.skip("sshd needs root")
    d = tmp_path / "sshd_config.d"
    d.mkdir()
    for path, text in dropins.items():
        (d / Path(path).name).write_text(text)
    # Host keys as Debian makes them (ssh-keygen -A): RSA 3072, ECDSA, Ed25519.
    keys = []
    for kind, bits in (("rsa", "3072"), ("ecdsa", "256"), ("ed25519", "256")):
        key = tmp_path / f"ssh_host_{kind}_key"
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-b", bits, "-N", "", "-f", str(key)], check=True)
        keys.append(f"HostKey {key}\n")
    config = tmp_path / "sshd_config"
    config.write_text(DEBIAN_SSHD_CONFIG.format(dropins=d) + "".join(keys))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    port = free_port()
    subprocess.run([sshd, "-t", "-f", str(config)], check=True)
    proc = subprocess.Popen(
        [sshd, "-D", "-e", "-f", str(config), "-p", str(port), "-o", "ListenAddress=127.0.0.1",
         "-o", f"PidFile={tmp_path / 'sshd.pid'}"],
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        out = subprocess.run(
            [str(SSH_AUDIT), "--json", "--skip-rate-test", "-p", str(port), "127.0.0.1"],
            capture_output=True, text=True, timeout=120,
        )
        assert out.returncode in (0, 1, 2, 3), out.stderr
        return json.loads(out.stdout)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def failures(report):
    """`kind name` of every algorithm ssh-audit fails."""
    out = []
    for kind in ("kex", "key", "enc", "mac"):
        for alg in report.get(kind, []):
            if alg.get("notes", {}).get("fail"):
                out.append(f"{kind} {alg['algorithm']}")
    return sorted(out)


def offered(report, kind):
    return [alg["algorithm"] for alg in report.get(kind, [])]


def test_cloud_init_writes_the_hardening_drop_in():
    dropins = sshd_dropins()
    assert HARDENING in dropins, sorted(dropins)
    # It sorts before every other drop-in: sshd takes the first value.
    assert sorted(Path(p).name for p in dropins)[0] == Path(HARDENING).name


def test_bastion_sshd_passes_ssh_audit(tmp_path):
    report = audit(tmp_path, sshd_dropins())
    assert failures(report) == []
    # Still a usable server: post-quantum and X25519 key exchange, Ed25519
    # and RSA-SHA2 host keys, AEAD ciphers, ETM MACs.
    assert "sntrup761x25519-sha512@openssh.com" in offered(report, "kex")
    assert "curve25519-sha256" in offered(report, "kex")
    assert {"ssh-ed25519", "rsa-sha2-512"} <= set(offered(report, "key"))
    assert "chacha20-poly1305@openssh.com" in offered(report, "enc")
    assert all(m.endswith("-etm@openssh.com") for m in offered(report, "mac")), offered(report, "mac")


def test_without_our_hardening_ssh_audit_fails_the_defaults(tmp_path):
    dropins = {p: t for p, t in sshd_dropins().items() if p != HARDENING}
    assert failures(audit(tmp_path, dropins)) == sorted([
        "kex ecdh-sha2-nistp256",
        "kex ecdh-sha2-nistp384",
        "kex ecdh-sha2-nistp521",
        "key ecdsa-sha2-nistp256",
        "mac hmac-sha1",
        "mac hmac-sha1-etm@openssh.com",
    ])
