"""Which of the paper's numbers did this build reproduce? Each number of the paper's Table 4 and
Table 5 that the study computes, beside ours with its uncertainty, and where the paper's value falls:
inside our interval, above it or below it.

- Table 4 (one run): our value as the paper computes it (WEN weights from the test set), with its
  95 % subject-bootstrap CI from the ensemble chapter.
- Table 5 (the mean over seeds): our mean over the seeds at the crop size, with a t-interval over the
  seeds (the seed is the unit of that mean; none with a single seed). Its WEN rows use validation
  weights, the study's reading; the paper's use the test set.

`placement` compares Table 4's ensemble row with Table 5's spread: a single run can sit anywhere in its
seeds' spread, and the paper's own Table 4 and Table 5 say where its run sat.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as st

from alllib.results import paper
from alllib.results.stats import CI_LEVEL
from alllib.rounding import fmt

TABLE4_METRICS = ("WP", "WR", "WFS", "ACC", "BA")
TABLE5_METRICS = ("WFS", "ACC", "BA")


def where(value: float, lo: float, hi: float) -> str:
    """The paper's value against our interval."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no interval"
    return "inside" if lo <= value <= hi else ("above" if value > hi else "below")


def table4(ens) -> pd.DataFrame:
    """One row per number of the paper's Table 4 that the study computes."""
    ref = paper.table("table4_prelim_test")
    rows = []
    for r in ref.itertuples(index=False):
        ours = ens.sizes.get(int(r.input_px))
        if ours is None or r.classifier not in ours.paper_faithful:
            continue
        for m in TABLE4_METRICS:
            e = ours.paper_faithful[r.classifier][m]
            theirs = float(getattr(r, m))
            rows.append(_row("Table 4", f"{r.input_px} px", r.classifier, m, theirs, e.est, e.lo, e.hi))
    return pd.DataFrame(rows)


def table5(var) -> pd.DataFrame:
    """One row per number of the paper's Table 5 that the study computes (the means over seeds)."""
    ref = paper.table("table5_five_runs_300px").set_index("classifier")
    ours = {r["classifier"]: r for r in var.table}
    rows = []
    for name in ref.index:
        if name not in ours:
            continue
        r = ours[name]
        n = int(r["runs"])
        for m in TABLE5_METRICS:
            mean = float(r[f"A_{m}"])
            half = (
                st.t.ppf((1 + CI_LEVEL) / 2, n - 1) * float(r[f"SD_{m}_pp"]) / 100 / np.sqrt(n)
                if n > 1
                else float("nan")
            )
            rows.append(
                _row(
                    "Table 5",
                    f"{var.size} px",
                    name,
                    f"A_{m}",
                    float(ref.loc[name, f"A_{m}"]),
                    mean,
                    mean - half,
                    mean + half,
                )
            )
    return pd.DataFrame(rows)


def _row(table, size, classifier, metric, theirs, est, lo, hi) -> dict:
    return {
        "table": table,
        "input": size,
        "classifier": classifier,
        "metric": metric,
        "paper": theirs,
        "ours": est,
        "lo": lo,
        "hi": hi,
        "paper's value": where(theirs, lo, hi),
    }


def counts(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per table: how many of the paper's numbers fall inside, above and below our intervals."""
    return {
        t: {k: int((g["paper's value"] == k).sum()) for k in ("inside", "above", "below", "no interval")}
        for t, g in frame.groupby("table", sort=False)
    }


def placement(ens, var, metric: str = "BA") -> dict | None:
    """Where the single run of Table 4 (WEN-kappa, test weights, at the crop size) sits among our seeds,
    and where the paper's Table 4 value sits against its own Table 5 mean and spread."""
    size = var.size
    one = ens.sizes.get(size)
    row = next((r for r in var.table if r["classifier"] == "WEN-kappa"), None)
    ref4 = paper.table("table4_prelim_test").query("input_px == @size and classifier == 'WEN-kappa'")
    ref5 = paper.table("table5_five_runs_300px").query("classifier == 'WEN-kappa'")
    if one is None or row is None or ref4.empty or ref5.empty or int(row["runs"]) < 2:
        return None
    sd = float(row[f"SD_{metric}_pp"]) / 100
    return {
        "metric": metric,
        "size": size,
        "seeds": int(row["runs"]),
        "ours_run": one.paper_faithful["WEN-kappa"][metric].est,
        "ours_mean": float(row[f"A_{metric}"]),
        "ours_sd": sd,
        "paper_run": float(ref4[metric].iloc[0]),
        "paper_mean": float(ref5[f"A_{metric}"].iloc[0]),
        "paper_sd": float(np.sqrt(ref5[f"V_{metric}_pct"].iloc[0])) / 100,  # V_ read as a variance in %^2
    }


def shown(frame: pd.DataFrame) -> pd.DataFrame:
    """The verdict as a page shows it: ours with its interval, the paper's value, where it falls."""
    out = frame[["table", "input", "classifier", "metric"]].copy()
    out["ours [interval]"] = [
        f"{fmt(e, 3)} [{fmt(lo, 3)}, {fmt(hi, 3)}]" if np.isfinite(lo) else f"{fmt(e, 3)}"
        for e, lo, hi in zip(frame["ours"], frame["lo"], frame["hi"])
    ]
    out["paper"] = frame["paper"].map(lambda v: f"{fmt(v, 3)}")
    out["paper's value"] = frame["paper's value"]
    return out.set_index(["table", "input", "classifier", "metric"])


def verdict_table(ens, var) -> pd.DataFrame:
    """Table 4's rows and Table 5's rows of the verdict, in one frame."""
    return pd.concat([table4(ens), table5(var)], ignore_index=True)
