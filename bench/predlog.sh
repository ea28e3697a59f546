#!/usr/bin/env bash
# The prediction log's cost on the request path (issue 14): modelwatch serving the embedded model at its peak rate
# (wrk, one thread, one-row requests) with --prediction-log off and with the embedded SQLite log (every request
# logged), in alternating rounds on this machine. Prints a Markdown table of requests per second and p99 (medians over
# the rounds), the ratio of the two rates (goal: the log costs at most 5%), and, for the logged runs, what became of
# the records: written, and dropped by reason (model_prediction_log_dropped_total), with the queue's length and lag at
# the end of the run, which say whether the store kept up with the peak rate.
#
#   bench/predlog.sh [SECONDS_PER_RUN] [ROUNDS] [CONNECTIONS]      (defaults: 10 3 32)
#
# Needs Debian's wrk and curl, and Go. Only loopback addresses; every run is bounded in time.
set -euo pipefail
dur=${1:-10}
rounds=${2:-3}
conns=${3:-32}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
for tool in wrk curl; do command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }; done
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
go build -o "$work/modelwatch" ./cmd/modelwatch 2>/dev/null
addr=127.0.0.1:18301

start() { # mode
  rm -rf "$work/data"
  "$work/modelwatch" serve --listen-address "$addr" --log-level warn --prediction-log "$1" --data-dir "$work/data" \
    >"$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do curl -sf "http://$addr/ready" >/dev/null && return; sleep 0.05; done
  echo "modelwatch did not start" >&2; cat "$work/server.log" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }
ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
metric() { curl -s "http://$addr/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

declare -A rps p99
for round in $(seq "$rounds"); do
  for mode in off embedded; do
    start "$mode"
    wrk -t1 -c"$conns" -d"${dur}s" --latency -s bench/predict.lua "http://$addr/predict" >"$work/wrk.txt"
    r=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")
    p=$(ms "$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")")
    rps[$mode]+="$r "; p99[$mode]+="$p "
    if [ "$mode" = embedded ]; then
      sleep 1 # the last batch
      printf 'round %d, logged: %s req/s; records written %s, dropped queue_full %s store_error %s; queue %s, lag %s s\n' \
        "$round" "$r" "$(metric model_prediction_log_written_total)" \
        "$(metric 'model_prediction_log_dropped_total{reason="queue_full"}')" \
        "$(metric 'model_prediction_log_dropped_total{reason="store_error"}')" \
        "$(metric model_prediction_log_queue_length)" "$(metric model_prediction_log_lag_seconds)" >&2
    else
      printf 'round %d, off: %s req/s\n' "$round" "$r" >&2
    fi
    stop
  done
done
off=$(printf '%s\n' ${rps[off]} | median); on=$(printf '%s\n' ${rps[embedded]} | median)
echo "| --prediction-log | requests/s | p99 ms |"
echo "|---|---|---|"
echo "| off | $off | $(printf '%s\n' ${p99[off]} | median) |"
echo "| embedded | $on | $(printf '%s\n' ${p99[embedded]} | median) |"
awk -v a="$on" -v b="$off" 'BEGIN { r = a / b; printf "\nlogged / off: %.3f (goal: at least 0.95)\n", r; exit (r >= 0.95 ? 0 : 1) }'
