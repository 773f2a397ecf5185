"""How initialize's final model is made, tried by nested cross-validation on adult.data alone
(adult.test is never read). Each outer fold holds out a fifth; on the rest an inner k-fold CV
with early stopping picks the rounds, as initialize's search does, and the final model is
made from it in one of several ways, scored on the held-out fifth:

- refit: one model on all the inner rows, for the rounds the CV chose (today's way);
- refit x1.2: the same for 20% more rounds (a fifth more rows to fit);
- fold average: the inner CV's own fold models, their raw scores averaged (one model file of
  all their trees with leaf values divided by k: no refit at all);
- seed average: three refits with bagging, raw scores averaged.

    python scripts/final_model_cv.py DATA_DIR [--outer 5] [--inner 5] [--rates 0.05 0.1]
"""

import argparse
import pathlib
import time

import numpy as np

from model_cv import NUMERIC, SEED, TODAY, frame, stratified
from quality import CATEGORICAL, read

BASE = dict(TODAY, learning_rate=0.05, max_cat_to_onehot=64, min_data_in_leaf=5)


def log_loss(y, p):
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def main():
    import lightgbm as lgb

    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("--outer", type=int, default=5)
    parser.add_argument("--inner", type=int, default=5)
    parser.add_argument("--rates", type=float, nargs="*", default=[0.05, 0.1])
    args = parser.parse_args()
    x, y = read(pathlib.Path(args.data_dir) / "adult.data")
    cols, cats = frame(x, NUMERIC + ["education_num"], CATEGORICAL, [])
    print(f"adult.data, {len(y)} rows: outer {args.outer}-fold, inner {args.inner}-fold")
    for rate in args.rates:
        params = dict(BASE, learning_rate=rate, objective="binary", metric="binary_logloss",
                      verbose=-1, num_threads=1, deterministic=True, force_row_wise=True,
                      seed=SEED)
        patience = max(20, int(1.0 / rate))
        losses = {}
        start = time.perf_counter()
        for train, held in stratified(y, args.outer, SEED + 100):
            xt, yt = cols.iloc[train], y[train]
            data = lgb.Dataset(xt, yt, categorical_feature=cats, free_raw_data=False)
            out = lgb.cv(params, data, num_boost_round=5000,
                         folds=stratified(yt, args.inner, SEED), return_cvbooster=True,
                         callbacks=[lgb.early_stopping(patience, verbose=False)])
            curve = out["valid binary_logloss-mean"]
            rounds = int(np.argmin(curve)) + 1
            xh, yh = cols.iloc[held], y[held]

            def score(name, raw):
                losses.setdefault(name, []).append(log_loss(yh, sigmoid(raw)))

            margins = [b.predict(xh, raw_score=True, num_iteration=rounds)
                       for b in out["cvbooster"].boosters]
            score("fold average", np.mean(margins, axis=0))
            for factor, name in ((1.0, "refit"), (1.2, "refit x1.2")):
                model = lgb.train(params, data, num_boost_round=int(rounds * factor))
                score(name, model.predict(xh, raw_score=True))
            bagged = dict(params, bagging_fraction=0.8, feature_fraction=0.8)
            seeds = [lgb.train(dict(bagged, seed=SEED + s), data, num_boost_round=rounds)
                     .predict(xh, raw_score=True) for s in range(3)]
            score("seed average (3, bagging 0.8)", np.mean(seeds, axis=0))
            losses.setdefault("rounds", []).append(rounds)
        rounds = losses.pop("rounds")
        print(f"learning rate {rate}: inner CV rounds {rounds} "
              f"({time.perf_counter() - start:.0f} s)")
        first = None
        for name, values in losses.items():
            mean = float(np.mean(values))
            first = mean if first is None else first
            print(f"  {name:32s} {mean:.5f}  {mean - first:+.5f}  "
                  f"per fold {' '.join(f'{v:.4f}' for v in values)}", flush=True)


if __name__ == "__main__":
    main()
