"""The ensemble against its baselines (results.baselines): the comparisons of the family, their
differences against scikit-learn, the Holm adjustment over the whole family against a brute-force
Holm, the seed ensemble, the per-seed gain, the crop comparison, and the verdict sentences."""

import numpy as np
import pytest
from conftest import fake_predictions
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from alllib.book import report
from alllib.method.models import DISPLAY_ORDER
from alllib.results import baselines
from alllib.results.summaries import Baselines, Crop, Estimate, FamilyTest
from alllib.study.runs import Run, RunSet


def _predictions(quality, seed):
    return fake_predictions(quality, seed, n_subjects=10, per_subject=5, noise=0.3)


def _runs(sizes=(450, 300), seeds=(0, 1, 2), names=DISPLAY_ORDER[:3]):
    return RunSet(
        Run.of(
            predictions=_predictions(0.04 * (k + 1), 97 * seed + 7 * k + size), display=n, input_size=size, seed=seed
        )
        for size in sizes
        for seed in (seeds if size == 300 else seeds[:1])
        for k, n in enumerate(names)
    )


def _holm(p):
    """Holm by its definition: the k-th smallest p times (m - k + 1), made monotone, capped at 1."""
    p = np.asarray(p, float)
    order = np.argsort(p)
    adjusted = np.minimum(1, np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]))
    out = np.empty_like(p)
    out[order] = adjusted
    return out


@pytest.fixture(scope="module")
def family():
    return baselines.baseline_family(_runs(), 300, 0, n_boot=50, n_perm=200)


def test_the_family_holds_every_baseline_and_the_wens_against_each_other(family):
    runs = _runs()
    best = baselines.best_single(runs.at(300, 0))
    assert list(family["comparison"]) == [
        "WEN-kappa vs Soft vote (equal weights)",
        "WEN-kappa vs Majority vote",
        f"WEN-kappa vs {best}",
        f"WEN-kappa vs {best} x 3 seeds",
        "WEN-kappa vs WEN-f1",
        "WEN-kappa vs WEN-auc",
        "WEN-f1 vs WEN-auc",
    ]


def test_each_difference_is_the_ensemble_minus_the_reference(family):
    pairs = {(a, b): (pa, pb) for a, b, pa, pb in baselines.family_comparisons(_runs(), 300, 0)}
    for row in family.itertuples():
        pa, pb = pairs[(row.ensemble, row.reference)]
        pb = pb.set_index("image_id").loc[pa["image_id"]]
        ba = [balanced_accuracy_score(pa.y, (p >= 0.5).astype(int)) for p in (pa.p_all, pb.p_all)]
        auc = [roc_auc_score(pa.y, p) for p in (pa.p_all, pb.p_all)]
        assert row.dBA == pytest.approx(ba[0] - ba[1]) and row.dAUC == pytest.approx(auc[0] - auc[1])
        assert row.dBA_lo <= row.dBA <= row.dBA_hi and row.subjects == 10


def test_holm_runs_over_the_whole_family_of_both_metrics(family):
    raw = family[["p_BA", "p_AUC"]].to_numpy().ravel()
    expected = _holm(raw).reshape(len(family), 2)
    np.testing.assert_allclose(family[["p_BA_holm", "p_AUC_holm"]].to_numpy(), expected)
    assert (family["p_BA_holm"] >= family["p_BA"]).all()


def test_the_seed_ensemble_averages_the_backbone_s_seeds():
    runs = _runs()
    name = DISPLAY_ORDER[1]
    copies = baselines.seed_ensemble(runs, name, 300)
    tests = [r.predictions.query("split == 'preliminary_test'").set_index("image_id") for r in runs.where(size=300)]
    tests = [t for t, r in zip(tests, runs.where(size=300)) if r.display == name]
    np.testing.assert_allclose(copies.set_index("image_id")["p_all"], np.mean([t["p_all"] for t in tests], axis=0))
    assert baselines.seed_ensemble(runs, name, 450) is None  # one seed at 450 px: no seed ensemble


def test_the_gain_over_equal_weights_is_given_per_seed():
    runs = _runs()
    gains = baselines.weighting_gain_per_seed(runs, 300)
    assert list(gains["seed"]) == [0, 1, 2]
    for seed, row in zip((0, 1, 2), gains.itertuples()):
        _, _, wen, soft = baselines.family_comparisons(runs, 300, seed)[0]  # WEN-kappa and the soft vote
        ba = [balanced_accuracy_score(p.y, (p.p_all >= 0.5).astype(int)) for p in (wen, soft)]
        assert row.dBA_pp == pytest.approx(100 * (ba[0] - ba[1]))


def test_the_crop_is_compared_for_the_same_seed_and_only_with_both_sizes():
    runs = _runs()
    crop = baselines.crop_comparison(runs, 0, n_boot=20, n_perm=50)
    assert list(crop["comparison"]) == [f"{n} 300 px vs {n} 450 px" for n in ["WEN-kappa", *DISPLAY_ORDER[:3]]]
    assert baselines.crop_comparison(_runs(sizes=(300,)), 0) is None


def _test(comparison, d, p, reference="Soft vote (equal weights)"):
    e = Estimate(est=d, lo=d - 0.02, hi=d + 0.02)
    return FamilyTest(
        comparison=comparison,
        ensemble="WEN-kappa",
        reference=reference,
        subjects=20,
        images=100,
        dBA=e,
        dAUC=e,
        p_BA=p,
        p_AUC=p,
        p_BA_holm=p,
        p_AUC_holm=p,
    )


class _Summary:
    def __init__(
        self, d, p, gains=({"seed": 0, "dBA_pp": 1.0, "dAUC_pp": 0.5}, {"seed": 1, "dBA_pp": 3.0, "dAUC_pp": -0.5})
    ):
        tests = [
            _test("WEN-kappa vs Soft vote (equal weights)", d, p),
            _test("WEN-kappa vs VGG-16 x 5 seeds", -d, p, reference="VGG-16 x 5 seeds"),
        ]
        self.baselines = Baselines(size=300, seed=0, tests=tests, gain_per_seed=list(gains))
        self.crop = Crop(seed=0, seeds_at={450: 1, 300: 5}, tests=[_test("WEN-kappa 300 px vs WEN-kappa 450 px", d, p)])


@pytest.mark.parametrize(
    "d, p, verdict",
    [
        (0.05, 0.01, "The paper's claim that the weighting beats plain averaging holds on this build."),
        (0.05, 0.30, "the paper's claim is not supported"),
        (-0.05, 0.01, "equal weights do significantly better: the paper's claim does not hold"),
    ],
)
def test_the_weighting_sentence_states_what_the_test_says(d, p, verdict):
    text = report.weighting_sentence(_Summary(d, p))
    assert verdict in text
    assert f"BA {100 * d:+.1f} points (95 % CI {100 * d - 2:+.1f} to {100 * d + 2:+.1f})" in text
    assert "Holm-adjusted over the family's 4 tests" in text
    # the per-seed spread, computed: BA gains 1 and 3 points -> mean +2.00, SD 1.41
    assert "the gain averaged +2.00 BA points (SD 1.41, from +1.00 to +3.00) and +0.00 AUC points" in text


def test_the_mixture_and_crop_sentences_name_their_evidence():
    s = _Summary(0.05, 0.01)
    assert "The mixture of architectures is beaten by the seed ensemble" in report.mixture_sentence(s)
    var = type("V", (), {"table": [{"classifier": "WEN-kappa", "runs": 5, "SD_BA_pp": 1.5}]})()
    text = report.crop_sentence(s, var)
    assert "This rests on 1 seed at 450 px and 5 at 300 px." in text
    assert (
        "an SD of 1.50 points" in text and "smaller than about 3.0 points" in text and "5.0 points, is larger" in text
    )
