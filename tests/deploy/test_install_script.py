"""scripts/install.sh, offline: a binary (--binary) into a temporary prefix, or
the Debian package through a fake apt-get and dpkg-query (debfake.py)."""
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import SCRIPTS
from debfake import FakeDpkg, make_deb

SCRIPT = SCRIPTS / "install.sh"


@pytest.fixture
def fake_binary(tmp_path):
    log = tmp_path / "calls.log"
    binary = tmp_path / "src" / "containarium"
    binary.parent.mkdir()
    binary.write_text(f'#!/bin/sh\necho "$0 $*" >> "{log}"\n')
    binary.chmod(0o755)
    return binary, log


# Where a binary install puts the timer units: never the host's own.
UNITS = Path(tempfile.mkdtemp(prefix="ctm-units-")) / "system"


def run(*args, env=None):
    env = env or {**os.environ, "LANG": "C"}
    env.setdefault("CONTAINARIUM_UNITS_DIR", str(UNITS))
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, timeout=60, env=env)


def test_offline_install_runs_host_init(tmp_path, fake_binary):
    binary, log = fake_binary
    prefix = tmp_path / "bin"
    sha = hashlib.sha256(binary.read_bytes()).hexdigest()
    proc = run("--binary", binary, "--sha256", sha, "--prefix", prefix)
    assert proc.returncode == 0, proc.stderr
    dest = prefix / "containarium"
    assert dest.read_bytes() == binary.read_bytes()
    assert os.access(dest, os.X_OK)
    assert log.read_text().splitlines() == [f"{dest} host init"]
    # second run: nothing to copy, host init again (it is idempotent)
    proc = run("--binary", binary, "--prefix", prefix)
    assert proc.returncode == 0, proc.stderr
    assert "already this binary" in proc.stdout


def test_a_binary_install_puts_the_timer_units_in_place_naming_it(tmp_path, fake_binary):
    binary, _ = fake_binary
    prefix, units = tmp_path / "bin", tmp_path / "systemd" / "system"
    env = {**os.environ, "LANG": "C", "CONTAINARIUM_UNITS_DIR": str(units)}
    # Not a systemd host: said, and nothing made.
    proc = run("--binary", binary, "--prefix", prefix, "--no-host-init", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "not a systemd host" in proc.stdout
    assert not units.parent.exists()
    units.parent.mkdir()
    proc = run("--binary", binary, "--prefix", prefix, "--no-host-init", env=env)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in units.iterdir())
    assert names == ["containarium-reap.service", "containarium-reap.timer",
                     "containarium-sync-accounts.service", "containarium-sync-accounts.timer"]
    for service in ("containarium-reap.service", "containarium-sync-accounts.service"):
        text = (units / service).read_text()
        assert f"ExecStart={prefix}/containarium " in text, text
    assert "not enabled" in proc.stdout
    assert not list(units.parent.rglob("*.wants"))
    # Again: nothing to install.
    proc = run("--binary", binary, "--prefix", prefix, "--no-host-init", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"installed {units}" not in proc.stdout


def test_wrong_sha256_installs_nothing(tmp_path, fake_binary):
    binary, log = fake_binary
    prefix = tmp_path / "bin"
    proc = run("--binary", binary, "--sha256", "0" * 64, "--prefix", prefix)
    assert proc.returncode != 0
    assert "does not match" in proc.stderr
    assert not (prefix / "containarium").exists()
    assert not log.exists()


def test_no_host_init(tmp_path, fake_binary):
    binary, log = fake_binary
    proc = run("--binary", binary, "--prefix", tmp_path / "bin", "--no-host-init")
    assert proc.returncode == 0, proc.stderr
    assert not log.exists()


def test_url_requires_sha256(tmp_path):
    proc = run("--url", "https://example.com/containarium", "--prefix", tmp_path)
    assert proc.returncode != 0
    assert "--sha256" in proc.stderr


def test_bad_options(tmp_path, fake_binary):
    binary, _ = fake_binary
    assert run("--bogus").returncode != 0
    assert run("--binary", binary, "--sha256", "xyz", "--prefix", tmp_path).returncode != 0
    assert run("--binary", tmp_path / "missing", "--prefix", tmp_path).returncode != 0
    assert "--binary" in run("--help").stdout


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_package_is_installed_offline_with_apt_and_host_init_runs(tmp_path):
    fake = FakeDpkg(tmp_path)
    log = tmp_path / "calls.log"
    deb = make_deb(tmp_path, log=log)
    proc = run(deb, "--sha256", sha256(deb), env=fake.env())
    assert proc.returncode == 0, proc.stderr
    [call] = fake.apt_calls
    # Its Depends only, so nothing is downloaded when they are installed.
    assert call.startswith("apt-get -o DPkg::Lock::Timeout=300 -y -q install "
                           "--no-install-recommends /"), call
    assert call.endswith("/containarium.deb"), call
    assert "sha256 verified" in proc.stdout
    # host init is run with the binary the package installed
    assert log.read_text().splitlines() == [f"{fake.binary} host init"]

    # The same package again: nothing installed, host init again.
    proc = run(deb, env=fake.env())
    assert proc.returncode == 0, proc.stderr
    assert "containarium 0.1.0 is already this package" in proc.stdout
    assert len(fake.apt_calls) == 1
    # Control: a newer version, and a rebuild of the same version with other
    # files, are installed.
    newer = make_deb(tmp_path, version="0.1.1", log=log)
    assert run(newer, "--no-host-init", env=fake.env()).returncode == 0
    rebuilt = make_deb(tmp_path, version="0.1.1", log=log, extra=b"# rebuilt\n")
    assert run(rebuilt, "--no-host-init", env=fake.env()).returncode == 0
    assert len(fake.apt_calls) == 3
    assert fake.binary.read_bytes().endswith(b"# rebuilt\n")


def test_a_package_with_the_wrong_sha256_is_not_installed(tmp_path):
    fake = FakeDpkg(tmp_path)
    log = tmp_path / "calls.log"
    deb = make_deb(tmp_path, log=log)
    proc = run(deb, "--sha256", "0" * 64, env=fake.env())
    assert proc.returncode != 0
    assert "does not match" in proc.stderr
    assert fake.apt_calls == []
    assert not log.exists()


def test_package_options_that_do_not_fit_are_refused(tmp_path, fake_binary):
    fake = FakeDpkg(tmp_path)
    binary, _ = fake_binary
    deb = make_deb(tmp_path, log=tmp_path / "calls.log")
    for args, why in [
        ((deb, "--prefix", tmp_path / "bin"), "--prefix is for a binary"),
        ((deb, "--binary", binary), "give one of"),
        ((deb, deb), "give one package"),
        ((tmp_path / "containarium.tar.gz",), "not a package"),
    ]:
        proc = run(*args, env=fake.env())
        assert proc.returncode != 0 and why in proc.stderr, (args, proc.stderr)
    assert fake.apt_calls == []
    other = tmp_path / "other.deb"
    subprocess.run(["dpkg-deb", "--build", str(make_tree(tmp_path, "other")), str(other)],
                   check=True, capture_output=True)
    proc = run(other, env=fake.env())
    assert proc.returncode != 0 and "is the package other, not containarium" in proc.stderr
    assert fake.apt_calls == []


def make_tree(tmp_path, name):
    tree = tmp_path / f"tree-{name}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1\nArchitecture: all\nMaintainer: T <t@example.com>\n"
        "Description: other\n")
    return tree
