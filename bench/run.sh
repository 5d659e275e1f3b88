#!/usr/bin/env bash
# Runs every benchmark under bench/ and prints its table. Each bench/NAME.sh
# is self-contained; pass names to run only some: bench/run.sh inventory bmc
set -euo pipefail
cd "$(dirname "$0")/.."
names=("$@")
if [[ ${#names[@]} -eq 0 ]]; then
  for f in bench/*.sh; do
    n=$(basename "$f" .sh)
    [[ "$n" == run ]] || names+=("$n")
  done
fi
for n in "${names[@]}"; do
  echo "==> bench $n"
  bash "bench/$n.sh"
  echo
done
