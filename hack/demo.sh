#!/usr/bin/env bash
# make demo: the most complete real run tricenter has today, on this machine.
#  1. validate and plan the three-center example (48 servers, 8 racks);
#  2. build the pinned etcd (cached under .cache/artifacts);
#  3. bring up the nspawn lab: five machines in three centers behind per-rack
#     bridges, 1 ms inside site-a and 20 ms to the remote center;
#  4. apply etcd over SSH (strict host keys), show its status, take a
#     snapshot, re-apply (a no-op), and run the center-loss drill for the
#     remote center and for production;
#  5. reset the hosts and tear the lab down.
# Needs root. Everything stays on 198.19.0.0/16 inside this machine.
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

step "Validate and plan the three-center example"
bin/tricenter validate -f examples/inventory/three-center.yaml
bin/tricenter plan -f examples/inventory/three-center.yaml --state-dir= | sed -n '1,/^control plane/p'

step "Build the pinned etcd (reused when cached)"
hack/artifacts/build.sh etcd

step "Bring up the nspawn lab ($inv)"
go build -o bin/nspawn-lab ./acceptance/cmd/nspawn-lab
bin/nspawn-lab -f "$inv" > "$work/lab.log" 2>&1 &
lab=$!
cleanup() {
  if kill -0 "$lab" 2>/dev/null; then
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

step "Apply etcd across the three centers"
time bin/tricenter apply -f "$inv" --only etcd --yes --log-level warn

step "etcd status"
bin/tricenter etcd status -f "$inv"

step "Snapshot"
bin/tricenter etcd snapshot -f "$inv" --to "$work/snapshots"

step "Re-apply: converged, nothing to do"
time bin/tricenter apply -f "$inv" --only etcd --yes --log-level warn

step "Drill: lose the remote center (dc3)"
bin/tricenter drill center-loss -f "$inv" --center dc3 --log-level warn

step "Drill: lose production (dc1)"
bin/tricenter drill center-loss -f "$inv" --center dc1 --log-level warn

step "Reset the hosts"
bin/tricenter reset -f "$inv" --only etcd --yes --log-level warn
