resource "google_compute_network" "main" {
  name                    = "${var.name_prefix}-vpc"
  auto_create_subnetworks = false
}

resource "google_compute_subnetwork" "main" {
  name                     = "${var.name_prefix}-subnet"
  region                   = var.region
  network                  = google_compute_network.main.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# SSH only from the allowed ranges (no 0.0.0.0/0: see var.allowed_ssh_source_ranges).
# The passthrough load balancer keeps client addresses, so this rule covers it too.
resource "google_compute_firewall" "ssh" {
  name          = "${var.name_prefix}-allow-ssh"
  network       = google_compute_network.main.id
  direction     = "INGRESS"
  priority      = 1000
  source_ranges = var.allowed_ssh_source_ranges
  target_tags   = [local.bastion_tag]

  allow {
    protocol = "tcp"
    ports    = ["22"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "health_checks" {
  count = var.enable_load_balancer ? 1 : 0

  name          = "${var.name_prefix}-allow-lb-health-checks"
  network       = google_compute_network.main.id
  direction     = "INGRESS"
  priority      = 1000
  source_ranges = local.health_check_ranges
  target_tags   = [local.bastion_tag]

  allow {
    protocol = "tcp"
    ports    = ["22"]
  }

  log_config {
    metadata = "EXCLUDE_ALL_METADATA"
  }
}

# Cluster traffic: the Incus API and its database (one port) between members
# only. The source and target are the bastions' service account, which only
# an admin can give a VM; a network tag anyone who may edit an instance can set.
resource "google_compute_firewall" "incus_cluster" {
  name                    = "${var.name_prefix}-allow-incus-cluster"
  network                 = google_compute_network.main.id
  direction               = "INGRESS"
  priority                = 1000
  source_service_accounts = [google_service_account.bastion.email]
  target_service_accounts = [google_service_account.bastion.email]

  allow {
    protocol = "tcp"
    ports    = [tostring(local.incus_https_port)]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# A bastion's sshd forwards a jump session to the member that runs the
# container: MEMBER_ADDRESS:PORT, an Incus proxy device (PORT = 10000 + the
# container's offset in the tenant subnet). From the bastions only. Tenants'
# traffic leaves a member masqueraded as the member, so this rule cannot tell
# them apart: the tenant ACL and deny-egress (the bastion subnet) stop it.
resource "google_compute_firewall" "tenant_proxies" {
  name                    = "${var.name_prefix}-allow-tenant-proxies"
  network                 = google_compute_network.main.id
  direction               = "INGRESS"
  priority                = 1000
  source_service_accounts = [google_service_account.bastion.email]
  target_service_accounts = [google_service_account.bastion.email]

  allow {
    protocol = "tcp"
    ports    = ["${local.proxy_port_first}-${local.proxy_port_last}"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# Fixed internal address per bastion: its Incus cluster address and where its
# proxy devices listen. A recreated VM gets the same one, so it is the same member.
resource "google_compute_address" "bastion_internal" {
  for_each = local.bastions

  name         = "${each.key}-internal-ip"
  region       = var.region
  subnetwork   = google_compute_subnetwork.main.id
  address_type = "INTERNAL"
  address      = each.value.internal_address
  labels       = local.labels
}

# Stable public address per bastion (the load balancer's is in lb.tf).
resource "google_compute_address" "bastion" {
  for_each = local.bastions

  name         = "${each.key}-ip"
  region       = var.region
  address_type = "EXTERNAL"
  labels       = local.labels
}
