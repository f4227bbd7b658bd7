"""Section 4.3: evaluation metrics. ALL (y = 1) is the positive class.

WP, WR and WFS are support-weighted averages over the two classes (Eq. 8), ACC the accuracy,
BA the mean of sensitivity and specificity (Eq. 6), AUC the area under the ROC curve of p(ALL),
kappa Cohen's kappa. Each uses scikit-learn where it has the metric.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

HEADLINE = ["WP", "WR", "WFS", "ACC", "BA", "AUC", "kappa"]


def predict_labels(p_all, threshold: float = 0.5) -> np.ndarray:
    return (np.asarray(p_all) >= threshold).astype(int)


def evaluate(y_true, p_all, threshold: float = 0.5) -> dict:
    """All headline metrics of one classifier from true labels and p(ALL)."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(p_all, dtype=float)
    yhat = predict_labels(p, threshold)
    prec, rec, f1, support = skm.precision_recall_fscore_support(y, yhat, labels=[0, 1], zero_division=0)
    wp, wr, wfs, _ = skm.precision_recall_fscore_support(y, yhat, labels=[0, 1], average="weighted", zero_division=0)
    auc = skm.roc_auc_score(y, p) if len(np.unique(y)) == 2 else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = skm.cohen_kappa_score(y, yhat, labels=[0, 1])
    return {
        "WP": float(wp), "WR": float(wr), "WFS": float(wfs),
        "ACC": float(skm.accuracy_score(y, yhat)),
        "BA": float((rec[0] + rec[1]) / 2),  # Eq. 6: (specificity + sensitivity) / 2
        "AUC": float(auc), "kappa": float(0.0 if np.isnan(kappa) else kappa),
        "precision_hem": float(prec[0]), "recall_hem": float(rec[0]), "f1_hem": float(f1[0]),
        "precision_all": float(prec[1]), "recall_all": float(rec[1]), "f1_all": float(f1[1]),
        "n": int(len(y)), "n_all": int(support[1]), "n_hem": int(support[0]),
    }


def f1_weighted(y_true, p_all) -> float:
    """The F1-score used as WEN-f1 weight: the support-weighted F1 (WFS, Eq. 8)."""
    return evaluate(y_true, p_all)["WFS"]


def confusion(y_true, p_all) -> pd.DataFrame:
    """Confusion matrix in the layout of Table 6: rows = true class, columns = predicted class."""
    cm = skm.confusion_matrix(np.asarray(y_true).astype(int), predict_labels(p_all), labels=[0, 1])
    return pd.DataFrame(cm, index=pd.Index(["Hem", "ALL"], name="true"), columns=pd.Index(["Hem", "ALL"], name="predicted"))


def confusion_percent(cm: pd.DataFrame) -> pd.DataFrame:
    """Row percentages of a confusion matrix (share of each true class)."""
    return cm.div(cm.sum(axis=1).replace(0, np.nan), axis=0) * 100


def roc(y_true, p_all) -> tuple[np.ndarray, np.ndarray, float]:
    fpr, tpr, _ = skm.roc_curve(np.asarray(y_true).astype(int), np.asarray(p_all, float))
    return fpr, tpr, float(skm.auc(fpr, tpr))


def expected_calibration_error(y_true, p_all, bins: int = 10) -> tuple[float, pd.DataFrame]:
    """ECE of p(ALL) over equal-width bins, and the reliability table (bin, confidence, frequency, count)."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(p_all, float)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        sel = idx == b
        if sel.any():
            rows.append({"bin": b, "mean_predicted": p[sel].mean(), "fraction_all": y[sel].mean(), "count": int(sel.sum())})
    table = pd.DataFrame(rows)
    ece = float((table["count"] * (table["mean_predicted"] - table["fraction_all"]).abs()).sum() / len(y)) if len(y) else float("nan")
    return ece, table
