#!/usr/bin/env bash
# Tracing cost: modelwatch serving the embedded model with tracing off, with 1% of new traces sampled
# (parentbased_traceidratio 0.01) and with every request sampled (parentbased_always_on), exporting over OTLP HTTP
# to bench/otlpsink (accepts and discards), loaded by wrk (one thread) in alternating rounds.
#
#   bench/tracing.sh [SECONDS_PER_RUN] [ROUNDS] [CONNECTIONS] [FIXED_RATE]      (defaults: 10 3 32 8000)
#
# Prints, per mode, the medians over the rounds of: wrk's requests/s and p50/p99 at saturation, and the server's CPU
# time per request (utime + stime from /proc/PID/stat) while `modelwatch loadgen` sends FIXED_RATE requests/s for
# SECONDS_PER_RUN; and the spans exported and lost (modelwatch_trace_spans_exported_total) after the last round.
set -euo pipefail
dur=${1:-10}
rounds=${2:-3}
conns=${3:-32}
rate=${4:-8000}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=$(mktemp -d)
pid="" sink=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "$sink" ] && kill "$sink" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

for tool in wrk curl bc; do command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }; done
go build -o "$work/modelwatch" ./cmd/modelwatch 2>/dev/null
go build -o "$work/otlpsink" ./bench/otlpsink
"$work/otlpsink" --listen-address 127.0.0.1:18318 >"$work/sink.log" 2>&1 &
sink=$!
port=18104
tick=$(getconf CLK_TCK)

start() { # mode
  local env=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:18318)
  case $1 in
    off) env=() ;;
    ratio) env+=(OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.01) ;;
    always) env+=(OTEL_TRACES_SAMPLER=parentbased_always_on) ;;
  esac
  env "${env[@]}" "$work/modelwatch" serve --listen-address "127.0.0.1:$port" --log-level warn >"$work/$1.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && return; sleep 0.05; done
  echo "$1 did not start" >&2; cat "$work/$1.log" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }
cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }

url="http://127.0.0.1:$port/predict"
for round in $(seq "$rounds"); do
  for mode in off ratio always; do
    start "$mode"
    wrk -t1 -c8 -d2s -s bench/predict.lua "$url" >/dev/null # warm-up
    wrk -t1 -c"$conns" -d"${dur}s" --latency -s bench/predict.lua "$url" >"$work/wrk.txt"
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$work/wrk.txt")
    p50=$(ms "$(awk '$1 == "50%" { print $2 }' "$work/wrk.txt")")
    p99=$(ms "$(awk '$1 == "99%" { print $2 }' "$work/wrk.txt")")
    before=$(cpu)
    "$work/modelwatch" loadgen --url "http://127.0.0.1:$port" --rate "$rate" --duration "${dur}s" --concurrency 8 --json >"$work/fixed.json"
    after=$(cpu)
    sent=$(grep -o '"sent": *[0-9]*' "$work/fixed.json" | grep -o '[0-9]*$')
    us=$(echo "($after - $before) * 1000000 / $tick / $sent" | bc -l)
    spans=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^modelwatch_trace_spans_exported_total/ { printf "%s=%s ", $1, $2 }')
    echo "$mode $rps $p50 $p99 $us" >>"$work/results"
    printf 'round %s %s: %s req/s, p50 %s ms, p99 %s ms; at %s req/s: %.1f us CPU per request (%s requests); %s\n' \
      "$round" "$mode" "$rps" "$p50" "$p99" "$rate" "$us" "$sent" "$spans" >&2
    stop
  done
done

echo
echo "| tracing | requests/s | p50 ms | p99 ms | CPU µs per request at $rate/s |"
echo "|---|---|---|---|---|"
for mode in off ratio always; do
  col() { awk -v m="$mode" -v c="$1" '$1 == m { print $c }' "$work/results" | median; }
  printf '| %s | %.0f | %.3f | %.3f | %.1f |\n' "$mode" "$(col 2)" "$(col 3)" "$(col 4)" "$(col 5)"
done
