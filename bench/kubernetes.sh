#!/usr/bin/env bash
# Kubernetes on the nspawn lab (root): cold apply to every gate passing
# (artifacts built beforehand, not counted), a no-op re-apply and adding one
# worker, with the per-component breakdown and the ratio to each goal.
set -euo pipefail
cd "$(dirname "$0")/.."
./hack/artifacts/build.sh >/dev/null
go test -count=1 -timeout 60m -run '^$' -bench '^BenchmarkKubernetes$' -benchtime 1x -v ./acceptance/ 2>&1 |
  grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok ' -e '^time=' -e 'lab:' -e '^goos' -e '^goarch' -e '^pkg:' -e '^cpu:' -e '^BenchmarkKubernetes'
