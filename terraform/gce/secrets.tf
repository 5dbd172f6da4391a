# The three secrets the bastions share, each readable only by the bastions'
# service account (iam.tf):
#
# - the join state: written by the cluster's database leader (one line per
#   member, one join token per expected member that is not in the cluster
#   yet), read by a new member until it finds its token. Terraform creates
#   the secret only; its versions are the bastions' (the leader destroys the
#   version before the one it adds).
# - the host CA's private key, which signs each bastion's host key at
#   provisioning. It is in Terraform state too (like every tls_private_key):
#   keep the state where only admins can read it. Why a bastion may hold it
#   for a moment, and how to rotate it: docs/scale-out.md.
# - the backup key: 32 random bytes, the same on every bastion, under which
#   `containarium backup` authenticates what it writes and `restore` checks it.
#   Stored base64 (one line, 44 characters); the startup script decodes it into
#   /etc/containarium/backup.key when that file is missing. In Terraform state
#   too. Rotating it, and what that means for old backups: docs/scale-out.md.

resource "google_project_service" "secretmanager" {
  service            = "secretmanager.googleapis.com"
  disable_on_destroy = false
}

# Google-managed encryption at rest; who may read is IAM's business (iam.tf).
resource "google_secret_manager_secret" "cluster_join" {
  secret_id = "${var.name_prefix}-cluster-join"
  labels    = local.labels

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.secretmanager]
}

resource "tls_private_key" "host_ca" {
  for_each  = toset(var.host_ca_key_ids)
  algorithm = "ED25519"
}

resource "google_secret_manager_secret" "host_ca_key" {
  secret_id = "${var.name_prefix}-host-ca-key"
  labels    = local.labels

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.secretmanager]
}

# The signing key only: the first of host_ca_key_ids. Changing it replaces this
# version, and the old one is destroyed.
resource "google_secret_manager_secret_version" "host_ca_key" {
  secret      = google_secret_manager_secret.host_ca_key.id
  secret_data = tls_private_key.host_ca[var.host_ca_key_ids[0]].private_key_openssh
}

# A new key only with `terraform apply -replace=random_bytes.backup_key`: every
# backup written before can then be restored only with the old key
# (docs/scale-out.md). An existing cluster's key is brought in with
# `terraform import random_bytes.backup_key <its base64>` (terraform/gce/README.md).
resource "random_bytes" "backup_key" {
  length = 32
}

resource "google_secret_manager_secret" "backup_key" {
  secret_id = "${var.name_prefix}-backup-key"
  labels    = local.labels

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.secretmanager]
}

# Base64 of the 32 bytes (standard alphabet, padded): text, as the other
# secrets, so it can be read and written with gcloud without a binary file.
resource "google_secret_manager_secret_version" "backup_key" {
  secret      = google_secret_manager_secret.backup_key.id
  secret_data = random_bytes.backup_key.base64
}
