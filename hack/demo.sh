#!/usr/bin/env bash
# make demo: the most complete real run tricenter has today, on this machine.
#  1. validate and plan the three-center example (48 servers, 8 racks);
#  2. build the pinned artifacts (etcd, Kubernetes, the BGP agent, the
#     pause, CoreDNS and probe images; cached under .cache/artifacts);
#  3. bring up the nspawn lab: seven machines in three centers behind
#     per-rack bridges, FRR in the router playing every TOR, 1 ms inside
#     site-a and 20 ms to the remote center;
#  4. apply the whole cluster over SSH (strict host keys): etcd, BGP agents,
#     control plane behind the BGP-announced API VIP, node agents, CoreDNS,
#     then the gates; show kubectl's view of the nodes with their center and
#     rack, and the routes the router learnt by BGP;
#  5. re-apply (a no-op), lose etcd in the remote center and then in
#     production under writes, with the API probed through the VIP;
#  6. reset the hosts and tear the lab down.
# Needs root. Everything stays on 198.19.0.0/16 inside this machine.
# KEEP=1 leaves the lab up at the end (Ctrl-C the lab process to stop it).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
  echo "make demo needs root: the lab uses network namespaces and systemd-nspawn" >&2
  exit 1
fi
./hack/deps.sh
make --no-print-directory build
inv=examples/inventory/nspawn-lab.yaml
work=.cache/demo
rm -rf "$work/state"
mkdir -p "$work"
export TRICENTER_STATE_DIR=$work/state
step() { printf '\n==> %s\n' "$*"; }
begin=$(date +%s)

step "Validate and plan the three-center example"
bin/tricenter validate -f examples/inventory/three-center.yaml
bin/tricenter plan -f examples/inventory/three-center.yaml --state-dir= | sed -n '1,/^control plane/p'

step "Build the pinned artifacts (reused when cached)"
hack/artifacts/build.sh | tail -n 14

step "Bring up the nspawn lab ($inv)"
go build -o bin/nspawn-lab ./acceptance/cmd/nspawn-lab
bin/nspawn-lab -f "$inv" > "$work/lab.log" 2>&1 &
lab=$!
cleanup() {
  if kill -0 "$lab" 2>/dev/null; then
    if [[ "${KEEP:-}" == 1 ]]; then
      echo "The lab stays up (pid $lab): kill -INT $lab to tear it down"
      return
    fi
    step "Tear the lab down"
    kill -INT "$lab"
    wait "$lab" || true
  fi
}
trap cleanup EXIT
for _ in $(seq 600); do
  grep -q 'Ctrl-C to tear down' "$work/lab.log" && break
  if ! kill -0 "$lab" 2>/dev/null; then cat "$work/lab.log"; echo "the lab failed to start" >&2; exit 1; fi
  sleep 0.5
done
grep -q 'Ctrl-C to tear down' "$work/lab.log" || { cat "$work/lab.log"; echo "the lab did not come up in 5 minutes" >&2; exit 1; }
sed -n '/^Lab /,$p' "$work/lab.log"

step "Check SSH to every machine"
bin/tricenter ssh-check -f "$inv"

step "Apply the cluster: etcd, BGP, control plane, node agents, add-ons, gates"
time bin/tricenter apply -f "$inv" --yes --log-level warn

step "kubectl with the admin kubeconfig"
bin/tricenter kubeconfig -f "$inv" -o "$work/admin.conf"
.cache/artifacts/kubectl --kubeconfig "$work/admin.conf" get nodes -o wide -L topology.kubernetes.io/zone,tricenter.io/rack
.cache/artifacts/kubectl --kubeconfig "$work/admin.conf" -n kube-system get pods -o wide

step "Routes the lab's router learnt by BGP (pod CIDRs and the API VIP)"
frr=$(sed -n "s/^FRR router.*--vty_socket \([^ ]*\) .*/\1/p" "$work/lab.log")
if [[ -n "$frr" ]]; then
  vtysh --vty_socket "$frr" -c 'show ip route bgp' | sed -n '/^B/,$p'
fi

step "Cluster status"
bin/tricenter status -f "$inv"

step "Re-apply: nothing uploaded, nothing restarted"
time bin/tricenter apply -f "$inv" --yes --log-level warn

# The lab's servers have no BMCs yet: the drill stops etcd over SSH (not a
# power cut; acceptance/kubernetes_test.go cuts the machines' power).
step "Drill: lose etcd in the remote center (dc3), the API probed through the VIP"
bin/tricenter drill center-loss -f "$inv" --center dc3 --log-level warn

step "Drill: lose etcd in production (dc1)"
bin/tricenter drill center-loss -f "$inv" --center dc1 --log-level warn

step "Reset the hosts"
bin/tricenter reset -f "$inv" --yes --log-level warn
echo "demo took $(( $(date +%s) - begin )) s"
