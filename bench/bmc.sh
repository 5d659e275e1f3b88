#!/usr/bin/env bash
# BMC benchmark: one power-status sweep of 200 ipmi_sim BMCs (127.0.2.1-200,
# all on UDP port 623) by `tricenter bmc status`, by a sequential
# `ipmitool -I lanplus -C 3` loop and by `xargs -P16 ipmitool`, side by side.
# Goals: tricenter >= 20x the loop and >= 2x xargs. Needs root (port 623),
# openipmi and ipmitool (make deps). Extra arguments go to bench/bmc
# (-n BMCS, -runs N, -hook=false for BMCs without a chassis_control hook).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin .cache/bench/bmc
go build -trimpath -o bin/tricenter ./cmd/tricenter
go build -trimpath -o .cache/bench/bmc/bench-bmc ./bench/bmc
.cache/bench/bmc/bench-bmc -work .cache/bench/bmc -tricenter bin/tricenter "$@"
