#!/usr/bin/env bash
# Whole-process throughput: starts the emulators from `pipe-testkit`, runs
# `pipe` on CONFIG under /usr/bin/time until the source has sent every log,
# then stops it and prints raw MB per CPU-second of the pipe process and its
# peak RSS. Usage: benches/whole_process/run.sh sls-blackhole|sls-splunk
# PERF_DATA=FILE also records a `perf record -g` profile of pipe into FILE
# (PERF_EVENT="-e page-faults -g", say, records another event instead).
# PIPE_CPUS=LIST / EMULATOR_CPUS=LIST pin pipe and the emulators to CPUs
# (taskset), so they do not preempt each other on a small machine.
# PIPE_BIN=PATH runs another build of pipe (a frame-pointer build for
# profiles, or an A/B comparison). A run that has not sent every log after
# DEADLINE_SECONDS (300) prints pipe's metrics, its log and both emulators'
# stats, and fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
config="benches/whole_process/$1.toml"
shards=${SHARDS:-4}; groups=${GROUPS_PER_SHARD:-2000}; logs=${LOGS_PER_GROUP:-50}
pipe_bin=${PIPE_BIN:-target/release/pipe}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

${EMULATOR_CPUS:+taskset -c "$EMULATOR_CPUS"} target/release/pipe-testkit sls --addr 127.0.0.1:0 --project bench --logstore bench --shards "$shards" \
  --log-groups-per-shard "$groups" --logs-per-group "$logs" --seed 1 \
  --access-key-id bench-id --access-key-secret bench-secret > "$work/sls.out" &
until grep -q listening "$work/sls.out"; do sleep 0.2; done
sls=$(sed -n 's#listening on http://##p' "$work/sls.out")
${EMULATOR_CPUS:+taskset -c "$EMULATOR_CPUS"} target/release/pipe-testkit hec --addr 127.0.0.1:0 --token bench-token --ack > "$work/hec.out" &
until grep -q listening "$work/hec.out"; do sleep 0.2; done
hec=$(sed -n 's#listening on ##p' "$work/hec.out")

port=$((20000 + RANDOM % 20000))
PIPE_DATA_DIR="$work/data" PIPE_API_ADDRESS="127.0.0.1:$port" SLS_ENDPOINT="http://$sls" HEC_ENDPOINT="$hec" RUN_ID=$RANDOM \
  /usr/bin/time -v -o "$work/time.txt" ${PERF_DATA:+perf record ${PERF_EVENT:--F 499 -g} -o "$PERF_DATA" --} \
  ${PIPE_CPUS:+taskset -c "$PIPE_CPUS"} "$pipe_bin" run "$config" 2> "$work/pipe.err" &
total=$((shards * groups * logs))
start=$(date +%s.%N)
deadline=$(( $(date +%s) + ${DEADLINE_SECONDS:-300} ))
while :; do
  # The API is not up for the first polls; an empty answer means 0 sent.
  sent=$( (curl -s "127.0.0.1:$port/metrics" || true) | awk '/^pipe_component_sent_events_total\{component_id="(out|splunk)"/ {print $2}')
  [ "${sent:-0}" -ge "$total" ] 2>/dev/null && break
  # pipe exited early (a configuration error, a crash): show why.
  kill -0 %3 2>/dev/null || { cat "$work/pipe.err" >&2; exit 1; }
  if [ "$(date +%s)" -gt "$deadline" ]; then
    echo "pipe sent ${sent:-0} of $total logs in ${DEADLINE_SECONDS:-300} s; metrics, log and emulator stats follow" >&2
    (curl -s "127.0.0.1:$port/metrics" | grep -v '^#') >&2 || true
    tail -n 50 "$work/pipe.err" >&2
    curl -s "http://$sls/_testkit/stats" >&2 || true
    curl -s "$hec/_testkit/stats" >&2 || true
    exit 1
  fi
  # A scrape renders every metric: once a second keeps the harness's own
  # load on pipe small (Prometheus scrapes every 15 s by default).
  sleep 1
done
end=$(date +%s.%N)
bytes=$(curl -s "127.0.0.1:$port/metrics" | awk '/^pipe_component_received_bytes_total\{component_id="sls"/ {print $2}')
kill -INT "$(pgrep -f "^$pipe_bin run $config" | head -1)"
wait %3 || true
cpu=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {print u+s}' "$work/time.txt")
user=$(awk -F': ' '/User time/ {print $2}' "$work/time.txt")
rss=$(awk -F': ' '/Maximum resident/ {print $2}' "$work/time.txt")
awk -v c="$1" -v n="$total" -v b="$bytes" -v s="$start" -v e="$end" -v cpu="$cpu" -v user="$user" 'BEGIN {
  printf "config=%s logs=%d raw_bytes=%d wall_seconds=%.1f cpu_seconds=%.2f (user %.2f)\n", c, n, b, e - s, cpu, user
  printf "raw MB per CPU-second: %.1f\n", b / 1e6 / cpu
}'
echo "peak RSS: $((rss / 1024)) MiB"
awk -F': ' '/Minor .*page faults/ {print "minor page faults: " $2}' "$work/time.txt"
