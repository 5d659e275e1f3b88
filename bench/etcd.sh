#!/usr/bin/env bash
# etcd on the nspawn lab (root): cold and no-op apply times, write
# throughput across the delayed centers with concurrent clients, and the
# leader elections of an idle run. ETCD_BENCH_IDLE=10m by default.
set -euo pipefail
cd "$(dirname "$0")/.."
export ETCD_BENCH_IDLE=${ETCD_BENCH_IDLE:-10m}
go test -count=1 -timeout 60m -run '^$' -bench '^BenchmarkEtcd$' -benchtime 1x -v ./acceptance/ 2>&1 |
  grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok ' -e '^time=' -e 'etcd_test.go:.*lab:' -e '^goos' -e '^goarch' -e '^pkg:' -e '^cpu:' -e '^BenchmarkEtcd'
