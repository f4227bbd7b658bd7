import numpy as np
import pandas as pd
import pytest

from alllib import variance


def test_five_run_table_in_percentage_points():
    vals = {"WFS": [0.80, 0.82, 0.84, 0.86, 0.88], "ACC": [0.9] * 5, "BA": [0.70, 0.71, 0.72, 0.73, 0.74]}
    per_seed = pd.DataFrame({"classifier": "X", "kind": "single", "seed": range(5), **vals})
    t = variance.five_run_table(per_seed).iloc[0]
    assert t["runs"] == 5
    assert t["A_WFS"] == pytest.approx(0.84)
    assert t["SD_WFS_pp"] == pytest.approx(np.std([80, 82, 84, 86, 88], ddof=1))
    assert t["VAR_WFS_pp2"] == pytest.approx(np.var([80, 82, 84, 86, 88], ddof=1))
    assert t["SD_ACC_pp"] == pytest.approx(0.0)
    assert t["VAR_BA_pp2"] == pytest.approx(2.5)


def test_reading_of_paper_v_picks_the_reading_of_matching_magnitude():
    ours = pd.DataFrame({"classifier": ["A", "B"], "kind": "single",
                         **{f"SD_{m}_pp": [1.0, 0.5] for m in variance.TABLE5_METRICS},
                         **{f"VAR_{m}_pp2": [1.0, 0.25] for m in variance.TABLE5_METRICS}})
    sd_like = pd.DataFrame({"classifier": ["A", "B"], "kind": "single", **{f"V_{m}_pct": [1.1, 0.55] for m in variance.TABLE5_METRICS}})
    var_like = pd.DataFrame({"classifier": ["A", "B"], "kind": "single", **{f"V_{m}_pct": [0.9, 0.26] for m in variance.TABLE5_METRICS}})
    assert variance.reading_of_paper_v(ours, sd_like)["closer"] == "standard deviation (pp)"
    assert variance.reading_of_paper_v(ours, var_like)["closer"] == "variance (pp^2)"


def _run(display, seed, offset):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    p = np.clip(0.6 * y + 0.4 * rng.random(60) + offset, 0, 1)
    pred = pd.DataFrame({"split": ["validation"] * 30 + ["preliminary_test"] * 30,
                         "image_id": [f"v{i}" for i in range(30)] + [f"t{i}" for i in range(30)],
                         "subject": "s", "label": np.where(y, "all", "hem"), "y": y, "p_hem": 1 - p, "p_all": p})
    return {"display": display, "seed": seed, "input_size": 300, "predictions": pred}


def test_per_seed_metrics_build_one_wen_per_seed():
    runs = [_run(n, s, o) for s in range(3) for n, o in (("VGG-16", 0.0), ("Xception", 0.05))]
    per_seed = variance.per_seed_metrics(runs, 300)
    assert set(per_seed["classifier"]) == {"VGG-16", "Xception", "WEN-auc", "WEN-f1", "WEN-kappa"}
    assert per_seed.groupby("classifier").size().eq(3).all()
