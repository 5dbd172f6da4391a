# Three regular (non-Spot) bastions, one per zone of us-central1, as one Incus
# cluster behind a TCP load balancer on port 22: about 75-150 users, any of
# whom logs in through any bastion. Three members keep the cluster database
# working when one is lost. Each bastion has its own data disk and daily
# snapshots.

project_id = "my-gcp-project"
region     = "us-central1"
zones      = ["us-central1-a", "us-central1-b", "us-central1-c"]

machine_type      = "n2-standard-8"
spot              = false
data_disk_size_gb = 500

bastion_count        = 3
enable_load_balancer = true
enable_snapshots     = true

admin_ssh_keys = [
  { user = "admin", key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExample admin@example.com" },
  { user = "oncall", key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOncallOncallOncallOncallOncallOncallOnca oncall@example.com" },
]

allowed_ssh_source_ranges = ["203.0.113.0/24", "198.51.100.0/24"]

# Air-gapped or private setups: a bucket object in your own project.
containarium_package_url    = "gs://my-gcp-project-artifacts/containarium/v0.1.0/containarium_0.1.0_amd64.deb"
containarium_package_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
