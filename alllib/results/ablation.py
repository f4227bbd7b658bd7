"""The ensemble ablation chapter (Section 4.1.3; Tables 4 and 6, Fig. 5): everything it shows,
computed once from the runs' saved probabilities, and the typed summary the results page reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from alllib.method import metrics
from alllib.method.ensemble import WeightSource, subset_search
from alllib.results import baselines, inference, stats
from alllib.results.analysis import (
    WEN_AS_PAPER,
    WEN_LEAK_FREE,
    ablation_benchmark,
    auc_gain,
    best_single,
    classifiers,
    compare_ensembles,
    confusion_beside_paper,
    estimates,
    headline_comparison,
    metrics_table,
    significance,
    table6_classifiers,
    weight_sources,
)
from alllib.results.summaries import Baselines, Crop, EnsembleSummary, FamilyTest

if TYPE_CHECKING:  # names used in annotations only
    from alllib.study.runs import RunSet


@dataclass
class SizeAblation:
    """The ensemble chapter at one input size."""

    preds: dict[str, pd.DataFrame]  # the members' predictions, in the paper's order
    clf: dict[str, pd.DataFrame]  # every classifier on the test split, WEN weights from the test set (as the paper)
    table: pd.DataFrame  # Table 4 (paper-faithful), with subject-bootstrap CIs
    best: str  # the single model validation picks
    clf_lf: dict[str, pd.DataFrame]  # every classifier, WEN weights from validation (leak-free)
    lf_table: pd.DataFrame  # the best single model and WEN-kappa, leak-free
    weights: pd.DataFrame  # each WEN's weights from each source
    weight_metrics: pd.DataFrame  # each WEN's metrics from each source, and the gaps
    significance: pd.DataFrame  # the subject-level paired tests against `best`


@dataclass
class EnsembleChapter:
    """Everything the ensemble chapter shows, and its typed summary (`summary`) for the other chapters."""

    seed: int
    sizes: list[int]
    crop: int
    per_size: dict[int, SizeAblation]
    table4: pd.DataFrame
    confusions: dict[str, pd.DataFrame]
    confusion_beside_paper: pd.DataFrame
    subsets: pd.DataFrame
    per_subject: pd.DataFrame
    error_concentration: dict
    reliability: dict
    auc_gain: dict[str, float] | None
    benchmark: dict
    baselines: pd.DataFrame  # the ensemble against its baselines at the crop size (baselines.baseline_family)
    gain_per_seed: pd.DataFrame  # WEN-kappa minus the soft vote at every seed of the crop size
    crop_tests: pd.DataFrame | None  # 300 px against 450 px for the same seed (None without both sizes)
    summary: EnsembleSummary


def ensemble_chapter(runs: RunSet, label: str, seed: int | None = None, n_boot: int = 1000, n_perm: int = 2000):
    """Everything the ensemble chapter shows, computed once from the runs' saved probabilities: per
    input size the paper-faithful Table 4 (test weights), the leak-free classifiers (validation
    weights), the subject-level comparison with the best single model on validation, the weight
    sources, Table 6 and calibration; and the typed summary the results page reads."""
    seed = runs.first_seed if seed is None else seed
    sizes, crop = runs.sizes(seed), runs.crop_size(seed)
    per_size: dict[int, SizeAblation] = {}
    size_results = {}
    for size in sizes:
        preds = runs.at(size, seed)
        clf = classifiers(preds, WeightSource.TEST)
        table = metrics_table(clf, n_boot).assign(input=f"{size} px")
        best = best_single(preds)
        clf_lf = classifiers(preds, WeightSource.VALIDATION)
        lf_table = metrics_table({k: clf_lf[k] for k in (best, "WEN-kappa")}, n_boot)
        w, m, gaps = weight_sources(preds)
        comparisons = compare_ensembles(clf_lf, best, n_boot, n_perm)
        sig = significance(comparisons, best)
        comp = headline_comparison(comparisons["WEN-kappa"], "WEN-kappa", best)
        gap = gaps["BA"]
        per_size[size] = SizeAblation(
            preds=preds,
            clf=clf,
            table=table,
            best=best,
            clf_lf=clf_lf,
            lf_table=lf_table,
            weights=w,
            weight_metrics=m,
            significance=sig,
        )
        size_results[size] = {
            "size": size,
            "best_single": best,
            "leak_free": estimates(lf_table),
            "paper_faithful": estimates(table),
            "comparison": comp,
            "weight_gap_BA_pp": {k: float(v) for k, v in gap.items()},
        }
    _holm_across_sizes(size_results)
    c = per_size[crop]
    family = baselines.baseline_family(runs, crop, seed, n_boot, n_perm)
    gains = baselines.weighting_gain_per_seed(runs, crop)
    crop_tests = baselines.crop_comparison(runs, seed, n_boot, n_perm)
    reliability = {
        n: metrics.expected_calibration_error(c.clf_lf[n].y, c.clf_lf[n].p_all) for n in (c.best, "WEN-kappa")
    }
    calib = stats.calibration(c.clf_lf, (c.best, "WEN-kappa"), n_boot, n_perm)
    concentration = stats.error_concentration(c.clf_lf["WEN-kappa"], n_perm=n_perm)
    benchmark = ablation_benchmark(runs, sizes, runs.seeds)
    test = c.clf[c.best]
    summary = EnsembleSummary(
        label=label,
        seed=seed,
        test_images=len(test),
        test_subjects=int(test["subject"].nunique()),
        bootstrap=n_boot,
        sizes=size_results,
        ece=calib["ece"],
        ece_bins=calib["bins"],
        ece_difference=calib["difference"],
        temperatures=inference.temperature_scaling(c.preds)[1],
        error_concentration={k: float(v) for k, v in concentration.items()},
        ablation_seconds=benchmark["seconds"],
        baselines=Baselines(
            size=crop, seed=seed, tests=FamilyTest.rows(family), gain_per_seed=gains.to_dict("records")
        ),
        crop=None
        if crop_tests is None
        else Crop(
            seed=seed, seeds_at={s: len(runs.where(size=s).seeds) for s in sizes}, tests=FamilyTest.rows(crop_tests)
        ),
    )
    return EnsembleChapter(
        seed=seed,
        sizes=sizes,
        crop=crop,
        per_size=per_size,
        table4=pd.concat([v.table for v in per_size.values()]),
        confusions={
            n: metrics.confusion(p.y, p.p_all)
            for n, p in table6_classifiers(c.clf_lf, c.clf).items()
            if n in ("Xception", WEN_LEAK_FREE, WEN_AS_PAPER)
        },
        confusion_beside_paper=confusion_beside_paper(table6_classifiers(c.clf_lf, c.clf)),
        subsets=subset_search(c.preds, "wen-kappa"),
        per_subject=stats.per_subject_accuracy(c.clf_lf["WEN-kappa"]),
        error_concentration=concentration,
        reliability=reliability,
        auc_gain=auc_gain(per_size[300].clf, per_size[450].clf) if {300, 450} <= set(sizes) else None,
        benchmark=benchmark,
        baselines=family,
        gain_per_seed=gains,
        crop_tests=crop_tests,
        summary=summary,
    )


def _holm_across_sizes(size_results: dict) -> None:
    """The headline claim (WEN-kappa against the best single model) is one family: its BA and AUC
    tests at every input size, Holm-adjusted together."""
    keys = [(size, m) for size in size_results for m in ("BA", "AUC")]
    adjusted = stats.holm([size_results[size]["comparison"][f"p_{m}_permutation"] for size, m in keys])
    for (size, m), p in zip(keys, adjusted):
        size_results[size]["comparison"][f"p_{m}_holm"] = float(p)
