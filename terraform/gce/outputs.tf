output "bastion_ips" {
  description = "Public IP of each bastion, by name. Any bastion serves any user; users' ssh configs name the load balancer (or ssh_host_names) instead when there is one."
  value       = { for name, addr in google_compute_address.bastion : name => addr.address }
}

output "bastion_internal_ips" {
  description = "Internal address of each bastion: its Incus cluster address (port 8443) and where its containers' proxy devices listen."
  value       = { for name, addr in google_compute_address.bastion_internal : name => addr.address }
}

output "bastion_zones" {
  description = "Zone of each bastion, by name."
  value       = { for name, vm in google_compute_instance.bastion : name => vm.zone }
}

output "cluster_bootstrap_member" {
  description = "The bastion that created the Incus cluster (it also runs the reap timer)."
  value       = local.bootstrap_member
}

output "tenant_subnet" {
  description = "The tenant bridge's address on every member (containers get addresses in that subnet, unique cluster-wide), and the proxy port range the bastions reach members on."
  value       = { bridge_address = local.bridge_address, proxy_ports = "${local.proxy_port_first}-${local.proxy_port_last}" }
}

output "data_disks" {
  description = "Persistent data disk of each bastion (kept when the VM is deleted)."
  value       = { for name, disk in google_compute_disk.data : name => disk.self_link }
}

output "load_balancer_ip" {
  description = "Address of the SSH load balancer (null when enable_load_balancer = false)."
  value       = var.enable_load_balancer ? google_compute_address.lb[0].address : null
}

output "snapshot_policy" {
  description = "Daily snapshot policy of the data disks (null when enable_snapshots = false)."
  value       = var.enable_snapshots ? google_compute_resource_policy.daily_snapshots[0].self_link : null
}

output "host_ca_public_keys" {
  description = "The host CA keys users' ssh configs trust (the first signs the bastions' host keys). The bastions write the same to /etc/containarium/host-ca.pub."
  value       = local.host_ca_public_keys
}

output "ssh_known_hosts" {
  description = "known_hosts lines that trust every bastion, under any name users' ssh configs may use (what containarium export --host-ca writes)."
  value       = join("\n", [for key in local.host_ca_public_keys : "@cert-authority ${join(",", local.jump_host_names)} ${key}"])
}

output "containarium_export_hint" {
  description = "What to run next: give each team member their SSH config."
  value = join("\n", [
    "Next steps (as an admin from admin_ssh_keys), on any bastion:",
    "  ssh ${local.admin_user}@${google_compute_address.bastion[local.bootstrap_member].address} sudo containarium export <user> --jump-ip ${local.jump_host} --host-ca /etc/containarium/host-ca.pub",
    "  prints <user>'s SSH config: ProxyJump via ${local.jump_host}, which reaches their container from every bastion, and @cert-authority for the bastions' host CA.",
  ])
}
