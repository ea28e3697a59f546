#!/usr/bin/python3
"""Write the XGBoost evaluator's test fixtures.

For each case, trains a small seeded model with XGBoost and writes
  <case>.json          the model in XGBoost's JSON format
  <case>.csv           rows (an empty cell is a missing value) followed by
                       XGBoost's own predictions (one column per output)

Run with Debian's python3 (python3-xgboost 1.7, python3-numpy):
  /usr/bin/python3 internal/model/xgboost/testdata/generate.py
"""
import csv
import os

import numpy as np
import xgboost as xgb

HERE = os.path.dirname(os.path.abspath(__file__))


def data(rng, n, f):
    x = rng.normal(size=(n, f))
    x[:, 0] *= 100.0                      # one wide-range feature
    x[:, 1] = np.round(x[:, 1] * 3.0)     # one integer-valued feature, exact ties at thresholds
    return x


def with_missing(x):
    x = x.copy()
    x[::9, 0] = np.nan
    x[3::11, 2] = np.nan
    x[5::17, :] = np.nan                  # whole rows missing
    return x


def write(name, booster, x_test, pred):
    booster.save_model(os.path.join(HERE, name + ".json"))
    pred = np.asarray(pred)
    if pred.ndim == 1:
        pred = pred[:, None]
    with open(os.path.join(HERE, name + ".csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["f%d" % i for i in range(x_test.shape[1])] + ["out%d" % i for i in range(pred.shape[1])])
        for row, p in zip(x_test, pred):
            w.writerow(["" if np.isnan(v) else repr(float(v)) for v in row] + ["%.9g" % v for v in p])


def main():
    rng = np.random.default_rng(7)
    f = 5

    # binary:logistic, gbtree, trained with missing values present.
    x = with_missing(data(rng, 3000, f))
    y = ((x[:, 0] / 100.0 + x[:, 1] * 0.5 - x[:, 3] + rng.normal(scale=0.5, size=len(x))) > 0).astype(int)
    b = xgb.train({"objective": "binary:logistic", "max_depth": 5, "eta": 0.3, "seed": 1, "nthread": 1},
                  xgb.DMatrix(x[:2500], label=y[:2500]), num_boost_round=40)
    xt = x[2500:2700]
    write("binary", b, xt, b.predict(xgb.DMatrix(xt)))

    # multi:softprob, 3 classes, with two parallel trees per round (a boosted random forest).
    x = with_missing(data(rng, 3000, f))
    s = x[:, 0] / 100.0 + np.nan_to_num(x[:, 2]) + rng.normal(scale=0.4, size=len(x))
    y = np.digitize(s, [-0.7, 0.7])
    b = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 4, "eta": 0.3,
                   "num_parallel_tree": 2, "subsample": 0.8, "seed": 2, "nthread": 1},
                  xgb.DMatrix(x[:2500], label=y[:2500]), num_boost_round=25)
    xt = x[2500:2700]
    write("multiclass", b, xt, b.predict(xgb.DMatrix(xt)))

    # reg:squarederror with a base_score far from zero.
    x = with_missing(data(rng, 3000, f))
    y = 50.0 + 3.0 * np.nan_to_num(x[:, 0]) / 100.0 + 2.0 * np.nan_to_num(x[:, 1]) ** 2 + rng.normal(size=len(x))
    b = xgb.train({"objective": "reg:squarederror", "max_depth": 6, "eta": 0.2, "base_score": 50.0,
                   "seed": 3, "nthread": 1},
                  xgb.DMatrix(x[:2500], label=y[:2500]), num_boost_round=60)
    xt = x[2500:2700]
    write("regression", b, xt, b.predict(xgb.DMatrix(xt)))

    # dart booster, binary:logistic; prediction applies every tree's weight_drop.
    x = with_missing(data(rng, 3000, f))
    y = ((np.nan_to_num(x[:, 3]) - x[:, 1] * 0.3 + rng.normal(scale=0.5, size=len(x))) > 0).astype(int)
    b = xgb.train({"booster": "dart", "objective": "binary:logistic", "max_depth": 4, "eta": 0.3,
                   "rate_drop": 0.2, "skip_drop": 0.3, "seed": 4, "nthread": 1},
                  xgb.DMatrix(x[:2500], label=y[:2500]), num_boost_round=30)
    xt = x[2500:2700]
    write("dart", b, xt, b.predict(xgb.DMatrix(xt)))

    print("xgboost", xgb.__version__)


if __name__ == "__main__":
    main()
