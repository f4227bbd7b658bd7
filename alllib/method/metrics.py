"""Section 4.3: evaluation metrics. ALL (y = 1) is the positive class.

WP, WR and WFS are support-weighted averages over the two classes (Eq. 8), ACC the accuracy,
BA the mean of sensitivity and specificity (Eq. 6), AUC the area under the ROC curve of p(ALL),
kappa Cohen's kappa. `evaluate` computes them from the confusion counts in numpy (fast enough
for the bootstrap and the ensemble ablation); the tests pin each one against scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from alllib.rounding import fmt

HEADLINE = ["WP", "WR", "WFS", "ACC", "BA", "AUC", "kappa"]

# What each abbreviation stands for, with the paper's equation where it gives one (the glossary page
# and the first use on each results page read this)
NAMES = {
    "WP": ("weighted precision", "the precision of each class weighted by its number of images (Eq. 8)"),
    "WR": ("weighted recall", "the recall of each class weighted by its number of images (Eq. 8)"),
    "WFS": ("weighted F1-score", "the F1-score of each class weighted by its number of images (Eq. 8)"),
    "ACC": ("accuracy", "the share of images classified correctly"),
    "BA": ("balanced accuracy", "the mean of sensitivity (ALL) and specificity (Hem) (Eq. 6)"),
    "AUC": ("area under the ROC curve", "of p(ALL): the chance that a random ALL image scores above a random Hem one"),
    "kappa": ("Cohen's kappa", "agreement with the labels beyond what chance gives"),
    "ECE": ("expected calibration error", "the mean gap between p(ALL) and the observed share of ALL, over bins"),
}


def spelled(abbreviations=("WFS", "BA", "AUC")) -> str:
    """The abbreviations spelled out, for a page's first use: "WFS: weighted F1-score; BA: ..."."""
    return "; ".join(f"{a}: {NAMES[a][0]}" for a in abbreviations)


THRESHOLD = 0.5  # p(ALL) at or above it is called ALL; the paper names no threshold (the method notes)


def predict_labels(p_all, threshold: float = THRESHOLD) -> np.ndarray:
    """The decision rule, the one place it is written: 1 (ALL) where p(ALL) >= the threshold, else 0 (Hem)."""
    return (np.asarray(p_all) >= threshold).astype(int)


def _safe_div(a, b) -> float:
    return float(a) / float(b) if b else 0.0


def midranks(x) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks: `scipy.stats.rankdata(x, "average")`, value
    for value (the ranks are whole or half numbers, exact in floating point), in plain numpy. The subject
    bootstrap and the permutation tests rank about 160,000 times per ensemble chapter, and scipy's checks
    and array-API dispatch took most of that time (tests/test_metrics.py holds the two equal)."""
    x = np.asarray(x, float)
    if np.isnan(x).any():
        return np.full(x.shape, np.nan)  # as rankdata propagates NaN
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    counts = np.diff(np.r_[starts, len(x)])
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(starts + 1 + (counts - 1) / 2, counts)
    return ranks


def auc_score(y_true, p_all) -> float:
    """Area under the ROC curve as the Mann-Whitney statistic with mid-ranks for ties:
    the share of (ALL, Hem) pairs that p(ALL) ranks correctly, ties counting one half."""
    y = np.asarray(y_true).astype(int)
    m, n = int(y.sum()), int(len(y) - y.sum())
    if m == 0 or n == 0:
        return float("nan")
    ranks = midranks(p_all)
    return float((ranks[y == 1].sum() - m * (m + 1) / 2) / (m * n))


def evaluate(y_true, p_all, threshold: float = 0.5) -> dict:
    """All headline metrics of one classifier from true labels and p(ALL), from the confusion
    counts in numpy (the ensemble ablation and the bootstrap call this thousands of times;
    tests/test_metrics.py pins every value against scikit-learn)."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(p_all, dtype=float)
    yhat = predict_labels(p, threshold)
    n = len(y)
    tp = int(((yhat == 1) & (y == 1)).sum())
    fn = int(((yhat == 0) & (y == 1)).sum())
    tn = int(((yhat == 0) & (y == 0)).sum())
    fp = int(((yhat == 1) & (y == 0)).sum())
    n_all, n_hem = tp + fn, tn + fp
    prec = (_safe_div(tn, tn + fn), _safe_div(tp, tp + fp))  # (Hem, ALL)
    rec = (_safe_div(tn, n_hem), _safe_div(tp, n_all))
    f1 = tuple(_safe_div(2 * pr * rc, pr + rc) for pr, rc in zip(prec, rec))
    support = (n_hem, n_all)
    weighted = lambda v: _safe_div(v[0] * support[0] + v[1] * support[1], n)  # noqa: E731  (Eq. 8)
    po = _safe_div(tp + tn, n)
    pe = _safe_div((tp + fp) * n_all + (tn + fn) * n_hem, n * n)
    kappa = (po - pe) / (1 - pe) if pe < 1 else 0.0
    return {
        "WP": weighted(prec),
        "WR": weighted(rec),
        "WFS": weighted(f1),
        "ACC": po,
        "BA": (rec[0] + rec[1]) / 2,  # Eq. 6: (specificity + sensitivity) / 2
        "AUC": auc_score(y, p),
        "kappa": float(kappa),
        "precision_hem": prec[0],
        "recall_hem": rec[0],
        "f1_hem": f1[0],
        "precision_all": prec[1],
        "recall_all": rec[1],
        "f1_all": f1[1],
        "n": int(n),
        "n_all": n_all,
        "n_hem": n_hem,
    }


def confusion(y_true, p_all) -> pd.DataFrame:
    """Confusion matrix in the layout of Table 6: rows = true class, columns = predicted class."""
    cm = skm.confusion_matrix(np.asarray(y_true).astype(int), predict_labels(p_all), labels=[0, 1])
    return pd.DataFrame(
        cm, index=pd.Index(["Hem", "ALL"], name="true"), columns=pd.Index(["Hem", "ALL"], name="predicted")
    )


def confusion_percent(cm: pd.DataFrame) -> pd.DataFrame:
    """Row percentages of a confusion matrix (share of each true class)."""
    return cm.div(cm.sum(axis=1).replace(0, np.nan), axis=0) * 100


def confusion_cells(cm: pd.DataFrame, sep: str = " ") -> pd.DataFrame:
    """Each count of a confusion matrix with its row percentage (its share of the true class), "26 (81.2 %)";
    a true class with no images keeps its bare counts."""
    pct = confusion_percent(cm)

    def cell(t, q) -> str:
        share = pct.loc[t, q]
        return f"{int(cm.loc[t, q])}" + ("" if pd.isna(share) else f"{sep}({fmt(share, 1)} %)")

    cells = [[cell(t, q) for q in cm.columns] for t in cm.index]
    return pd.DataFrame(cells, index=cm.index, columns=cm.columns)


def roc(y_true, p_all) -> tuple[np.ndarray, np.ndarray, float]:
    fpr, tpr, _ = skm.roc_curve(np.asarray(y_true).astype(int), np.asarray(p_all, float))
    return fpr, tpr, float(skm.auc(fpr, tpr))


ECE_BINS = 10  # equal-width bins on p(ALL) in [0, 1]


def expected_calibration_error(y_true, p_all, bins: int = ECE_BINS) -> tuple[float, pd.DataFrame]:
    """ECE of p(ALL) over `bins` equal-width bins of p(ALL) (the images' share in a bin times the gap
    between its mean p(ALL) and its fraction of ALL, summed), and the reliability table (bin,
    confidence, frequency, count)."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(p_all, float)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        sel = idx == b
        if sel.any():
            rows.append(
                {"bin": b, "mean_predicted": p[sel].mean(), "fraction_all": y[sel].mean(), "count": int(sel.sum())}
            )
    table = pd.DataFrame(rows)
    ece = (
        float((table["count"] * (table["mean_predicted"] - table["fraction_all"]).abs()).sum() / len(y))
        if len(y)
        else float("nan")
    )
    return ece, table
