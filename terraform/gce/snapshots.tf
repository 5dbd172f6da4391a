# Daily snapshots of every data disk, kept var.snapshot_retention_days (30 by
# default). Snapshots outlive a deleted disk, so they are the way back.
resource "google_compute_resource_policy" "daily_snapshots" {
  count = var.enable_snapshots ? 1 : 0

  name   = "${var.name_prefix}-data-daily"
  region = var.region

  snapshot_schedule_policy {
    schedule {
      daily_schedule {
        days_in_cycle = 1
        start_time    = var.snapshot_start_time
      }
    }

    retention_policy {
      max_retention_days    = var.snapshot_retention_days
      on_source_disk_delete = "KEEP_AUTO_SNAPSHOTS"
    }

    snapshot_properties {
      labels            = local.labels
      storage_locations = [var.region]
    }
  }
}

resource "google_compute_disk_resource_policy_attachment" "data_daily" {
  for_each = var.enable_snapshots ? local.bastions : {}

  name = google_compute_resource_policy.daily_snapshots[0].name
  disk = google_compute_disk.data[each.key].name
  zone = each.value.zone
}
