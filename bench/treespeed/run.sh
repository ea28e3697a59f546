#!/usr/bin/env bash
# Compares the XGBoost evaluator (internal/model/xgboost) with XGBoost's own C++ predictor on one thread, on the same
# 200,000 rows: the embedded model's held-out rows repeated. Rounds alternate between the two so that both see the
# same machine; each round times CALLS calls of each, alternating, each after one warm-up call (XGBoost:
# xgboost_native.py, Debian's python3-xgboost; modelwatch: BenchmarkHeldout, one Model.Predict of the whole batch on
# one goroutine per call),
# and the one-row benchmarks once (BenchmarkPredict/rows=1 repeats one row, BenchmarkPredictRow takes the held-out
# rows in turn, as /predict sees them). Prints a Markdown table (per row: the fastest and the median call,
# elapsed and in CPU time of the process, which a loaded machine inflates less; the ratios of the medians) and checks
# that the sums of the predictions agree.
#
# Usage: bench/treespeed/run.sh [ROUNDS [CALLS]]    (defaults 3 and 5)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
calls=${2:-5}
rows=200000 # heldoutRows in internal/model/xgboost/bench_test.go
python=/usr/bin/python3 # Debian's, with python3-xgboost and python3-numpy
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/xgboost.test" ./internal/model/xgboost

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
minimum() { sort -g | head -1; }
# metric UNIT prints the value of UNIT in each benchmark result line on stdin.
metric() { awk -v unit="$1" '/^Benchmark/ {for (i = 2; i <= NF; i++) if ($i == unit) print $(i - 1)}'; }

echo "| round | XGBoost ns/row | modelwatch ns/row | XGBoost CPU ns/row | modelwatch CPU ns/row | modelwatch / XGBoost (CPU, wall) | one-row Predict ns (same row, rows in turn) |"
echo "|---|---|---|---|---|---|---|"
for r in $(seq "$rounds"); do
	# The calls alternate too: one XGBoost call (after its warm-up), then one modelwatch call (after its own), CALLS
	# times, so that a change in the machine's load between calls touches both alike.
	xall= gall=
	for c in $(seq "$calls"); do
		xall+=$("$python" bench/treespeed/xgboost_native.py models/fraud_model/v1/model.json \
			models/fraud_model/testdata/heldout.csv "$rows" 1)$'\n'
		gall+=$(cd internal/model/xgboost && "$tmp/xgboost.test" -test.run '^$' -test.bench '^BenchmarkHeldout$' \
			-test.benchtime 1x)$'\n'
	done
	xtimes=$(sed -nE 's/.*calls: min ([0-9.]+) ns\/row.*/\1/p' <<<"$xall")
	xcpu=$(sed -nE 's/.*cpu min ([0-9.]+) ns\/row.*/\1/p' <<<"$xall")
	xsum=$(sed -nE 's/.*sum of predictions ([0-9.]+).*/\1/p' <<<"$xall" | tail -1)
	xmin=$(minimum <<<"$xtimes")
	xmed=$(median <<<"$xtimes")
	xcmin=$(minimum <<<"$xcpu")
	xcmed=$(median <<<"$xcpu")

	gtimes=$(metric ns/row <<<"$gall")
	gcpu=$(metric cpu-ns/row <<<"$gall")
	gmin=$(minimum <<<"$gtimes")
	gmed=$(median <<<"$gtimes")
	gcmin=$(minimum <<<"$gcpu")
	gcmed=$(median <<<"$gcpu")
	gsum=$(sed -nE 's/.*sum of predictions ([0-9.]+).*/\1/p' <<<"$gall" | tail -1)

	one=$(cd internal/model/xgboost && for bench in '^BenchmarkPredict/rows=1$' '^BenchmarkPredictRow$'; do
		"$tmp/xgboost.test" -test.run '^$' -test.bench "$bench" -test.benchtime 200000x
	done | awk '/^Benchmark/ {printf "%s%s", sep, $3; sep = ", "}')

	ratio=$(awk -v gc="$gcmed" -v xc="$xcmed" -v g="$gmed" -v x="$xmed" 'BEGIN {printf "%.2f, %.2f", gc / xc, g / x}')
	echo "| $r | $xmin / $xmed | $gmin / $gmed | $xcmin / $xcmed | $gcmin / $gcmed | $ratio | $one |"
	if ! awk -v a="$xsum" -v b="$gsum" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(d <= 1e-6 * a)}'; then
		echo "sums of predictions differ: XGBoost $xsum, modelwatch $gsum" >&2
		exit 1
	fi
done
echo
echo "Sum of the $rows predictions: XGBoost $xsum, modelwatch $gsum. $("$python" -c 'import xgboost; print("XGBoost", xgboost.__version__)'), $(go version | cut -d' ' -f3)."
