import numpy as np
import pandas as pd
import pytest

from alllib.method.ensemble import WeightSource
from alllib.results import variance
from alllib.study.runs import Run, RunSet


def test_five_run_table_in_percentage_points():
    vals = {"WFS": [0.80, 0.82, 0.84, 0.86, 0.88], "ACC": [0.9] * 5, "BA": [0.70, 0.71, 0.72, 0.73, 0.74]}
    per_seed = pd.DataFrame({"classifier": "X", "kind": "single", "seed": range(5), **vals})
    t = variance.five_run_table(per_seed).iloc[0]
    assert t["runs"] == 5
    assert t["A_WFS"] == pytest.approx(0.84)
    assert t["SD_WFS_pp"] == pytest.approx(np.std([80, 82, 84, 86, 88], ddof=1))
    assert t["V_WFS"] == pytest.approx(np.var([80, 82, 84, 86, 88], ddof=1))  # the paper's V_: a variance, in %
    assert t["SD_ACC_pp"] == pytest.approx(0.0)
    assert t["V_BA"] == pytest.approx(2.5)


def test_reading_of_paper_v_picks_the_reading_of_matching_magnitude():
    ours = pd.DataFrame(
        {
            "classifier": ["A", "B"],
            "kind": "single",
            **{f"SD_{m}_pp": [1.0, 0.5] for m in variance.TABLE5_METRICS},
            **{f"V_{m}": [1.0, 0.25] for m in variance.TABLE5_METRICS},
        }
    )
    sd_like = pd.DataFrame(
        {"classifier": ["A", "B"], "kind": "single", **{f"V_{m}_pct": [1.1, 0.55] for m in variance.TABLE5_METRICS}}
    )
    var_like = pd.DataFrame(
        {"classifier": ["A", "B"], "kind": "single", **{f"V_{m}_pct": [0.9, 0.26] for m in variance.TABLE5_METRICS}}
    )
    assert variance.reading_of_paper_v(ours, sd_like)["closer"] == "standard deviation (pp)"
    assert variance.reading_of_paper_v(ours, var_like)["closer"] == "variance (%^2)"


def _run(display, seed, offset):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    p = np.clip(0.6 * y + 0.4 * rng.random(60) + offset, 0, 1)
    pred = pd.DataFrame(
        {
            "split": ["validation"] * 30 + ["preliminary_test"] * 30,
            "image_id": [f"v{i}" for i in range(30)] + [f"t{i}" for i in range(30)],
            "subject": "s",
            "label": np.where(y, "all", "hem"),
            "y": y,
            "p_hem": 1 - p,
            "p_all": p,
        }
    )
    return Run.of(predictions=pred, display=display, seed=seed, input_size=300)


def test_per_seed_metrics_build_one_wen_per_seed():
    runs = RunSet(_run(n, s, o) for s in range(3) for n, o in (("VGG-16", 0.0), ("Xception", 0.05)))
    per_seed = variance.per_seed_metrics(runs, 300)
    assert set(per_seed["classifier"]) == {"VGG-16", "Xception", "WEN-auc", "WEN-f1", "WEN-kappa"}
    # singles once per seed; every WEN once per seed and weight source (validation, and test as the paper)
    assert per_seed.groupby("classifier").size().to_dict() == {
        "VGG-16": 3,
        "Xception": 3,
        "WEN-auc": 6,
        "WEN-f1": 6,
        "WEN-kappa": 6,
    }
    assert set(per_seed.loc[per_seed.kind == "ensemble", "weights"]) == {w.display for w in WeightSource}
    # each seed's WEN-kappa is built from that seed's two models only: kappa weights on validation,
    # Eq. 2's weighted mean of p(ALL) on the test split, scored there (an independent computation)
    from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score

    for seed in range(3):
        members = [_run(n, seed, o).predictions for n, o in (("VGG-16", 0.0), ("Xception", 0.05))]
        val = [m[m.split == "validation"] for m in members]
        test = [m[m.split == "preliminary_test"] for m in members]
        w = [max(cohen_kappa_score(v.y, (v.p_all >= 0.5).astype(int)), 0.0) for v in val]
        p = sum(wk * t.p_all.to_numpy() for wk, t in zip(w, test)) / sum(w)
        expected = balanced_accuracy_score(test[0].y, (p >= 0.5).astype(int))
        row = per_seed[
            (per_seed.classifier == "WEN-kappa")
            & (per_seed.seed == seed)
            & (per_seed.weights == WeightSource.VALIDATION.display)
        ]
        assert row["BA"].item() == pytest.approx(expected)


def test_table5_rows_come_in_the_papers_order():
    rows = [
        ("WEN-kappa", "ensemble", WeightSource.TEST.display),
        ("DenseNet-121", "single", ""),
        ("WEN-auc", "ensemble", WeightSource.VALIDATION.display),
        ("VGG-16", "single", ""),
        ("WEN-kappa", "ensemble", WeightSource.VALIDATION.display),
        ("Xception", "single", ""),
        ("WEN-f1", "ensemble", WeightSource.VALIDATION.display),
    ]
    per_seed = pd.DataFrame(
        [
            {"classifier": c, "kind": k, "weights": w, "seed": s, "WFS": 0.8, "ACC": 0.8, "BA": 0.8}
            for c, k, w in rows
            for s in range(2)
        ]
    )
    t = variance.five_run_table(per_seed)
    assert list(zip(t.classifier, t.weights)) == [
        ("VGG-16", ""),
        ("Xception", ""),
        ("DenseNet-121", ""),
        ("WEN-auc", WeightSource.VALIDATION.display),
        ("WEN-f1", WeightSource.VALIDATION.display),
        ("WEN-kappa", WeightSource.VALIDATION.display),
        ("WEN-kappa", WeightSource.TEST.display),
    ]


def test_table5_beside_the_paper_is_one_metric_wide():
    from alllib.results import paper

    ref = paper.table("table5_five_runs_300px")
    per_seed = pd.DataFrame(
        [
            {"classifier": c, "kind": k, "weights": w, "seed": s, "WFS": 0.8 + s / 100, "ACC": 0.8, "BA": 0.8}
            for c, k, w in [
                ("Xception", "single", ""),
                ("WEN-kappa", "ensemble", WeightSource.TEST.display),
                ("WEN-kappa", "ensemble", WeightSource.VALIDATION.display),
            ]
            for s in range(3)
        ]
    )
    side = variance.beside_paper(variance.five_run_table(per_seed), ref, "WFS")
    assert list(side.index) == ["Xception", "WEN-kappa"]  # the paper's weights only
    assert list(side.columns) == ["A_WFS", "A_WFS paper", "V_WFS", "V_WFS paper", "SD_WFS_pp"]
    assert side.loc["WEN-kappa", "A_WFS paper"] == 0.886 and side.loc["Xception", "V_WFS paper"] == 0.85
    assert side.loc["Xception", "V_WFS"] == pytest.approx(1.0)
