import numpy as np
import pandas as pd
import pytest

from alllib.errors import ConfigError
from alllib.method import ensemble, metrics


def _preds(seed, n_val=40, n_test=50, quality=0.7):
    rng = np.random.default_rng(seed)
    frames = []
    for split, n in (("validation", n_val), ("preliminary_test", n_test)):
        y = rng.integers(0, 2, n)
        p = np.clip(quality * y + (1 - quality) * rng.random(n), 0, 1)
        frames.append(
            pd.DataFrame(
                {
                    "split": split,
                    "image_id": [f"{split}_{i:03d}" for i in range(n)],
                    "subject": [f"S{i % 7}" for i in range(n)],
                    "label": np.where(y, "all", "hem"),
                    "y": y,
                    "p_hem": 1 - p,
                    "p_all": p,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture()
def preds():
    base = _preds(0)
    out = {}
    for k, q in enumerate((0.8, 0.5, 0.3)):
        d = _preds(k + 1, quality=q)
        d[["y", "label"]] = base[["y", "label"]]  # same images, same truth
        p = np.clip(q * d["y"] + (1 - q) * np.random.default_rng(k).random(len(d)), 0, 1)
        d["p_all"], d["p_hem"] = p, 1 - p
        out[f"M{k}"] = d
    return out


def test_wen_formula():
    P = np.array([[[0.2, 0.8], [0.6, 0.4]], [[0.5, 0.5], [0.9, 0.1]]])
    out = ensemble.wen(P, [3.0, 1.0])
    np.testing.assert_allclose(out, (3 * P[0] + P[1]) / 4)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    np.testing.assert_allclose(ensemble.wen(P, [30.0, 10.0]), out)  # only relative weights matter


def test_ensemble_of_one_model_is_that_model(preds):
    one = {"M0": preds["M0"]}
    for method in ("wen-f1", "wen-auc", "wen-kappa", "soft-vote"):
        out, _ = ensemble.ensemble_predictions(one, method, "validation")
        test = preds["M0"][preds["M0"].split == "preliminary_test"].sort_values("image_id")
        np.testing.assert_allclose(out["p_all"].to_numpy(), test["p_all"].to_numpy())


@pytest.mark.parametrize("source,split", [("test", "preliminary_test"), ("validation", "validation")])
def test_weight_source_is_respected(preds, source, split):
    w = ensemble.model_weights(preds, "kappa", source)
    for name, d in preds.items():
        part = d[d.split == split]
        assert w[name] == pytest.approx(max(metrics.evaluate(part.y, part.p_all)["kappa"], 0))
    out, used = ensemble.ensemble_predictions(preds, "wen-kappa", source)
    P = np.stack([d[d.split == "preliminary_test"].sort_values("image_id")["p_all"] for d in preds.values()])
    W = np.array([w[n] for n in preds])
    np.testing.assert_allclose(out["p_all"].to_numpy(), W @ P / W.sum())


def test_weights_by_metric(preds):
    d = preds["M0"][preds["M0"].split == "validation"]
    m = metrics.evaluate(d.y, d.p_all)
    assert ensemble.model_weights(preds, "f1", "validation")["M0"] == pytest.approx(m["WFS"])
    assert ensemble.model_weights(preds, "auc", "validation")["M0"] == pytest.approx(m["AUC"])


def test_majority_vote():
    P = np.array([[[0.2, 0.8]], [[0.6, 0.4]], [[0.1, 0.9]]])
    assert ensemble.majority_vote(P).tolist() == [2 / 3]


def test_errors(preds):
    with pytest.raises(ConfigError, match="unknown WEN weighting 'acc'"):
        ensemble.score([0, 1], [0.1, 0.9], "acc")
    with pytest.raises(ConfigError, match="unknown weight source 'train'"):
        ensemble.model_weights(preds, "f1", "train")
    with pytest.raises(ConfigError, match="non-negative with a positive sum"):
        ensemble.wen(np.ones((2, 1, 2)) / 2, [0, 0])
    bad = dict(preds)
    bad["M9"] = preds["M0"].assign(image_id=lambda d: d.image_id + "x")
    with pytest.raises(ConfigError, match="other preliminary_test images"):
        ensemble.ensemble_predictions(bad, "soft-vote")


def test_subset_search(preds):
    s = ensemble.subset_search(preds, "wen-kappa")
    assert len(s) == 4  # three pairs and the triple
    assert s["val_BA"].is_monotonic_decreasing
    assert {"models", "val_BA", "test_BA"} <= set(s.columns)


def test_weights_when_no_model_beats_chance(preds):
    worse = {}
    for name, d in preds.items():
        d = d.copy()
        d["p_all"] = 1 - d["y"] * 0.9 - 0.05  # always wrong: kappa < 0
        d["p_hem"] = 1 - d["p_all"]
        worse[name] = d
    with pytest.warns(UserWarning, match="falls back to equal weights"):
        w = ensemble.model_weights(worse, "kappa", "validation")
    assert set(w.values()) == {1.0}
    mixed = dict(worse, M0=preds["M0"])
    w = ensemble.model_weights(mixed, "kappa", "validation")
    assert w["M1"] == 0.0 and w["M0"] > 0
