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

from alllib.method import metrics
from alllib.rounding import fmt

CI_LEVEL = 0.95  # every confidence interval of the book


def p_text(p: float) -> str:
    """A p-value as the book prints it."""
    return "n/a" if p != p else (f"{fmt(p, 3)}" if p >= 0.001 else "< 0.001")


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


def cluster_bootstrap(
    frame: pd.DataFrame,
    statistic,
    n: int = 1000,
    seed: int = 0,
    level: float = CI_LEVEL,
    cluster: str = "subject",
    strata: str = "y",
) -> dict:
    """Percentile CI of `statistic(frame_resample) -> dict of floats` under resampling of clusters
    (subjects) with replacement within each stratum (class). Returns {name: (estimate, lo, hi)}."""
    frame = frame.reset_index(drop=True)
    point = statistic(frame)
    reps = [statistic(frame.loc[idx]) for idx in bootstrap_indices(frame, n, seed, cluster, strata)]
    return _percentiles(point, reps, level)


def metric_cis(
    pred: pd.DataFrame, n: int = 1000, seed: int = 0, names=metrics.HEADLINE, level: float = CI_LEVEL
) -> dict:
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
    return {
        "b": b,
        "c": c,
        "chi2": float(chi2),
        "p_chi2": float(st.chi2.sf(chi2, 1)),
        "p_exact": float(min(1.0, 2 * st.binom.cdf(min(b, c), b + c, 0.5))),
    }


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
    v01 = (tz[:, :m] - tx) / n  # structural components of the positives
    v10 = 1 - (tz[:, m:] - ty) / m  # structural components of the negatives
    cov = np.cov(v01) / m + np.cov(v10) / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = (auc[0] - auc[1]) / np.sqrt(var) if var > 0 else 0.0
    return {
        "auc_a": float(auc[0]),
        "auc_b": float(auc[1]),
        "cov": cov,
        "z": float(z),
        "p": float(2 * st.norm.sf(abs(z))),
    }


def paired_tests(y_true, p_a, p_b) -> dict:
    """McNemar on accuracy and DeLong on AUC, for p(ALL) of two classifiers on the same images."""
    mc = mcnemar(y_true, metrics.predict_labels(p_a), metrics.predict_labels(p_b))
    dl = delong(y_true, p_a, p_b)
    return {
        "mcnemar_b": mc["b"],
        "mcnemar_c": mc["c"],
        "mcnemar_p": mc["p_exact"],
        "auc_a": dl["auc_a"],
        "auc_b": dl["auc_b"],
        "delong_z": dl["z"],
        "delong_p": dl["p"],
    }


def per_subject_accuracy(pred: pd.DataFrame) -> pd.DataFrame:
    d = pred.assign(correct=(metrics.predict_labels(pred["p_all"]) == pred["y"]).astype(int))
    return (
        d.groupby(["subject", "label"])
        .agg(images=("correct", "size"), accuracy=("correct", "mean"))
        .reset_index()
        .sort_values(["accuracy", "images"], ascending=[True, False])
        .reset_index(drop=True)
    )


# ---------------------------------------------------------------- the subject as the unit of evidence


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN and is not counted)."""
    p = np.asarray(pvalues, float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def _ba(y, p):
    """Balanced accuracy at the decision threshold (Eq. 6), the mean of the two classes' recalls (pinned
    against `metrics.evaluate` by the tests; computed directly because permutations call it often)."""
    y = np.asarray(y)
    right = metrics.predict_labels(p) == (y == 1)
    recalls = [right[y == c].mean() for c in (0, 1) if (y == c).any()]
    return float(np.mean(recalls)) if recalls else float("nan")


def _auc(y, p):
    return metrics.auc_score(y, p)


PAIRED_STATISTICS = {"BA": _ba, "AUC": _auc}


def subject_sign_flip(y, p_a, p_b, subjects, statistic, n: int = 2000, seed: int = 0) -> dict:
    """Paired permutation test with the subject as the unit: under the null hypothesis that the two
    classifiers are exchangeable, swapping their outputs on all images of a subject leaves the
    distribution of `statistic(A) - statistic(B)` unchanged. Every subject is swapped or not (a sign
    flip of its contribution); exact enumeration when 2^subjects <= n, else `n` seeded draws.
    p = share of flips at least as extreme as the observed difference (two-sided, with the observed one)."""
    y, p_a, p_b = np.asarray(y).astype(int), np.asarray(p_a, float), np.asarray(p_b, float)
    subjects = np.asarray(subjects).astype(str)
    groups, inverse = np.unique(subjects, return_inverse=True)
    k = len(groups)
    observed = statistic(y, p_a) - statistic(y, p_b)
    if k <= int(np.log2(max(n, 1))):
        flips = ((np.arange(2**k)[:, None] >> np.arange(k)) & 1).astype(bool)
    else:
        flips = np.random.default_rng(seed).integers(0, 2, (n, k)).astype(bool)
    diffs = np.empty(len(flips))
    for i, f in enumerate(flips):
        swap = f[inverse]
        diffs[i] = statistic(y, np.where(swap, p_b, p_a)) - statistic(y, np.where(swap, p_a, p_b))
    extreme = np.abs(diffs) >= abs(observed) - 1e-12
    exact = len(flips) == 2**k
    p = extreme.mean() if exact else (extreme.sum() + 1) / (len(flips) + 1)
    return {"difference": float(observed), "p": float(min(1.0, p)), "subjects": k, "draws": len(flips), "exact": exact}


def paired_subject_bootstrap(
    y, p_a, p_b, subjects, statistic, n: int = 1000, seed: int = 0, level: float = CI_LEVEL
) -> dict:
    """Percentile CI of `statistic(A) - statistic(B)` under resampling of subjects (within each
    class, both classifiers on the same resampled images), and the two-sided bootstrap p-value
    2 min(P(d* <= 0), P(d* >= 0))."""
    frame = pd.DataFrame({"y": np.asarray(y).astype(int), "subject": np.asarray(subjects).astype(str)})
    y, p_a, p_b = frame["y"].to_numpy(), np.asarray(p_a, float), np.asarray(p_b, float)
    observed = statistic(y, p_a) - statistic(y, p_b)
    reps = np.array([statistic(y[i], p_a[i]) - statistic(y[i], p_b[i]) for i in bootstrap_indices(frame, n, seed)])
    reps = reps[np.isfinite(reps)]
    alpha = (1 - level) / 2
    p = min(1.0, 2 * min((reps <= 0).mean(), (reps >= 0).mean())) if len(reps) else float("nan")
    return {
        "difference": float(observed),
        "lo": float(np.quantile(reps, alpha)),
        "hi": float(np.quantile(reps, 1 - alpha)),
        "p": float(p),
        "subjects": int(frame["subject"].nunique()),
        "replicates": len(reps),
    }


def compare_subject_level(
    pred_a: pd.DataFrame, pred_b: pd.DataFrame, n_boot: int = 1000, n_perm: int = 2000, seed: int = 0
) -> dict:
    """Classifier A against B on the same test images, the subject as the unit: for BA and AUC the
    difference, its 95 % paired subject-bootstrap CI and p-value, and the subject sign-flip
    permutation p-value; plus the per-image McNemar and DeLong p-values (which treat images as
    independent, kept as a secondary column)."""
    if not pred_a["image_id"].equals(pred_b["image_id"]):
        pred_b = pred_b.set_index("image_id").loc[pred_a["image_id"]].reset_index()
    y, s = pred_a["y"].to_numpy(int), pred_a["subject"].astype(str).to_numpy()
    pa, pb = pred_a["p_all"].to_numpy(float), pred_b["p_all"].to_numpy(float)
    out = {"subjects": int(len(np.unique(s))), "images": int(len(y))}
    for name, fn in PAIRED_STATISTICS.items():
        boot = paired_subject_bootstrap(y, pa, pb, s, fn, n_boot, seed)
        perm = subject_sign_flip(y, pa, pb, s, fn, n_perm, seed)
        out.update(
            {
                f"d{name}": boot["difference"],
                f"d{name}_lo": boot["lo"],
                f"d{name}_hi": boot["hi"],
                f"p_{name}_bootstrap": boot["p"],
                f"p_{name}_permutation": perm["p"],
            }
        )
    per_image = paired_tests(y, pa, pb)
    out.update({"p_McNemar_per_image": per_image["mcnemar_p"], "p_DeLong_per_image": per_image["delong_p"]})
    return out


def _ece(y, p, bins: int = metrics.ECE_BINS):
    """`metrics.expected_calibration_error` in numpy alone (resampling calls it often; pinned against
    it by the tests)."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    idx = np.clip(np.digitize(p, np.linspace(0, 1, bins + 1)[1:-1]), 0, bins - 1)
    gap = np.abs(np.bincount(idx, p, bins) - np.bincount(idx, y, bins))  # per bin: count x |mean p - fraction ALL|
    return float(gap.sum() / len(y)) if len(y) else float("nan")


def calibration(clf: dict[str, pd.DataFrame], names, n_boot: int = 1000, n_perm: int = 2000, seed: int = 0) -> dict:
    """The expected calibration error (`metrics.ECE_BINS` equal-width bins on p(ALL)) of each of
    `names` with its 95 % subject-bootstrap CI, and, for two names, the paired subject-level test of
    their difference (the second minus the first: bootstrap CI, subject sign-flip p)."""
    out = {"bins": metrics.ECE_BINS, "ece": {}, "difference": None}
    for name in names:
        pred = clf[name].reset_index(drop=True)
        y, p = pred["y"].to_numpy(int), pred["p_all"].to_numpy(float)
        reps = np.array([_ece(y[i], p[i]) for i in bootstrap_indices(pred, n_boot, seed)])
        out["ece"][name] = {
            "est": _ece(y, p),
            "lo": float(np.quantile(reps, (1 - CI_LEVEL) / 2)),
            "hi": float(np.quantile(reps, (1 + CI_LEVEL) / 2)),
        }
    if len(names) == 2:
        a, b = (clf[n].reset_index(drop=True) for n in names)
        b = b.set_index("image_id").loc[a["image_id"]].reset_index()
        y, s = a["y"].to_numpy(int), a["subject"].astype(str).to_numpy()
        boot = paired_subject_bootstrap(y, b["p_all"], a["p_all"], s, _ece, n_boot, seed)
        perm = subject_sign_flip(y, b["p_all"].to_numpy(float), a["p_all"].to_numpy(float), s, _ece, n_perm, seed)
        out["difference"] = {
            "first": names[0],
            "second": names[1],
            "dECE": {"est": boot["difference"], "lo": boot["lo"], "hi": boot["hi"]},
            "p_permutation": perm["p"],
        }
    return out


def error_dispersion(errors: np.ndarray, expected: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Pearson's dispersion of per-subject error counts about what each subject's size and class
    predict: sum over subjects of (errors - expected)^2 / (expected (1 - expected / size)). `errors`
    may hold many rows (one per permutation)."""
    var = expected * (1 - expected / sizes)
    ok = var > 0
    return (((errors - expected) ** 2)[..., ok] / var[ok]).sum(axis=-1)


def error_concentration(pred: pd.DataFrame, share: float = 0.2, n_perm: int = 2000, seed: int = 0) -> dict:
    """Do errors concentrate in some subjects more than chance would put them there?

    The test: the dispersion of the per-subject error counts (`error_dispersion`) against a
    permutation null that keeps each subject's size and class: the errors of each class are shuffled
    over that class's images (each permutation draws the subjects' error counts from the multivariate
    hypergeometric law), so a large subject holding many errors by its size alone is no evidence.
    Also, as description only: the share of errors in the worst `share` of subjects by error count
    (which favours large subjects by construction)."""
    wrong = (metrics.predict_labels(pred["p_all"]) != pred["y"].to_numpy(int)).astype(int)
    cells = pd.DataFrame(
        {"subject": pred["subject"].astype(str).to_numpy(), "y": pred["y"].to_numpy(int), "wrong": wrong}
    )
    per = cells.groupby(["subject", "y"])["wrong"].agg(["sum", "size"]).reset_index()
    rate = cells.groupby("y")["wrong"].mean()
    expected = per["size"].to_numpy() * per["y"].map(rate).to_numpy()
    observed = error_dispersion(per["sum"].to_numpy(), expected, per["size"].to_numpy())
    rng = np.random.default_rng(seed)
    null = np.zeros((n_perm, len(per)))
    for _, grp in per.groupby("y"):
        idx = grp.index.to_numpy()
        null[:, idx] = rng.multivariate_hypergeometric(grp["size"].to_numpy(), int(grp["sum"].sum()), size=n_perm)
    perm = error_dispersion(null, expected, per["size"].to_numpy())
    by_subject = per.groupby("subject")["sum"].sum().sort_values(ascending=False)
    k = max(1, int(round(share * len(by_subject))))
    total = int(by_subject.sum())
    return {
        "share": share,
        "subjects": int(len(by_subject)),
        "worst_subjects": k,
        "errors": total,
        "share_in_worst": float(by_subject.iloc[:k].sum() / total) if total else float("nan"),
        "subjects_with_errors": int((by_subject > 0).sum()),
        "dispersion": float(observed),
        "permutations": n_perm,
        "p_permutation": float((1 + (perm >= observed - 1e-9).sum()) / (1 + n_perm)) if total else float("nan"),
    }
