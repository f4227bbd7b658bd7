"""Metric wrappers against hand computations (ALL = 1 is the positive class)."""

import numpy as np
import pytest

from alllib.method import metrics

# 10 images: 6 ALL, 4 Hem. Predictions: ALL -> 5 right, 1 wrong; Hem -> 3 right, 1 wrong.
Y = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
P = np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.4, 0.1, 0.2, 0.3, 0.65])


def test_against_hand_computation():
    m = metrics.evaluate(Y, P)
    tp, fn, tn, fp = 5, 1, 3, 1
    prec_all, rec_all = tp / (tp + fp), tp / (tp + fn)
    prec_hem, rec_hem = tn / (tn + fn), tn / (tn + fp)

    def f1(p, r):
        return 2 * p * r / (p + r)

    assert m["ACC"] == pytest.approx(8 / 10)
    assert m["BA"] == pytest.approx((rec_all + rec_hem) / 2)  # Eq. 6
    assert m["WP"] == pytest.approx((6 * prec_all + 4 * prec_hem) / 10)
    assert m["WR"] == pytest.approx((6 * rec_all + 4 * rec_hem) / 10)
    assert m["WFS"] == pytest.approx((6 * f1(prec_all, rec_all) + 4 * f1(prec_hem, rec_hem)) / 10)  # Eq. 8
    po, pe = 0.8, (6 / 10) * (6 / 10) + (4 / 10) * (4 / 10)  # predicted: 6 ALL, 4 Hem
    assert m["kappa"] == pytest.approx((po - pe) / (1 - pe))
    # AUC: share of (ALL, Hem) pairs ranked correctly
    pairs = [(a, h) for a in P[Y == 1] for h in P[Y == 0]]
    assert m["AUC"] == pytest.approx(np.mean([a > h for a, h in pairs]))
    assert m["f1_all"] == pytest.approx(f1(prec_all, rec_all))


def test_degenerate_all_predicted_as_all():
    m = metrics.evaluate(Y, np.full(10, 0.9))
    assert m["ACC"] == pytest.approx(0.6)
    assert m["BA"] == pytest.approx(0.5)
    assert m["kappa"] == pytest.approx(0.0)
    assert m["precision_hem"] == 0.0 and m["recall_hem"] == 0.0
    assert m["WP"] == pytest.approx(0.6 * 0.6)  # only the ALL class has precision 0.6
    assert m["WFS"] == pytest.approx(0.6 * (2 * 0.6 * 1 / 1.6))
    assert m["AUC"] == pytest.approx(0.5)  # all ties


def test_confusion_layout_and_percentages():
    cm = metrics.confusion(Y, P)
    assert cm.loc["Hem", "Hem"] == 3 and cm.loc["Hem", "ALL"] == 1
    assert cm.loc["ALL", "Hem"] == 1 and cm.loc["ALL", "ALL"] == 5
    pct = metrics.confusion_percent(cm)
    assert pct.loc["ALL", "ALL"] == pytest.approx(500 / 6)
    assert np.allclose(pct.sum(axis=1), 100)


def test_confusion_cells_carry_each_count_with_its_share_of_the_true_class():
    cells = metrics.confusion_cells(metrics.confusion(Y, P))
    assert cells.loc["Hem", "Hem"] == "3 (75.0 %)" and cells.loc["Hem", "ALL"] == "1 (25.0 %)"
    assert cells.loc["ALL", "Hem"] == "1 (16.7 %)" and cells.loc["ALL", "ALL"] == "5 (83.3 %)"
    assert metrics.confusion_cells(metrics.confusion(Y, P), sep="\n").loc["ALL", "ALL"] == "5\n(83.3 %)"
    no_hem = metrics.confusion_cells(metrics.confusion([1, 1], [0.9, 0.2]))
    assert no_hem.loc["Hem"].tolist() == ["0", "0"] and no_hem.loc["ALL"].tolist() == ["1 (50.0 %)", "1 (50.0 %)"]


def test_table6_counts_reproduce_the_papers_percentages():
    """Paper, Section 5: Xception recognises 557 of 648 Hem (85.96 %) and 1046 of 1219 ALL (85.81 %)."""
    y = np.r_[np.zeros(648), np.ones(1219)]
    p = np.r_[np.zeros(557), np.ones(91), np.zeros(173), np.ones(1046)]
    pct = metrics.confusion_percent(metrics.confusion(y, p))
    assert round(pct.loc["Hem", "Hem"], 2) == 85.96 and round(pct.loc["ALL", "ALL"], 2) == 85.81
    assert metrics.evaluate(y, p)["ACC"] == pytest.approx(0.859, abs=5e-4)  # Table 4: Xception 300 px ACC


def test_roc_and_threshold():
    fpr, tpr, auc = metrics.roc(Y, P)
    assert fpr[0] == 0 and tpr[-1] == 1 and auc == pytest.approx(metrics.evaluate(Y, P)["AUC"])
    assert metrics.predict_labels([0.5, 0.49]).tolist() == [1, 0]


def test_expected_calibration_error():
    y = np.array([1, 1, 0, 0])
    p = np.array([0.95, 0.95, 0.05, 0.05])
    ece, table = metrics.expected_calibration_error(y, p, bins=10)
    assert ece == pytest.approx(0.05)
    assert table["count"].sum() == 4


@pytest.mark.parametrize("case", range(40))
def test_evaluate_matches_scikit_learn(case):
    """The numpy implementation against scikit-learn's, on random labels and scores with ties,
    one-class predictions and one-class labels."""
    from sklearn import metrics as skm

    rng = np.random.default_rng(case)
    n = int(rng.integers(2, 60))
    y = rng.integers(0, 2, n) if case % 10 else np.ones(n, int)  # every tenth case: one class only
    p = rng.choice([0.1, 0.3, 0.5, 0.7, 0.9], n) if case % 3 == 0 else rng.random(n)  # ties
    if case % 7 == 0:
        p = np.full(n, 0.8)  # everything predicted ALL
    yhat = (p >= 0.5).astype(int)
    m = metrics.evaluate(y, p)
    prec, rec, f1, _ = skm.precision_recall_fscore_support(y, yhat, labels=[0, 1], zero_division=0)
    wp, wr, wfs, _ = skm.precision_recall_fscore_support(y, yhat, labels=[0, 1], average="weighted", zero_division=0)
    assert m["WP"] == pytest.approx(wp) and m["WR"] == pytest.approx(wr) and m["WFS"] == pytest.approx(wfs)
    assert m["ACC"] == pytest.approx(skm.accuracy_score(y, yhat))
    assert m["BA"] == pytest.approx((rec[0] + rec[1]) / 2)
    assert [m["precision_hem"], m["recall_hem"], m["f1_hem"]] == pytest.approx([prec[0], rec[0], f1[0]])
    assert [m["precision_all"], m["recall_all"], m["f1_all"]] == pytest.approx([prec[1], rec[1], f1[1]])
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = skm.cohen_kappa_score(y, yhat, labels=[0, 1])
    assert m["kappa"] == pytest.approx(0.0 if np.isnan(kappa) else kappa)
    if len(np.unique(y)) == 2:
        assert m["AUC"] == pytest.approx(skm.roc_auc_score(y, p))
    else:
        assert np.isnan(m["AUC"])


def test_midranks_are_scipy_s_average_ranks_value_for_value():
    """The AUC's ranks, in plain numpy, against scipy.stats.rankdata: equal bit for bit, ties (coarse
    probabilities, all equal) and a single value included, and so is the AUC computed from them."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(7)
    for x in (
        rng.random(97),
        np.round(rng.random(200), 2),  # many ties
        np.full(5, 0.5),
        np.array([0.3]),
        rng.integers(0, 3, 40).astype(float),
    ):
        assert np.array_equal(metrics.midranks(x), rankdata(x, method="average"))
        y = np.arange(len(x)) % 2
        if 0 < y.sum() < len(y):
            m, n = int(y.sum()), len(y) - int(y.sum())
            by_scipy = float((rankdata(x, method="average")[y == 1].sum() - m * (m + 1) / 2) / (m * n))
            assert metrics.auc_score(y, x) == by_scipy
    assert np.isnan(metrics.midranks([0.1, np.nan])).all()
