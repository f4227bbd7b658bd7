import numpy as np
import pandas as pd
import pytest

from alllib.method import metrics
from alllib.results import inference


def test_temperature_recovers_a_known_overconfidence():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-z))).astype(int)  # calibrated logits z
    p_over = 1 / (1 + np.exp(-3 * z))  # the same model, three times overconfident
    t = inference.fit_temperature(y, p_over)
    assert t == pytest.approx(3, rel=0.1)
    before = metrics.expected_calibration_error(y, p_over)[0]
    after = metrics.expected_calibration_error(y, inference.apply_temperature(p_over, t))[0]
    assert after < before / 2
    # a positive temperature keeps every label and the AUC
    q = inference.apply_temperature(p_over, t)
    assert ((q >= 0.5) == (p_over >= 0.5)).all() and metrics.auc_score(y, q) == pytest.approx(
        metrics.auc_score(y, p_over)
    )


def test_temperature_is_fitted_on_validation_only():
    val = pd.DataFrame({"split": "validation", "image_id": range(4), "y": [0, 1, 0, 1], "p_all": [0.2, 0.8, 0.3, 0.7]})
    test = pd.DataFrame({"split": "preliminary_test", "image_id": range(4, 8), "y": [1, 1, 1, 1], "p_all": [0.01] * 4})
    scaled, temps = inference.temperature_scaling({"A": pd.concat([val, test], ignore_index=True)})
    assert temps["A"] == pytest.approx(inference.fit_temperature(val.y, val.p_all))  # the test rows play no part


def test_dihedral_gives_eight_distinct_views():
    x = np.arange(2 * 3 * 3 * 1).reshape(2, 3, 3, 1)
    views = inference.dihedral(x)
    assert len(views) == 8 and len({v.tobytes() for v in views}) == 8
    assert np.array_equal(views[0], x)
