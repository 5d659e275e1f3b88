#!/usr/bin/env bash
# A rolling upgrade on the nspawn lab (root): installed at the previous
# Kubernetes and etcd releases, upgraded to the inventory's while the API
# (through its VIP), a Service (through its load-balancer VIP) and etcd
# writes are probed every 100 ms: total and per-step time, failed probes,
# longest gaps and acknowledged writes lost, against the goal of none.
set -euo pipefail
cd "$(dirname "$0")/.."
./hack/artifacts/build.sh >/dev/null
go test -count=1 -timeout 70m -run '^$' -bench '^BenchmarkUpgrade$' -benchtime 1x -v ./acceptance/ 2>&1 |
  grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok ' -e '^time=' -e 'lab:' -e '^goos' -e '^goarch' -e '^pkg:' -e '^cpu:' -e '^BenchmarkUpgrade'
