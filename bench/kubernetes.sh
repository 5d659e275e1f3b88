#!/usr/bin/env bash
# Kubernetes on the nspawn lab (root), the wall clock of `tricenter apply
# --yes`: a cold apply to every gate passing and the no-op apply after it on
# three fresh labs (min/median/max), then adding one worker; artifacts built
# beforehand, not counted. Prints the breakdown (plan, components, gates,
# what the apply did not walk again) and the ratio to each goal.
set -euo pipefail
cd "$(dirname "$0")/.."
./hack/artifacts/build.sh >/dev/null
go test -count=1 -timeout 60m -run '^$' -bench '^BenchmarkKubernetes$' -benchtime 1x -v ./acceptance/ 2>&1 |
  grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok ' -e '^time=' -e 'lab:' -e '^goos' -e '^goarch' -e '^pkg:' -e '^cpu:' -e '^BenchmarkKubernetes'
