# The bastions' own identity: no project roles beyond writing logs and metrics;
# on single resources: read access to the package's bucket when the package
# comes from one, the join state (read, add and destroy versions), the host
# CA key (read) and the backup key (read). Every bastion is an Incus cluster member, root over every
# container through the shared database, so they share one identity.
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

resource "google_secret_manager_secret_iam_member" "bastion_join_reader" {
  secret_id = google_secret_manager_secret.cluster_join.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.bastion.email}"
}

# add a version, destroy the one before it
resource "google_secret_manager_secret_iam_member" "bastion_join_writer" {
  secret_id = google_secret_manager_secret.cluster_join.id
  role      = "roles/secretmanager.secretVersionManager"
  member    = "serviceAccount:${google_service_account.bastion.email}"
}

resource "google_secret_manager_secret_iam_member" "bastion_host_ca_reader" {
  secret_id = google_secret_manager_secret.host_ca_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.bastion.email}"
}

resource "google_secret_manager_secret_iam_member" "bastion_backup_key_reader" {
  secret_id = google_secret_manager_secret.backup_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.bastion.email}"
}
