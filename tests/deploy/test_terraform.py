"""Structural checks of terraform/ (Terraform itself is not available in CI)."""
import ipaddress
import re

import hcl2
import pytest

from conftest import GCE_DIR, REPO, TF_DIR
from hcl import Module, load, strings

EXAMPLES = sorted((GCE_DIR / "examples").glob("*.tfvars"))
EXPECTED_EXAMPLES = {"single-server-spot.tfvars", "horizontal-scaling-3-servers.tfvars",
                     "horizontal-scaling-5-servers.tfvars"}


@pytest.fixture(scope="module")
def gce():
    return Module(GCE_DIR)


@pytest.mark.parametrize("path", sorted(TF_DIR.rglob("*.tf")) + EXAMPLES,
                         ids=lambda p: str(p.relative_to(TF_DIR)))
def test_every_file_parses(path):
    with open(path) as f:
        assert hcl2.load(f) is not None


def test_every_variable_used_is_declared(gce):
    used = {name for kind, name in gce.references() if kind == "var"}
    missing = used - set(gce.variables)
    assert not missing, f"used but not declared: {sorted(missing)}"


def test_every_declared_variable_is_used(gce):
    used = {name for kind, name in gce.references() if kind == "var"}
    assert not set(gce.variables) - used


def test_every_local_used_is_declared(gce):
    used = {name for kind, name in gce.references() if kind == "local"}
    assert not used - set(gce.locals), sorted(used - set(gce.locals))


def test_every_resource_referenced_exists(gce):
    refs = gce.resource_references()
    assert not refs - set(gce.resources), sorted(refs - set(gce.resources))


def test_outputs_reference_existing_resources(gce):
    assert gce.outputs
    for name, out in gce.outputs.items():
        assert out.get("description"), f"output {name} has no description"
        refs = gce.resource_references(out["value"])
        vrefs = {n for k, n in gce.references(out["value"]) if k == "var"}
        lrefs = {n for k, n in gce.references(out["value"]) if k == "local"}
        assert refs or vrefs or lrefs, f"output {name} references nothing"
        assert refs <= set(gce.resources), (name, refs - set(gce.resources))
        assert vrefs <= set(gce.variables), (name, vrefs)
        assert lrefs <= set(gce.locals), (name, lrefs)


def test_required_outputs(gce):
    assert {"bastion_ips", "load_balancer_ip", "containarium_export_hint", "host_ca_public_keys",
            "ssh_known_hosts", "bastion_internal_ips"} <= set(gce.outputs)
    hint = " ".join(strings(gce.outputs["containarium_export_hint"]))
    assert "containarium export <user> --jump-ip ${local.jump_host} --host-ca /etc/containarium/host-ca.pub" in hint
    # users go through the balancer (or ssh_host_names): no "avoid the balancer"
    everything = " ".join(strings(gce.outputs)).lower()
    for stale in ("prefer that bastion", "avoid", "holds their container", "client-ip affinity"):
        assert stale not in everything
    jump = " ".join(strings(gce.locals["jump_host"]))
    assert "var.ssh_host_names[0]" in jump and "google_compute_address.lb[0].address" in jump


def test_variables_have_description_and_type(gce):
    for name, var in gce.variables.items():
        assert var.get("description"), f"variable {name} has no description"
        assert "type" in var, f"variable {name} has no type"


@pytest.mark.parametrize("name", [
    "project_id", "region", "machine_type", "data_disk_size_gb", "admin_ssh_keys",
    "allowed_ssh_source_ranges", "bastion_count", "containarium_package_url",
    "containarium_package_sha256",
])
def test_key_variables_are_validated(gce, name):
    assert gce.variables[name].get("validation"), f"variable {name} has no validation"


def test_defaults(gce):
    v = gce.variables
    assert v["machine_type"]["default"] == "n2-standard-8"
    assert "default" not in v["allowed_ssh_source_ranges"], "SSH ranges must be chosen, not defaulted"
    for key in ("spot", "enable_load_balancer", "enable_snapshots", "bastion_count",
                "data_disk_size_gb"):
        assert key in v
    assert v["snapshot_retention_days"]["default"] == 30


def test_ssh_ranges_validation_refuses_the_internet(gce):
    conds = " ".join(strings(gce.variables["allowed_ssh_source_ranges"]["validation"]))
    assert "/0" in conds


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_sets_only_declared_variables(gce, path):
    values = load(path)
    unknown = set(values) - set(gce.variables)
    assert not unknown, f"{path.name} sets undeclared variables {sorted(unknown)}"
    required = {n for n, v in gce.variables.items() if "default" not in v}
    assert required <= set(values), f"{path.name} misses required {sorted(required - set(values))}"
    for cidr in values["allowed_ssh_source_ranges"]:
        net = ipaddress.ip_network(cidr)
        assert net.prefixlen > 0
    assert re.fullmatch(r"[0-9a-f]{64}", values["containarium_package_sha256"])
    assert values.get("machine_type", "n2-standard-8") == "n2-standard-8"


def test_examples_present():
    assert {p.name for p in EXAMPLES} == EXPECTED_EXAMPLES
    counts = {p.name: load(p)["bastion_count"] for p in EXAMPLES}
    assert counts == {"single-server-spot.tfvars": 1, "horizontal-scaling-3-servers.tfvars": 3,
                      "horizontal-scaling-5-servers.tfvars": 5}
    assert load(GCE_DIR / "examples" / "single-server-spot.tfvars")["spot"] is True


def test_instance_hardening(gce):
    vm = gce.resources["google_compute_instance.bastion"]
    md = vm["metadata"]
    assert md["disable-legacy-endpoints"] == "true"
    assert md["block-project-ssh-keys"] == "true"
    # Secret Manager takes only the cloud-platform scope: what the bastions may
    # do is their service account's IAM (the next test)
    assert gce.locals["bastion_scopes"] == ["https://www.googleapis.com/auth/cloud-platform"]
    assert "${local.bastion_scopes}" == vm["service_account"][0]["scopes"]
    assert vm["service_account"][0]["email"] == BASTION_SA_EMAIL
    assert vm["can_ip_forward"] is False


BASTION_SA = "serviceAccount:${google_service_account.bastion.email}"
BASTION_SA_EMAIL = "${google_service_account.bastion.email}"


def test_the_bastions_service_account_holds_only_logs_metrics_and_its_own_resources(gce):
    """With the cloud-platform scope, IAM is the whole limit: on the project
    only log and metric writing; everything else granted on one resource."""
    project = {n: r for n, r in gce.resources.items() if n.startswith("google_project_iam_member.")}
    bastion_project_roles = {r["role"] for r in project.values() if r["member"] == BASTION_SA}
    assert bastion_project_roles == {"roles/logging.logWriter", "roles/monitoring.metricWriter"}
    # no binding or policy resource that could replace a secret's members
    for name in gce.resources:
        assert not re.match(r"google_(project|secret_manager_secret)_iam_(binding|policy)\.", name), name


def test_every_secret_is_readable_only_by_the_bastions(gce):
    secrets = {n for n in gce.resources if n.startswith("google_secret_manager_secret.")}
    assert secrets == {"google_secret_manager_secret.cluster_join",
                       "google_secret_manager_secret.host_ca_key",
                       "google_secret_manager_secret.backup_key"}
    grants = {}
    for name, r in gce.resources.items():
        if name.startswith("google_secret_manager_secret_iam_member."):
            assert r["member"] == BASTION_SA, (name, r["member"])
            grants.setdefault(r["secret_id"], set()).add(r["role"])
    assert grants == {
        # the join state: read, add a version and destroy the one before
        "${google_secret_manager_secret.cluster_join.id}": {
            "roles/secretmanager.secretAccessor", "roles/secretmanager.secretVersionManager"},
        # the host CA key: read only
        "${google_secret_manager_secret.host_ca_key.id}": {"roles/secretmanager.secretAccessor"},
        # the backup key: read only
        "${google_secret_manager_secret.backup_key.id}": {"roles/secretmanager.secretAccessor"},
    }
    vm = gce.resources["google_compute_instance.bastion"]
    # no bastion boots before it may read them
    for grant in ("bastion_join_reader", "bastion_join_writer", "bastion_host_ca_reader",
                  "bastion_backup_key_reader"):
        assert f"${{google_secret_manager_secret_iam_member.{grant}}}" in vm["depends_on"]


def test_the_host_ca_is_generated_and_only_its_signing_key_is_stored(gce):
    ca = gce.resources["tls_private_key.host_ca"]
    assert ca["algorithm"] == "ED25519"
    assert ca["for_each"] == "${toset(var.host_ca_key_ids)}"
    version = gce.resources["google_secret_manager_secret_version.host_ca_key"]
    assert version["secret_data"] == "${tls_private_key.host_ca[var.host_ca_key_ids[0]].private_key_openssh}"
    assert gce.variables["host_ca_key_ids"]["default"] == ["ca-1"]
    assert "tls" in gce.files["versions.tf"]["terraform"][0]["required_providers"][0]
    md = gce.resources["google_compute_instance.bastion"]["metadata"]
    assert md["containarium-host-ca"] == '${join("\\n", local.host_ca_public_keys)}'
    assert "@cert-authority" in " ".join(strings(gce.outputs["ssh_known_hosts"]))
    assert gce.outputs["host_ca_public_keys"]["value"] == "${local.host_ca_public_keys}"


def test_the_backup_key_is_32_random_bytes_stored_base64(gce):
    """One key for every bastion: 32 bytes from random_bytes, in the secret
    as its base64 (what the startup script decodes and checks), written
    before any bastion boots; secrets stay in the same region as the others."""
    key = gce.resources["random_bytes.backup_key"]
    assert key["length"] == 32
    assert "keepers" not in key, "a new key only when an admin asks for one (-replace)"
    secret = gce.resources["google_secret_manager_secret.backup_key"]
    assert secret["secret_id"] == "${var.name_prefix}-backup-key"
    assert secret["replication"] == gce.resources["google_secret_manager_secret.host_ca_key"]["replication"]
    version = gce.resources["google_secret_manager_secret_version.backup_key"]
    assert version["secret"] == "${google_secret_manager_secret.backup_key.id}"
    assert version["secret_data"] == "${random_bytes.backup_key.base64}"
    assert "is_secret_data_base64" not in version, "the payload is the base64 text itself"
    random = gce.files["versions.tf"]["terraform"][0]["required_providers"][0]["random"]
    assert random["source"] == "hashicorp/random" and random["version"].startswith(">= 3.5")
    vm = gce.resources["google_compute_instance.bastion"]
    assert "${google_secret_manager_secret_version.backup_key}" in vm["depends_on"]
    # the key is in no output and no metadata: only the secret holds it
    for name, out in gce.outputs.items():
        assert "backup_key" not in " ".join(strings(out)), name
    assert "backup_key" not in " ".join(strings(vm["metadata"])).replace(
        "backup_key_secret = google_secret_manager_secret.backup_key.id", "")


def test_what_may_change_is_in_the_metadata_not_the_user_data(gce):
    """cloud-init reads user-data once; the startup script reads these at every boot."""
    md = gce.resources["google_compute_instance.bastion"]["metadata"]
    assert md["containarium-members"] == '${join(",", keys(local.bastions))}'
    assert md["containarium-host-principals"] == '${join(",", local.host_principals[each.key])}'
    principals = " ".join(strings(gce.locals["host_principals"]))
    for part in ("b.internal_address", "google_compute_address.bastion[name].address",
                 "local.lb_addresses", "var.ssh_host_names"):
        assert part in principals, part


def test_members_have_fixed_internal_addresses(gce):
    """A recreated VM must be the same cluster member at the same address."""
    addr = gce.resources["google_compute_address.bastion_internal"]
    assert addr["address_type"] == "INTERNAL"
    assert addr["address"] == "${each.value.internal_address}"
    assert "cidrhost(var.subnet_cidr, 10 + i)" in " ".join(strings(gce.locals["bastions"]))
    nic = gce.resources["google_compute_instance.bastion"]["network_interface"][0]
    assert nic["network_ip"] == "${google_compute_address.bastion_internal[each.key].address}"
    assert gce.locals["bootstrap_member"] == '${format("%s-bastion-0", var.name_prefix)}'


def test_spot_and_regular_scheduling(gce):
    sched = gce.resources["google_compute_instance.bastion"]["scheduling"][0]
    assert sched["preemptible"] == "${var.spot}"
    assert "STOP" in sched["instance_termination_action"]
    assert "SPOT" in sched["provisioning_model"]
    assert sched["automatic_restart"] == "${!var.spot}"
    # GCE cannot restart Spot VMs itself: a scheduler job does
    job = gce.resources["google_cloud_scheduler_job.spot_restart"]
    assert "/start" in job["http_target"][0]["uri"]


def test_data_disk_survives_the_instance(gce):
    vm = gce.resources["google_compute_instance.bastion"]
    assert vm["boot_disk"][0]["auto_delete"] is True
    [att] = vm["attached_disk"]
    assert att["source"] == "${google_compute_disk.data[each.key].id}"
    assert "auto_delete" not in att  # attached disks are never auto-deleted
    assert "google_compute_disk.data" in gce.resources
    assert gce.locals["data_disk_device_name"] == "containarium-data"
    assert att["device_name"] == "${local.data_disk_device_name}"


def test_horizontal_scaling_one_disk_per_bastion(gce):
    assert gce.resources["google_compute_instance.bastion"]["for_each"] == "${local.bastions}"
    assert gce.resources["google_compute_disk.data"]["for_each"] == "${local.bastions}"


def test_load_balancer(gce):
    be = gce.resources["google_compute_region_backend_service.ssh"]
    # any bastion serves any user: no affinity needed (lb.tf says why)
    assert be["session_affinity"] == "NONE"
    assert be["protocol"] == "TCP"
    assert be["health_checks"]
    fr = gce.resources["google_compute_forwarding_rule.ssh"]
    assert fr["ports"] == ["22"]
    hc = gce.resources["google_compute_region_health_check.ssh"]
    assert hc["tcp_health_check"][0]["port"] == 22


def test_the_lb_address_reaches_the_startup_config_only_with_the_balancer(gce):
    """The bastion holds LB_ADDRESS:22 until it is ready (scripts/bastion-startup.sh):
    its startup config gets the balancer's address, and an empty one without it."""
    call = gce.resources["google_compute_instance.bastion"]["metadata"]["user-data"]
    assert 'lb_address = join("", local.lb_addresses)' in call
    assert gce.locals["lb_addresses"] == \
        "${var.enable_load_balancer ? [google_compute_address.lb[0].address] : []}"
    # the address the forwarding rule (users and health checks) goes to
    assert gce.resources["google_compute_address.lb"]["count"] == "${var.enable_load_balancer ? 1 : 0}"
    fr = gce.resources["google_compute_forwarding_rule.ssh"]
    assert fr["ip_address"] == "${google_compute_address.lb[0].address}"
    assert fr["count"] == "${var.enable_load_balancer ? 1 : 0}"
    # what the health check means is said where it is defined
    lb = (GCE_DIR / "lb.tf").read_text()
    assert "containarium-lb-hold.service" in lb and "TCP reset" in lb


def test_firewall(gce):
    ssh = gce.resources["google_compute_firewall.ssh"]
    assert ssh["source_ranges"] == "${var.allowed_ssh_source_ranges}"
    assert ssh["allow"][0]["ports"] == ["22"]
    hc = gce.resources["google_compute_firewall.health_checks"]
    assert hc["source_ranges"] == "${local.health_check_ranges}"
    for r in gce.locals["health_check_ranges"]:
        ipaddress.ip_network(r)


def test_cluster_traffic_and_proxy_ports_are_open_between_bastions_only(gce):
    rules = {n: r for n, r in gce.resources.items() if n.startswith("google_compute_firewall.")}
    cluster = rules["google_compute_firewall.incus_cluster"]
    proxies = rules["google_compute_firewall.tenant_proxies"]
    assert cluster["allow"] == [{"protocol": "tcp", "ports": ["${tostring(local.incus_https_port)}"]}]
    assert gce.locals["incus_https_port"] == 8443
    assert proxies["allow"] == [{"protocol": "tcp",
                                 "ports": ["${local.proxy_port_first}-${local.proxy_port_last}"]}]
    for rule in (cluster, proxies):
        assert rule["direction"] == "INGRESS"
        # from and to the bastions' service account, nothing else
        assert rule["source_service_accounts"] == [BASTION_SA_EMAIL]
        assert rule["target_service_accounts"] == [BASTION_SA_EMAIL]
        assert "source_ranges" not in rule and "source_tags" not in rule
    # no rule from address ranges opens anything but SSH
    for name, rule in rules.items():
        if "source_ranges" in rule:
            assert [a["ports"] for a in rule["allow"]] == [["22"]], name


@pytest.mark.parametrize("cidr,ok", [("10.96.0.0/20", True), ("10.96.0.0/17", True),
                                     ("10.96.0.0/24", True), ("10.96.0.0/16", False),
                                     ("10.96.0.0/25", False), ("10.96.0.0", False)])
def test_tenant_subnet_keeps_proxy_ports_below_65536(gce, cidr, ok):
    [val, *_] = gce.variables["tenant_subnet_cidr"]["validation"]
    pattern = hcl_unescape(re.search(r'regex\("((?:[^"\\]|\\.)*)"', val["condition"]).group(1))
    assert bool(re.search(pattern, cidr)) == ok
    if ok:
        prefix = int(cidr.split("/")[1])
        assert 10000 + 2 ** (32 - prefix) - 1 <= 65535
    assert gce.locals["proxy_port_first"] == 10000
    assert gce.locals["proxy_port_last"] == "${10000 + pow(2, 32 - local.tenant_prefix) - 1}"
    assert gce.variables["tenant_subnet_cidr"]["default"] == "10.96.0.0/20"


def test_member_count_says_what_1_2_and_3_mean(gce):
    var = gce.variables["bastion_count"]
    for words in ("1: a single host", "2: no quorum", "3 or more survive"):
        assert words in var["description"]
    assert "var.bastion_count >= 1" in var["validation"][0]["condition"]


def test_snapshots(gce):
    pol = gce.resources["google_compute_resource_policy.daily_snapshots"]
    sp = pol["snapshot_schedule_policy"][0]
    assert sp["schedule"][0]["daily_schedule"][0]["days_in_cycle"] == 1
    assert sp["retention_policy"][0]["max_retention_days"] == "${var.snapshot_retention_days}"
    att = gce.resources["google_compute_disk_resource_policy_attachment.data_daily"]
    assert "var.enable_snapshots" in att["for_each"]


def test_templatefile_targets_exist(gce):
    for s in gce.all_strings():
        for rel in re.findall(r'(?:templatefile|file)\("\$\{path\.module\}/([^"]+)"', s):
            assert (GCE_DIR / rel).resolve().is_file(), rel


def test_checkov_skips_are_documented():
    """Every inline `checkov:skip` has its reason listed in terraform/README.md."""
    readme = (TF_DIR / "README.md").read_text()
    skips = set()
    for tf in TF_DIR.rglob("*.tf"):
        skips.update(re.findall(r"checkov:skip=(CKV2?_[A-Z]+_\d+)", tf.read_text()))
    for check in skips:
        assert check in readme, f"{check} is skipped but not explained in terraform/README.md"


SIMPLE_REGEX = re.compile(r'^\$\{can\(regex\("((?:[^"\\]|\\.)*)", var\.([a-z_0-9]+)\)\)\}$')


def hcl_unescape(s):
    return re.sub(r'\\(["\\nt])', lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), s)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_values_pass_simple_regex_validations(gce, path):
    """Validations of the form can(regex("...", var.x)), evaluated with Python's re
    (the patterns used here mean the same in RE2)."""
    values = load(path)
    checked = 0
    for name, value in values.items():
        for val in gce.variables[name].get("validation", []):
            m = SIMPLE_REGEX.match(val["condition"])
            if m and m.group(2) == name:
                assert re.search(hcl_unescape(m.group(1)), value), (name, value)
                checked += 1
    assert checked >= 3


def test_package_url_validation_pattern(gce):
    [val] = gce.variables["containarium_package_url"]["validation"]
    pattern = hcl_unescape(SIMPLE_REGEX.match(val["condition"]).group(1))
    for ok in ("https://h.example/c", "http://mirror.internal/c", "gs://bucket/path/c",
               "file:///opt/containarium"):
        assert re.search(pattern, ok), ok
    for bad in ("ftp://h/c", "https://h/a b", 'https://h/"x', "gs://B/c", "/opt/c", "gs://bucket"):
        assert not re.search(pattern, bad), bad
