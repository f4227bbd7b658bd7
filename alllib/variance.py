"""Table 5: mean and spread of each classifier over five training runs (seeds) at the crop size.

The paper's column "V_ (%)" does not say whether it is a variance or a standard deviation. We
report both in percentage points: the standard deviation (pp) and the variance (pp^2), and
`reading_of_paper_v` says which of the two is of the paper's magnitude on our numbers.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import metrics
from .ensemble import ensemble_name, ensemble_predictions

TABLE5_METRICS = ("WFS", "ACC", "BA")


def per_seed_metrics(runs: list[dict], size: int, methods=("wen-auc", "wen-f1", "wen-kappa"),
                     source: str = "validation") -> pd.DataFrame:
    """One row per (classifier, seed): the single models and each WEN built from that seed's models."""
    rows = []
    seeds = sorted({r["seed"] for r in runs if r["input_size"] == size})
    for seed in seeds:
        group = [r for r in runs if r["input_size"] == size and r["seed"] == seed]
        preds = {r["display"]: r["predictions"] for r in group}
        for name, pred in preds.items():
            test = pred[pred["split"] == "preliminary_test"]
            rows.append({"classifier": name, "kind": "single", "seed": seed, **metrics.evaluate(test["y"], test["p_all"])})
        if len(preds) > 1:
            for method in methods:
                pred, _ = ensemble_predictions(preds, method, source)
                rows.append({"classifier": ensemble_name(method), "kind": "ensemble", "seed": seed, **metrics.evaluate(pred["y"], pred["p_all"])})
    return pd.DataFrame(rows)


def five_run_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean (A_), standard deviation and variance in percentage points for WFS, ACC and BA."""
    out = []
    for (name, kind), g in per_seed.groupby(["classifier", "kind"], sort=False):
        row = {"classifier": name, "kind": kind, "runs": len(g)}
        for m in TABLE5_METRICS:
            v = g[m].to_numpy() * 100
            row[f"A_{m}"] = v.mean() / 100
            row[f"SD_{m}_pp"] = v.std(ddof=1) if len(v) > 1 else np.nan
            row[f"VAR_{m}_pp2"] = v.var(ddof=1) if len(v) > 1 else np.nan
        out.append(row)
    return pd.DataFrame(out)


def reading_of_paper_v(ours: pd.DataFrame, paper: pd.DataFrame) -> dict:
    """Median ratio of our SD (pp) and of our variance (pp^2) to the paper's V_ (%): the reading whose
    ratio is nearer 1 (on a log scale) is the one of the paper's magnitude."""
    merged = ours.merge(paper, on=["classifier", "kind"])
    res = {}
    for reading, col in (("standard deviation (pp)", "SD_{}_pp"), ("variance (pp^2)", "VAR_{}_pp2")):
        ratios = np.concatenate([(merged[col.format(m)] / merged[f"V_{m}_pct"]).to_numpy() for m in TABLE5_METRICS])
        ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
        res[reading] = float(np.median(ratios)) if len(ratios) else float("nan")
    finite = {k: v for k, v in res.items() if np.isfinite(v)}
    res["closer"] = min(finite, key=lambda k: abs(np.log(finite[k]))) if finite else "undetermined"
    return res
