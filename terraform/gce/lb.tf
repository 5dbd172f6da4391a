# Optional regional external passthrough TCP load balancer on port 22, the
# address (or ssh_host_names) users' ssh configs name. Client addresses are
# preserved (firewall and fail2ban still see them). No session affinity: every
# bastion has every jump account (sync-accounts, from the cluster-wide state)
# and presents a host certificate of the same CA, and one SSH session is one
# TCP connection, which the balancer keeps on one backend for its life. So any
# bastion will do for every new connection, and a class behind one NAT address
# is spread over all of them instead of landing on one.
#
# Health: the check is a plain TCP connect to port 22, and GCE sends its
# probes, like users' packets, to each bastion with the destination unchanged:
# the balancer's address, which the guest agent makes a local address of the
# VM. So a bastion decides itself whether it passes. Until it is ready (a
# cluster member, `host init` done, a first `sync-accounts` succeeded) it
# answers LB_ADDRESS:22 with a TCP reset (containarium-lb-hold.service, at
# every boot before the network and sshd; the startup script releases it):
# the check fails, no user is sent there, and admins still reach it on its own
# addresses. Three failed probes (30 s) take a bastion out, two good ones
# (20 s) put it back; with every bastion unhealthy GCE spreads connections
# over all of them.
resource "google_compute_address" "lb" {
  count = var.enable_load_balancer ? 1 : 0

  name         = "${var.name_prefix}-ssh-lb-ip"
  region       = var.region
  address_type = "EXTERNAL"
  labels       = local.labels
}

resource "google_compute_region_health_check" "ssh" {
  count = var.enable_load_balancer ? 1 : 0

  name                = "${var.name_prefix}-ssh"
  region              = var.region
  check_interval_sec  = 10
  timeout_sec         = 5
  healthy_threshold   = 2
  unhealthy_threshold = 3

  tcp_health_check {
    port = 22
  }

  log_config {
    enable = true
  }
}

# Unmanaged instance groups, one per zone that holds bastions.
resource "google_compute_instance_group" "bastions" {
  for_each = var.enable_load_balancer ? local.bastion_zones : toset([])

  name      = "${var.name_prefix}-bastions-${each.key}"
  zone      = each.key
  network   = google_compute_network.main.id
  instances = [for k, b in local.bastions : google_compute_instance.bastion[k].self_link if b.zone == each.key]

  named_port {
    name = "ssh"
    port = 22
  }
}

resource "google_compute_region_backend_service" "ssh" {
  count = var.enable_load_balancer ? 1 : 0

  name                            = "${var.name_prefix}-ssh"
  region                          = var.region
  load_balancing_scheme           = "EXTERNAL"
  protocol                        = "TCP"
  session_affinity                = "NONE"
  connection_draining_timeout_sec = 300
  health_checks                   = [google_compute_region_health_check.ssh[0].id]

  dynamic "backend" {
    for_each = google_compute_instance_group.bastions
    content {
      group          = backend.value.id
      balancing_mode = "CONNECTION"
    }
  }

  log_config {
    enable      = true
    sample_rate = 1.0
  }
}

resource "google_compute_forwarding_rule" "ssh" {
  count = var.enable_load_balancer ? 1 : 0

  name                  = "${var.name_prefix}-ssh"
  region                = var.region
  load_balancing_scheme = "EXTERNAL"
  ip_protocol           = "TCP"
  ports                 = ["22"]
  ip_address            = google_compute_address.lb[0].address
  backend_service       = google_compute_region_backend_service.ssh[0].id
  labels                = local.labels
}
