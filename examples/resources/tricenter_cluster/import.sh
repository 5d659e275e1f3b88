# Import a cluster built with the tricenter CLI: the cluster's directory in
# the CLI's state directory (DIR/<metadata.name>, holding pki/ and
# prior.json; artifacts/ and snapshots/ are left out), then '#', then the
# inventory file it was applied from. The first refresh checks its health.
terraform import tricenter_cluster.lab "$HOME/.local/state/tricenter/lab#/etc/tricenter/lab.yaml"
