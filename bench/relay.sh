#!/usr/bin/env bash
# Relay benchmark: install the lab's artifact set (.cache/artifacts, newest
# release of each) on 3 real sshd servers of one center behind one jump
# host, whose link into the center is limited to 100 Mbit/s (tbf), first
# uploading every file to every server (direct), then through the relay
# (each file crosses the jump host once, the other servers copy it inside
# the center). Prints the bytes through the jump host and the times side by
# side. Needs root (network namespaces) and the artifacts (make artifacts).
# Extra flags go to the program, e.g.
#   bench/relay.sh -hosts 5 -rate 1gbit
#   bench/relay.sh -rate ''              # no limit on the jump host's link
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
  echo "bench/relay.sh needs root (network namespaces for the sshd hosts)" >&2
  exit 1
fi
if [[ ! -s .cache/artifacts/SHA256SUMS ]]; then
  echo "bench/relay.sh needs the artifacts: run make artifacts" >&2
  exit 1
fi
./hack/deps.sh
mkdir -p .cache/bench
go build -o .cache/bench/relay-bench ./bench/relay
exec .cache/bench/relay-bench "$@"
