#!/usr/bin/python3
"""Write the XGBoost evaluator's test fixtures.

For each case, trains a small seeded model with XGBoost and writes
  <case>.json          the model in XGBoost's JSON format
  <case>.ubj           for some cases, the same model in UBJSON
  <case>.csv           rows (an empty cell is a missing value) followed by
                       XGBoost's own predictions (one column per output): what
                       Booster.predict answers, or for the scikit-learn case
                       what XGBClassifier.predict_proba answers

Run with Debian's python3 (python3-xgboost 1.7, python3-numpy, python3-pandas,
python3-sklearn):
  /usr/bin/python3 internal/model/xgboost/testdata/generate.py
"""
import csv
import os

import numpy as np
import pandas as pd
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


def write(name, booster, x_test, pred, ubj=False):
    booster.save_model(os.path.join(HERE, name + ".json"))
    if ubj:
        booster.save_model(os.path.join(HERE, name + ".ubj"))
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

    objectives(np.random.default_rng(11))
    linear(np.random.default_rng(12))
    categorical(np.random.default_rng(13))
    early_stopping(np.random.default_rng(14))
    print("xgboost", xgb.__version__)


def objectives(rng):
    """One small gbtree model per objective, with a base_score away from the
    default where the objective turns it into a margin."""
    f = 5
    x = with_missing(data(rng, 1200, f))
    s = np.nan_to_num(x[:, 0]) / 100.0 + np.nan_to_num(x[:, 1]) * 0.5 - np.nan_to_num(x[:, 3])
    binary_y = (s + rng.normal(scale=0.5, size=len(x)) > 0).astype(int)
    positive = np.exp(0.3 * s + rng.normal(scale=0.2, size=len(x)))
    cases = {
        "binary_logitraw": ({"objective": "binary:logitraw", "base_score": 0.3}, binary_y),
        "binary_hinge": ({"objective": "binary:hinge"}, binary_y),
        "reg_logistic": ({"objective": "reg:logistic", "base_score": 0.3}, 1 / (1 + np.exp(-s))),
        "multi_softmax": ({"objective": "multi:softmax", "num_class": 4},
                          np.digitize(s, [-1.0, 0.0, 1.0])),
        "reg_linear": ({"objective": "reg:linear", "base_score": 2.0}, 2.0 + s),
        "reg_squaredlogerror": ({"objective": "reg:squaredlogerror", "base_score": 1.5}, positive),
        "reg_pseudohubererror": ({"objective": "reg:pseudohubererror", "base_score": 0.5}, s),
        "reg_absoluteerror": ({"objective": "reg:absoluteerror"}, s),
        "count_poisson": ({"objective": "count:poisson", "base_score": 2.0},
                          rng.poisson(positive)),
        "reg_gamma": ({"objective": "reg:gamma", "base_score": 3.0}, positive),
        "reg_tweedie": ({"objective": "reg:tweedie", "tweedie_variance_power": 1.3, "base_score": 2.5},
                        positive * (rng.random(len(x)) > 0.3)),
        "survival_cox": ({"objective": "survival:cox", "base_score": 2.0},
                         positive * np.where(rng.random(len(x)) > 0.2, 1, -1)),
        "rank_pairwise": ({"objective": "rank:pairwise"}, np.digitize(s, [-1.0, 0.0, 1.0])),
        "rank_ndcg": ({"objective": "rank:ndcg"}, np.digitize(s, [-1.0, 0.0, 1.0])),
        "rank_map": ({"objective": "rank:map"}, (s > 0).astype(int)),
    }
    for name, (params, y) in cases.items():
        d = xgb.DMatrix(x[:1000], label=y[:1000])
        if name.startswith("rank_"):
            d.set_group([50] * 20)
        params = dict(params, max_depth=3, eta=0.3, seed=5, nthread=1)
        b = xgb.train(params, d, num_boost_round=12)
        xt = x[1000:1100]
        write(name, b, xt, b.predict(xgb.DMatrix(xt)))

    # survival:aft takes its labels as interval bounds.
    d = xgb.DMatrix(x[:1000])
    upper = np.where(rng.random(1000) > 0.3, positive[:1000], np.inf)
    d.set_float_info("label_lower_bound", positive[:1000])
    d.set_float_info("label_upper_bound", upper)
    b = xgb.train({"objective": "survival:aft", "aft_loss_distribution": "normal", "base_score": 1.5,
                   "max_depth": 3, "eta": 0.3, "seed": 5, "nthread": 1}, d, num_boost_round=12)
    xt = x[1000:1100]
    write("survival_aft", b, xt, b.predict(xgb.DMatrix(xt)))


def linear(rng):
    """gblinear boosters; missing values contribute nothing."""
    f = 5
    x = with_missing(data(rng, 1200, f))
    x[:, 0] /= 100.0
    s = np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) * 0.5 - np.nan_to_num(x[:, 3])
    cases = {
        "linear_binary": ({"objective": "binary:logistic", "base_score": 0.4}, (s > 0).astype(int)),
        "linear_multiclass": ({"objective": "multi:softprob", "num_class": 3},
                              np.digitize(s, [-0.7, 0.7])),
        "linear_poisson": ({"objective": "count:poisson", "base_score": 1.5},
                           rng.poisson(np.exp(0.3 * s))),
    }
    for name, (params, y) in cases.items():
        params = dict(params, booster="gblinear", eta=0.5, seed=6, nthread=1)
        b = xgb.train(params, xgb.DMatrix(x[:1000], label=y[:1000]), num_boost_round=20)
        xt = x[1000:1100]
        write(name, b, xt, b.predict(xgb.DMatrix(xt)), ubj=name == "linear_multiclass")


def categorical(rng):
    """Categorical splits from a pandas DataFrame: partition splits (a set of
    categories per node) and one-hot splits (one category per node), with
    missing values and category codes the model never saw."""
    n = 3000
    colour = pd.Categorical(rng.choice(["red", "green", "blue", "cyan", "grey", "pink", "teal"], size=n))
    size = pd.Categorical(rng.choice(["S", "M", "L", "XL"], size=n))
    num = rng.normal(size=n)
    effect = {"red": 2.0, "green": -1.0, "blue": 0.5, "cyan": -2.0, "grey": 1.0, "pink": 0.0, "teal": 3.0}
    y = np.array([effect[c] for c in colour]) + (np.asarray(size) == "XL") * 1.5 + num + \
        rng.normal(scale=0.3, size=n)
    df = pd.DataFrame({"num": num, "colour": colour, "size": size})
    df.loc[df.index[::13], "colour"] = np.nan
    df.loc[df.index[5::17], "num"] = np.nan
    df.loc[df.index[7::19], "size"] = np.nan
    for name, onehot in (("categorical", 1), ("categorical_onehot", 64)):
        for objective, label in (("reg:squarederror", y), ("binary:logistic", (y > 1).astype(int))):
            case = name if objective == "reg:squarederror" else name + "_binary"
            b = xgb.train({"objective": objective, "tree_method": "hist", "max_cat_to_onehot": onehot,
                           "max_depth": 4, "eta": 0.3, "seed": 7, "nthread": 1},
                          xgb.DMatrix(df[:2500], label=label[:2500], enable_categorical=True),
                          num_boost_round=15)
            # Rows as codes, NaN for a missing value, and some codes that name
            # no category of the training data.
            codes = np.c_[df["num"].to_numpy(), df["colour"].cat.codes.to_numpy(float),
                          df["size"].cat.codes.to_numpy(float)][2500:2700]
            codes[codes == -1] = np.nan
            codes[0::23, 1] = 9      # a code past the last category
            codes[1::29, 1] = 2.6    # a fraction: XGBoost truncates it
            codes[2::31, 2] = -3     # a negative code
            xt = codes
            d = xgb.DMatrix(xt, feature_names=list(df.columns), feature_types=["q", "c", "c"],
                            enable_categorical=True)
            write(case, b, xt, b.predict(d), ubj=case == "categorical")

    # A small model, as a seed for FuzzParse: two trees of depth 2, both formats.
    b = xgb.train({"objective": "binary:logistic", "tree_method": "hist", "max_cat_to_onehot": 1,
                   "max_depth": 2, "seed": 7, "nthread": 1},
                  xgb.DMatrix(df[:2500], label=(y[:2500] > 1).astype(int), enable_categorical=True),
                  num_boost_round=2)
    xt = np.c_[df["num"].to_numpy(), df["colour"].cat.codes.to_numpy(float),
               df["size"].cat.codes.to_numpy(float)][2500:2600]
    xt[xt == -1] = np.nan
    d = xgb.DMatrix(xt, feature_names=list(df.columns), feature_types=["q", "c", "c"], enable_categorical=True)
    write("categorical_small", b, xt, b.predict(d), ubj=True)


def early_stopping(rng):
    """An XGBClassifier stopped early: the file keeps every tree it grew and
    the attribute best_iteration; predict_proba uses the trees up to it."""
    from sklearn.model_selection import train_test_split
    x = with_missing(data(rng, 3000, 5))
    y = ((np.nan_to_num(x[:, 0]) / 100.0 + rng.normal(scale=1.0, size=len(x))) > 0).astype(int)
    x_train, x_valid, y_train, y_valid = train_test_split(x[:2800], y[:2800], random_state=0)
    clf = xgb.XGBClassifier(n_estimators=300, max_depth=4, learning_rate=0.3, early_stopping_rounds=5,
                            random_state=8, n_jobs=1)
    clf.fit(x_train, y_train, eval_set=[(x_valid, y_valid)], verbose=False)
    assert clf.best_iteration < 100, clf.best_iteration
    xt = x[2800:3000]
    write("early_stopping", clf.get_booster(), xt, clf.predict_proba(xt)[:, 1])


if __name__ == "__main__":
    main()
