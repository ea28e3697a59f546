#!/usr/bin/env bash
# Throughput benchmark: the tutorials' FastAPI + prometheus_client server, modelwatch serving the embedded model
# with its full catalogue, and a bare Go net/http handler answering a fixed JSON body (the ceiling), loaded in turn
# by the same client (wrk, one thread) on this machine, in alternating rounds.
#
#   bench/run.sh [SECONDS_PER_RUN] [ROUNDS] [CONNECTIONS]      (defaults: 10 3 32)
#
# Needs Debian's wrk, python3-fastapi, python3-uvicorn, python3-prometheus-client, and Go. Prints a Markdown table:
# requests per second, p50 and p99 latency (medians over the rounds), peak RSS (VmHWM, the largest over the rounds),
# and the time of one /metrics scrape after the load (median of 5). Then modelwatch's p99 at half its peak rate
# (modelwatch loadgen --rate, 8 clients) and its idle RSS.
set -euo pipefail
dur=${1:-10}
rounds=${2:-3}
conns=${3:-32}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

for tool in wrk curl /usr/bin/python3; do command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }; done
go build -o "$work/modelwatch" ./cmd/modelwatch 2>/dev/null
go build -o "$work/baseline" ./bench/baseline

declare -A port=([fastapi]=18101 [modelwatch]=18102 [baseline]=18103)

start() { # name
  case $1 in
    fastapi) /usr/bin/python3 -m uvicorn app:app --app-dir bench/fastapi --host 127.0.0.1 --port "${port[fastapi]}" \
               --log-level warning --no-access-log >"$work/fastapi.log" 2>&1 & ;;
    modelwatch) "$work/modelwatch" serve --listen-address "127.0.0.1:${port[modelwatch]}" --log-level warn \
               >"$work/modelwatch.log" 2>&1 & ;;
    baseline) "$work/baseline" --listen-address "127.0.0.1:${port[baseline]}" >"$work/baseline.log" 2>&1 & ;;
  esac
  pid=$!
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:${port[$1]}/health" >/dev/null && return; sleep 0.05; done
  echo "$1 did not start" >&2; cat "$work/$1.log" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

ms() { # wrk latency (123.45us, 1.23ms, 1.02s) -> milliseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }

for round in $(seq "$rounds"); do
  for name in fastapi modelwatch baseline; do
    start "$name"
    url="http://127.0.0.1:${port[$name]}/predict"
    wrk -t1 -c8 -d2s -s bench/predict.lua "$url" >/dev/null           # warm-up
    wrk -t1 -c"$conns" -d"${dur}s" --latency -s bench/predict.lua "$url" >"$work/wrk.txt"
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$work/wrk.txt")
    p50=$(ms "$(awk '$1 == "50%" { print $2 }' "$work/wrk.txt")")
    p99=$(ms "$(awk '$1 == "99%" { print $2 }' "$work/wrk.txt")")
    non2xx=$(awk '/Non-2xx/ { print $NF }' "$work/wrk.txt"); non2xx=${non2xx:-0}
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
    scrape=$(for _ in 1 2 3 4 5; do curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:${port[$name]}/metrics"; done | median)
    echo "$name $rps $p50 $p99 $hwm $scrape $non2xx" >>"$work/results"
    echo "round $round $name: $rps req/s, p50 $p50 ms, p99 $p99 ms, peak RSS $((hwm / 1024)) MiB, scrape $scrape s, non-2xx $non2xx" >&2
    stop
  done
done

echo
echo "| server | requests/s | p50 ms | p99 ms | peak RSS MiB | /metrics scrape ms |"
echo "|---|---|---|---|---|---|"
for name in fastapi modelwatch baseline; do
  rps=$(awk -v n="$name" '$1 == n { print $2 }' "$work/results" | median)
  p50=$(awk -v n="$name" '$1 == n { print $3 }' "$work/results" | median)
  p99=$(awk -v n="$name" '$1 == n { print $4 }' "$work/results" | median)
  hwm=$(awk -v n="$name" '$1 == n { print $5 }' "$work/results" | sort -g | tail -1)
  scrape=$(awk -v n="$name" '$1 == n { print $6 }' "$work/results" | median)
  printf '| %s | %.0f | %.3f | %.3f | %.1f | %.2f |\n' "$name" "$rps" "$p50" "$p99" "$(echo "$hwm / 1024" | bc -l)" "$(echo "$scrape * 1000" | bc -l)"
  echo "$name $rps" >>"$work/medians"
done
mw=$(awk '$1 == "modelwatch" { print $2 }' "$work/medians")
fa=$(awk '$1 == "fastapi" { print $2 }' "$work/medians")
bl=$(awk '$1 == "baseline" { print $2 }' "$work/medians")
echo
printf 'modelwatch / FastAPI: %.1fx; modelwatch / bare net/http: %.0f%%\n' "$(echo "$mw / $fa" | bc -l)" "$(echo "100 * $mw / $bl" | bc -l)"

# Latency at half of modelwatch's peak rate, and idle memory.
start modelwatch
sleep 2
idle=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
half=$(echo "$mw / 2" | bc)
"$work/modelwatch" loadgen --url "http://127.0.0.1:${port[modelwatch]}" --rate "$half" --duration "${dur}s" \
  --concurrency 8 --json >"$work/half.json"
stop
printf 'modelwatch at half its peak (%s req/s): %s\n' "$half" "$(tr -d '\n' <"$work/half.json")"
printf 'modelwatch idle RSS: %.1f MiB\n' "$(echo "$idle / 1024" | bc -l)"
