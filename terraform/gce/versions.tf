terraform {
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.30, < 7.0"
    }
    # the host CA key (tls_private_key, ED25519 needs 4.0)
    tls = {
      source  = "hashicorp/tls"
      version = ">= 4.0, < 5.0"
    }
    # the backup key (random_bytes needs 3.5)
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5, < 4.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
