# Which center or site loss keeps etcd quorum if only these servers remain?
data "tricenter_etcd_placement" "after_decommission" {
  path           = "${path.module}/../../inventory/three-center.yaml"
  servers        = ["dc1-r01-s01", "dc2-r01-s01", "dc3-r01-s01"]
  allow_degraded = true
}

output "center_loss_keeps_quorum" {
  value = data.tricenter_etcd_placement.after_decommission.center_loss
}
