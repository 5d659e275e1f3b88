# A Kubernetes cluster on the tricenter lab, from powered-off servers:
# every server is powered on through its BMC (tricenter_server; a VM with
# boot device pxe boots from its NIC), then etcd
# across the three centers, the BGP agents, the control plane behind the
# BGP-announced API VIP, the node agents and the add-ons are installed
# through each center's jump host (tricenter_cluster), and the workers are
# joined one by one (tricenter_node).
#
# As root, from the repository (make demo does all of this):
#
#   make build artifacts
#   bin/tricenter-lab up -f examples/lab/lab.yaml    # writes .cache/lab/lab/terraform.tfvars
#   cat > dev.tfrc <<TFRC
#   provider_installation {
#     dev_overrides { "tricenter/tricenter" = "$PWD/bin" }
#     direct {}
#   }
#   TFRC
#   export TF_CLI_CONFIG_FILE=$PWD/dev.tfrc
#   cd examples/lab
#   terraform apply -var-file=../../.cache/lab/lab/terraform.tfvars
#   # The admin kubeconfig, through the CLI (an ephemeral tricenter_kubeconfig
#   # gives it to other providers without putting it in the state):
#   terraform output -raw engine_state | ../../bin/tricenter state restore -f "$(terraform output -raw inventory_file)" --from - --state-dir "$HOME/.tricenter-lab-state"
#   ../../bin/tricenter kubeconfig -f "$(terraform output -raw inventory_file)" --state-dir "$HOME/.tricenter-lab-state" --output-file admin.conf
#   ../../.cache/artifacts/kubectl-v1.37.2 --kubeconfig admin.conf get nodes -L topology.kubernetes.io/zone,tricenter.io/rack
#   terraform destroy -var-file=../../.cache/lab/lab/terraform.tfvars   # resets the hosts, powers the servers off
#   ../../bin/tricenter-lab down -f ../../examples/lab/lab.yaml

terraform {
  required_version = ">= 1.11"
  required_providers {
    tricenter = {
      source = "tricenter/tricenter"
    }
  }
}

variable "inventory_file" {
  description = "The inventory `tricenter-lab up` wrote (absolute paths inside)."
  type        = string
}

variable "workers" {
  description = "Workers joined one by one with tricenter_node (the rest come with the cluster)."
  type        = set(string)
  default     = []
}

variable "boot_devices" {
  description = "Boot device to set on a server's BMC before powering it on, by server: pxe or disk (the lab serves PXE to its VMs)."
  type        = map(string)
  default     = {}
}

provider "tricenter" {}

data "tricenter_inventory" "lab" {
  path = var.inventory_file
}

# Power every server on through its BMC; destroy powers it off again.
resource "tricenter_server" "lab" {
  for_each = data.tricenter_inventory.lab.servers

  name                 = each.key
  address              = each.value.bmc.address
  port                 = each.value.bmc.port
  user                 = each.value.bmc.user
  password_file        = each.value.bmc.password_file
  cipher_suites        = each.value.bmc.cipher_suites
  boot_device          = lookup(var.boot_devices, each.key, null)
  power_state          = "on"
  power_off_on_destroy = true
}

resource "tricenter_cluster" "lab" {
  path         = var.inventory_file
  node_servers = var.workers
  # Servers the BMCs just powered on are still booting (a VM takes tens
  # of seconds).
  wait_reachable = "5m"

  timeouts {
    create = "60m"
  }

  depends_on = [tricenter_server.lab]
}

resource "tricenter_node" "worker" {
  for_each = var.workers

  server         = each.key
  path           = var.inventory_file
  cluster_state  = tricenter_cluster.lab.state
  wait_reachable = "5m"
}

output "api_server_url" {
  value = tricenter_cluster.lab.api_server_url
}

output "etcd_members" {
  value = tricenter_cluster.lab.etcd_members
}

output "server_serials" {
  description = "FRU serial numbers the BMCs report."
  value       = { for k, s in tricenter_server.lab : k => s.fru_serial }
}

output "inventory_file" {
  value = var.inventory_file
}

# For the CLI on a cluster Terraform manages:
#   terraform output -raw engine_state | tricenter state restore -f INVENTORY --from - --state-dir DIR
output "engine_state" {
  value     = tricenter_cluster.lab.state
  sensitive = true
}
