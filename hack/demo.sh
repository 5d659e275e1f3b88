#!/usr/bin/env bash
# make demo: tricenter end to end on the lab, through Terraform.
#  1. install the Debian packages, build tricenter, tricenter-lab, the
#     provider and the pinned artifacts (etcd, Kubernetes, the BGP agent, the
#     pause, CoreDNS and probe images; cached under .cache/artifacts after the
#     first run);
#  2. tricenter-lab up -f examples/lab/lab.yaml: two sites, three centers,
#     nspawn machines and libvirt VMs, every server powered off behind its
#     own ipmi_sim BMC, a jump host per center, FRR playing the TORs;
#  3. terraform apply in examples/lab with the provider built from this
#     checkout: every server powered on through its BMC, then etcd, the BGP
#     agents, the control plane behind the BGP-announced API VIP, the node
#     agents and the add-ons through the jump hosts, the workers joined one
#     by one, and the verification gates;
#  4. kubectl get nodes with the output kubeconfig, the PXE boot of the VM
#     with boot: pxe, the routes the lab router learnt by BGP;
#  5. a LoadBalancer Service: an address from the pool, announced over BGP
#     by the nodes with a ready endpoint, curl from site-a's core router;
#  6. the loss of the production center dc1: every server of it powered
#     off through its BMC under etcd writes, the API probed through the VIP,
#     then powered back on;
#  7. terraform destroy (resets the hosts, powers the servers off) and
#     tricenter-lab down (checks nothing is left).
# Needs root. Everything stays on 198.19.0.0/16 inside this machine.
# KEEP=1 leaves the cluster and the lab up at the end.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
  echo "make demo needs root: the lab uses network namespaces, systemd-nspawn, libvirt and IPMI on port 623" >&2
  exit 1
fi
command -v terraform >/dev/null || { echo "terraform is not on PATH: install Terraform >= 1.11" >&2; exit 1; }
repo=$PWD
lab=examples/lab/lab.yaml
labdir=$repo/.cache/lab/lab
work=$repo/.cache/demo
# kubectl of the release the lab inventory installs (examples/lab/lab.yaml).
kubectl=$repo/.cache/artifacts/kubectl-$(sed -n 's/^ *version: *\(v1\.[0-9.]*\) *$/\1/p' "$repo/examples/lab/lab.yaml" | head -n1)
current=""
step() { current=$*; printf '\n==> %s\n' "$*"; }
# A failing step fails the demo, named (at the end, after the teardown).
failed=""
trap 'failed=${failed:-$current}' ERR
begin=$(date +%s)

step "Install the Debian packages, build tricenter, tricenter-lab and the provider"
./hack/deps.sh
make --no-print-directory build

step "Build the pinned artifacts (reused when cached)"
hack/artifacts/build.sh | tail -n 32

step "Bring the lab up: every server powered off behind its BMC"
bin/tricenter-lab down -f "$lab" >/dev/null
t=$(date +%s)
bin/tricenter-lab up -f "$lab"
echo "lab up took $(( $(date +%s) - t )) s"

mkdir -p "$work"
cat > "$work/dev.tfrc" <<TFRC
provider_installation {
  dev_overrides { "tricenter/tricenter" = "$repo/bin" }
  direct {}
}
TFRC
export TF_CLI_CONFIG_FILE=$work/dev.tfrc
tf() { terraform -chdir=examples/lab "$@"; }
tfvars=(-var-file="$labdir/terraform.tfvars")
teardown() {
  local rc=$?
  if [[ "${KEEP:-}" == 1 ]]; then
    echo
    echo "The cluster and the lab stay up:"
    echo "  kubectl:     $kubectl --kubeconfig $work/admin.conf get nodes"
    echo "  lab:         bin/tricenter-lab status"
    echo "  tear down:   TF_CLI_CONFIG_FILE=$work/dev.tfrc terraform -chdir=examples/lab destroy -auto-approve -var-file=$labdir/terraform.tfvars"
    echo "               bin/tricenter-lab down"
    if (( rc != 0 )); then echo "make demo FAILED in step: ${failed:-$current} (exit $rc)" >&2; fi
    return
  fi
  step "terraform destroy: reset the hosts, power the servers off"
  t=$(date +%s)
  tf destroy -auto-approve "${tfvars[@]}" | tail -n 3 || true
  echo "destroy took $(( $(date +%s) - t )) s"
  step "Tear the lab down"
  bin/tricenter-lab down -f "$lab"
  rm -f examples/lab/terraform.tfstate examples/lab/terraform.tfstate.backup
  echo "demo took $(( $(date +%s) - begin )) s"
  if (( rc != 0 )); then
    echo "make demo FAILED in step: ${failed:-$current} (exit $rc)" >&2
  fi
}
trap teardown EXIT

step "terraform apply: power on through the BMCs, then the cluster through the jump hosts"
t=$(date +%s)
tf apply -auto-approve "${tfvars[@]}" | grep -v "Still creating\|Reading\|Read complete" | tail -n 25
echo "apply took $(( $(date +%s) - t )) s"

step "kubectl with the admin kubeconfig (from the engine state Terraform keeps, restored for the CLI)"
inv=$labdir/inventory.yaml
tf output -raw engine_state | bin/tricenter state restore -f "$inv" --from - --state-dir "$work/state"
bin/tricenter kubeconfig -f "$inv" --state-dir "$work/state" --output-file "$work/admin.conf"
"$kubectl" --kubeconfig "$work/admin.conf" get nodes -o wide -L topology.kubernetes.io/zone,tricenter.io/rack

step "dc1-r01-w01 booted from its NIC: the lab's DHCP and TFTP server (dnsmasq in the lab router)"
grep -E 'DHCPACK\(|dnsmasq-tftp\[[0-9]+\]: sent ' "$labdir/pxe/dnsmasq.log" | sed 's|dnsmasq-[a-z]*\[[0-9]*\]: ||; s|/.*/tftp/||' || true

step "Routes site-a's core router learnt by BGP from the TORs (the API VIP and the pod CIDRs)"
core=$(sed -n 's/.*"vty": "\(.*\)".*/\1/p' "$labdir/lab.json" | head -n 1)
vtysh --vty_socket "$core" -c 'show ip route bgp' | sed -n '/^B/,$p'

step "A LoadBalancer Service, reached from outside the racks: curl from site-a's core router"
"$kubectl" --kubeconfig "$work/admin.conf" apply -f - <<'YAML'
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: whoami, namespace: demo}
spec:
  replicas: 3
  selector: {matchLabels: {app: whoami}}
  template:
    metadata: {labels: {app: whoami}}
    spec:
      tolerations: [{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]
      topologySpreadConstraints:
        - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: whoami}}}
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: whoami
          image: tricenter.io/tricenter-probe:v1
          imagePullPolicy: Never
          args: [serve, --listen, ":8080"]
          readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
          securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
---
apiVersion: v1
kind: Service
metadata: {name: whoami, namespace: demo}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: whoami}
  ports: [{name: http, port: 80, targetPort: 8080}]
YAML
"$kubectl" --kubeconfig "$work/admin.conf" -n demo rollout status deployment/whoami --timeout=180s
addr=""
for _ in $(seq 60); do
  addr=$("$kubectl" --kubeconfig "$work/admin.conf" -n demo get service whoami -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
  [[ -n $addr ]] && break
  sleep 1
done
[[ -n $addr ]] || { echo "the Service got no address"; exit 1; }
"$kubectl" --kubeconfig "$work/admin.conf" -n demo get service whoami -o wide
"$kubectl" --kubeconfig "$work/admin.conf" -n demo get pods -o wide
corens=$(sed -n 's/.*"netns": "\(.*\)".*/\1/p' "$labdir/lab.json" | head -n 1)
echo "\$ ip netns exec $corens curl -s http://$addr/whoami   # from site-a's core router, outside the racks"
out=""
for _ in $(seq 30); do
  out=$(ip netns exec "$corens" curl -s --max-time 2 "http://$addr/whoami") && break
  sleep 1
done
[[ -n $out ]] || { echo "no answer from http://$addr/whoami"; exit 1; }
echo "$out"
echo "(remote is the core router's own address: with externalTrafficPolicy Local the client's address reaches the pod)"
{ bin/tricenter status -f "$inv" --state-dir "$work/state" --log-level error || true; } | sed -n '/^LoadBalancer Services/,/^[a-z]/p' | sed '$d'
"$kubectl" --kubeconfig "$work/admin.conf" delete namespace demo --wait=true >/dev/null

step "Drill: lose the production center dc1 (its servers powered off through their BMCs)"
bin/tricenter drill center-loss -f "$inv" --state-dir "$work/state" --center dc1 --log-level warn --yes

step "dc1 rejoins: tricenter status until every member, API server, node and BGP session is back"
t=$(date +%s)
until bin/tricenter status -f "$inv" --state-dir "$work/state" --log-level error >/dev/null 2>&1; do
  if (( $(date +%s) - t > 300 )); then failed=$current; bin/tricenter status -f "$inv" --state-dir "$work/state"; exit 1; fi
  sleep 5
done
echo "dc1 back $(( $(date +%s) - t )) s after the drill ended (the VM boots in TCG)"
bin/tricenter status -f "$inv" --state-dir "$work/state" | sed -n '1,/^$/p'
rm -rf "$work/state"
"$kubectl" --kubeconfig "$work/admin.conf" get nodes -L topology.kubernetes.io/zone

step "The lab after the drill"
bin/tricenter-lab status -f "$lab"
