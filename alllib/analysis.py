"""The computations behind the results chapters (Tables 4-6, Fig. 5, significance, subsets, calibration),
kept out of the notebooks so they are tested and reused by the results summary."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from . import metrics, paper, stats
from .ensemble import ensemble_name, ensemble_predictions, subset_search
from .models import DISPLAY_ORDER

WEN_METHODS = ("wen-auc", "wen-f1", "wen-kappa")
TABLE4 = ["WP", "WR", "WFS", "ACC", "BA"]


def runs_at(runs: list[dict], size: int, seed: int) -> dict[str, pd.DataFrame]:
    """Predictions of the five backbones at one input size and seed, in the paper's order."""
    chosen = {r["display"]: r["predictions"] for r in runs if r["input_size"] == size and r["seed"] == seed}
    return {name: chosen[name] for name in DISPLAY_ORDER if name in chosen}


def test_rows(pred: pd.DataFrame) -> pd.DataFrame:
    return pred[pred["split"] == "preliminary_test"].reset_index(drop=True)


def classifiers(preds: dict[str, pd.DataFrame], source: str, baselines: bool = True) -> dict[str, pd.DataFrame]:
    """Test predictions of every single model and every ensemble, by display name."""
    out = {name: test_rows(p) for name, p in preds.items()}
    methods = WEN_METHODS + (("soft-vote", "majority-vote") if baselines else ())
    if len(preds) > 1:
        for m in methods:
            out[ensemble_name(m)] = ensemble_predictions(preds, m, source)[0]
    return out


def metrics_table(clf: dict[str, pd.DataFrame], n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Headline metrics with 95% subject-bootstrap CIs (columns M, M_lo, M_hi)."""
    rows = []
    for name, pred in clf.items():
        ci = stats.metric_cis(pred, n=n_boot, seed=seed)
        row = {"classifier": name, "kind": "single" if name in DISPLAY_ORDER else "ensemble"}
        for k, (est, lo, hi) in ci.items():
            row[k], row[f"{k}_lo"], row[f"{k}_hi"] = est, lo, hi
        rows.append(row)
    return pd.DataFrame(rows)


def with_ci(table: pd.DataFrame, names=metrics.HEADLINE, digits: int = 3) -> pd.DataFrame:
    """A display copy: 'est [lo, hi]' strings, indexed by classifier."""
    out = table[["classifier"]].copy()
    for k in names:
        out[k] = [f"{e:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]" for e, lo, hi in
                  zip(table[k], table[f"{k}_lo"], table[f"{k}_hi"])]
    return out.set_index("classifier")


def beside_paper(ours: pd.DataFrame, size: int) -> pd.DataFrame:
    """Our Table 4 rows next to the paper's, with the difference in percentage points."""
    ref = paper.table("table4_prelim_test")
    ref = ref[ref["input_px"] == size].set_index("classifier")
    rows = []
    for _, r in ours.iterrows():
        if r["classifier"] not in ref.index:
            continue
        row = {"classifier": r["classifier"]}
        for k in TABLE4:
            row[f"{k} ours"], row[f"{k} paper"] = round(r[k], 3), ref.loc[r["classifier"], k]
            row[f"{k} diff (pp)"] = round((r[k] - ref.loc[r["classifier"], k]) * 100, 1)
        rows.append(row)
    return pd.DataFrame(rows).set_index("classifier")


def confusion_beside_paper(clf: dict[str, pd.DataFrame]) -> pd.DataFrame:
    ref = paper.table("table6_confusion_300px").set_index("classifier")
    rows = []
    for name, pred in clf.items():
        if name not in ref.index:
            continue
        cm = metrics.confusion(pred["y"], pred["p_all"])
        ours = {"hem_as_hem": cm.loc["Hem", "Hem"], "hem_as_all": cm.loc["Hem", "ALL"],
                "all_as_hem": cm.loc["ALL", "Hem"], "all_as_all": cm.loc["ALL", "ALL"]}
        n_hem, n_all = ours["hem_as_hem"] + ours["hem_as_all"], ours["all_as_hem"] + ours["all_as_all"]
        p_hem, p_all = ref.loc[name, ["hem_as_hem", "hem_as_all"]].sum(), ref.loc[name, ["all_as_hem", "all_as_all"]].sum()
        rows.append({"classifier": name,
                     "Hem correct % (ours)": 100 * ours["hem_as_hem"] / max(n_hem, 1),
                     "Hem correct % (paper)": 100 * ref.loc[name, "hem_as_hem"] / p_hem,
                     "ALL correct % (ours)": 100 * ours["all_as_all"] / max(n_all, 1),
                     "ALL correct % (paper)": 100 * ref.loc[name, "all_as_all"] / p_all,
                     "counts (ours) HH/HA/AH/AA": "/".join(str(int(v)) for v in ours.values()),
                     "counts (paper)": "/".join(str(int(v)) for v in ref.loc[name, ["hem_as_hem", "hem_as_all", "all_as_hem", "all_as_all"]])})
    return pd.DataFrame(rows).set_index("classifier").round(1)


def best_single(preds: dict[str, pd.DataFrame], metric: str = "BA") -> str:
    """The single model a leak-free study would pick: best on validation."""
    scores = {}
    for name, p in preds.items():
        v = p[p["split"] == "validation"]
        scores[name] = metrics.evaluate(v["y"], v["p_all"])[metric]
    return max(scores, key=scores.get)


def weight_sources(preds: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Paper-faithful (test) against leak-free (validation) weights: the weights, and each WEN's metrics."""
    from .ensemble import model_weights

    wrows, mrows = [], []
    for m in WEN_METHODS:
        for source, tag in (("test", "paper-faithful (test labels)"), ("validation", "leak-free (validation)")):
            w = model_weights(preds, m[4:], source)
            wrows.append({"ensemble": ensemble_name(m), "weights from": tag, **{k: round(v, 3) for k, v in w.items()}})
            pred, _ = ensemble_predictions(preds, m, source)
            mrows.append({"ensemble": ensemble_name(m), "weights from": tag,
                          **{k: metrics.evaluate(pred["y"], pred["p_all"])[k] for k in metrics.HEADLINE}})
    mt = pd.DataFrame(mrows)
    gap = (mt[mt["weights from"].str.startswith("paper")].set_index("ensemble")[metrics.HEADLINE]
           - mt[mt["weights from"].str.startswith("leak")].set_index("ensemble")[metrics.HEADLINE]) * 100
    gap = gap.reset_index().assign(**{"weights from": "gap (pp), paper-faithful minus leak-free"})
    return pd.DataFrame(wrows), pd.concat([mt, gap], ignore_index=True)


def significance(clf: dict[str, pd.DataFrame], reference: str) -> pd.DataFrame:
    """Every ensemble against the reference single model on the same test images."""
    ref = clf[reference]
    rows = []
    for name, pred in clf.items():
        if name in DISPLAY_ORDER:
            continue
        if not pred["image_id"].equals(ref["image_id"]):
            pred = pred.set_index("image_id").loc[ref["image_id"]].reset_index()
        t = stats.paired_tests(ref["y"], pred["p_all"], ref["p_all"])
        acc_e = metrics.evaluate(ref["y"], pred["p_all"])["ACC"]
        acc_r = metrics.evaluate(ref["y"], ref["p_all"])["ACC"]
        rows.append({"ensemble": name, "against": reference, "ACC ensemble": acc_e, "ACC single": acc_r,
                     "only ensemble right": t["mcnemar_b"], "only single right": t["mcnemar_c"],
                     "McNemar p": t["mcnemar_p"], "AUC ensemble": t["auc_a"], "AUC single": t["auc_b"],
                     "DeLong p": t["delong_p"]})
    return pd.DataFrame(rows)


def ablation_benchmark(runs: list[dict], sizes, seeds, repeats: int = 3) -> dict:
    """Seconds to recompute every ensemble (3 WEN x 2 weight sources + 2 baselines) for every size
    and seed from cached probabilities (no bootstrap)."""
    best = np.inf
    count = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        count = 0
        for size in sizes:
            for seed in seeds:
                preds = runs_at(runs, size, seed)
                if len(preds) < 2:
                    continue
                for source in ("test", "validation"):
                    for name, pred in classifiers(preds, source).items():
                        metrics.evaluate(pred["y"], pred["p_all"])
                        count += 1
        best = min(best, time.perf_counter() - t0)
    return {"seconds": best, "classifiers_evaluated": count}


__all__ = ["runs_at", "classifiers", "metrics_table", "with_ci", "beside_paper", "confusion_beside_paper", "best_single",
           "weight_sources", "significance", "subset_search", "ablation_benchmark"]
