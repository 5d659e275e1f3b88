#!/usr/bin/env bash
# Installer benchmark: push a 64 MiB artifact and run 5 commands on 50 real
# sshd hosts with tricenter's engine, with Ansible (ansible-core, copy +
# command, forks=50, pipelining) and the raw OpenSSH floor, side by side.
# Needs root (network namespaces). Extra flags go to the program, e.g.
#   bench/installer.sh -hosts 20 -size 16
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
  echo "bench/installer.sh needs root (network namespaces for the sshd hosts)" >&2
  exit 1
fi
./hack/deps.sh
mkdir -p .cache/bench
go build -o .cache/bench/installer-bench ./bench/installer
exec .cache/bench/installer-bench "$@"
