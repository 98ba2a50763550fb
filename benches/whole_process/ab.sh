#!/usr/bin/env bash
# Interleaved A/B runs of run.sh: the host's speed drifts over minutes, so
# two builds are compared in alternating runs and judged by the per-pair
# ratio, not by absolute figures taken at different times.
# Usage: benches/whole_process/ab.sh CONFIG PAIRS BINARY_A BINARY_B
# (the same size variables as run.sh apply; SHARDS=4 GROUPS_PER_SHARD=40000
# LOGS_PER_GROUP=10 is the BENCHMARKS.md setting).
set -euo pipefail
config=$1 pairs=$2 first=$3 second=$4
here=$(dirname "$0")
figure() {
  PIPE_BIN=$1 "$here/run.sh" "$config" 2>&1 | awk '/raw MB per CPU-second/ {f=$NF} /peak RSS/ {r=$3} END {print f, r}'
}
ratios=()
for pair in $(seq "$pairs"); do
  read -r a a_rss < <(figure "$first")
  read -r b b_rss < <(figure "$second")
  ratio=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", b / a}')
  ratios+=("$ratio")
  echo "pair $pair: A $a (RSS $a_rss MiB)  B $b (RSS $b_rss MiB)  B/A $ratio"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{r[NR]=$1; s+=$1} END {
  printf "B/A over %d pairs: mean %.3f, median %.3f, range %.3f-%.3f\n", NR, s/NR, (NR%2 ? r[(NR+1)/2] : (r[NR/2]+r[NR/2+1])/2), r[1], r[NR]
}'
