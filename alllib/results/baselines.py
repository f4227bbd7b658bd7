"""Does the weighting matter? The paper's central claim, that a weighted ensemble of networks
(WEN) beats what it is made of, tested against its baselines on the same test images, the subject
as the unit (`stats.compare_subject_level`: the paired subject-bootstrap CI of the difference and the
subject sign-flip permutation p-value), with Holm's adjustment over the whole family:

- WEN-kappa against the soft vote (equal weights): does the weighting add anything?
- WEN-kappa against the majority vote;
- WEN-kappa against the best single backbone, chosen on validation;
- WEN-kappa against a seed ensemble of that backbone (the mean of its seeds' p(ALL)): does a mixture
  of architectures beat copies of the best one?
- the three WENs against each other.

Every WEN here takes its weights from validation (leak-free). Each seed also gives one WEN and one
soft vote: `weighting_gain_per_seed` reports the gain over equal weights per seed, and its spread.
`crop_comparison` tests the paper's second claim, the 300 px centre crop against the full 450 px
image, for the same seed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from alllib.method import metrics
from alllib.method.ensemble import WeightSource, ensemble_name
from alllib.method.models import DISPLAY_ORDER
from alllib.results import stats
from alllib.results.analysis import best_single, classifiers, test_rows
from alllib.rounding import fmt

if TYPE_CHECKING:  # names used in annotations only
    from alllib.study.runs import RunSet

WEN_KAPPA, SOFT_VOTE, MAJORITY = ensemble_name("wen-kappa"), ensemble_name("soft-vote"), ensemble_name("majority-vote")
FAMILY_METRICS = ("BA", "AUC")  # each comparison tests both; Holm runs over every test of the family


def seed_ensemble(runs: RunSet, display: str, size: int) -> pd.DataFrame | None:
    """The test predictions of one backbone's seeds at `size`, p(ALL) averaged over the seeds (None
    with fewer than two seeds)."""
    members = [test_rows(r.predictions).set_index("image_id") for r in runs.where(size=size) if r.display == display]
    if len(members) < 2:
        return None
    out = members[0].copy()
    out["p_all"] = np.mean([m.loc[out.index, "p_all"].to_numpy() for m in members], axis=0)
    out["p_hem"] = 1 - out["p_all"]
    return out.reset_index()


def family_comparisons(runs: RunSet, size: int, seed: int) -> list[tuple[str, str, pd.DataFrame, pd.DataFrame]]:
    """The family's comparisons at (size, seed), as (ensemble, reference, its predictions, theirs)."""
    preds = runs.at(size, seed)
    clf = classifiers(preds, WeightSource.VALIDATION)
    best = best_single(preds)
    pairs = [(WEN_KAPPA, SOFT_VOTE), (WEN_KAPPA, MAJORITY), (WEN_KAPPA, best)]
    out = [(a, b, clf[a], clf[b]) for a, b in pairs]
    copies = seed_ensemble(runs, best, size)
    if copies is not None:
        n = len({r.seed for r in runs.where(size=size) if r.display == best})
        out.append((WEN_KAPPA, f"{best} x {n} seeds", clf[WEN_KAPPA], copies))
    wens = [ensemble_name(m) for m in ("wen-kappa", "wen-f1", "wen-auc")]
    out += [(a, b, clf[a], clf[b]) for i, a in enumerate(wens) for b in wens[i + 1 :]]
    return out


def holm_family(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with each metric's permutation p-value Holm-adjusted over every test in the table (two
    per comparison)."""
    cols = [f"p_{m}" for m in FAMILY_METRICS]
    adjusted = stats.holm(table[cols].to_numpy().ravel()).reshape(len(table), len(cols))
    for j, col in enumerate(cols):
        table[f"{col}_holm"] = adjusted[:, j]
    return table


def _row(a: str, b: str, pred_a: pd.DataFrame, pred_b: pd.DataFrame, n_boot: int, n_perm: int) -> dict:
    c = stats.compare_subject_level(pred_a, pred_b, n_boot, n_perm)
    row = {"comparison": f"{a} vs {b}", "ensemble": a, "reference": b, "subjects": c["subjects"], "images": c["images"]}
    for m in FAMILY_METRICS:
        row.update({f"d{m}": c[f"d{m}"], f"d{m}_lo": c[f"d{m}_lo"], f"d{m}_hi": c[f"d{m}_hi"]})
        row[f"p_{m}"] = c[f"p_{m}_permutation"]
    return row


def baseline_family(runs: RunSet, size: int, seed: int, n_boot: int = 1000, n_perm: int = 2000) -> pd.DataFrame:
    """One row per comparison of the family at (size, seed): the differences (ensemble minus
    reference) in BA and AUC with their 95 % paired subject-bootstrap CIs, the subject sign-flip
    p-values, and those Holm-adjusted over the family."""
    rows = [_row(a, b, pa, pb, n_boot, n_perm) for a, b, pa, pb in family_comparisons(runs, size, seed)]
    return holm_family(pd.DataFrame(rows))


def weighting_gain_per_seed(runs: RunSet, size: int) -> pd.DataFrame:
    """Per seed at `size`: WEN-kappa (validation weights) minus the soft vote of the same models, in
    BA and AUC points, on the test split."""
    rows = []
    for seed in runs.where(size=size).seeds:
        preds = runs.at(size, seed)
        if len(preds) < 2:
            continue
        clf = classifiers(preds, WeightSource.VALIDATION)
        w, s = (
            metrics.evaluate(clf[WEN_KAPPA].y, clf[WEN_KAPPA].p_all),
            metrics.evaluate(clf[SOFT_VOTE].y, clf[SOFT_VOTE].p_all),
        )
        rows.append({"seed": seed, **{f"d{m}_pp": 100 * (w[m] - s[m]) for m in FAMILY_METRICS}})
    return pd.DataFrame(rows, columns=["seed", *[f"d{m}_pp" for m in FAMILY_METRICS]])


def crop_comparison(runs: RunSet, seed: int, n_boot: int = 1000, n_perm: int = 2000) -> pd.DataFrame | None:
    """The 300 px centre crop against the full 450 px image for the same seed: WEN-kappa (validation
    weights) and each backbone, the subject as the unit, Holm over the table (None without both sizes)."""
    if not {300, 450} <= set(runs.sizes(seed)):
        return None
    at = {size: classifiers(runs.at(size, seed), WeightSource.VALIDATION) for size in (300, 450)}
    names = [WEN_KAPPA, *[n for n in DISPLAY_ORDER if n in at[300] and n in at[450]]]
    rows = [_row(f"{n} 300 px", f"{n} 450 px", at[300][n], at[450][n], n_boot, n_perm) for n in names]
    return holm_family(pd.DataFrame(rows))


def shown(table: pd.DataFrame) -> pd.DataFrame:
    """The family as a page shows it: one row per comparison, each difference in points with its CI
    and its Holm-adjusted p-value."""
    out = pd.DataFrame({"comparison": table["comparison"], "subjects": table["subjects"].astype(int)})
    for m in FAMILY_METRICS:
        out[f"Δ{m} (points) [95 % CI]"] = [
            f"{fmt(100 * d, 1, sign=True)} [{fmt(100 * lo, 1, sign=True)}, {fmt(100 * hi, 1, sign=True)}]"
            for d, lo, hi in zip(table[f"d{m}"], table[f"d{m}_lo"], table[f"d{m}_hi"])
        ]
        out[f"p {m} (Holm)"] = [stats.p_text(p) for p in table[f"p_{m}_holm"]]
    return out.set_index("comparison")
