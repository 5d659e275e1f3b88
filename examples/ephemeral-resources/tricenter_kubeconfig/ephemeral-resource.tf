# A kubeconfig that never reaches the state or the plan (Terraform 1.10+):
# a one-hour client certificate for "ci" in group "deployers", signed by the
# cluster CA. Leave out user for the admin kubeconfig.
ephemeral "tricenter_kubeconfig" "ci" {
  path          = tricenter_cluster.lab.path
  cluster_state = tricenter_cluster.lab.state
  user          = "ci"
  groups        = ["deployers"]
  ttl           = "1h"
}

# Ephemeral values may feed provider configuration.
locals {
  kubeconfig = yamldecode(ephemeral.tricenter_kubeconfig.ci.kubeconfig)
}

provider "kubernetes" {
  host                   = local.kubeconfig.clusters[0].cluster.server
  cluster_ca_certificate = base64decode(local.kubeconfig.clusters[0].cluster["certificate-authority-data"])
  client_certificate     = base64decode(local.kubeconfig.users[0].user["client-certificate-data"])
  client_key             = base64decode(local.kubeconfig.users[0].user["client-key-data"])
}
