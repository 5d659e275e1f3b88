#!/usr/bin/env bash
# LoadBalancer Services on a fresh nspawn lab (root; about 10 minutes),
# from the core router's namespace outside the racks: Service created →
# address → route at the core router → first request (goal ≤ 2 s); a
# node's last endpoint gone → its route withdrawn (goal ≤ 1 s after the
# EndpointSlice update); prefer production failing over to local DR and
# back; a node's power cut through its BMC → the TOR drops its next hop
# (goal: the 3 s hold time). Requests every 20 ms meanwhile: failed count
# and longest gap.
set -euo pipefail
cd "$(dirname "$0")/.."
./hack/artifacts/build.sh >/dev/null
go test -count=1 -timeout 60m -run '^$' -bench '^BenchmarkLoadBalancer$' -benchtime 1x -v ./acceptance/ 2>&1 |
  grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok ' -e '^time=' -e 'lab:' -e '^goos' -e '^goarch' -e '^pkg:' -e '^cpu:' -e '^BenchmarkLoadBalancer'
