"""Section 4.1.3: weighted ensembles of networks (WEN, Eqs. 1-4), and baselines.

    P'_j = sum_k W_k P_jk / sum_k W_k                                       (Eq. 1)

with W_k the F1-score (WEN-f1, Eq. 2), the AUC (WEN-auc, Eq. 3) or Cohen's kappa (WEN-kappa,
Eq. 4) of CNN_k. The paper measures W_k "on all test images", i.e. on the preliminary test set
whose labels it then reports on: `WeightSource.TEST` reproduces that (paper-faithful, uses
test labels). `WeightSource.VALIDATION` measures W_k on the validation split instead
(leak-free: what a clinical study should report).
"""

from __future__ import annotations

import itertools
import warnings
from enum import StrEnum

import numpy as np
import pandas as pd

from alllib.errors import ConfigError
from alllib.method import metrics

WEIGHTINGS = ("f1", "auc", "kappa")


class WeightSource(StrEnum):
    """Where a WEN's weights W_k are measured: the one spelling of it. Its value is what files and the
    command line say; `display` is what tables and figures say."""

    VALIDATION = "validation"  # leak-free: every claim of the book
    TEST = "test"  # the paper's: the preliminary test set it then reports on

    @property
    def split(self) -> str:
        return "preliminary_test" if self is WeightSource.TEST else "validation"

    @property
    def display(self) -> str:
        return "test (as the paper)" if self is WeightSource.TEST else "validation (leak-free)"

    @classmethod
    def of(cls, source) -> WeightSource:
        try:
            return cls(source)
        except ValueError:
            raise ConfigError(
                f"unknown weight source {source!r}: expected 'test' (paper-faithful) or 'validation' (leak-free)"
            ) from None


WEIGHT_SOURCES = tuple(WeightSource)
METHODS = ("wen-auc", "wen-f1", "wen-kappa", "soft-vote", "majority-vote")


def ensemble_name(method: str) -> str:
    """Display name as in the paper's tables: wen-kappa -> WEN-kappa."""
    return {"soft-vote": "Soft vote (equal weights)", "majority-vote": "Majority vote"}.get(
        method, method.replace("wen-", "WEN-")
    )


def score(y_true, p_all, weighting: str) -> float:
    """W_k of one model: its weighted F1, AUC or Cohen's kappa."""
    m = metrics.evaluate(y_true, p_all)
    try:
        return {"f1": m["WFS"], "auc": m["AUC"], "kappa": m["kappa"]}[weighting]
    except KeyError:
        raise ConfigError(f"unknown WEN weighting {weighting!r}: expected one of {', '.join(WEIGHTINGS)}") from None


def wen(probabilities: np.ndarray, weights) -> np.ndarray:
    """Eq. 1. probabilities: (models, images, classes); weights: (models,). Returns (images, classes)."""
    P = np.asarray(probabilities, float)
    W = np.asarray(weights, float)
    if P.ndim != 3 or W.shape != (P.shape[0],):
        raise ConfigError(
            f"wen: expected probabilities (models, images, classes) and one weight per model, "
            f"got {P.shape} and {W.shape}"
        )
    if (W < 0).any() or W.sum() <= 0:
        raise ConfigError(f"wen: weights must be non-negative with a positive sum, got {W.tolist()}")
    return np.tensordot(W, P, axes=1) / W.sum()


def majority_vote(probabilities: np.ndarray) -> np.ndarray:
    """Hard vote of the models' predicted classes; returns the fraction of votes for ALL."""
    votes = metrics.predict_labels(np.asarray(probabilities)[..., 1]).astype(float)
    return votes.mean(axis=0)


def _stack(preds: dict[str, pd.DataFrame], split: str) -> tuple[np.ndarray, pd.DataFrame]:
    """(models, images, 2) probabilities of one split, images aligned by image_id across models."""
    names = list(preds)
    P, base_ids, frame = [], None, None
    for name in names:
        df = preds[name]
        rows = np.flatnonzero((df["split"] == split).to_numpy())
        ids = df["image_id"].to_numpy()[rows]
        order = np.argsort(ids, kind="stable")
        rows, ids = rows[order], ids[order]
        if base_ids is None:
            base_ids = ids
            frame = df.iloc[rows][["split", "image_id", "subject", "label", "y"]].reset_index(drop=True)
        elif not np.array_equal(ids, base_ids):
            raise ConfigError(f"ensemble: model {name!r} was evaluated on other {split} images than {names[0]!r}")
        P.append(df[["p_hem", "p_all"]].to_numpy()[rows])
    return np.stack(P), frame


def model_weights(preds: dict[str, pd.DataFrame], weighting: str, source: str) -> dict[str, float]:
    """Each model's weight W_k in a WEN (Eqs. 1-4): its `weighting` score (F1, AUC or kappa, `score`) on the
    split that `source` names (validation, or the test set as the paper did), a score below zero counting
    as zero; equal weights, with a warning, when no model beats chance."""
    split = WeightSource.of(source).split
    out = {}
    for name, df in preds.items():
        d = df[df["split"] == split]
        out[name] = max(score(d["y"], d["p_all"], weighting), 0.0)  # a model worse than chance gets no say
    if sum(out.values()) == 0:
        warnings.warn(
            f"every model's {weighting} on the {split} split is <= 0 (no model beats chance): WEN-{weighting} "
            "falls back to equal weights",
            stacklevel=2,
        )
        out = {name: 1.0 for name in out}
    return out


def ensemble_predictions(
    preds: dict[str, pd.DataFrame],
    method: str,
    source: WeightSource = WeightSource.VALIDATION,
    split: str = "preliminary_test",
) -> tuple[pd.DataFrame, dict]:
    """Predictions of one ensemble on `split`. method: wen-f1 | wen-auc | wen-kappa | soft-vote | majority-vote.

    For WEN, the weights come from `source` (a WeightSource: test = paper-faithful, validation = leak-free).
    When every model is evaluated on its own validation images (different seeds draw different
    subject splits), weights are still per model; only test predictions are combined."""
    P, frame = _stack(preds, split)
    if method.startswith("wen-"):
        w = model_weights(preds, method[4:], source)
        p = wen(P, [w[n] for n in preds])
    elif method == "soft-vote":
        w = {n: 1.0 for n in preds}
        p = wen(P, list(w.values()))
    elif method == "majority-vote":
        w = {n: 1.0 for n in preds}
        p_all = majority_vote(P)
        p = np.stack([1 - p_all, p_all], axis=1)
    else:
        raise ConfigError(
            f"unknown ensemble {method!r}: expected wen-f1, wen-auc, wen-kappa, soft-vote or majority-vote"
        )
    out = frame.copy()
    out["p_hem"], out["p_all"] = p[:, 0], p[:, 1]
    return out, w


def subset_search(preds: dict[str, pd.DataFrame], method: str = "wen-kappa", min_size: int = 2) -> pd.DataFrame:
    """Every subset of at least `min_size` models (of one seed, so they share validation images):
    the ensemble with leak-free weights, scored on validation (to choose) and on test (to report)."""
    names = list(preds)
    rows = []
    for k in range(min_size, len(names) + 1):
        for subset in itertools.combinations(names, k):
            sub = {n: preds[n] for n in subset}
            row = {"models": " + ".join(subset), "size": k}
            for split, tag in (("validation", "val"), ("preliminary_test", "test")):
                pred, _ = ensemble_predictions(sub, method, WeightSource.VALIDATION, split)
                m = metrics.evaluate(pred["y"], pred["p_all"])
                row[f"{tag}_BA"], row[f"{tag}_WFS"] = m["BA"], m["WFS"]
            rows.append(row)
    return pd.DataFrame(rows).sort_values("val_BA", ascending=False).reset_index(drop=True)
