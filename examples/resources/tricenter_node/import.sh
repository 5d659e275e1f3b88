# Import a worker by its server name (the for_each key of the example). The
# next plan fills in what the configuration gives (inventory, cluster state)
# and shows an update; that apply changes nothing on the server: the
# kubelet certificates it holds, signed by the cluster's CA, are kept.
terraform import 'tricenter_node.worker["dc1-r01-s02"]' dc1-r01-s02
