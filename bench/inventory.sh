#!/usr/bin/env bash
# Inventory benchmark: a generated 5,000-server inventory in 120 racks across
# three centers; load + validate + IPAM + placement (tricenter plan -o json)
# must take <= 1 s and <= 200 MiB RSS. Prints the figures against the goals.
set -euo pipefail
cd "$(dirname "$0")/.."
work=.cache/bench/inventory
mkdir -p "$work"
[[ -x bin/tricenter ]] || go build -o bin/tricenter ./cmd/tricenter
go run ./hack/geninventory -racks 40,40,40 -total 5000 > "$work/5000.yaml"
servers=$(grep -c '^ *- name: dc[0-9]-r[0-9]*-s' "$work/5000.yaml")
bin/tricenter validate -f "$work/5000.yaml" >/dev/null

runs=5
best_s=999; best_rss=0
for _ in $(seq $runs); do
  /usr/bin/time -f '%e %M' -o "$work/time" bin/tricenter plan -f "$work/5000.yaml" -o json > "$work/plan.json"
  read -r secs kib < "$work/time"
  rss=$((kib / 1024))
  if awk "BEGIN{exit !($secs < $best_s)}"; then best_s=$secs; fi
  (( rss > best_rss )) && best_rss=$rss
done
members=$(grep -c '"address"' "$work/plan.json" || true)

printf '%s servers, 120 racks, 3 centers (%s runs of tricenter plan -o json)\n' "$servers" "$runs"
printf '%-34s %10s %10s %8s\n' "figure" "measured" "goal" "ratio"
printf '%-34s %9ss %9ss %7.2fx\n' "load+validate+IPAM+placement" "$best_s" "1.00" "$(awk "BEGIN{print $best_s/1.0}")"
printf '%-34s %7sMiB %7sMiB %7.2fx\n' "peak RSS (worst run)" "$best_rss" "200" "$(awk "BEGIN{print $best_rss/200}")"
go test -run XXX -bench 'BenchmarkPlan5000' -benchmem ./inventory/ | grep -E '^Benchmark'
