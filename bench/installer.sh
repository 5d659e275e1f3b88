#!/usr/bin/env bash
# Installer benchmark: push a 64 MiB artifact and run 5 commands on 50 real
# sshd hosts with tricenter's engine, with Ansible (ansible-core, copy +
# command, forks=50, pipelining) and the raw OpenSSH floor, side by side.
# Each host gets its own root home as on a freshly installed Debian host
# (-shared-root keeps this machine's /root and its shell rc files, which
# bash sources for every command sshd runs). tricenter also runs a second
# time, when every file is already right. Needs root (network namespaces).
# Extra flags go to the program, e.g.
#   bench/installer.sh -hosts 20 -size 16
#   bench/installer.sh -steps            # time each building block alone
#   bench/installer.sh -steps -ab 3      # SFTP vs exec stream vs the engine
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
