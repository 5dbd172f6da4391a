# Inputs of the GCE deployment. Every variable has a description and, where a
# wrong value would only fail late (at apply time or on the VM), a validation.

variable "project_id" {
  description = "GCP project ID to deploy the bastions into."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project ID: 6-30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "GCP region for the network, the bastions and the load balancer, e.g. us-central1."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must look like us-central1 or europe-west4."
  }
}

variable "zones" {
  description = "Zones (inside region) the bastions are spread over, round-robin; bastion i goes to zones[i % length(zones)]. Empty: <region>-a, -b and -c. Changing it later moves bastions, so set it once."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for z in var.zones : can(regex("^[a-z]+-[a-z]+[0-9]+-[a-z]$", z))])
    error_message = "Each zone must look like us-central1-a."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name (bastions are <prefix>-bastion-<n>)."
  type        = string
  default     = "containarium"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,20}$", var.name_prefix))
    error_message = "name_prefix must be 1-21 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "machine_type" {
  description = "Machine type of each bastion. n2-standard-8 (8 vCPU, 32 GB) fits about 25-50 light development containers."
  type        = string
  default     = "n2-standard-8"

  validation {
    condition     = can(regex("^[a-z0-9]+-[a-z0-9]+(-[0-9]+)?$", var.machine_type))
    error_message = "machine_type must be a GCE machine type such as n2-standard-8 or e2-standard-4."
  }
}

variable "spot" {
  description = "true: Spot VMs (about 60-90% cheaper, preemptible: GCE STOPs them on preemption, data disk kept; see spot_auto_restart). false: regular VMs that live-migrate and restart automatically."
  type        = bool
  default     = false
}

variable "spot_auto_restart" {
  description = "With spot = true, start preempted (stopped) bastions again: a Cloud Scheduler job per bastion calls instances.start every few minutes. GCE itself does not restart Spot VMs."
  type        = bool
  default     = true
}

variable "spot_restart_schedule" {
  description = "Cron schedule (UTC) of the Spot restart job. Starting a running VM is a no-op."
  type        = string
  default     = "*/5 * * * *"

  validation {
    condition     = length(split(" ", var.spot_restart_schedule)) == 5
    error_message = "spot_restart_schedule must be a 5-field cron expression."
  }
}

variable "boot_image" {
  description = "Boot image (project/family or self link). It must run cloud-init: Ubuntu 24.04 (default) or a Debian 12 image that has cloud-init (Debian's genericcloud image imported into GCE, or your own). Air-gapped sites use their own image with the packages preinstalled."
  type        = string
  default     = "ubuntu-os-cloud/ubuntu-2404-lts-amd64"

  validation {
    condition     = length(var.boot_image) > 0
    error_message = "boot_image must not be empty."
  }
}

variable "enable_secure_boot" {
  description = "Shielded VM Secure Boot. Keep it on with Ubuntu (signed ZFS module); turn it off for Debian 12, whose zfs-dkms module is unsigned."
  type        = bool
  default     = true
}

variable "boot_disk_size_gb" {
  description = "Boot disk size in GB. Holds only the OS and packages; everything of value is on the data disk."
  type        = number
  default     = 30

  validation {
    condition     = var.boot_disk_size_gb >= 20 && var.boot_disk_size_gb <= 1000
    error_message = "boot_disk_size_gb must be between 20 and 1000."
  }
}

variable "data_disk_size_gb" {
  description = "Size in GB of each bastion's persistent data disk (ZFS pool with every container and the Incus state). Can be grown later, never shrunk."
  type        = number
  default     = 500

  validation {
    condition     = var.data_disk_size_gb >= 50 && var.data_disk_size_gb <= 65536 && floor(var.data_disk_size_gb) == var.data_disk_size_gb
    error_message = "data_disk_size_gb must be a whole number between 50 and 65536."
  }
}

variable "data_disk_type" {
  description = "Persistent disk type of the data disks."
  type        = string
  default     = "pd-balanced"

  validation {
    condition     = contains(["pd-standard", "pd-balanced", "pd-ssd"], var.data_disk_type)
    error_message = "data_disk_type must be pd-standard, pd-balanced or pd-ssd."
  }
}

variable "admin_ssh_keys" {
  description = "Administrators' SSH public keys, installed through instance metadata (sudo-capable accounts created by the guest agent). Team members do not go here: they get jump accounts from containarium. May be empty only with os_login = true."
  type = list(object({
    user = string
    key  = string
  }))
  default = []

  validation {
    condition = alltrue([for k in var.admin_ssh_keys :
      can(regex("^[a-z_][a-z0-9_-]{0,31}$", k.user)) &&
    can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh.com|sk-ecdsa-sha2-nistp256@openssh.com) [A-Za-z0-9+/=]+( .*)?$", k.key))])
    error_message = "Each admin_ssh_keys entry needs a Linux user name and an OpenSSH public key line (ssh-ed25519 AAAA... comment)."
  }
}

variable "os_login" {
  description = "Administrators log in with OS Login (IAM roles/compute.osAdminLogin) instead of admin_ssh_keys. false sets enable-oslogin=FALSE on the bastions so metadata keys work even where the project enables OS Login. Jump accounts are local users and work either way."
  type        = bool
  default     = false
}

variable "allowed_ssh_source_ranges" {
  description = "CIDR ranges allowed to reach SSH (port 22) on the bastions and the load balancer, e.g. your office or VPN egress. There is no default, and 0.0.0.0/0 is refused."
  type        = list(string)

  validation {
    condition     = length(var.allowed_ssh_source_ranges) > 0
    error_message = "allowed_ssh_source_ranges must list at least one CIDR range."
  }

  validation {
    condition     = alltrue([for r in var.allowed_ssh_source_ranges : can(cidrhost(r, 0))])
    error_message = "Each allowed_ssh_source_ranges entry must be a CIDR range such as 203.0.113.0/24."
  }

  validation {
    condition     = !anytrue([for r in var.allowed_ssh_source_ranges : endswith(r, "/0")])
    error_message = "SSH must not be open to the whole Internet (0.0.0.0/0 or ::/0): list your office or VPN ranges."
  }
}

variable "bastion_count" {
  description = "Number of bastions, all members of one Incus cluster (each with its own data disk and ZFS pool; any bastion serves any user). 1: a single host, no high availability. 2: no quorum for the cluster database, losing either member stops all changes. 3 or more survive the loss of one member. Adding members later is fine; removing one needs its containers moved and `incus cluster remove` first (terraform/gce/README.md)."
  type        = number
  default     = 1

  validation {
    condition     = var.bastion_count >= 1 && var.bastion_count <= 16 && floor(var.bastion_count) == var.bastion_count
    error_message = "bastion_count must be a whole number from 1 to 16 (beyond that, run several clusters: docs/scale-out.md)."
  }
}

variable "enable_load_balancer" {
  description = "Put a regional TCP (passthrough) load balancer on port 22 in front of the bastions, with a health check. Every bastion serves every user, so users' ssh configs name the balancer."
  type        = bool
  default     = false
}

variable "enable_snapshots" {
  description = "Take daily snapshots of every data disk, kept for snapshot_retention_days."
  type        = bool
  default     = true
}

variable "snapshot_retention_days" {
  description = "How many days the daily data disk snapshots are kept."
  type        = number
  default     = 30

  validation {
    condition     = var.snapshot_retention_days >= 1 && var.snapshot_retention_days <= 365
    error_message = "snapshot_retention_days must be between 1 and 365."
  }
}

variable "snapshot_start_time" {
  description = "UTC hour at which the daily snapshot starts (HH:00)."
  type        = string
  default     = "03:00"

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):00$", var.snapshot_start_time))
    error_message = "snapshot_start_time must be a whole hour in UTC, e.g. 03:00."
  }
}

variable "containarium_package_url" {
  description = "Where each bastion downloads the containarium Debian package (containarium_VERSION_amd64.deb, built by scripts/package.sh): https:// (or http:// on an internal mirror) URL, or gs://bucket/object (the bastions get read access to that object's bucket). Air-gapped sites point this at their own mirror; file:///path uses a package already in the boot image."
  type        = string

  validation {
    condition     = can(regex("^(https?://|gs://[a-z0-9][a-z0-9._-]{1,220}/|file:///)[^ \"'\\\\]+$", var.containarium_package_url))
    error_message = "containarium_package_url must be an http(s)://, gs://bucket/object or file:/// URL."
  }
}

variable "containarium_package_sha256" {
  description = "SHA-256 of the containarium package (64 hex digits, sha256sum of the .deb). cloud-init refuses to install a package that does not match."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.containarium_package_sha256))
    error_message = "containarium_package_sha256 must be 64 lowercase hex digits (sha256sum output)."
  }
}

variable "subnet_cidr" {
  description = "Primary range of the bastion subnet."
  type        = string
  default     = "10.20.0.0/24"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0))
    error_message = "subnet_cidr must be a CIDR range."
  }
}

variable "tenant_subnet_cidr" {
  description = "The tenant subnet of the whole cluster: every member's Incus bridge has it (gateway .1, NAT as before) and containarium gives each container an address in it, unique cluster-wide. A container is reached through an Incus proxy device on its member at port 10000 + its offset in this subnet, so it is a /17 to /24 (at most 32768 containers; the default /20: 4093). Must not overlap subnet_cidr."
  type        = string
  default     = "10.96.0.0/20"

  validation {
    condition     = can(regex("^[0-9.]+/(1[7-9]|2[0-4])$", var.tenant_subnet_cidr)) && can(cidrhost(var.tenant_subnet_cidr, 0))
    error_message = "tenant_subnet_cidr must be an IPv4 range from /17 to /24 (port 10000 + offset must stay below 65536)."
  }
}

variable "deny_egress_cidrs" {
  description = "Further ranges tenant containers may never reach (internal services, peered VPCs). The bastion subnet (so the other members, their Incus API and proxy ports) and tenant_subnet_cidr are always denied."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.deny_egress_cidrs : can(cidrhost(c, 0)) && !strcontains(c, ":")])
    error_message = "deny_egress_cidrs must be IPv4 CIDR ranges."
  }
}

variable "fail2ban_ignore_cidrs" {
  description = "Admin ranges (office, VPN egress) that fail2ban never bans, on top of the GCE health-check ranges, which are always exempt (else the bastions ban their own load balancer). Loopback is not exempt unless listed."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.fail2ban_ignore_cidrs : can(cidrhost(c, 0))])
    error_message = "Each fail2ban_ignore_cidrs entry must be a CIDR range such as 203.0.113.0/24."
  }
}

variable "ssh_host_names" {
  description = "DNS names users' ssh configs may use for the bastions (e.g. the load balancer's name, ssh.example.com). They go into every bastion's host certificate and into the @cert-authority line; the first one is the jump host the export hint uses."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for n in var.ssh_host_names : can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$", n))])
    error_message = "Each ssh_host_names entry must be a lowercase DNS name such as ssh.example.com."
  }
}

variable "host_ca_key_ids" {
  description = "Names of the host CA keys Terraform generates (ed25519). The first signs the bastions' host keys; all are trusted in exports. Rotation: [\"ca-1\"] -> [\"ca-1\", \"ca-2\"] (re-export users) -> [\"ca-2\", \"ca-1\"] (bastions re-sign at their next start) -> [\"ca-2\"]; see docs/scale-out.md."
  type        = list(string)
  default     = ["ca-1"]

  validation {
    condition     = length(var.host_ca_key_ids) >= 1 && length(var.host_ca_key_ids) <= 2 && length(distinct(var.host_ca_key_ids)) == length(var.host_ca_key_ids)
    error_message = "host_ca_key_ids must name one or two distinct keys."
  }

  validation {
    condition     = alltrue([for id in var.host_ca_key_ids : can(regex("^[a-z0-9][a-z0-9-]{0,30}$", id))])
    error_message = "Each host_ca_key_ids entry must be 1-31 lowercase letters, digits or hyphens."
  }
}

variable "labels" {
  description = "Extra labels put on every resource that takes labels."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Protect the bastion instances against deletion (terraform destroy then fails until it is turned off)."
  type        = bool
  default     = false
}

variable "disk_kms_key_self_link" {
  description = "Optional Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) to encrypt the boot and data disks with (CMEK). null: Google-managed encryption. The Compute Engine service agent needs roles/cloudkms.cryptoKeyEncrypterDecrypter on the key."
  type        = string
  default     = null

  validation {
    condition     = var.disk_kms_key_self_link == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.disk_kms_key_self_link))
    error_message = "disk_kms_key_self_link must be projects/P/locations/L/keyRings/R/cryptoKeys/K, or null."
  }
}
