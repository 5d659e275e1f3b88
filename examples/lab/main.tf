# The nspawn lab cluster with Terraform: seven systemd-nspawn machines from
# examples/inventory/nspawn-lab.yaml (two sites, three centers, five etcd
# members stacked with the control plane, two workers) become a Kubernetes
# cluster, and kubectl works with the kubeconfig output.
#
# The provider is not on a registry: build it and use a development
# override (see "Using a local build" in docs/index.md):
#
#   make build                      # bin/terraform-provider-tricenter, bin/tricenter-bgp
#   make artifacts                  # .cache/artifacts: Kubernetes, etcd, CoreDNS, pause
#   cat > dev.tfrc <<TFRC
#   provider_installation {
#     dev_overrides { "tricenter/tricenter" = "$PWD/bin" }
#     direct {}
#   }
#   TFRC
#   export TF_CLI_CONFIG_FILE=$PWD/dev.tfrc
#
# Start the lab as root in another shell (it stays in the foreground until
# Ctrl-C; it writes the SSH key and host keys under .cache/nspawn-lab):
#
#   go run ./acceptance/cmd/nspawn-lab -f examples/inventory/nspawn-lab.yaml
#
# The lab command also routes the API VIP (198.19.120.10), the service
# range and the pod range from this machine to the lab's router, which
# learns them from the node agents by BGP. Then, as root:
#
#   cd examples/lab
#   terraform apply                 # no terraform init with dev_overrides
#   terraform output -raw kubeconfig > admin.conf
#   ../../.cache/artifacts/kubectl --kubeconfig admin.conf get nodes
#
# `terraform destroy` resets every machine (node agents, control plane, BGP
# agents, then etcd). The acceptance package's Kubernetes test uses the same
# addresses: do not run both at once (the provider's own acceptance test
# has a lab on other addresses, provider/testdata/acc).

terraform {
  required_version = ">= 1.11"
  required_providers {
    tricenter = {
      source = "tricenter/tricenter"
    }
  }
}

provider "tricenter" {}

locals {
  repo = abspath("${path.module}/../..")
  # The inventory names its key, known_hosts and artifacts relative to the
  # repository: make them absolute so terraform can run from here.
  inventory = replace(file("${local.repo}/examples/inventory/nspawn-lab.yaml"), ".cache/", "${local.repo}/.cache/")
  # Workers joined one by one, keyed by name.
  workers = toset(["dc1-r01-w01", "dc2-r01-w01"])
}

resource "tricenter_cluster" "lab" {
  yaml         = local.inventory
  node_servers = local.workers

  timeouts {
    create = "60m"
  }
}

resource "tricenter_node" "worker" {
  for_each = local.workers

  server        = each.key
  yaml          = tricenter_cluster.lab.yaml
  cluster_state = tricenter_cluster.lab.state
}

output "api_server_url" {
  value = tricenter_cluster.lab.api_server_url
}

output "etcd_members" {
  value = tricenter_cluster.lab.etcd_members
}

output "gates" {
  value = tricenter_cluster.lab.gates
}

output "kubeconfig" {
  value     = tricenter_cluster.lab.kubeconfig
  sensitive = true
}
