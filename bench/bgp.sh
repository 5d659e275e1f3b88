#!/usr/bin/env bash
# BGP benchmark: tricenter-bgp against a real FRR router (zebra + bgpd in a
# network namespace on 198.18.32.0/20, configured by `tricenter bgp
# render-frr`). Times agent start -> route on the router (gobgp's jittered
# first connect included), announcement -> visible, graceful stop -> gone
# and killed agent -> gone, against the goals. Needs root and frr (make deps).
# Extra flags go to the program: -runs N (default 10), -kills N (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
  echo "bench/bgp.sh needs root (network namespaces, FRR)" >&2
  exit 1
fi
./hack/deps.sh
mkdir -p .cache/bench/bgp
go build -o .cache/bench/bgp/bgp-bench ./bench/bgp
exec .cache/bench/bgp/bgp-bench -work .cache/bench/bgp "$@"
