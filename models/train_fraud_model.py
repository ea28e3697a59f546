#!/usr/bin/python3
"""Train the embedded default model, fraud_model v1.

Generates a seeded synthetic card-transaction data set, trains an XGBoost
binary:logistic classifier on it and writes, next to this script:

  fraud_model/v1/model.json   the model in XGBoost's JSON format
  fraud_model/config.yaml     class names, feature names and a description
  fraud_model/testdata/heldout.csv
                              held-out rows with XGBoost's own predicted
                              probability of "fraud", for the Go evaluator tests
  fraud_model/testdata/train.csv
                              the training rows, for training profiles

Run with Debian's python3 (python3-xgboost 1.7, python3-numpy):
  /usr/bin/python3 models/train_fraud_model.py
"""
import csv
import os

import numpy as np
import xgboost as xgb

SEED = 20261123
FEATURES = [
    "amount",                 # transaction amount in USD
    "hour_of_day",            # 0..23, local time of the transaction
    "merchant_category",      # 0..9, see MERCHANT_CATEGORIES
    "distance_from_home_km",  # distance between the merchant and the card holder's home
    "transactions_last_24h",  # number of transactions on the card in the previous 24 hours
    "card_age_days",          # days since the card was issued
]
MERCHANT_CATEGORIES = [
    "grocery", "gas", "online", "travel", "electronics",
    "restaurant", "entertainment", "pharmacy", "jewelry", "atm",
]
# Categories that fraudsters favour get a higher log-odds.
CATEGORY_RISK = np.array([-0.8, -0.3, 0.9, 0.6, 1.1, -0.6, 0.0, -0.5, 1.4, 0.8])


def generate(rng, n):
    amount = np.round(rng.lognormal(mean=3.6, sigma=1.1, size=n), 2)
    hour = rng.choice(24, size=n, p=_hour_weights()).astype(float)
    category = rng.integers(0, len(MERCHANT_CATEGORIES), size=n).astype(float)
    distance = np.round(rng.exponential(scale=12.0, size=n), 1)
    tx24 = rng.poisson(lam=3.0, size=n).astype(float)
    card_age = rng.integers(1, 3650, size=n).astype(float)

    night = ((hour <= 4) | (hour >= 23)).astype(float)
    logit = 1.6 + 1.8 * (
        -2.4
        + 0.9 * np.log1p(amount / 100.0)
        + 1.3 * night
        + CATEGORY_RISK[category.astype(int)]
        + 0.045 * np.minimum(distance, 200.0)
        + 0.22 * np.maximum(tx24 - 4.0, 0.0)
        - 0.6 * np.log1p(card_age / 90.0)
    )
    p = 1.0 / (1.0 + np.exp(-logit))
    y = (rng.random(n) < p).astype(int)
    x = np.column_stack([amount, hour, category, distance, tx24, card_age])
    return x, y


def _hour_weights():
    w = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 4, 4.5,
                  5, 4.5, 4, 4, 4.2, 4.8, 5, 4.5, 3.5, 2.5, 2, 1.5])
    return w / w.sum()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "fraud_model")
    os.makedirs(os.path.join(out, "v1"), exist_ok=True)
    os.makedirs(os.path.join(out, "testdata"), exist_ok=True)

    rng = np.random.default_rng(SEED)
    x, y = generate(rng, 20000)
    n_train = 16000
    x_train, y_train = x[:n_train], y[:n_train]
    x_test = x[n_train:n_train + 300].copy()
    # A few held-out rows carry missing values, which take each split's default branch.
    x_test[::25, 3] = np.nan
    x_test[7::40, 0] = np.nan

    dtrain = xgb.DMatrix(x_train, label=y_train, feature_names=FEATURES)
    params = {
        "objective": "binary:logistic",
        "max_depth": 4,
        "eta": 0.15,
        "subsample": 0.9,
        "colsample_bytree": 0.9,
        "eval_metric": "auc",
        "seed": SEED,
        "nthread": 1,
    }
    booster = xgb.train(params, dtrain, num_boost_round=80)
    booster.save_model(os.path.join(out, "v1", "model.json"))

    dtest = xgb.DMatrix(x_test, feature_names=FEATURES)
    proba = booster.predict(dtest)
    with open(os.path.join(out, "testdata", "heldout.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(FEATURES + ["xgboost_fraud_probability"])
        for row, p in zip(x_test, proba):
            w.writerow([_fmt(v) for v in row] + ["%.9g" % p])
    with open(os.path.join(out, "testdata", "train.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(FEATURES + ["is_fraud"])
        for row, label in zip(x_train, y_train):
            w.writerow([_fmt(v) for v in row] + [int(label)])

    with open(os.path.join(out, "config.yaml"), "w") as f:
        f.write("# fraud_model: the embedded default model. Written by models/train_fraud_model.py.\n")
        f.write("description: Card-transaction fraud classifier (XGBoost, synthetic training data).\n")
        f.write("classes: [safe, fraud]\n")
        f.write("features: [%s]\n" % ", ".join(FEATURES))
        f.write("default_version: v1\n")

    train_pred = booster.predict(dtrain)
    acc = float(((train_pred > 0.5).astype(int) == y_train).mean())
    print("fraud rate %.4f, train accuracy %.4f, xgboost %s" % (y.mean(), acc, xgb.__version__))


def _fmt(v):
    if np.isnan(v):
        return ""
    return repr(float(v))


if __name__ == "__main__":
    main()
