"""cloud-init/bastion.yaml: rendered like Terraform's templatefile() with test
values, validated by `cloud-init schema`, and its embedded scripts shellchecked."""
import base64
import hashlib
import re
import subprocess

import pytest
import yaml

from conftest import CLOUD_INIT, GCE_DIR, SCRIPTS, require_tool
from debfake import FakeDpkg, make_deb
from hcl import Module

TEST_SHA = hashlib.sha256(b"containarium test package").hexdigest()
TEST_VALUES = {
    "package_url": "https://mirror.example.com/containarium/v0.1.0/containarium_0.1.0_amd64.deb",
    "package_sha256": TEST_SHA,
    "startup_script_b64": base64.b64encode((SCRIPTS / "bastion-startup.sh").read_bytes()).decode(),
    "data_disk_name": "containarium-data",
    "zpool_name": "containarium",
    "zpool_force_import": "1",
    "bridge_address": "10.96.0.1/20",
    "fail2ban_ignoreip": '["35.191.0.0/16","209.85.152.0/22","209.85.204.0/22","203.0.113.0/24"]',
    "deny_egress": '["10.20.0.0/24","10.96.0.0/20"]',
    "member_name": "containarium-bastion-1",
    "member_address": "10.20.0.11",
    "bootstrap_member": "containarium-bastion-0",
    "join_secret": "projects/my-gcp-project/secrets/containarium-cluster-join",
    "host_ca_key_secret": "projects/my-gcp-project/secrets/containarium-host-ca-key",
    "backup_key_secret": "projects/my-gcp-project/secrets/containarium-backup-key",
    "lb_address": "203.0.113.80",
}

INTERP = re.compile(r"(?<!\$)\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}")


def render(text, values):
    """The subset of Terraform template syntax the file may use: ${name},
    with $${ and %%{ as escapes; directives (%{...}) and expressions are refused."""
    assert not re.search(r"(?<!%)%\{", text), "template directives are not supported here"
    for m in re.finditer(r"(?<!\$)\$\{([^}]*)\}", text):
        assert INTERP.fullmatch(m.group(0)), f"only plain ${{name}} interpolation: {m.group(0)}"
    missing = set(INTERP.findall(text)) - set(values)
    assert not missing, f"template variables without a value: {missing}"
    out = INTERP.sub(lambda m: values[m.group(1)], text)
    return out.replace("$${", "${").replace("%%{", "%{")


@pytest.fixture(scope="module")
def template():
    return CLOUD_INIT.read_text()


@pytest.fixture(scope="module")
def rendered(template):
    return render(template, TEST_VALUES)


@pytest.fixture(scope="module")
def doc(rendered):
    return yaml.safe_load(rendered)


@pytest.fixture(scope="module")
def files(doc):
    out = {}
    for f in doc["write_files"]:
        content = f["content"]
        if f.get("encoding") == "b64":
            content = base64.b64decode(content).decode()
        out[f["path"]] = content
    return out


def test_terraform_passes_exactly_the_template_variables(template):
    vm = Module(GCE_DIR).resources["google_compute_instance.bastion"]
    call = vm["metadata"]["user-data"]
    m = re.search(r'templatefile\("\$\{path\.module\}/([^"]+)", \{(.*)\}\)', call, re.S)
    assert m, call
    assert (GCE_DIR / m.group(1)).resolve() == CLOUD_INIT
    passed = set(re.findall(r"(?:^|,)\s*([a-z_0-9]+)\s*=", m.group(2)))
    used = set(INTERP.findall(template))
    assert passed == used == set(TEST_VALUES)


def test_schema_is_valid(rendered, tmp_path):
    cloud_init = require_tool("cloud-init")
    path = tmp_path / "user-data.yaml"
    path.write_text(rendered)
    proc = subprocess.run([cloud_init, "schema", "--config-file", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Valid cloud-config" in proc.stdout + proc.stderr


def test_schema_check_catches_errors(rendered, tmp_path):
    """The check is not vacuous: a misspelt key fails it."""
    cloud_init = require_tool("cloud-init")
    path = tmp_path / "bad.yaml"
    path.write_text(rendered.replace("    permissions:", "    permission:", 1))
    proc = subprocess.run([cloud_init, "schema", "--config-file", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode != 0


def test_top_level_keys_are_known(doc):
    # cloud-init 22.4 does not flag unknown top-level keys itself
    assert set(doc) <= {"ssh_pwauth", "disable_root", "write_files", "runcmd"}


def test_embedded_scripts_pass_shellcheck(files, tmp_path):
    shellcheck = require_tool("shellcheck")
    scripts = {p: c for p, c in files.items() if p.endswith(".sh")}
    assert len(scripts) == 4
    for path, content in scripts.items():
        local = tmp_path / path.rsplit("/", 1)[1]
        local.write_text(content)
        proc = subprocess.run([shellcheck, str(local)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{path}:\n{proc.stdout}{proc.stderr}"


def test_startup_script_is_the_repository_one(files):
    assert files["/usr/local/lib/containarium/bastion-startup.sh"] == \
        (SCRIPTS / "bastion-startup.sh").read_text()


def test_package_sha256_is_checked_before_install(files, doc):
    script = files["/usr/local/lib/containarium/install-package.sh"]
    check = script.index('echo "$sha256  $deb" | sha256sum --check')
    install = script.index("apt-get -o DPkg::Lock::Timeout=300 -y -q install")
    assert check < install
    assert script.count("exit 1") >= 2
    [cmd] = doc["runcmd"]
    assert cmd == ["/usr/local/lib/containarium/first-boot.sh",
                   TEST_VALUES["package_url"], TEST_VALUES["package_sha256"]]
    first = files["/usr/local/lib/containarium/first-boot.sh"]
    assert "set -euo pipefail" in first
    order = [first.index(s) for s in ("install-packages.sh", "sshd -t", "install-package.sh",
                                      "systemctl enable containarium-startup.service",
                                      "systemctl start --no-block containarium-startup.service")]
    assert order == sorted(order)
    # The timers are enabled by the startup script once this bastion is a
    # cluster member (tests/deploy/test_startup_script.py), not here.
    assert "containarium-sync-accounts" not in first


def test_install_package_really_refuses_a_wrong_checksum(files, tmp_path):
    """Run install-package.sh (file:// source) against a fake apt-get and
    dpkg-query with a real .deb: a wrong sha256 installs nothing, the right one
    installs it, and a second run finds it installed."""
    script = tmp_path / "install-package.sh"
    script.write_text(files["/usr/local/lib/containarium/install-package.sh"])
    fake = FakeDpkg(tmp_path)
    deb = make_deb(tmp_path, log=tmp_path / "calls.log")
    good = hashlib.sha256(deb.read_bytes()).hexdigest()
    bad = subprocess.run(["bash", str(script), f"file://{deb}", "0" * 64],
                         capture_output=True, text=True, env=fake.env())
    assert bad.returncode != 0 and "does not match" in bad.stderr
    assert fake.apt_calls == [] and not fake.binary.exists()
    ok = subprocess.run(["bash", str(script), f"file://{deb}", good],
                        capture_output=True, text=True, env=fake.env())
    assert ok.returncode == 0, ok.stderr
    [call] = fake.apt_calls
    assert call.startswith("apt-get -o DPkg::Lock::Timeout=300 -y -q install "
                           "--no-install-recommends /"), call
    assert fake.binary.exists()
    again = subprocess.run(["bash", str(script), f"file://{deb}", good],
                           capture_output=True, text=True, env=fake.env())
    assert again.returncode == 0, again.stderr
    assert "already this package" in again.stdout
    assert len(fake.apt_calls) == 1


def test_packages(files):
    pk = files["/usr/local/lib/containarium/install-packages.sh"]
    assert "bookworm-backports" in pk and "debian:12" in pk
    assert "ubuntu:24.04" in pk
    for pkg in ("incus", "zfsutils-linux", "fail2ban"):
        assert re.search(rf"apt_get install .*\b{pkg}\b", pk), pkg


def test_fail2ban_jail_is_host_inits(files):
    """The jail is `containarium host init`'s, from config.toml's [fail2ban]
    table; cloud-init writes no jail of its own (a .local would override it)."""
    import tomllib

    assert not [p for p in files if p.startswith("/etc/fail2ban/")], "no jail besides host init's"
    table = tomllib.loads(files["/etc/containarium/config.toml"])["fail2ban"]
    assert table == {"ignoreip": ["35.191.0.0/16", "209.85.152.0/22", "209.85.204.0/22", "203.0.113.0/24"]}


def test_terraform_exempts_health_checks_and_admin_ranges_from_fail2ban():
    gce = Module(GCE_DIR)
    call = gce.resources["google_compute_instance.bastion"]["metadata"]["user-data"]
    assert "fail2ban_ignoreip = jsonencode(concat(local.health_check_ranges, var.fail2ban_ignore_cidrs))" in call
    assert set(gce.locals["health_check_ranges"]) == {"35.191.0.0/16", "209.85.152.0/22", "209.85.204.0/22"}
    var = gce.variables["fail2ban_ignore_cidrs"]
    assert var["default"] == [] and "cidrhost" in var["validation"][0]["condition"]


def test_sshd_hardening(files):
    conf = files["/etc/ssh/sshd_config.d/10-containarium-hardening.conf"]
    for line in ("PermitRootLogin no", "PasswordAuthentication no",
                 "KbdInteractiveAuthentication no"):
        assert line in conf.splitlines()
    # jump accounts need TCP forwarding (ssh -J): it must not be turned off globally
    assert "AllowTcpForwarding no" not in conf


def test_startup_unit_runs_at_every_boot(files):
    unit = files["/etc/systemd/system/containarium-startup.service"].splitlines()
    for line in ("ExecStart=/usr/local/lib/containarium/bastion-startup.sh",
                 "WantedBy=multi-user.target", "Type=oneshot",
                 "EnvironmentFile=-/etc/default/containarium-startup",
                 # a join token not there yet, no quorum: tried again, for ever;
                 # a refusal (exit 2) is not
                 "Restart=on-failure", "RestartSec=60", "RestartPreventExitStatus=2",
                 "StartLimitIntervalSec=0"):
        assert line in unit, line
    env = files["/etc/default/containarium-startup"].splitlines()
    for line in ("DATA_DISK=/dev/disk/by-id/google-containarium-data",
                 "INCUS_BRIDGE_ADDRESS=10.96.0.1/20",
                 "CLUSTER_MEMBER_NAME=containarium-bastion-1",
                 "CLUSTER_ADDRESS=10.20.0.11",
                 "CLUSTER_BOOTSTRAP=containarium-bastion-0",
                 "CLUSTER_JOIN_SECRET=projects/my-gcp-project/secrets/containarium-cluster-join",
                 "HOST_CA_KEY_SECRET=projects/my-gcp-project/secrets/containarium-host-ca-key",
                 "BACKUP_KEY_SECRET=projects/my-gcp-project/secrets/containarium-backup-key",
                "LB_ADDRESS=203.0.113.80"):
        assert line in env, line


def test_the_lb_hold_runs_at_every_boot_before_the_network_and_sshd(files):
    """Held from before the guest agent makes the balancer's address local and
    before sshd listens; released by the startup script (test_startup_script.py)."""
    unit = files["/etc/systemd/system/containarium-lb-hold.service"].splitlines()
    for line in ("DefaultDependencies=no", "Wants=network-pre.target",
                 "Before=network-pre.target ssh.socket ssh.service google-guest-agent.service "
                 "containarium-startup.service",
                 "After=local-fs.target nftables.service",
                 "Type=oneshot", "RemainAfterExit=yes",
                 "EnvironmentFile=-/etc/default/containarium-startup",
                 "ExecStart=/usr/local/lib/containarium/bastion-startup.sh lb-hold",
                 "WantedBy=sysinit.target"):
        assert line in unit, line
    # the first boot: enabled and started before anything is installed, and
    # once more after nftables is (a no-op when it already runs)
    first = files["/usr/local/lib/containarium/first-boot.sh"]
    order = [first.index(s) for s in (
        "systemctl enable containarium-lb-hold.service",
        "    systemctl start containarium-lb-hold.service",
        '"$lib/install-packages.sh"',
        "\nsystemctl start containarium-lb-hold.service",
        "sshd -t", "systemctl enable containarium-startup.service")]
    assert order == sorted(order)
    pk = files["/usr/local/lib/containarium/install-packages.sh"]
    assert pk.count(" nftables ") == 2 and "fail2ban-server nft;" in pk


def test_join_tokens_timer_runs_the_publisher_every_minute(files):
    service = files["/etc/systemd/system/containarium-join-tokens.service"].splitlines()
    assert "ExecStart=/usr/local/lib/containarium/bastion-startup.sh publish-tokens" in service
    assert "EnvironmentFile=-/etc/default/containarium-startup" in service
    assert "After=containarium-startup.service incus.service" in service
    timer = files["/etc/systemd/system/containarium-join-tokens.timer"].splitlines()
    assert "OnCalendar=minutely" in timer and "WantedBy=timers.target" in timer
    # enabled by the startup script, which knows when this VM is a member
    assert "containarium-join-tokens" not in files["/usr/local/lib/containarium/first-boot.sh"]


def test_config_denies_the_vpc_and_the_other_bastions(files):
    import tomllib

    config = tomllib.loads(files["/etc/containarium/config.toml"])
    assert config["deny-egress"] == ["10.20.0.0/24", "10.96.0.0/20"]
    assert config["network"] == "incusbr0"
    assert set(config) == {"network", "deny-egress", "fail2ban"}, "keys containarium's config.toml knows"


def test_terraform_denies_the_subnet_and_container_ranges():
    """Tenants never reach the VPC subnet: the other members' Incus API and
    proxy ports are there, and the VPC firewall sees a tenant's traffic as
    its member's (masqueraded), so only this ACL tells them apart."""
    vm = Module(GCE_DIR).resources["google_compute_instance.bastion"]
    call = vm["metadata"]["user-data"]
    assert "deny_egress = jsonencode(concat([var.subnet_cidr, var.tenant_subnet_cidr], var.deny_egress_cidrs))" in call


def test_terraform_passes_the_cluster_settings():
    gce = Module(GCE_DIR)
    call = gce.resources["google_compute_instance.bastion"]["metadata"]["user-data"]
    for arg in ("bridge_address = local.bridge_address", "member_name = each.key",
                "member_address = each.value.internal_address",
                "bootstrap_member = local.bootstrap_member",
                "join_secret = google_secret_manager_secret.cluster_join.id",
                "host_ca_key_secret = google_secret_manager_secret.host_ca_key.id",
                "backup_key_secret = google_secret_manager_secret.backup_key.id"):
        assert arg in call, arg


def test_render_refuses_unknown_syntax():
    with pytest.raises(AssertionError):
        render("x: ${upper(package_url)}", TEST_VALUES)
    with pytest.raises(AssertionError):
        render("x: ${nope}", TEST_VALUES)
    assert render("a: $${HOME} ${zpool_name}", TEST_VALUES) == "a: ${HOME} containarium"
