data "tricenter_inventory" "lab" {
  path = "${path.module}/../../inventory/three-center.yaml"
}

locals {
  # Every worker of the inventory, keyed by name (a map: nothing shifts
  # when one is added or removed).
  workers = { for name, s in data.tricenter_inventory.lab.servers : name => s if !s.etcd && !s.control_plane }
}

resource "tricenter_cluster" "lab" {
  path         = data.tricenter_inventory.lab.path
  node_servers = keys(local.workers)
}

resource "tricenter_node" "worker" {
  for_each = local.workers

  server        = each.key
  path          = tricenter_cluster.lab.path
  cluster_state = tricenter_cluster.lab.state

  timeouts {
    delete = "30m" # draining can take a while
  }
}

output "pod_cidrs" {
  value = { for name, n in tricenter_node.worker : name => n.pod_cidr }
}
