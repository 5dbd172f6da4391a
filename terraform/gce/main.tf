# Containarium bastions on Google Compute Engine: every bastion is a member of
# one Incus cluster (docs/scale-out.md), so any bastion serves any user.
#
# Layout: network.tf (VPC, subnet, addresses, firewall), iam.tf (service
# accounts, who may read which secret), secrets.tf (the join state, the host
# CA and the backup key), instances.tf (data disks and bastions), lb.tf (optional TCP load
# balancer), snapshots.tf (daily data disk snapshots), spot_restart.tf
# (restarting preempted Spot VMs), outputs.tf. On the VM,
# cloud-init/bastion.yaml and scripts/bastion-startup.sh need the data disk's
# path, the member's name and address, three Secret Manager secrets and the
# instance metadata containarium-members, -host-ca and -host-principals.

locals {
  zones = length(var.zones) > 0 ? var.zones : ["${var.region}-a", "${var.region}-b", "${var.region}-c"]

  labels = merge({ app = "containarium", managed-by = "terraform" }, var.labels)

  # Network tag that the firewall rules target.
  bastion_tag = "${var.name_prefix}-bastion"

  # device_name of the data disk: the VM sees it as /dev/disk/by-id/google-<name>.
  data_disk_device_name = "containarium-data"
  zpool_name            = "containarium"

  # Source ranges of Google's health checks for (passthrough) network load balancers.
  health_check_ranges = ["35.191.0.0/16", "209.85.152.0/22", "209.85.204.0/22"]

  package_in_gcs = startswith(var.containarium_package_url, "gs://")
  package_bucket = local.package_in_gcs ? split("/", trimprefix(var.containarium_package_url, "gs://"))[0] : ""

  # Secret Manager accepts only the cloud-platform scope
  # (https://cloud.google.com/secret-manager/docs/accessing-the-api), so the
  # scope no longer narrows anything: the service account's IAM does. It holds
  # log and metric writing on the project and, on single resources only, the
  # three secrets and the package's bucket (iam.tf; a test keeps it so).
  bastion_scopes = ["https://www.googleapis.com/auth/cloud-platform"]

  # One tenant subnet for the whole cluster: every member's bridge has the same
  # gateway address and there is no path between them; a container is reached
  # through an Incus proxy device on its member, port 10000 + its offset in the
  # subnet (unique cluster-wide).
  tenant_prefix    = tonumber(split("/", var.tenant_subnet_cidr)[1])
  bridge_address   = format("%s/%d", cidrhost(var.tenant_subnet_cidr, 1), local.tenant_prefix)
  proxy_port_first = 10000
  proxy_port_last  = 10000 + pow(2, 32 - local.tenant_prefix) - 1
  incus_https_port = 8443
  bootstrap_member = format("%s-bastion-0", var.name_prefix)

  bastions = {
    for i in range(var.bastion_count) : format("%s-bastion-%d", var.name_prefix, i) => {
      index = i
      zone  = local.zones[i % length(local.zones)]
      # fixed, so that a recreated VM is the same cluster member at the same address
      internal_address = cidrhost(var.subnet_cidr, 10 + i)
    }
  }

  # Host certificates: the first key of host_ca_key_ids signs, every one listed
  # is trusted (both during a rotation).
  host_ca_public_keys = [for id in var.host_ca_key_ids : "${trimspace(tls_private_key.host_ca[id].public_key_openssh)} ${var.name_prefix}-host-${id}"]
  lb_addresses        = var.enable_load_balancer ? [google_compute_address.lb[0].address] : []
  # what users' ssh configs call the bastions: every one is valid for every bastion
  jump_host_names = concat(var.ssh_host_names, local.lb_addresses, [for k, a in google_compute_address.bastion : a.address])
  host_principals = {
    for name, b in local.bastions : name => concat(
      [name, b.internal_address, google_compute_address.bastion[name].address],
      local.lb_addresses, var.ssh_host_names,
    )
  }
  jump_host = length(var.ssh_host_names) > 0 ? var.ssh_host_names[0] : (
    var.enable_load_balancer ? google_compute_address.lb[0].address : google_compute_address.bastion[local.bootstrap_member].address
  )

  bastion_zones = toset([for b in local.bastions : b.zone])

  admin_user              = length(var.admin_ssh_keys) > 0 ? var.admin_ssh_keys[0].user : "<admin>"
  admin_ssh_keys_metadata = join("\n", [for k in var.admin_ssh_keys : "${k.user}:${k.key}"])

  startup_script = file("${path.module}/../../scripts/bastion-startup.sh")

  spot_restart = var.spot && var.spot_auto_restart
}
