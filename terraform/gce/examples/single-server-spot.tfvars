# One Spot bastion for a small team (about 25-50 users), the cheapest setup: a
# cluster of one member, no high availability.
# Preemption stops the VM; the data disk stays and a Cloud Scheduler job starts
# it again within minutes. Copy this file, then fill in your own values.

project_id = "my-gcp-project"
region     = "us-central1"

machine_type      = "n2-standard-8"
spot              = true
spot_auto_restart = true
data_disk_size_gb = 500

bastion_count        = 1
enable_load_balancer = false
enable_snapshots     = true

admin_ssh_keys = [
  { user = "admin", key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExample admin@example.com" },
]

# Your office / VPN egress ranges (documentation range shown).
allowed_ssh_source_ranges = ["203.0.113.0/24"]

containarium_package_url    = "https://downloads.example.com/containarium/v0.1.0/containarium_0.1.0_amd64.deb"
containarium_package_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
