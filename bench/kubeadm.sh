#!/usr/bin/env bash
# tricenter's bring-up side by side with kubeadm's on the nspawn lab (root;
# about 30 minutes): on fresh labs of the same seven servers, three runs
# each, after tricenter placed etcd and the BGP agents, the wall clock of
# `tricenter apply --yes --only control-plane,nodes,addons,gates` against
# `kubeadm init` + every `kubeadm join` until every node is Ready (kubeadm's
# external etcd, the same binaries, images, CNI and kubelet settings).
# Prints min/median/max, the ratio to the goal (≤ 1.0×), the breakdown and
# what each did that the other did not. kubeadm and the control-plane images
# are built into .cache/bench/kubeadm (hack/artifacts/build.sh kubeadm).
set -euo pipefail
cd "$(dirname "$0")/.."
./hack/artifacts/build.sh >/dev/null
go test -count=1 -timeout 120m -run '^$' -bench '^BenchmarkKubeadm$' -benchtime 1x -v ./acceptance/ 2>&1 |
  grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok ' -e '^time=' -e 'lab:' -e '^goos' -e '^goarch' -e '^pkg:' -e '^cpu:' -e '^BenchmarkKubeadm'
