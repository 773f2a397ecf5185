"""The model choices of initialize, tried by cross-validation on adult.data alone (adult.test is
never read): feature sets and LightGBM settings, each scored by the mean validation log loss of
repeated stratified k-fold CV with early stopping, as initialize's own CV does.

    python scripts/model_cv.py DATA_DIR [--folds 5] [--repeats 2] [--threads 1] [--only NAME...]

Prints one line per variant: its CV log loss (mean over the repeats, and their spread), the
rounds early stopping chose, and the change against the first variant (today's choices).
"""

import argparse
import pathlib
import time

import numpy as np
import pandas as pd

from quality import CATEGORICAL, read

SEED = 1
NUMERIC = ["age", "fnlwgt", "capital_gain", "capital_loss", "hours_per_week"]
CROSSED = [("education_occupation", "education", "occupation"),
           ("native_country_occupation", "native_country", "occupation")]

# Today's search chose these (v1's manifest), at the corner of its box.
TODAY = {"learning_rate": 0.07, "num_leaves": 31, "min_sum_hessian_in_leaf": 0.1,
         "feature_fraction": 0.5, "bagging_fraction": 1.0, "bagging_freq": 1,
         "lambda_l1": 0.1, "lambda_l2": 0.01}


def frame(x, numeric, categorical, crossed):
    """The model's columns: numerics as they are, categoricals (and crosses of two of them) as
    integer codes over their sorted values, as the feature processor's label encoding."""
    out = pd.DataFrame({c: x[c].astype(float) for c in numeric})
    cats = list(categorical)
    for c in categorical:
        out[c] = x[c]
    for name, a, b in crossed:
        out[name] = x[a] + "|" + x[b]
        cats.append(name)
    for c in cats:
        out[c] = out[c].astype("category").cat.codes
    return out, cats


def stratified(y, k, seed):
    """k (train, validation) index pairs keeping each fold's class balance: each class's rows
    shuffled (seeded) and dealt round-robin."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=int)
    for label in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == label))
        fold[idx] = np.arange(len(idx)) % k
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


def cv(x, y, cats, params, folds, repeats, threads, rounds=5000, patience=None):
    import lightgbm as lgb

    base = {"objective": "binary", "metric": "binary_logloss", "verbose": -1,
            "num_threads": threads, "deterministic": True, "force_row_wise": True,
            "seed": SEED}
    base.update(params)
    patience = patience or max(20, int(1.0 / base["learning_rate"]))
    losses, best = [], []
    for r in range(repeats):
        data = lgb.Dataset(x, y, categorical_feature=cats, free_raw_data=False)
        out = lgb.cv(base, data, num_boost_round=rounds, folds=stratified(y, folds, SEED + r),
                     callbacks=[lgb.early_stopping(patience, verbose=False)])
        curve = out["valid binary_logloss-mean"]
        losses.append(min(curve))
        best.append(int(np.argmin(curve)) + 1)
    return float(np.mean(losses)), float(np.std(losses)), int(np.mean(best))


def variants():
    """(name, numeric, categorical, crossed, params): the first is today's model."""
    cats = list(CATEGORICAL)
    no_edu = [c for c in cats if c != "education"]
    good = dict(TODAY, learning_rate=0.05)
    yield "today", NUMERIC, cats, CROSSED, TODAY
    yield "today, lr 0.05", NUMERIC, cats, CROSSED, good
    yield "+ education_num", NUMERIC + ["education_num"], cats, CROSSED, good
    yield "education_num, no education", NUMERIC + ["education_num"], no_edu, \
        [CROSSED[1]], good
    yield "no crosses", NUMERIC, cats, [], good
    yield "no education_occupation", NUMERIC, cats, [CROSSED[1]], good
    yield "no native_country_occupation", NUMERIC, cats, [CROSSED[0]], good
    yield "no fnlwgt", [c for c in NUMERIC if c != "fnlwgt"], cats, CROSSED, good
    for leaves in (8, 16, 63):
        yield f"num_leaves {leaves}", NUMERIC, cats, CROSSED, dict(good, num_leaves=leaves)
    for n in (50, 100):
        yield f"min_data_in_leaf {n}", NUMERIC, cats, CROSSED, dict(good, min_data_in_leaf=n)
    for ff in (0.3, 0.8):
        yield f"feature_fraction {ff}", NUMERIC, cats, CROSSED, dict(good, feature_fraction=ff)
    yield "bagging 0.8", NUMERIC, cats, CROSSED, dict(good, bagging_fraction=0.8)
    for l2 in (1.0, 10.0):
        yield f"lambda_l2 {l2}", NUMERIC, cats, CROSSED, dict(good, lambda_l2=l2)
    yield "cat_smooth 50, cat_l2 30", NUMERIC, cats, CROSSED, \
        dict(good, cat_smooth=50.0, cat_l2=30.0)
    yield "min_data_per_group 200", NUMERIC, cats, CROSSED, dict(good, min_data_per_group=200)
    yield "max_cat_threshold 8", NUMERIC, cats, CROSSED, dict(good, max_cat_threshold=8)
    yield "max_cat_to_onehot 16", NUMERIC, cats, CROSSED, dict(good, max_cat_to_onehot=16)
    yield "lr 0.02", NUMERIC, cats, CROSSED, dict(good, learning_rate=0.02)
    # Second stage, from what the first showed: no crosses, and categoricals regularised.
    edu = NUMERIC + ["education_num"]
    smooth = dict(good, cat_smooth=50.0, cat_l2=30.0)
    yield "2: no crosses + education_num", edu, cats, [], good
    yield "2: no crosses, education_num for education", edu, no_edu, [], good
    yield "2: no crosses, cat_smooth 50, cat_l2 30", NUMERIC, cats, [], smooth
    yield "2: education_num for education, cat 50/30", edu, no_edu, [], smooth
    yield "2: + education_num, cat 50/30", edu, cats, [], smooth
    for cs, cl in ((20.0, 10.0), (100.0, 30.0), (50.0, 100.0)):
        yield f"2: education_num for education, cat {cs:.0f}/{cl:.0f}", edu, no_edu, [], \
            dict(good, cat_smooth=cs, cat_l2=cl)
    yield "2: education_num for education, cat 50/30, max_cat_threshold 8", edu, no_edu, [], \
        dict(smooth, max_cat_threshold=8)
    yield "2: education_num for education, cat 50/30, feature_fraction 0.3", edu, no_edu, [], \
        dict(smooth, feature_fraction=0.3)
    yield "2: education_num for education, cat 50/30, max_cat_to_onehot 64", edu, no_edu, [], \
        dict(smooth, max_cat_to_onehot=64)
    yield "2: education_num for education, cat 50/30, num_leaves 16", edu, no_edu, [], \
        dict(smooth, num_leaves=16)
    yield "2: education_num for education, cat 50/30, lr 0.02", edu, no_edu, [], \
        dict(smooth, learning_rate=0.02)
    # Third stage: today's settings around the chosen features (no crosses, education_num
    # beside education), for the search's box.
    chosen = lambda **kw: ("3: " + ", ".join(f"{k} {v}" for k, v in kw.items()), edu, cats, [],
                           dict(good, **kw))
    yield chosen(max_cat_to_onehot=64)
    for leaves in (16, 24, 48):
        yield chosen(num_leaves=leaves)
    for mcw in (1.0, 5.0):
        yield chosen(min_sum_hessian_in_leaf=mcw)
    yield chosen(min_data_in_leaf=10)
    yield chosen(feature_fraction=0.7)
    yield chosen(lambda_l1=1.0)
    yield chosen(lambda_l2=1.0)
    yield chosen(learning_rate=0.02)
    yield chosen(learning_rate=0.02, max_cat_to_onehot=64)
    yield chosen(max_cat_to_onehot=64, min_data_in_leaf=10)
    yield chosen(max_cat_to_onehot=64, min_data_in_leaf=10, num_leaves=24)
    yield chosen(max_cat_to_onehot=64, min_data_in_leaf=5)
    yield chosen(max_cat_to_onehot=64, min_data_in_leaf=10, learning_rate=0.02)
    # Fourth stage: around the fixed one-vs-rest and min_data_in_leaf 5, what the search may
    # choose (its learning rates) and what makes each evaluation cheaper (fewer bins).
    fixed = lambda **kw: ("4: " + ", ".join(f"{k} {v}" for k, v in kw.items()), edu, cats, [],
                          dict(good, max_cat_to_onehot=64, min_data_in_leaf=5, **kw))
    yield fixed(max_bin=255)
    for bins in (63, 127):
        yield fixed(max_bin=bins)
    for rate in (0.1, 0.2):
        yield fixed(learning_rate=rate)
    yield fixed(num_leaves=16)
    # Fifth stage: what the search box does not hold yet, around the fixed settings.
    yield fixed()
    yield "5: no fnlwgt", edu[:1] + edu[2:], cats, [], \
        dict(good, max_cat_to_onehot=64, min_data_in_leaf=5)
    fifth = lambda **kw: ("5: " + ", ".join(f"{k} {v}" for k, v in kw.items()), edu, cats, [],
                          dict(good, max_cat_to_onehot=64, min_data_in_leaf=5, **kw))
    for ff in (0.3, 0.7, 1.0):
        yield fifth(feature_fraction=ff)
    for l2 in (1.0, 5.0):
        yield fifth(lambda_l2=l2)
    yield fifth(min_sum_hessian_in_leaf=1.0)
    for ps in (1.0, 10.0):
        yield fifth(path_smooth=ps)
    yield fifth(min_gain_to_split=0.1)
    yield fifth(max_depth=8)
    yield fifth(extra_trees=True)
    yield fifth(num_leaves=48)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="variants whose name starts with one of these")
    args = parser.parse_args()
    x, y = read(pathlib.Path(args.data_dir) / "adult.data")
    print(f"adult.data, {len(y)} rows: {args.repeats} x {args.folds}-fold stratified CV")
    first = None
    for name, numeric, cats, crossed, params in variants():
        if args.only and not any(name.startswith(o) for o in args.only) and name != "today":
            continue
        start = time.perf_counter()
        cols, cat_cols = frame(x, numeric, cats, crossed)
        loss, spread, rounds = cv(cols, y, cat_cols, params, args.folds, args.repeats,
                                  args.threads)
        first = loss if first is None else first
        print(f"{name:32s} {loss:.5f} ±{spread:.5f}  {rounds:5d} rounds  "
              f"{loss - first:+.5f}  {time.perf_counter() - start:5.1f} s", flush=True)


if __name__ == "__main__":
    main()
