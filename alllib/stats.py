"""Beyond the paper: uncertainty and significance.

- `cluster_bootstrap`: confidence intervals by resampling subjects (images of one subject are not
  independent), stratified by class so every replicate has both classes;
- `mcnemar`: paired test of two classifiers' accuracy on the same images (exact binomial and the
  continuity-corrected chi-square);
- `delong`: paired test of two AUCs on the same images (DeLong et al. 1988, fast form of Sun & Xu 2014).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as st

from . import metrics


def bootstrap_indices(frame: pd.DataFrame, n: int, seed: int = 0, cluster: str = "subject", strata: str = "y"):
    """`n` resamples of `frame`'s row positions: clusters (subjects) drawn with replacement within
    each stratum (class), every drawn cluster contributing all its rows."""
    rng = np.random.default_rng(seed)
    frame = frame.reset_index(drop=True)
    groups = {s: [g.index.to_numpy() for _, g in d.groupby(cluster)] for s, d in frame.groupby(strata)}
    for _ in range(n):
        yield np.concatenate([grp[i] for grp in groups.values() for i in rng.integers(0, len(grp), len(grp))])


def _percentiles(point: dict, reps: list[dict], level: float) -> dict:
    reps = pd.DataFrame(reps)
    alpha = (1 - level) / 2
    return {k: (float(point[k]), float(reps[k].quantile(alpha)), float(reps[k].quantile(1 - alpha))) for k in point}


def cluster_bootstrap(frame: pd.DataFrame, statistic, n: int = 1000, seed: int = 0, level: float = 0.95,
                      cluster: str = "subject", strata: str = "y") -> dict:
    """Percentile CI of `statistic(frame_resample) -> dict of floats` under resampling of clusters
    (subjects) with replacement within each stratum (class). Returns {name: (estimate, lo, hi)}."""
    frame = frame.reset_index(drop=True)
    point = statistic(frame)
    reps = [statistic(frame.loc[idx]) for idx in bootstrap_indices(frame, n, seed, cluster, strata)]
    return _percentiles(point, reps, level)


def metric_cis(pred: pd.DataFrame, n: int = 1000, seed: int = 0, names=metrics.HEADLINE, level: float = 0.95) -> dict:
    """Subject-level bootstrap CIs of the headline metrics of one set of predictions (the same
    resamples as `cluster_bootstrap`, indexing numpy arrays instead of the frame, for speed)."""
    pred = pred.reset_index(drop=True)
    y, p = pred["y"].to_numpy(int), pred["p_all"].to_numpy(float)

    def stat(idx):
        m = metrics.evaluate(y[idx], p[idx])
        return {k: m[k] for k in names}
    reps = [stat(idx) for idx in bootstrap_indices(pred, n, seed)]
    return _percentiles(stat(np.arange(len(y))), reps, level)


def mcnemar(y_true, pred_a, pred_b) -> dict:
    """McNemar's test on paired predictions. b = A right and B wrong, c = A wrong and B right."""
    y, a, b_ = (np.asarray(v).astype(int) for v in (y_true, pred_a, pred_b))
    ra, rb = a == y, b_ == y
    b, c = int((ra & ~rb).sum()), int((~ra & rb).sum())
    if b + c == 0:
        return {"b": b, "c": c, "chi2": 0.0, "p_chi2": 1.0, "p_exact": 1.0}
    chi2 = (abs(b - c) - 1) ** 2 / (b + c)
    return {"b": b, "c": c, "chi2": float(chi2), "p_chi2": float(st.chi2.sf(chi2, 1)),
            "p_exact": float(min(1.0, 2 * st.binom.cdf(min(b, c), b + c, 0.5)))}


def _midrank(x: np.ndarray) -> np.ndarray:
    return st.rankdata(x, method="average")


def delong(y_true, scores_a, scores_b) -> dict:
    """DeLong's paired test of AUC(A) = AUC(B). Returns both AUCs, their covariance matrix, z and p."""
    y = np.asarray(y_true).astype(int)
    S = np.vstack([np.asarray(scores_a, float), np.asarray(scores_b, float)])
    pos, neg = S[:, y == 1], S[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    if m == 0 or n == 0:
        raise ValueError("delong needs both classes among the labels")
    tx = np.vstack([_midrank(r) for r in pos])
    ty = np.vstack([_midrank(r) for r in neg])
    tz = np.vstack([_midrank(r) for r in S[:, np.r_[np.flatnonzero(y == 1), np.flatnonzero(y == 0)]]])
    auc = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2) / n
    v01 = (tz[:, :m] - tx) / n          # structural components of the positives
    v10 = 1 - (tz[:, m:] - ty) / m      # structural components of the negatives
    cov = np.cov(v01) / m + np.cov(v10) / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = (auc[0] - auc[1]) / np.sqrt(var) if var > 0 else 0.0
    return {"auc_a": float(auc[0]), "auc_b": float(auc[1]), "cov": cov, "z": float(z),
            "p": float(2 * st.norm.sf(abs(z)))}


def paired_tests(y_true, p_a, p_b) -> dict:
    """McNemar on accuracy and DeLong on AUC, for p(ALL) of two classifiers on the same images."""
    mc = mcnemar(y_true, metrics.predict_labels(p_a), metrics.predict_labels(p_b))
    dl = delong(y_true, p_a, p_b)
    return {"mcnemar_b": mc["b"], "mcnemar_c": mc["c"], "mcnemar_p": mc["p_exact"],
            "auc_a": dl["auc_a"], "auc_b": dl["auc_b"], "delong_z": dl["z"], "delong_p": dl["p"]}


def per_subject_accuracy(pred: pd.DataFrame) -> pd.DataFrame:
    d = pred.assign(correct=(metrics.predict_labels(pred["p_all"]) == pred["y"]).astype(int))
    return (d.groupby(["subject", "label"]).agg(images=("correct", "size"), accuracy=("correct", "mean"))
            .reset_index().sort_values(["accuracy", "images"], ascending=[True, False]).reset_index(drop=True))
