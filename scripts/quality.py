"""The quality benchmark beside ours: adult.data trained on, adult.test scored, by Python LightGBM
and CatBoost at their defaults and at a fixed tuned setting, and by our bundle in models/ (its
manifest's adult.test figures). Nothing here looks at adult.test before scoring it: the tuned
settings choose their rounds on adult.data alone (3-fold CV for LightGBM, a held-out fifth for
CatBoost).

    python scripts/quality.py DATA_DIR MODELS_DIR [--threads 2] [--ours-seconds S]

Prints a Markdown table: ROC AUC, log loss, accuracy at 0.5, and training seconds (ours:
initialize's wall time when given, else its search's).
"""

import argparse
import json
import math
import pathlib
import time

import numpy as np
import pandas as pd

COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
    "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week",
    "native_country", "income_bracket",
]
CATEGORICAL = [
    "workclass", "education", "marital_status", "occupation", "relationship", "race", "sex",
    "native_country",
]
SEED = 1


def read(path):
    """A UCI Adult file: `?` is a category of its own; the test file's first line and its
    labels' trailing dots are dropped."""
    frame = pd.read_csv(path, header=None, names=COLUMNS, skipinitialspace=True,
                        comment="|", skip_blank_lines=True)
    frame = frame.dropna(subset=["income_bracket"])
    y = frame.pop("income_bracket").str.rstrip(".").eq(">50K").astype(int).to_numpy()
    return frame, y


def as_categories(train, test):
    """The categorical columns as pandas categories over the training file's values (a value
    only the test file has reads as missing)."""
    train, test = train.copy(), test.copy()
    for c in CATEGORICAL:
        kinds = pd.CategoricalDtype(sorted(train[c].unique()))
        train[c] = train[c].astype(kinds)
        test[c] = test[c].astype(kinds)
    return train, test


def metrics(y, p):
    p = np.clip(p, 1e-15, 1 - 1e-15)
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    # Mid-ranks for ties, as the AUC's Mann-Whitney form needs.
    sorted_p = p[order]
    i = 0
    while i < len(p):
        j = i
        while j + 1 < len(p) and sorted_p[j + 1] == sorted_p[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    positives = y.sum()
    negatives = len(y) - positives
    auc = (ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    log_loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    accuracy = np.mean((p >= 0.5) == (y == 1))
    return auc, log_loss, accuracy


def lightgbm_default(x, y, xt, threads):
    import lightgbm as lgb

    params = {"objective": "binary", "seed": SEED, "num_threads": threads, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(x, y, categorical_feature=CATEGORICAL),
                        num_boost_round=100)
    return booster.predict(xt), "defaults (100 rounds, learning rate 0.1, 31 leaves)"


def lightgbm_tuned(x, y, xt, threads):
    import lightgbm as lgb

    params = {
        "objective": "binary", "learning_rate": 0.02, "num_leaves": 31, "min_data_in_leaf": 20,
        "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "seed": SEED,
        "num_threads": threads, "verbose": -1, "deterministic": True, "force_row_wise": True,
    }
    data = lgb.Dataset(x, y, categorical_feature=CATEGORICAL, free_raw_data=False)
    cv = lgb.cv(params, data, num_boost_round=3000, nfold=3, stratified=False, seed=SEED,
                callbacks=[lgb.early_stopping(100, verbose=False)])
    rounds = len(cv["valid binary_logloss-mean"])
    booster = lgb.train(params, data, num_boost_round=rounds)
    return booster.predict(xt), f"learning rate 0.02, {rounds} rounds by 3-fold CV on adult.data"


def catboost_default(x, y, xt, threads):
    from catboost import CatBoostClassifier

    model = CatBoostClassifier(random_seed=SEED, thread_count=threads, verbose=False,
                               cat_features=CATEGORICAL, allow_writing_files=False)
    model.fit(x, y)
    return model.predict_proba(xt)[:, 1], "defaults (1,000 rounds, its automatic learning rate)"


def catboost_tuned(x, y, xt, threads):
    from catboost import CatBoostClassifier

    rng = np.random.default_rng(SEED)
    held = rng.random(len(y)) < 0.2
    common = dict(random_seed=SEED, thread_count=threads, verbose=False,
                  cat_features=CATEGORICAL, allow_writing_files=False, learning_rate=0.03,
                  depth=6, loss_function="Logloss")
    probe = CatBoostClassifier(iterations=5000, od_type="Iter", od_wait=200, **common)
    probe.fit(x[~held], y[~held], eval_set=(x[held], y[held]), use_best_model=True)
    rounds = int(probe.get_best_iteration() * 1.25) + 1
    model = CatBoostClassifier(iterations=rounds, **common)
    model.fit(x, y)
    return (model.predict_proba(xt)[:, 1],
            f"learning rate 0.03, depth 6, {rounds} rounds (1.25 x the best on a held-out "
            "fifth of adult.data)")


def ours(models_dir):
    current = (pathlib.Path(models_dir) / "CURRENT").read_text().strip()
    manifest = json.loads((pathlib.Path(models_dir) / f"manifest_v{int(current):04d}.json").read_text())
    t = manifest["test_metrics"]
    cv = manifest["cv"]
    return (t["roc_auc"], t["log_loss"], t["accuracy"], cv.get("search_seconds"),
            f"v{manifest['version']}: {cv['evaluations']} evaluations, {cv['best_rounds']} rounds")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("models_dir")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ours-seconds", type=float, help="initialize's wall time")
    args = parser.parse_args()
    data = pathlib.Path(args.data_dir)
    x, y = read(data / "adult.data")
    xt, yt = read(data / "adult.test")
    lx, lxt = as_categories(x, xt)
    rows = []
    for name, fit, (a, b) in [
        ("LightGBM", lightgbm_default, (lx, lxt)),
        ("LightGBM tuned", lightgbm_tuned, (lx, lxt)),
        ("CatBoost", catboost_default, (x, xt)),
        ("CatBoost tuned", catboost_tuned, (x, xt)),
    ]:
        start = time.perf_counter()
        p, how = fit(a, y, b, args.threads)
        seconds = time.perf_counter() - start
        rows.append((name, *metrics(yt, p), seconds, how))
    auc, log_loss, accuracy, search_seconds, how = ours(args.models_dir)
    seconds = args.ours_seconds if args.ours_seconds is not None else search_seconds
    rows.append(("census-stream initialize", auc, log_loss, accuracy, seconds, how))
    print(f"adult.data {len(y)} rows trained on, adult.test {len(yt)} rows scored, "
          f"{args.threads} threads")
    print()
    print("| model | ROC AUC | log loss | accuracy | seconds | setting |")
    print("|---|---|---|---|---|---|")
    for name, auc, log_loss, accuracy, seconds, how in rows:
        secs = "–" if seconds is None or math.isnan(seconds) else f"{seconds:.1f}"
        print(f"| {name} | {auc:.4f} | {log_loss:.4f} | {accuracy:.4f} | {secs} | {how} |")


if __name__ == "__main__":
    main()
