"""A real containarium .deb (built with dpkg-deb) and stand-ins for apt-get and
dpkg-query, so install.sh and the bastion's install-package.sh can be run
without touching this machine's package database.

The fake apt-get logs its argv and "installs" a .deb by unpacking it (the real
`dpkg-deb -x`) under ROOT and remembering its version and md5sums; the fake
dpkg-query answers -W and -L from that, with paths
under ROOT. The package's /usr/bin/containarium logs how it is called.
"""
import os
import subprocess
import textwrap

from conftest import require_tool

APT_GET = r'''#!/bin/bash
set -euo pipefail
printf '%s\n' "apt-get $*" >>"$FAKE_DPKG/calls.log"
deb=${!#}
[ -f "$deb" ] || { echo "E: no such package file: $deb" >&2; exit 100; }
dpkg-deb -x "$deb" "$FAKE_DPKG/root"
dpkg-deb --field "$deb" Version >"$FAKE_DPKG/version"
dpkg-deb --contents "$deb" | awk '{print $6}' | sed "s|^\.|$FAKE_DPKG/root|" >"$FAKE_DPKG/list"
'''

DPKG_QUERY = r'''#!/bin/bash
set -euo pipefail
[ -f "$FAKE_DPKG/version" ] || { echo "dpkg-query: no packages found matching containarium" >&2; exit 1; }
case "$1" in
    -W) echo -n "installed $(cat "$FAKE_DPKG/version")" ;;
    -L) cat "$FAKE_DPKG/list" ;;
    *) echo "fake dpkg-query: $*" >&2; exit 2 ;;
esac
'''


def make_deb(tmp_path, version="0.1.0", log=None, extra=b""):
    """Build containarium_VERSION_amd64.deb whose binary appends "$0 $*" to log."""
    require_tool("dpkg-deb")
    tree = tmp_path / f"deb-{version}-{len(extra)}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "usr" / "bin").mkdir(parents=True)
    binary = tree / "usr" / "bin" / "containarium"
    binary.write_bytes(f'#!/bin/sh\necho "$0 $*" >> "{log}"\n'.encode() + extra)
    binary.chmod(0o755)
    (tree / "DEBIAN" / "control").write_text(textwrap.dedent(f"""\
        Package: containarium
        Version: {version}
        Architecture: amd64
        Maintainer: Test <test@example.com>
        Description: test package
        """))
    deb = tmp_path / f"containarium_{version}_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)],
                   check=True, capture_output=True)
    return deb


class FakeDpkg:
    """PATH with the fake apt-get and dpkg-query first; their world under dir."""

    def __init__(self, tmp_path):
        self.dir = tmp_path / "fake-dpkg"
        self.bin = self.dir / "bin"
        self.bin.mkdir(parents=True)
        for name, text in (("apt-get", APT_GET), ("dpkg-query", DPKG_QUERY)):
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)
        self.root = self.dir / "root"

    def env(self):
        return {**os.environ, "LANG": "C", "FAKE_DPKG": str(self.dir),
                "PATH": f"{self.bin}:{os.environ['PATH']}"}

    @property
    def apt_calls(self):
        log = self.dir / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    @property
    def binary(self):
        return self.root / "usr" / "bin" / "containarium"
