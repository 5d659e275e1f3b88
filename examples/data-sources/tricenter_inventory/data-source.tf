# The same inventory file the tricenter CLI reads.
data "tricenter_inventory" "lab" {
  path = "${path.module}/../../inventory/lab.yaml"
}

output "etcd_members" {
  value = [for m in data.tricenter_inventory.lab.etcd.members : "${m.name}@${m.center}"]
}

output "api_vip" {
  value = data.tricenter_inventory.lab.ipam.api_vip
}

# One tricenter_server per server that has a BMC, keyed by server name.
resource "tricenter_server" "node" {
  for_each = { for name, s in data.tricenter_inventory.lab.servers : name => s if s.bmc != null }

  name          = each.key
  address       = each.value.bmc.address
  port          = each.value.bmc.port
  user          = each.value.bmc.user
  password_env  = each.value.bmc.password_env
  password_file = each.value.bmc.password_file
  cipher_suites = each.value.bmc.cipher_suites
  power_state   = "on"
}
