#!/usr/bin/env bash
# Counts the instructions the XGBoost evaluator executes, under valgrind's cachegrind: per one-row Model.Predict of
# the embedded model (BenchmarkPredict/rows=1) and per row of the 200,000-row batch of run.sh (BenchmarkHeldout).
# Counted are the instructions of the functions of package xgboost (with what the compiler inlined into them) and of
# package math (the links' exp); the allocation of the result, the garbage collector and the scheduler are left out,
# as their share moves from run to run. Each benchmark runs twice with different iteration counts; the difference,
# divided by the extra iterations, is the cost of the calls alone, without loading the model or the rows.
# Instruction counts do not move with the machine's load as times do.
#
# Usage: bench/treespeed/instructions.sh [TEST_BINARY]
#   TEST_BINARY: built with `go test -c ./internal/model/xgboost` (by default, from the working tree)
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=${1:-}
if [ -z "$bin" ]; then
	bin=$tmp/xgboost.test
	go test -c -o "$bin" ./internal/model/xgboost
fi
bin=$(realpath "$bin")

# instructions BENCH ITERATIONS prints the instructions that the functions of packages xgboost and math execute in a
# run of BENCH with ITERATIONS iterations.
instructions() {
	(cd internal/model/xgboost && valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$tmp/cg.out" \
		"$bin" -test.run '^$' -test.bench "$1" -test.benchtime "$2x" -test.count 1 >/dev/null 2>&1)
	awk '/^fn=/ {counted = ($0 ~ /^fn=(.*\/xgboost\.|math\.)/)} counted && /^[0-9]+ [0-9]+$/ {sum += $2}
		END {printf "%.0f\n", sum}' "$tmp/cg.out"
}

one1=$(instructions '^BenchmarkPredict/rows=1$' 1000)
one2=$(instructions '^BenchmarkPredict/rows=1$' 11000)
held1=$(instructions '^BenchmarkHeldout$' 1)
held2=$(instructions '^BenchmarkHeldout$' 2)
echo "one-row Predict: $(((one2 - one1) / 10000)) instructions per call"
echo "200,000-row Predict: $(((held2 - held1) / 200000)) instructions per row"
