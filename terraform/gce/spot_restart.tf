# GCE STOPs a preempted Spot VM and never restarts it by itself (Spot VMs cannot
# have automatic_restart). With spot_auto_restart, a Cloud Scheduler job per
# bastion calls instances.start every few minutes; on a running VM that is a
# no-op. Its service account may only start and read these instances.

resource "google_project_service" "cloudscheduler" {
  count = local.spot_restart ? 1 : 0

  service            = "cloudscheduler.googleapis.com"
  disable_on_destroy = false
}

resource "google_service_account" "spot_restarter" {
  count = local.spot_restart ? 1 : 0

  account_id   = "${var.name_prefix}-restarter"
  display_name = "Restarts preempted containarium Spot bastions"
}

resource "google_project_iam_custom_role" "spot_restarter" {
  count = local.spot_restart ? 1 : 0

  role_id     = "${replace(var.name_prefix, "-", "_")}_spot_restarter"
  title       = "containarium Spot bastion restarter"
  description = "Start (and read) the containarium bastion instances."
  permissions = ["compute.instances.get", "compute.instances.start"]
}

# Granted on each bastion instance only, not on the project.
resource "google_compute_instance_iam_member" "spot_restarter" {
  for_each = local.spot_restart ? local.bastions : {}

  zone          = each.value.zone
  instance_name = google_compute_instance.bastion[each.key].name
  role          = google_project_iam_custom_role.spot_restarter[0].id
  member        = "serviceAccount:${google_service_account.spot_restarter[0].email}"
}

resource "google_cloud_scheduler_job" "spot_restart" {
  for_each = local.spot_restart ? local.bastions : {}

  name             = "${each.key}-restart"
  region           = var.region
  description      = "Start ${each.key} again after a Spot preemption"
  schedule         = var.spot_restart_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "60s"

  http_target {
    http_method = "POST"
    uri         = "https://compute.googleapis.com/compute/v1/projects/${var.project_id}/zones/${each.value.zone}/instances/${google_compute_instance.bastion[each.key].name}/start"

    oauth_token {
      service_account_email = google_service_account.spot_restarter[0].email
      scope                 = "https://www.googleapis.com/auth/compute"
    }
  }

  depends_on = [google_project_service.cloudscheduler, google_compute_instance_iam_member.spot_restarter]
}
