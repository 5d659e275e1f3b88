# The whole cluster of one inventory: PKI, etcd across the three centers,
# BGP agents, control plane, node agents and add-ons, then the gates.
resource "tricenter_cluster" "lab" {
  path = "${path.module}/../../inventory/three-center.yaml"

  # Workers joined one by one by tricenter_node (below, same names).
  node_servers = ["dc1-r01-s02", "dc2-r01-s02"]

  # Optional: keep the CAs and keys in this directory (0700) and only their
  # fingerprints in the Terraform state. Back the directory up.
  # pki_dir = "/var/lib/tricenter/three-center/pki"

  timeouts {
    create = "90m"
    update = "90m"
  }
}

# One tricenter_node per worker, keyed by server name: adding or removing
# one never shifts another, and its apply touches only that server.
resource "tricenter_node" "worker" {
  for_each = toset(["dc1-r01-s02", "dc2-r01-s02"])

  server        = each.key
  path          = tricenter_cluster.lab.path
  cluster_state = tricenter_cluster.lab.state
}

output "api_server_url" {
  value = tricenter_cluster.lab.api_server_url
}

output "etcd_members" {
  value = tricenter_cluster.lab.etcd_members # server => center
}

# The admin kubeconfig never goes to the state: open it as an ephemeral
# resource (Terraform 1.10+) where a provider or a write-only argument
# needs it.
ephemeral "tricenter_kubeconfig" "admin" {
  path          = tricenter_cluster.lab.path
  cluster_state = tricenter_cluster.lab.state
}
