#!/usr/bin/env bash
# BMC benchmark: one power-status sweep of 200 ipmi_sim BMCs (lab addresses
# 198.18.52.1-200 on an interface of their own, deleted at the end; all on
# UDP port 623) by `tricenter bmc status`, by a sequential
# `ipmitool -I lanplus -C 3` loop and by `xargs -P16 ipmitool`, side by side.
# Goals: tricenter >= 20x the loop and >= 2x xargs.
#
# Two tables: BMCs answering from memory (as a real BMC answers Get Chassis
# Status), then BMCs with the lab's chassis_control hook, where ipmi_sim
# forks a shell for every status query; on this 2-core machine those forks
# compete with the clients for the CPU.
#
# Needs root (port 623, the interface), openipmi, ipmitool and iproute2
# (make deps). Extra arguments
# go to bench/bmc (-n BMCS, -runs N).
set -euo pipefail
cd "$(dirname "$0")/.."
for b in ipmi_sim sdrcomp ipmitool; do
  command -v "$b" >/dev/null || { echo "$b is missing: run make deps (openipmi, ipmitool)" >&2; exit 1; }
done
mkdir -p bin .cache/bench/bmc
go build -trimpath -o bin/tricenter ./cmd/tricenter
go build -trimpath -o .cache/bench/bmc/bench-bmc ./bench/bmc
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
.cache/bench/bmc/bench-bmc -work .cache/bench/bmc -tricenter bin/tricenter -hook=false "$@"
echo
.cache/bench/bmc/bench-bmc -work .cache/bench/bmc -tricenter bin/tricenter -hook=true "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
