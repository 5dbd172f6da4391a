# One persistent data disk per bastion. It is a resource of its own, attached
# with attached_disk (which the provider always attaches with autoDelete=false;
# the block has no auto_delete argument), so deleting or recreating the VM or its
# boot disk never deletes it. It holds the ZFS pool: containers and Incus state,
# including this member's cluster certificate and database, so a restarted or
# recreated VM comes back as the same cluster member without a new token.
resource "google_compute_disk" "data" {
  #checkov:skip=CKV_GCP_37:CSEK would put a raw key in Terraform state and must be supplied at every start; optional CMEK instead (var.disk_kms_key_self_link)
  for_each = local.bastions

  name                      = "${each.key}-data"
  zone                      = each.value.zone
  type                      = var.data_disk_type
  size                      = var.data_disk_size_gb
  physical_block_size_bytes = 4096
  labels                    = merge(local.labels, { role = "containarium-data" })

  dynamic "disk_encryption_key" {
    for_each = var.disk_kms_key_self_link == null ? [] : [var.disk_kms_key_self_link]
    content {
      kms_key_self_link = disk_encryption_key.value
    }
  }
}

resource "google_compute_instance" "bastion" {
  #checkov:skip=CKV_GCP_34:OS Login is a choice (var.os_login); by default admins use metadata SSH keys (admin_ssh_keys), which needs enable-oslogin=FALSE
  #checkov:skip=CKV_GCP_38:CSEK would put a raw key in Terraform state and must be supplied at every start; optional CMEK instead (var.disk_kms_key_self_link)
  #checkov:skip=CKV_GCP_40:the bastion is the SSH entry point; its public IP is reachable only from allowed_ssh_source_ranges
  for_each = local.bastions

  name         = each.key
  zone         = each.value.zone
  machine_type = var.machine_type
  tags         = [local.bastion_tag]
  labels       = local.labels

  can_ip_forward            = false
  deletion_protection       = var.deletion_protection
  allow_stopping_for_update = true

  boot_disk {
    # The boot disk is disposable: recreate it (or the VM) and the startup
    # script imports the pool and brings the accounts back.
    auto_delete       = true
    kms_key_self_link = var.disk_kms_key_self_link

    initialize_params {
      image  = var.boot_image
      size   = var.boot_disk_size_gb
      type   = "pd-balanced"
      labels = local.labels
    }
  }

  attached_disk {
    source      = google_compute_disk.data[each.key].id
    device_name = local.data_disk_device_name
    mode        = "READ_WRITE"
  }

  network_interface {
    subnetwork = google_compute_subnetwork.main.id
    network_ip = google_compute_address.bastion_internal[each.key].address

    access_config {
      nat_ip = google_compute_address.bastion[each.key].address
    }
  }

  service_account {
    email  = google_service_account.bastion.email
    scopes = local.bastion_scopes
  }

  shielded_instance_config {
    enable_secure_boot          = var.enable_secure_boot
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  # Spot: preemptible, STOPped (not deleted) on preemption; GCE never restarts
  # Spot VMs itself, spot_restart.tf does. Regular: live migration and
  # automatic restart.
  scheduling {
    preemptible                 = var.spot
    provisioning_model          = var.spot ? "SPOT" : "STANDARD"
    automatic_restart           = !var.spot
    on_host_maintenance         = var.spot ? "TERMINATE" : "MIGRATE"
    instance_termination_action = var.spot ? "STOP" : null
  }

  metadata = {
    user-data = templatefile("${path.module}/../../cloud-init/bastion.yaml", {
      package_url        = var.containarium_package_url
      package_sha256     = var.containarium_package_sha256
      startup_script_b64 = base64encode(local.startup_script)
      data_disk_name     = local.data_disk_device_name
      zpool_name         = local.zpool_name
      zpool_force_import = "1"
      bridge_address     = local.bridge_address
      fail2ban_ignoreip  = jsonencode(concat(local.health_check_ranges, var.fail2ban_ignore_cidrs))
      deny_egress        = jsonencode(concat([var.subnet_cidr, var.tenant_subnet_cidr], var.deny_egress_cidrs))
      member_name        = each.key
      member_address     = each.value.internal_address
      bootstrap_member   = local.bootstrap_member
      join_secret        = google_secret_manager_secret.cluster_join.id
      host_ca_key_secret = google_secret_manager_secret.host_ca_key.id
      backup_key_secret  = google_secret_manager_secret.backup_key.id
      lb_address         = join("", local.lb_addresses) # empty without the balancer (lb.tf)
    })
    # Read by the startup script at every boot, so changing them needs no new
    # boot disk: the members the join tokens are issued for, the trusted host
    # CA keys (the first signs) and this bastion's certificate principals.
    containarium-members         = join(",", keys(local.bastions))
    containarium-host-ca         = join("\n", local.host_ca_public_keys)
    containarium-host-principals = join(",", local.host_principals[each.key])
    ssh-keys                     = local.admin_ssh_keys_metadata
    block-project-ssh-keys       = "true"
    enable-oslogin               = var.os_login ? "TRUE" : "FALSE"
    disable-legacy-endpoints     = "true"
    serial-port-enable           = "false"
  }

  lifecycle {
    precondition {
      condition     = var.os_login || length(var.admin_ssh_keys) > 0
      error_message = "Set admin_ssh_keys (or os_login = true), or nobody can log in to run containarium."
    }
  }

  depends_on = [
    google_project_iam_member.bastion_log_writer,
    google_storage_bucket_iam_member.bastion_binary_reader,
    google_secret_manager_secret_iam_member.bastion_join_reader,
    google_secret_manager_secret_iam_member.bastion_join_writer,
    google_secret_manager_secret_iam_member.bastion_host_ca_reader,
    google_secret_manager_secret_version.host_ca_key,
    google_secret_manager_secret_iam_member.bastion_backup_key_reader,
    google_secret_manager_secret_version.backup_key,
  ]
}
