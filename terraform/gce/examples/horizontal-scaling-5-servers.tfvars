# Five Spot bastions with 1 TB data disks, one Incus cluster behind a TCP load
# balancer: about 125-250 users at the lowest cost. Preempted bastions are
# started again by Cloud Scheduler and come back as the same members; users
# whose containers are on the other four are unaffected. (Two of the three
# database voters preempted at once stop changes until one is back; running
# containers and sessions go on: docs/scale-out.md.)

project_id = "my-gcp-project"
region     = "us-central1"
zones      = ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"]

machine_type      = "n2-standard-8"
spot              = true
spot_auto_restart = true
data_disk_size_gb = 1000

bastion_count           = 5
enable_load_balancer    = true
enable_snapshots        = true
snapshot_retention_days = 30

admin_ssh_keys = [
  { user = "admin", key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExample admin@example.com" },
]

allowed_ssh_source_ranges = ["203.0.113.0/24"]

containarium_package_url    = "https://mirror.internal.example.com/containarium/v0.1.0/containarium_0.1.0_amd64.deb"
containarium_package_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
