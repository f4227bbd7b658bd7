"""Table 5: mean and variance of each classifier over five training runs (seeds) at the crop size.

The paper calls its column ``V_`` the variance ("``A_`` depicts the average performance ..., and ``V_``
implies the variance of those metrics", Table 5 caption; "0.19 % variance in accuracy", Section 5)
and writes it in %. We report the variance of each metric in percent units (``V_``, % squared, as the
paper's ``V_``) and the standard deviation (SD, percentage points) beside it. `reading_of_paper_v` is a
check, not a claim: it says which of the two is of the paper's magnitude on our runs.

With `split: fixed` every seed trains on the same subject split (the paper's single Table 3
split), so the spread covers initialisation, oversampling, augmentation and order only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from alllib.method import metrics
from alllib.method.ensemble import WeightSource, ensemble_name, ensemble_predictions
from alllib.method.models import DISPLAY_ORDER

if TYPE_CHECKING:  # names used in annotations only
    from alllib.study.runs import RunSet

TABLE5_METRICS = ("WFS", "ACC", "BA")
WEN = ("wen-auc", "wen-f1", "wen-kappa")


def per_seed_metrics(
    runs: RunSet, size: int, methods=WEN, sources=(WeightSource.VALIDATION, WeightSource.TEST)
) -> pd.DataFrame:
    """One row per (classifier, weight source, seed): the single models, and each WEN built from that
    seed's models with weights from each source."""
    rows = []
    seeds = runs.where(size=size).seeds
    for seed in seeds:
        preds = {r.display: r.predictions for r in runs.where(size, seed)}
        for name, pred in preds.items():
            test = pred[pred["split"] == "preliminary_test"]
            rows.append(
                {
                    "classifier": name,
                    "kind": "single",
                    "weights": "",
                    "seed": seed,
                    **metrics.evaluate(test["y"], test["p_all"]),
                }
            )
        if len(preds) > 1:
            for method in methods:
                for source in sources:
                    pred, _ = ensemble_predictions(preds, method, source)
                    rows.append(
                        {
                            "classifier": ensemble_name(method),
                            "kind": "ensemble",
                            "weights": WeightSource.of(source).display,
                            "seed": seed,
                            **metrics.evaluate(pred["y"], pred["p_all"]),
                        }
                    )
    return pd.DataFrame(rows)


def paper_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in the paper's order: the five backbones, then WEN-auc, WEN-f1, WEN-kappa (validation
    weights before test weights)."""
    order = DISPLAY_ORDER + [ensemble_name(m) for m in WEN]
    known = frame["classifier"].isin(order)
    rank = frame["classifier"].map({n: i for i, n in enumerate(order)}).where(known, len(order))
    w = (
        frame["weights"].map({WeightSource.VALIDATION.display: 0, WeightSource.TEST.display: 1}).fillna(0)
        if "weights" in frame
        else 0
    )
    return (
        frame.assign(_r=rank, _w=w)
        .sort_values(["_r", "_w"], kind="stable")
        .drop(columns=["_r", "_w"])
        .reset_index(drop=True)
    )


def five_run_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean (``A_``), variance in percent units (``V_``, as the paper's ``V_``) and SD in percentage points,
    in the paper's order."""
    out = []
    keys = ["classifier", "kind"] + (["weights"] if "weights" in per_seed else [])
    for key, g in per_seed.groupby(keys, sort=False):
        row = dict(zip(keys, key))
        row["runs"] = len(g)
        for m in TABLE5_METRICS:
            v = g[m].to_numpy() * 100
            row[f"A_{m}"] = v.mean() / 100
            row[f"V_{m}"] = v.var(ddof=1) if len(v) > 1 else np.nan
            row[f"SD_{m}_pp"] = v.std(ddof=1) if len(v) > 1 else np.nan
        out.append(row)
    return paper_order(pd.DataFrame(out))


def beside_paper(
    ours: pd.DataFrame, paper: pd.DataFrame, metric: str, weights: str = WeightSource.TEST.display
) -> pd.DataFrame:
    """One metric of Table 5, ours beside the paper's (``A_`` and ``V_``), narrow enough for a page. WEN
    rows use the weights named (the paper's: test)."""
    rows = ours[(ours["kind"] == "single") | (ours["weights"] == weights)]
    ref = paper[["classifier", f"A_{metric}", f"V_{metric}_pct"]].rename(
        columns={f"A_{metric}": f"A_{metric} paper", f"V_{metric}_pct": f"V_{metric} paper"}
    )
    side = rows.merge(ref, on="classifier", how="left")
    return side[
        ["classifier", f"A_{metric}", f"A_{metric} paper", f"V_{metric}", f"V_{metric} paper", f"SD_{metric}_pp"]
    ].set_index("classifier")


def reading_of_paper_v(ours: pd.DataFrame, paper: pd.DataFrame) -> dict:
    """A check of the units: median ratio of our SD (pp) and of our variance (%^2) to the paper's ``V_``
    (%); the reading whose ratio is nearer 1 (on a log scale) is the one of the paper's magnitude."""
    if "weights" in ours:
        ours = ours[ours["weights"] != WeightSource.VALIDATION.display]
    merged = ours.merge(paper, on=["classifier", "kind"])
    res = {}
    for reading, col in (("standard deviation (pp)", "SD_{}_pp"), ("variance (%^2)", "V_{}")):
        ratios = np.concatenate([(merged[col.format(m)] / merged[f"V_{m}_pct"]).to_numpy() for m in TABLE5_METRICS])
        ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
        res[reading] = float(np.median(ratios)) if len(ratios) else float("nan")
    finite = {k: v for k, v in res.items() if np.isfinite(v)}
    res["closer"] = min(finite, key=lambda k: abs(np.log(finite[k]))) if finite else "undetermined"
    return res
