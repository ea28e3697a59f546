#!/usr/bin/python3
"""Write the UBJSON transcoder's test fixtures.

For each case, trains a small seeded model with XGBoost and saves it twice:
  <case>.ubj   XGBoost's UBJSON format (save_model picks it from the extension)
  <case>.json  XGBoost's JSON format, the same document as text

Run with Debian's python3 (python3-xgboost 1.7, python3-numpy):
  /usr/bin/python3 internal/model/xgboost/ubjson/testdata/generate.py
"""
import os

import numpy as np
import xgboost as xgb

HERE = os.path.dirname(os.path.abspath(__file__))


def train(params, x, y, rounds):
    params = dict(params, seed=7, nthread=1, max_depth=3, eta=0.3)
    return xgb.train(params, xgb.DMatrix(x, label=y, missing=np.nan), num_boost_round=rounds)


def save(name, booster):
    booster.save_model(os.path.join(HERE, name + ".ubj"))
    booster.save_model(os.path.join(HERE, name + ".json"))


def main():
    rng = np.random.default_rng(13)
    x = rng.normal(size=(200, 5))
    x[:, 0] *= 1000.0                       # wide-range values: floats of every exponent
    margin = x[:, 1] + 0.5 * x[:, 2] - 0.002 * x[:, 0]

    save("binary", train({"objective": "binary:logistic"}, x, (margin > 0).astype(float), 4))
    save("regression", train({"objective": "reg:squarederror"}, x, margin * 3.0, 5))

    classes = np.digitize(margin, [-0.5, 0.5]).astype(float)
    save("multiclass", train({"objective": "multi:softprob", "num_class": 3}, x, classes, 3))

    missing = x.copy()
    missing[::7, 1] = np.nan
    missing[3::5, 2] = np.nan
    save("missing", train({"objective": "binary:logistic"}, missing, (margin > 0).astype(float), 4))


if __name__ == "__main__":
    main()
