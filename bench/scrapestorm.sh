#!/usr/bin/env bash
# Scrape storm: does inference keep its rate and latency while 100 clients scrape /metrics as fast as they can?
#
#   bench/scrapestorm.sh [RATE] [SECONDS] [SCRAPERS] [ROUNDS]      (defaults: 8000 10 100 3)
#
# Builds modelwatch, starts it with the embedded model, and alternates two runs per round of
# `modelwatch loadgen --rate RATE --concurrency 8` against /predict: quiet, then with `wrk -cSCRAPERS` scraping
# /metrics (in Prometheus's protobuf format, as a Prometheus with native histograms asks) for the whole run. Prints a
# Markdown table of the rate achieved and the p50/p99 latency of each run, the scrapes answered 200 and 503
# (promhttp_metric_handler_requests_total), and checks the goal of issue 15: under the storm the rate stays at 95% or
# more of the quiet run's and p99 at most twice the quiet p99 (medians over the rounds). Exits 1 if it does not.
# Needs Debian's wrk, curl and jq, and Go. Only loopback addresses; every run is bounded in time.
set -euo pipefail
rate=${1:-8000}
dur=${2:-10}
scrapers=${3:-100}
rounds=${4:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
for tool in wrk curl jq; do command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }; done
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
go build -o "$work/modelwatch" ./cmd/modelwatch 2>/dev/null
addr=127.0.0.1:18201
"$work/modelwatch" serve --listen-address "$addr" --log-level warn >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -fs "http://$addr/ready" >/dev/null 2>&1 && break; sleep 0.1; done

cat >"$work/scrape.lua" <<'LUA'
wrk.headers["Accept"] = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
LUA
scrapes() { curl -fs "http://$addr/metrics" | awk -v c="$1" '$1 == "promhttp_metric_handler_requests_total{code=\"" c "\"}" {print $2}'; }

run() { # label storm?
  local out="$work/$1.json"
  if [ "$2" = yes ]; then
    wrk -t2 -c"$scrapers" -d"$((dur + 2))s" -s "$work/scrape.lua" "http://$addr/metrics" >"$work/wrk.txt" 2>&1 &
    local wrkpid=$!
    sleep 1
  fi
  "$work/modelwatch" loadgen --url "http://$addr" --rate "$rate" --concurrency 8 --duration "${dur}s" --json >"$out"
  if [ "$2" = yes ]; then wait "$wrkpid"; fi
  jq -r '[.rate, .p50_ms, .p99_ms] | @tsv' "$out"
}

declare -a qrate qp50 qp99 srate sp50 sp99
for r in $(seq "$rounds"); do
  read -r a b c < <(run quiet no)
  qrate+=("$a"); qp50+=("$b"); qp99+=("$c")
  ok0=$(scrapes 200); no0=$(scrapes 503)
  read -r a b c < <(run storm yes)
  srate+=("$a"); sp50+=("$b"); sp99+=("$c")
  ok1=$(scrapes 200); no1=$(scrapes 503)
  printf 'round %d: quiet %.0f req/s p99 %.2f ms; storm %.0f req/s p99 %.2f ms; scrapes answered %d, refused %d\n' \
    "$r" "${qrate[-1]}" "${qp99[-1]}" "${srate[-1]}" "${sp99[-1]}" "$(( ${ok1%.*} - ${ok0%.*} - 1 ))" "$(( ${no1%.*} - ${no0%.*} ))" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mq=$(median "${qrate[@]}"); ms=$(median "${srate[@]}")
pq=$(median "${qp99[@]}"); ps=$(median "${sp99[@]}")
echo
echo "| run | requests/s | p50 ms | p99 ms |"
echo "|---|---|---|---|"
printf '| quiet, %s req/s asked | %.0f | %.2f | %.2f |\n' "$rate" "$mq" "$(median "${qp50[@]}")" "$pq"
printf '| %d clients scraping /metrics | %.0f | %.2f | %.2f |\n' "$scrapers" "$ms" "$(median "${sp50[@]}")" "$ps"
echo
awk -v mq="$mq" -v ms="$ms" -v pq="$pq" -v ps="$ps" 'BEGIN {
  printf "rate kept: %.1f%% (goal >= 95%%); p99 ratio: %.2f (goal <= 2)\n", 100 * ms / mq, ps / pq
  exit !(ms >= 0.95 * mq && ps <= 2 * pq)
}'
