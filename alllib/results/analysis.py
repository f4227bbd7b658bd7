"""The computations behind the results chapters (Tables 4-6, Fig. 5, significance, subsets, calibration),
kept out of the notebooks so they are tested and reused by the results summary."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from alllib.method import metrics
from alllib.method.ensemble import WeightSource, ensemble_name, ensemble_predictions, model_weights
from alllib.method.models import DISPLAY_ORDER
from alllib.results import paper, stats
from alllib.rounding import fmt, half_up, rounded

if TYPE_CHECKING:  # names used in annotations only
    from alllib.study.runs import RunSet

WEN_METHODS = ("wen-auc", "wen-f1", "wen-kappa")
TABLE4 = ["WP", "WR", "WFS", "ACC", "BA"]


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
        out[k] = [
            f"{e:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
            for e, lo, hi in zip(table[k], table[f"{k}_lo"], table[f"{k}_hi"])
        ]
    return out.set_index("classifier")


def beside_paper(ours: pd.DataFrame, size: int) -> pd.DataFrame:
    """Our Table 4 rows beside the paper's, one narrow column per metric: "ours (paper, difference in
    percentage points)", so the table fits the page."""
    ref = paper.table("table4_prelim_test")
    ref = ref[ref["input_px"] == size].set_index("classifier")
    rows = []
    for _, r in ours.iterrows():
        if r["classifier"] not in ref.index:
            continue
        row = {"classifier": r["classifier"]}
        for k in TABLE4:
            theirs = ref.loc[r["classifier"], k]
            row[k] = f"{fmt(r[k], 3)} ({fmt(theirs, 3)}, {fmt((r[k] - theirs) * 100, 1, sign=True)})"
        rows.append(row)
    return pd.DataFrame(rows).set_index("classifier")


WEN_LEAK_FREE, WEN_AS_PAPER = "WEN-kappa (validation weights)", "WEN-kappa (test weights, as the paper)"


def table6_classifiers(clf_lf: dict[str, pd.DataFrame], clf_paper: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The classifiers of Table 6, each named by its weights: the paper's models as themselves, and
    WEN-kappa twice, with leak-free (validation) weights and with the paper's (test-set) weights."""
    ref = paper.table("table6_confusion_300px")["classifier"]
    out = {n: clf_lf[n] for n in ref if n in clf_lf and n != "WEN-kappa"}
    out[WEN_LEAK_FREE], out[WEN_AS_PAPER] = clf_lf["WEN-kappa"], clf_paper["WEN-kappa"]
    return out


def confusion_beside_paper(clf: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Table 6 beside the paper's counts; `clf` as `table6_classifiers` names them (both WEN-kappa
    rows stand beside the paper's one)."""
    ref = paper.table("table6_confusion_300px").set_index("classifier")
    rows = []
    for shown, pred in clf.items():
        name = "WEN-kappa" if shown in (WEN_LEAK_FREE, WEN_AS_PAPER) else shown
        if name not in ref.index:
            continue
        cm = metrics.confusion(pred["y"], pred["p_all"])
        ours = {
            "hem_as_hem": cm.loc["Hem", "Hem"],
            "hem_as_all": cm.loc["Hem", "ALL"],
            "all_as_hem": cm.loc["ALL", "Hem"],
            "all_as_all": cm.loc["ALL", "ALL"],
        }
        n_hem, n_all = ours["hem_as_hem"] + ours["hem_as_all"], ours["all_as_hem"] + ours["all_as_all"]
        p_hem, p_all = (
            ref.loc[name, ["hem_as_hem", "hem_as_all"]].sum(),
            ref.loc[name, ["all_as_hem", "all_as_all"]].sum(),
        )
        rows.append(
            {
                "classifier": shown,
                "Hem correct % (ours)": 100 * ours["hem_as_hem"] / max(n_hem, 1),
                "Hem correct % (paper)": 100 * ref.loc[name, "hem_as_hem"] / p_hem,
                "ALL correct % (ours)": 100 * ours["all_as_all"] / max(n_all, 1),
                "ALL correct % (paper)": 100 * ref.loc[name, "all_as_all"] / p_all,
                "counts (ours) HH/HA/AH/AA": "/".join(str(int(v)) for v in ours.values()),
                "counts (paper)": "/".join(
                    str(int(v)) for v in ref.loc[name, ["hem_as_hem", "hem_as_all", "all_as_hem", "all_as_all"]]
                ),
            }
        )
    return rounded(pd.DataFrame(rows).set_index("classifier"), 1)


def best_single(preds: dict[str, pd.DataFrame], metric: str = "BA") -> str:
    """The single model a leak-free study would pick: best on validation."""
    scores = {}
    for name, p in preds.items():
        v = p[p["split"] == "validation"]
        scores[name] = metrics.evaluate(v["y"], v["p_all"])[metric]
    return max(scores, key=scores.get)


def weight_sources(preds: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Paper-faithful (test) against leak-free (validation) weights: the weights, each WEN's metrics
    with the gap rows (percentage points, test minus validation weights), and the gaps alone."""
    wrows, mrows, by_source = [], [], {s: {} for s in WeightSource}
    for m in WEN_METHODS:
        for source in (WeightSource.TEST, WeightSource.VALIDATION):
            w = model_weights(preds, m[4:], source)
            tag = source.display
            shown = {k: half_up(v, 3) for k, v in w.items()}
            wrows.append({"ensemble": ensemble_name(m), "weights from": tag, **shown})
            pred, _ = ensemble_predictions(preds, m, source)
            scores = metrics.evaluate(pred["y"], pred["p_all"])
            by_source[source][ensemble_name(m)] = {k: scores[k] for k in metrics.HEADLINE}
            mrows.append({"ensemble": ensemble_name(m), "weights from": tag, **by_source[source][ensemble_name(m)]})
    gap = (pd.DataFrame(by_source[WeightSource.TEST]).T - pd.DataFrame(by_source[WeightSource.VALIDATION]).T) * 100
    gap.index.name = "ensemble"
    shown = gap.reset_index().assign(**{"weights from": "gap (pp), test minus validation weights"})
    return pd.DataFrame(wrows), pd.concat([pd.DataFrame(mrows), shown], ignore_index=True), gap


def compare_ensembles(
    clf: dict[str, pd.DataFrame], reference: str, n_boot: int = 1000, n_perm: int = 2000, seed: int = 0
) -> dict[str, dict]:
    """Every ensemble against the reference single model on the same test images, the subject as
    the unit (`stats.compare_subject_level`), by ensemble name: computed once, read by the
    significance table and by the headline."""
    return {
        name: stats.compare_subject_level(pred, clf[reference], n_boot, n_perm, seed)
        for name, pred in clf.items()
        if name not in DISPLAY_ORDER
    }


def significance(comparisons: dict[str, dict], reference: str) -> pd.DataFrame:
    """The table of `compare_ensembles`: BA and AUC differences with paired subject-bootstrap CIs,
    subject sign-flip permutation p-values, and those p-values Holm-adjusted over every test in the
    table. The per-image McNemar and DeLong p-values (images treated as independent) stay as
    labelled secondary columns."""
    rows = []
    for name, c in comparisons.items():
        rows.append(
            {
                "ensemble": name,
                "against": reference,
                "subjects": c["subjects"],
                "images": c["images"],
                "dBA": c["dBA"],
                "dBA_lo": c["dBA_lo"],
                "dBA_hi": c["dBA_hi"],
                "p dBA (subject permutation)": c["p_BA_permutation"],
                "p dBA (subject bootstrap)": c["p_BA_bootstrap"],
                "dAUC": c["dAUC"],
                "dAUC_lo": c["dAUC_lo"],
                "dAUC_hi": c["dAUC_hi"],
                "p dAUC (subject permutation)": c["p_AUC_permutation"],
                "p dAUC (subject bootstrap)": c["p_AUC_bootstrap"],
                "McNemar p (per image, images independent)": c["p_McNemar_per_image"],
                "DeLong p (per image, images independent)": c["p_DeLong_per_image"],
            }
        )
    table = pd.DataFrame(rows)
    if len(table):
        cols = ["p dBA (subject permutation)", "p dAUC (subject permutation)"]
        adjusted = stats.holm(table[cols].to_numpy().ravel()).reshape(len(table), 2)
        for j, col in enumerate(cols):
            table.insert(table.columns.get_loc(col) + 1, col.replace("(subject permutation)", "Holm"), adjusted[:, j])
    return table


def significance_shown(table: pd.DataFrame) -> pd.DataFrame:
    """The significance table as a page shows it: one row per comparison, each difference in points with its
    paired CI and its Holm-adjusted subject-level p-value (the per-image tests: `per_image_shown`)."""
    out = pd.DataFrame(
        {"comparison": [f"{e} − {a}" for e, a in zip(table["ensemble"], table["against"])]},
    )
    out["subjects"] = table["subjects"].astype(int).to_numpy()
    for m in ("BA", "AUC"):
        out[f"Δ{m}, points [95 % CI]"] = [
            f"{fmt(100 * d, 1, sign=True)} [{fmt(100 * lo, 1, sign=True)}, {fmt(100 * hi, 1, sign=True)}]"
            for d, lo, hi in zip(table[f"d{m}"], table[f"d{m}_lo"], table[f"d{m}_hi"])
        ]
        out[f"p {m} (Holm)"] = [stats.p_text(p) for p in table[f"p d{m} Holm"]]
    return out.set_index("comparison")


def per_image_shown(table: pd.DataFrame) -> pd.DataFrame:
    """The per-image tests of the significance table, labelled as such (images treated as independent)."""
    out = pd.DataFrame({"comparison": [f"{e} − {a}" for e, a in zip(table["ensemble"], table["against"])]})
    out["images"] = table["images"].astype(int).to_numpy()
    out["McNemar p (BA, per image)"] = [stats.p_text(p) for p in table["McNemar p (per image, images independent)"]]
    out["DeLong p (AUC, per image)"] = [stats.p_text(p) for p in table["DeLong p (per image, images independent)"]]
    return out.set_index("comparison")


def headline_comparison(c: dict, ensemble: str, reference: str) -> dict:
    """The comparison behind the headline sentence (`c`: one entry of `compare_ensembles`); its Holm
    columns hold this size's two tests adjusted together until the chapter adjusts the headline's whole
    family (both sizes, `ablation._holm_across_sizes`)."""
    p_ba, p_auc = stats.holm([c["p_BA_permutation"], c["p_AUC_permutation"]])
    return {
        "ensemble": ensemble,
        "reference": reference,
        "subjects": c["subjects"],
        "images": c["images"],
        "dBA": {"est": c["dBA"], "lo": c["dBA_lo"], "hi": c["dBA_hi"]},
        "dAUC": {"est": c["dAUC"], "lo": c["dAUC_lo"], "hi": c["dAUC_hi"]},
        "p_BA_permutation": c["p_BA_permutation"],
        "p_AUC_permutation": c["p_AUC_permutation"],
        "p_BA_bootstrap": c["p_BA_bootstrap"],
        "p_AUC_bootstrap": c["p_AUC_bootstrap"],
        "p_BA_holm": float(p_ba),
        "p_AUC_holm": float(p_auc),
        "p_McNemar_per_image": c["p_McNemar_per_image"],
        "p_DeLong_per_image": c["p_DeLong_per_image"],
    }


def estimates(table: pd.DataFrame, names=metrics.HEADLINE) -> dict:
    """metrics_table rows as {classifier: {metric: {est, lo, hi}}} (the summaries' form)."""
    return {
        r["classifier"]: {k: {"est": r[k], "lo": r[f"{k}_lo"], "hi": r[f"{k}_hi"]} for k in names}
        for _, r in table.iterrows()
    }


def runs_table(runs: RunSet) -> pd.DataFrame:
    """One row per run: what it trained on and with which peak rate and epoch limit, and what it reached."""
    cols = [
        "display",
        "input_size",
        "input_px",
        "seed",
        "train_images",
        "epochs_run",
        "best_epoch",
        "val_accuracy",
        "test_accuracy",
        "images_per_second",
        "train_seconds",
    ]
    table = pd.DataFrame([{c: getattr(r, c) for c in cols} for r in runs]).rename(columns={"display": "backbone"})
    table.insert(4, "peak_lr", [f"{r.training.clr_max_lr:g}" for r in runs])
    table.insert(5, "max_epochs", [r.training.epochs for r in runs])
    return table


def batchnorm_table(runs: RunSet) -> pd.DataFrame:
    """Validation accuracy at the best epoch with the running BatchNorm statistics and after
    re-estimating them, per run (empty when the profile does not re-estimate)."""
    rows = [
        {
            "backbone": r.display,
            "input": f"{r.input_size} px",
            "seed": r.seed,
            "BatchNorm layers": r.batchnorm_layers,
            "val acc, running BN": r.history["val_accuracy_running_bn"].iloc[r.best_epoch - 1],
            "val acc, re-estimated BN": r.history["val_accuracy"].iloc[r.best_epoch - 1],
        }
        for r in runs
        if "val_accuracy_running_bn" in r.history
    ]
    return pd.DataFrame(rows)


def batchnorm_summary(bn: pd.DataFrame) -> pd.DataFrame:
    """Mean validation accuracy with running and re-estimated BatchNorm statistics per backbone and size."""
    return bn.groupby(["backbone", "input"])[["val acc, running BN", "val acc, re-estimated BN"]].mean()


def ablation_benchmark(runs: RunSet, sizes, seeds, repeats: int = 3) -> dict:
    """Seconds to recompute every ensemble (3 WEN x 2 weight sources + 2 baselines) for every size
    and seed from cached probabilities (no bootstrap)."""
    best = np.inf
    count = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        count = 0
        for size in sizes:
            for seed in seeds:
                preds = runs.at(size, seed)
                if len(preds) < 2:
                    continue
                for source in ("test", "validation"):
                    for pred in classifiers(preds, source).values():
                        metrics.evaluate(pred["y"], pred["p_all"])
                        count += 1
        best = min(best, time.perf_counter() - t0)
    return {"seconds": best, "classifiers_evaluated": count}


# ---------------------------------------------------------------- the ensemble chapter in one call


def auc_gain(clf_300: dict, clf_450: dict) -> dict[str, float]:
    """AUC of each single model at the 300 px crop minus at the 450 px image, in points."""
    return {
        n: (metrics.auc_score(clf_300[n].y, clf_300[n].p_all) - metrics.auc_score(clf_450[n].y, clf_450[n].p_all)) * 100
        for n in clf_300
        if n in DISPLAY_ORDER and n in clf_450
    }
