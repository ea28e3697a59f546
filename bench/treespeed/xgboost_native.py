"""Times XGBoost's own C++ predictor on the embedded model's held-out rows.

Usage: /usr/bin/python3 bench/treespeed/xgboost_native.py MODEL.json HELDOUT.csv ROWS CALLS

Reads the feature columns of HELDOUT.csv (every column whose name does not start with "xgboost_"; an empty cell is a
missing value), repeats them to ROWS rows as a float32 matrix, and times CALLS calls of Booster.inplace_predict with
nthread=1 after one warm-up call. Prints the fastest and the median call as nanoseconds per row, elapsed and in CPU
time of the process (which a loaded machine inflates less), and the sum of the predictions so that a run can be
compared with the Go side (BenchmarkHeldout logs the same sum).
"""
import csv
import statistics
import sys
import time

import numpy as np
import xgboost as xgb


def main():
    model, heldout, rows, calls = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with open(heldout, newline="") as f:
        r = csv.reader(f)
        header = next(r)
        n = sum(1 for h in header if not h.startswith("xgboost_"))
        base = np.array([[float(v) if v != "" else np.nan for v in row[:n]] for row in r], dtype=np.float32)
    x = np.ascontiguousarray(np.resize(base, (rows, n)))
    booster = xgb.Booster(model_file=model)
    booster.set_param({"nthread": 1})
    booster.inplace_predict(x)
    times, cpu = [], []
    for _ in range(calls):
        t, c = time.perf_counter_ns(), time.process_time_ns()
        p = booster.inplace_predict(x)
        times.append(time.perf_counter_ns() - t)
        cpu.append(time.process_time_ns() - c)
    print(f"xgboost {xgb.__version__} inplace_predict nthread=1, {rows} rows, {calls} calls: "
          f"min {min(times) / rows:.1f} ns/row, median {statistics.median(times) / rows:.1f} ns/row; "
          f"cpu min {min(cpu) / rows:.1f} ns/row, cpu median {statistics.median(cpu) / rows:.1f} ns/row; "
          f"sum of predictions {float(np.sum(p, dtype=np.float64)):.6f}")


if __name__ == "__main__":
    main()
