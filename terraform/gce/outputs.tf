output "bastion_ips" {
  description = "Public IP of each bastion, by name. Users jump through the bastion that holds their container."
  value       = { for name, addr in google_compute_address.bastion : name => addr.address }
}

output "bastion_zones" {
  description = "Zone of each bastion, by name."
  value       = { for name, vm in google_compute_instance.bastion : name => vm.zone }
}

output "bastion_container_subnets" {
  description = "Incus bridge address of each bastion (its containers get addresses in that /20)."
  value       = { for name, b in local.bastions : name => b.bridge_address }
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

output "containarium_export_hint" {
  description = "What to run next: give each team member their SSH config."
  value = join("\n", concat(
    ["Next steps (as an admin from admin_ssh_keys):"],
    [for name, addr in google_compute_address.bastion :
      "  ${name}: ssh ${local.admin_user}@${addr.address} sudo containarium export <user> --jump-ip ${addr.address}   # prints <user>'s SSH config (ProxyJump via this bastion)"
    ],
    var.enable_load_balancer ? ["  Load balancer: ${google_compute_address.lb[0].address}:22 (client-IP affinity; a user's container lives on one bastion, so prefer that bastion's own address in ProxyJump)."] : [],
  ))
}
