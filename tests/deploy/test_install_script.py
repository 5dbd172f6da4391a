"""scripts/install.sh, offline (--binary), into a temporary prefix."""
import hashlib
import os
import subprocess

import pytest

from conftest import SCRIPTS

SCRIPT = SCRIPTS / "install.sh"


@pytest.fixture
def fake_binary(tmp_path):
    log = tmp_path / "calls.log"
    binary = tmp_path / "src" / "containarium"
    binary.parent.mkdir()
    binary.write_text(f'#!/bin/sh\necho "$0 $*" >> "{log}"\n')
    binary.chmod(0o755)
    return binary, log


def run(*args):
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "LANG": "C"})


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
