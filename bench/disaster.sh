#!/usr/bin/env bash
# Disasters on a fresh nspawn lab (root; about 25 minutes): etcd put latency
# from production with the leader in dc1 vs dc3; dc1 lost through its BMCs,
# pods moved with and without tricenter fence; the local site lost under
# writes and restored from dc3's snapshot onto dc3 and two spare servers
# (RPO: acknowledged writes lost; RTO: API through the VIP, pods Running).
set -euo pipefail
cd "$(dirname "$0")/.."
./hack/artifacts/build.sh >/dev/null
go test -count=1 -timeout 60m -run '^$' -bench '^BenchmarkDisaster$' -benchtime 1x -v ./acceptance/ 2>&1 |
  grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok ' -e '^time=' -e 'lab:' -e '^goos' -e '^goarch' -e '^pkg:' -e '^cpu:' -e '^BenchmarkDisaster'
