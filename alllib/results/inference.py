"""Beyond the paper: two inference-time steps from cached models, each fitted on validation only.

- `temperature_scaling`: per model, one temperature T > 0 minimising the validation cross-entropy of
  sigmoid(logit(p) / T) (Guo et al. 2017); applied to validation and test alike. A positive T keeps
  every single model's labels and AUC; it changes their calibration, and the ensembles built from
  the rescaled probabilities.
- `tta_predictions`: test-time augmentation, the mean p(ALL) over the 8 rotations by 90 degrees and
  flips of each image (the dihedral group, which the cells' orientation does not matter to), from
  the saved model; cached per run beside the other results.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from alllib import io
from alllib.method import metrics
from alllib.method.ensemble import WeightSource
from alllib.method.models import load_model, predict_batches
from alllib.method.preprocessing import load_arrays
from alllib.results.analysis import classifiers

if TYPE_CHECKING:  # names used in annotations only
    from alllib.study.runs import Run, RunSet

EPS = 1e-6


def _logit(p):
    p = np.clip(np.asarray(p, float), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def apply_temperature(p, t: float) -> np.ndarray:
    return 1 / (1 + np.exp(-_logit(p) / t))


def fit_temperature(y, p) -> float:
    """The temperature minimising the cross-entropy of (y, p) (searched over log T in [-3, 3])."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y).astype(int)
    z = _logit(p)

    def nll(log_t):
        q = np.clip(1 / (1 + np.exp(-z / np.exp(log_t))), EPS, 1 - EPS)
        return -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))

    return float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))


def temperature_scaling(preds: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """Every model's predictions rescaled by its temperature fitted on its validation rows."""
    out, temps = {}, {}
    for name, p in preds.items():
        v = p[p["split"] == "validation"]
        temps[name] = fit_temperature(v["y"], v["p_all"])
        q = apply_temperature(p["p_all"], temps[name])
        out[name] = p.assign(p_all=q, p_hem=1 - q)
    return out, temps


def dihedral(images: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations by 90 degrees and flips of a batch (N, s, s, C)."""
    out = []
    for flip in (False, True):
        x = images[:, :, ::-1] if flip else images
        out += [np.rot90(x, k, axes=(1, 2)) for k in range(4)]
    return out


def tta_predictions(run: Run, table: pd.DataFrame, scale: float, cache_dir, batch_size: int = 32) -> pd.DataFrame:
    """The run's validation and test predictions with p(ALL) averaged over the 8 dihedral transforms
    of each image (same rows as run.predictions), computed once and cached as CSV."""

    cache = Path(cache_dir) / f"{run.run_id}_tta.csv"
    pred = run.predictions
    if cache.is_file():
        cached = pd.read_csv(cache, dtype={"subject": str})
        if cached["image_id"].tolist() == pred["image_id"].tolist():
            return cached
    rows = pred[["image_id"]].merge(table[["image_id", "path", "y"]], on="image_id", how="left")
    images = load_arrays(rows, run.input_size, scale, batch_size)
    model = load_model(run.folder / "model.keras")
    import tensorflow as tf

    views = [tf.data.Dataset.from_tensor_slices(x).batch(batch_size) for x in dihedral(images)]
    p = np.mean([predict_batches(model, view)[:, 1] for view in views], axis=0)  # one trace for all 8
    out = pred.assign(p_all=p.astype(float), p_hem=1 - p.astype(float))
    io.write_csv(cache, out)
    return out


def study_tta(study, runs: RunSet, size: int, seed: int) -> dict[str, pd.DataFrame]:
    """TTA predictions of the five models of (size, seed), in the paper's order."""
    chosen = {r.display: r for r in runs.where(size, seed)}
    return {
        name: tta_predictions(chosen[name], study.table, study.cfg.input_scale, study.results / "tta")
        for name in runs.at(size, seed)
    }


def calibration_and_tta(preds: dict, tta_preds: dict | None, reference: str, temperature: bool = True) -> pd.DataFrame:
    """Table 4's metrics and the expected calibration error of the reference single model and of
    WEN-kappa (validation weights) as trained, with temperature scaling, with TTA, and with both
    (the steps the profile's `inference` settings enable)."""

    variants = {"as trained": preds}
    if temperature:
        variants["temperature scaled (fitted on validation)"] = temperature_scaling(preds)[0]
    if tta_preds is not None:
        variants["TTA (8 rotations and flips)"] = tta_preds
        if temperature:
            variants["TTA + temperature scaled"] = temperature_scaling(tta_preds)[0]
    rows = []
    for variant, p in variants.items():
        clf = classifiers(p, WeightSource.VALIDATION, baselines=False)
        for name in (reference, "WEN-kappa"):
            m = metrics.evaluate(clf[name]["y"], clf[name]["p_all"])
            ece, _ = metrics.expected_calibration_error(clf[name]["y"], clf[name]["p_all"])
            rows.append(
                {"variant": variant, "classifier": name, **{k: m[k] for k in ("ACC", "BA", "AUC", "WFS")}, "ECE": ece}
            )
    return pd.DataFrame(rows)
