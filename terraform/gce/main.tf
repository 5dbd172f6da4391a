# Containarium bastions on Google Compute Engine.
#
# Layout: network.tf (VPC, subnet, firewall), iam.tf (service accounts),
# instances.tf (data disks and bastions), lb.tf (optional TCP load balancer),
# snapshots.tf (daily data disk snapshots), spot_restart.tf (restarting preempted
# Spot VMs), outputs.tf. The VM side is cloud-agnostic: cloud-init/bastion.yaml
# and scripts/bastion-startup.sh only need the data disk's path.

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

  # Least scopes the bastion needs: write logs and metrics; read the package
  # from Cloud Storage only when it comes from a bucket.
  bastion_scopes = concat(
    ["https://www.googleapis.com/auth/logging.write", "https://www.googleapis.com/auth/monitoring.write"],
    local.package_in_gcs ? ["https://www.googleapis.com/auth/devstorage.read_only"] : [],
  )

  # Each bastion gets its own /20 of container_network_cidr for its Incus bridge.
  container_prefix_bits = 20 - tonumber(split("/", var.container_network_cidr)[1])

  bastions = {
    for i in range(var.bastion_count) : format("%s-bastion-%d", var.name_prefix, i) => {
      index          = i
      zone           = local.zones[i % length(local.zones)]
      bridge_address = format("%s/20", cidrhost(cidrsubnet(var.container_network_cidr, local.container_prefix_bits, i), 1))
    }
  }

  bastion_zones = toset([for b in local.bastions : b.zone])

  admin_user              = length(var.admin_ssh_keys) > 0 ? var.admin_ssh_keys[0].user : "<admin>"
  admin_ssh_keys_metadata = join("\n", [for k in var.admin_ssh_keys : "${k.user}:${k.key}"])

  startup_script = file("${path.module}/../../scripts/bastion-startup.sh")

  spot_restart = var.spot && var.spot_auto_restart
}
