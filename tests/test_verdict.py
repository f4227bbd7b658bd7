"""The reproduction verdict (results.verdict) against a constructed case: each of the paper's numbers
inside, above or below our interval, the counts per table, and the one-run placement."""

import numpy as np
import pytest

from alllib.book import report
from alllib.results import paper, verdict
from alllib.results.summaries import EnsembleSummary, Estimate, SizeResult


def _ens(shift_by_metric):
    """Our Table 4 at 300 px: each number the paper's value plus a shift, with a CI of +-0.01."""
    ref = paper.table("table4_prelim_test").query("input_px == 300")
    est = {
        r.classifier: {
            m: Estimate(
                est=getattr(r, m) + shift_by_metric[m],
                lo=getattr(r, m) + shift_by_metric[m] - 0.01,
                hi=getattr(r, m) + shift_by_metric[m] + 0.01,
            )
            for m in verdict.TABLE4_METRICS
        }
        for r in ref.itertuples()
    }
    return EnsembleSummary.model_construct(sizes={300: SizeResult.model_construct(paper_faithful=est)})


def test_each_paper_number_is_placed_against_our_interval():
    ens = _ens({"WP": 0.0, "WR": 0.005, "WFS": 0.05, "ACC": -0.05, "BA": 0.0})
    t4 = verdict.table4(ens)
    n_rows = len(paper.table("table4_prelim_test").query("input_px == 300"))
    assert len(t4) == 5 * n_rows and set(t4["input"]) == {"300 px"}  # 450 px is not in this build
    by_metric = t4.groupby("metric")["paper's value"].agg(set).to_dict()
    assert by_metric == {"WP": {"inside"}, "WR": {"inside"}, "WFS": {"below"}, "ACC": {"above"}, "BA": {"inside"}}
    assert verdict.counts(t4) == {"Table 4": {"inside": 3 * n_rows, "above": n_rows, "below": n_rows, "no interval": 0}}


def test_table5_means_get_a_t_interval_over_the_seeds_and_none_with_one_seed():
    ref = paper.table("table5_five_runs_300px").set_index("classifier")
    row = {
        "classifier": "VGG-16",
        "runs": 5,
        **{f"A_{m}": ref.loc["VGG-16", f"A_{m}"] + 0.02 for m in verdict.TABLE5_METRICS},
    }
    row |= {f"SD_{m}_pp": 1.0 for m in verdict.TABLE5_METRICS}  # SD 1 point over 5 seeds
    var = type("V", (), {"size": 300, "table": [row]})()
    t5 = verdict.table5(var)
    half = 2.776445 * 0.01 / np.sqrt(5)  # t(0.975, 4) x SD / sqrt(n)
    assert t5["hi"].iloc[0] - t5["ours"].iloc[0] == pytest.approx(half, rel=1e-5)
    assert set(t5["paper's value"]) == {"below"}  # ours 0.02 above the paper, the interval's half-width 0.012
    one = type("V", (), {"size": 300, "table": [{**row, "runs": 1}]})()
    assert set(verdict.table5(one)["paper's value"]) == {"no interval"}


def test_the_verdict_says_it_places_nothing_on_synthetic_data():
    tally = {"Table 4": {"inside": 3, "above": 1, "below": 1, "no interval": 0}}
    text = report.verdict_sentences(tally, None, synthetic=True)
    assert (
        "of the paper's 5 numbers that the study computes, 3 fall inside our interval, 1 above it and 1 below it"
        in text
    )
    assert "the comparison places nothing" in text
    assert "places nothing" not in report.verdict_sentences(tally, None, synthetic=False)


def test_the_one_run_is_placed_in_its_seeds_spread():
    ref4 = paper.table("table4_prelim_test").query("input_px == 300 and classifier == 'WEN-kappa'")["BA"].item()
    ref5 = paper.table("table5_five_runs_300px").query("classifier == 'WEN-kappa'")
    ens = _ens({m: 0.0 for m in verdict.TABLE4_METRICS})
    row = {"classifier": "WEN-kappa", "runs": 5, "A_BA": ref4 - 0.03, "SD_BA_pp": 1.5}
    place = verdict.placement(ens, type("V", (), {"size": 300, "table": [row]})())
    assert place["ours_run"] == pytest.approx(ref4) and place["ours_mean"] == pytest.approx(ref4 - 0.03)
    assert place["paper_mean"] == pytest.approx(ref5["A_BA"].item())
    assert place["paper_sd"] == pytest.approx(np.sqrt(ref5["V_BA_pct"].item()) / 100)
    text = report.verdict_sentences({}, place, synthetic=False)
    assert "3.0 points above our mean over 5 seeds" in text and "SD 1.50 points" in text
