# The bastions' own identity: no project roles beyond writing logs and metrics,
# and read access to the package's bucket when the package comes from one.
resource "google_service_account" "bastion" {
  account_id   = "${var.name_prefix}-bastion"
  display_name = "containarium bastion VMs"
}

resource "google_project_iam_member" "bastion_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.bastion.email}"
}

resource "google_project_iam_member" "bastion_metric_writer" {
  project = var.project_id
  role    = "roles/monitoring.metricWriter"
  member  = "serviceAccount:${google_service_account.bastion.email}"
}

resource "google_storage_bucket_iam_member" "bastion_binary_reader" {
  count = local.package_in_gcs ? 1 : 0

  bucket = local.package_bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.bastion.email}"
}
