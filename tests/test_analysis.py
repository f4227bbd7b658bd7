"""The library behind the results chapters: typed summaries built from a small synthetic set of
predictions, the sentences rendered from them, the Grad-CAM sample and tests, the figures."""

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest
from conftest import fake_predictions as _predictions

from alllib.book import figures, report
from alllib.method.ensemble import WeightSource
from alllib.method.models import DISPLAY_ORDER
from alllib.results import ablation, analysis, gradcam, summaries, variance
from alllib.study.runs import Run, RunSet


def _runs(sizes=(450, 300), seeds=(0, 1)):
    out = []
    for size in sizes:
        for seed in seeds if size == 300 else seeds[:1]:
            for k, name in enumerate(DISPLAY_ORDER):
                out.append(
                    Run.of(
                        predictions=_predictions(0.05 * (k + 1), 100 * seed + 10 * k + size),
                        display=name,
                        backbone=name.lower(),
                        input_size=size,
                        seed=seed,
                    )
                )
    return RunSet(out)


@pytest.fixture(scope="module")
def chapter():
    return ablation.ensemble_chapter(_runs(), "SYNTHETIC test label", n_boot=50, n_perm=100)


def test_ensemble_summary_from_predictions(chapter, tmp_path):
    s = chapter.summary
    assert s.schema_version == summaries.SCHEMA_VERSION and s.seed == 0
    assert set(s.sizes) == {450, 300} and s.test_subjects == 12 and s.test_images == 72
    r = s.sizes[300]
    assert r.best_single in DISPLAY_ORDER and {"WEN-kappa", r.best_single} == set(r.leak_free)
    assert r.comparison.subjects == 12 and r.comparison.p_BA_holm >= r.comparison.p_BA_permutation
    # the headline's estimate is the leak-free table's
    assert r.comparison.dBA.est == pytest.approx(
        r.leak_free["WEN-kappa"]["BA"].est - r.leak_free[r.best_single]["BA"].est
    )
    # written and read back through the contract
    summaries.write(s, tmp_path)
    assert summaries.read(summaries.EnsembleSummary, tmp_path) == s


def test_summaries_refuse_another_schema_version(chapter, tmp_path):
    from alllib import io
    from alllib.errors import StudyError

    path = summaries.write(chapter.summary, tmp_path)
    data = io.read_json(path)
    io.write_json(path, {**data, "schema_version": 1})
    with pytest.raises(StudyError, match="schema version 1"):
        summaries.read(summaries.EnsembleSummary, tmp_path)
    with pytest.raises(StudyError, match="variance.json is missing"):
        summaries.read(summaries.VarianceSummary, tmp_path)


def test_headline_is_rendered_from_the_summaries(chapter):
    per_seed = variance.per_seed_metrics(_runs(), 300)
    t5 = variance.five_run_table(per_seed)
    var = summaries.VarianceSummary(
        label="L",
        size=300,
        seeds=[0, 1],
        split="fixed",
        weights_from="validation",
        table=t5[t5.weights != WeightSource.TEST.display].to_dict("records"),
    )
    cam = summaries.GradcamSummary(
        label="L",
        method="gradcam",
        images=24,
        subjects=12,
        sample_seed=0,
        models=DISPLAY_ORDER,
        models_without_maps=["InceptionResNet-V2"],
        more_concentrated_than=["VGG-16"],
        less_concentrated_than=["Xception"],
        paired=[],
    )

    class Study:
        synthetic = True
        data_info = {"fingerprint": "abc"}

    text = report.headline(chapter.summary, var, cam, Study())
    c = chapter.summary.sizes[300].comparison
    assert f"{c.subjects} test subjects" in text and f"p = {report.p_text(c.p_BA_holm)}" in text
    assert "subject sign-flip permutation test" in text and "per-image tests overstate the evidence" in text
    assert "1 of the 4 single models with usable maps (VGG-16)" in text and "less than 1 (Xception)" in text
    assert "InceptionResNet-V2 produced no usable map" in text
    none = cam.model_copy(update={"more_concentrated_than": [], "less_concentrated_than": []})
    assert "more energy inside the cell than no single model with usable maps (of 4)." in (
        report.gradcam_summary_sentence(none)
    )  # never "than 0 of the 4"
    assert "significant at the 5 % level (p = " in text
    wk = next(r for r in var.table if r["classifier"] == "WEN-kappa")
    assert f"BA {wk['A_BA']:.3f}" in text


def test_no_sentence_calls_a_per_image_result_significant(chapter):
    text = report.comparison_sentence(300, chapter.summary.sizes[300], 4)
    sig_part, per_image_part = text.split("Treating the images as independent")
    assert "significant" not in per_image_part


def test_concentration_sample_ignores_predictions_and_is_stratified():
    test = _predictions(0.2, 0)
    test = test[test.split == "preliminary_test"].reset_index(drop=True)
    a = gradcam.concentration_sample(test, 24, seed=3)
    b = gradcam.concentration_sample(test.assign(p_all=1 - test.p_all), 24, seed=3)  # other predictions
    np.testing.assert_array_equal(a, b)
    assert len(a) == 24 and test.iloc[a].groupby("subject").size().eq(2).all()  # 12 subjects x 2
    assert not np.array_equal(a, gradcam.concentration_sample(test, 24, seed=4))  # the seed matters
    small = gradcam.concentration_sample(test, 100, seed=0)
    assert len(small) == len(test)  # a subject gives all it has


def test_concentration_tests_per_subject_with_holm():
    rows = []
    for s in range(10):
        for i in range(3):
            rows.append({"model": "WEN-kappa", "subject": f"S{s}", "energy_in_cell": 0.8 + 0.01 * i, "entropy": 0.5})
            rows.append({"model": "A", "subject": f"S{s}", "energy_in_cell": 0.5 + 0.01 * s, "entropy": 0.5})
            rows.append({"model": "B", "subject": f"S{s}", "energy_in_cell": 0.9 + 0.01 * s, "entropy": 0.5})
            rows.append({"model": "Flat", "subject": f"S{s}", "energy_in_cell": np.nan, "entropy": np.nan})
    table, flat = gradcam.concentration_tests(pd.DataFrame(rows))
    assert flat == ["Flat"]
    cell = table[table.measure == "energy_in_cell"].set_index("single")
    assert cell.loc["A", "subjects"] == 10  # the unit is the subject, not the 30 images
    assert cell.loc["A", "Holm p"] == pytest.approx(min(1, 2 * cell.loc["A", "Wilcoxon p"]))
    assert gradcam.significantly(table, +1) == ["A"] and gradcam.significantly(table, -1) == ["B"]


def test_error_concentration_is_claimed_only_when_its_test_rejects():
    e = {
        "share": 0.2,
        "errors": 10,
        "subjects": 10,
        "subjects_with_errors": 2,
        "worst_subjects": 2,
        "share_in_worst": 1.0,
        "permutations": 2000,
        "p_permutation": 0.004,
    }
    text = report.error_concentration_sentence(e)
    assert "the worst 2 (20% of the subjects, ranked by error count, which favours the largest) hold 100%" in text
    assert text.endswith("(p = 0.004): errors concentrate in some people.")
    e.update(p_permutation=0.3)  # all errors in two subjects, but chance gives as much: no claim
    text = report.error_concentration_sentence(e)
    assert "not more dispersed than chance gives (p = 0.300)" in text and "concentrate in some" not in text


def test_departures_banner_comes_from_the_profile():
    from alllib.study import profile as config

    demo = report.departures(config.load_profile("demo"))
    assert "synthetic data" in demo and "random initialisation" in demo and "VGG-16: clr_max_lr 0.0002" in demo
    assert report.departures(config.load_profile("paper", data_dir="/x")) == ""


def test_figures_have_their_axes_and_artists(chapter):
    fig = figures.metric_bars(chapter.table4, "BA", "SYNTHETIC x")
    ax = fig.axes[0]
    assert ax.get_ylabel().startswith("BA") and len(ax.patches) == len(chapter.table4)
    low = ax.get_ylim()[0]
    assert low == 0 or f"axis starts at {low:.2f}" in ax.get_ylabel()  # a cut axis says so
    assert any("SYNTHETIC" in t.get_text() for t in fig.texts)
    fig = figures.per_subject_accuracy(chapter.per_subject, "L")
    assert len(fig.axes[0].patches) == 12 and fig.axes[0].get_ylabel() == "accuracy"
    fig = figures.roc_panels(
        {s: chapter.per_size[s].clf_lf for s in chapter.sizes}, "L", {s: chapter.per_size[s].clf for s in chapter.sizes}
    )
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 10  # 5 models + 3 WEN + the paper's WEN-kappa + diagonal
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert sum("validation weights" in t for t in legend) == 3  # every WEN says where its weights come from
    assert sum(t.startswith("WEN-kappa, test weights (as the paper)") for t in legend) == 1
    assert not any(t.startswith("WEN") and "weights" not in t for t in legend)
    assert [ln.get_linestyle() for ln in fig.axes[0].lines if ln.get_label().startswith("WEN-kappa, test")] == [":"]
    images = np.zeros((2, 8, 8, 3), np.uint8)
    maps = {"A": np.ones((2, 8, 8)), "WEN-kappa": np.ones((2, 8, 8))}
    fig = figures.gradcam_grid(images, maps, {"A": [0.9, 0.2], "WEN-kappa": [0.7, 0.6]}, ["ALL", "ALL"], "L")
    axes = np.array(fig.axes[:6]).reshape(3, 2)  # image row + one row per model, a column per image; then the colourbar
    assert fig.axes[6].get_ylabel() == "Grad-CAM (normalised)"
    assert axes[1, 0].get_ylabel() == "A" and axes[2, 0].get_ylabel() == "WEN-kappa"
    # right and wrong in words as well as in colour (colour-blind-safe blue and vermilion)
    assert axes[1, 0].get_title() == "✓ right p(ALL)=0.90" and axes[1, 0].title.get_color() == figures.RIGHT[1]
    assert axes[1, 1].get_title().startswith("✗ wrong") and axes[1, 1].title.get_color() == figures.WRONG[1]
    import matplotlib.pyplot as plt

    plt.close("all")


def test_table4_beside_the_paper_fits_the_page(chapter):
    from alllib.results import paper

    side = analysis.beside_paper(chapter.per_size[300].table, 300)
    assert list(side.columns) == analysis.TABLE4 and "Soft vote (equal weights)" not in side.index
    # a constructed row against the paper's printed Table 4 (Xception at 300 px: WP 0.865, BA 0.859)
    row = {k: 0.9 for k in analysis.TABLE4}
    row.update(classifier="Xception", BA=0.85, WP=0.865)
    made = analysis.beside_paper(pd.DataFrame([row, {**row, "classifier": "not in the paper"}]), 300)
    assert list(made.index) == ["Xception"]
    assert made.loc["Xception", "BA"] == "0.850 (0.859, -0.9)" and made.loc["Xception", "WP"] == "0.865 (0.865, +0.0)"
    assert paper.table("table4_prelim_test").query("input_px == 300 and classifier == 'Xception'")["BA"].item() == 0.859


def test_paper_against_ours_figure(chapter):
    from alllib.results import paper

    fig = figures.paper_against_ours(chapter.summary, "SYNTHETIC x")
    assert [ax.get_title() for ax in fig.axes] == ["WFS", "BA", "AUC"]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == 16 and labels[0] == "VGG-16 · 450 px" and labels[-1] == "WEN-kappa · 300 px"
    # the paper's crosses sit at the paper's values (none on the AUC panel: Table 4 has no AUC)
    crosses = [line for line in fig.axes[1].lines if line.get_marker() == "x"][0]
    ref = paper.table("table4_prelim_test").set_index(["input_px", "classifier"])["BA"]
    assert crosses.get_xdata()[0] == ref[(450, "VGG-16")] and crosses.get_xdata()[-1] == ref[(300, "WEN-kappa")]
    assert not [line for line in fig.axes[2].lines if line.get_marker() == "x"]


def test_table6_names_the_weights_of_each_wen(chapter):
    """Table 6 and its heat maps show WEN-kappa with leak-free (validation) weights, and the paper's
    reading (weights from the test set) beside it, each labelled; the paper's one row stands beside both."""
    assert list(chapter.confusions) == ["Xception", analysis.WEN_LEAK_FREE, analysis.WEN_AS_PAPER]
    c = chapter.per_size[chapter.crop]
    lf, paper_weights = c.clf_lf["WEN-kappa"], c.clf["WEN-kappa"]
    from alllib.method import metrics

    assert chapter.confusions[analysis.WEN_LEAK_FREE].equals(metrics.confusion(lf.y, lf.p_all))
    assert chapter.confusions[analysis.WEN_AS_PAPER].equals(metrics.confusion(paper_weights.y, paper_weights.p_all))
    side = chapter.confusion_beside_paper
    assert {analysis.WEN_LEAK_FREE, analysis.WEN_AS_PAPER} <= set(side.index) and "WEN-kappa" not in side.index
    assert side.loc[analysis.WEN_LEAK_FREE, "counts (paper)"] == side.loc[analysis.WEN_AS_PAPER, "counts (paper)"]


def test_one_model_is_called_less_well_calibrated_only_when_the_subject_level_test_says_so():
    from alllib.results.summaries import EceDifference, Estimate

    def ens(p):
        e = {"VGG-16": Estimate(est=0.05, lo=0.03, hi=0.08), "WEN-kappa": Estimate(est=0.09, lo=0.06, hi=0.12)}
        d = EceDifference(
            first="VGG-16", second="WEN-kappa", dECE=Estimate(est=0.04, lo=0.01, hi=0.07), p_permutation=p
        )
        return type("E", (), {"ece": e, "ece_bins": 10, "ece_difference": d})()

    assert "10 equal-width bins on p(ALL)" in report.calibration_sentence(ens(0.01))
    assert report.calibration_sentence(ens(0.01)).endswith("WEN-kappa is the less well calibrated.")
    text = report.calibration_sentence(ens(0.2))
    assert "less well calibrated" not in text and "neither is distinguishable from the other" in text


def test_the_chapter_records_each_member_s_temperature(chapter):
    from alllib.results import inference

    c = chapter.per_size[chapter.crop]
    assert chapter.summary.temperatures == pytest.approx(inference.temperature_scaling(c.preds)[1])
    assert set(chapter.summary.temperatures) == set(c.preds)
    text = report.temperatures_sentence(chapter.summary.temperatures)
    assert all(f"{n} T = {t:.2f}" in text for n, t in chapter.summary.temperatures.items())


def test_a_zero_difference_reads_equal_and_signs_read_right():
    assert report.by(0.04) == "equal" and report.by(-0.04) == "equal"
    assert report.by(3.14) == "3.1 points higher" and report.by(-0.46) == "0.5 points lower"
    assert report.by(-2.0, up="above", down="below", unit="BA points") == "2.0 BA points below"


def test_counts_take_the_number_of_their_noun():
    assert [report.counted(n, "seed") for n in (0, 1, 5)] == ["0 seeds", "1 seed", "5 seeds"]
    assert report.counted(2, "input size") == "2 input sizes"


def test_the_gap_that_test_set_weights_make_reads_unchanged_higher_or_lower():
    unchanged = "Measuring the weights on the test labels, as the paper does, leaves WEN-kappa's BA unchanged at 450 px"
    assert report.weight_gap_sentence(0.0, 450) == unchanged + "."
    assert "changes WEN-kappa's BA by less than 0.01 points at 450 px" in report.weight_gap_sentence(0.004, 450)
    assert "makes WEN-kappa's BA 0.82 points higher at 300 px" in report.weight_gap_sentence(0.8196, 300)
    assert "makes WEN-kappa's BA 1.23 points lower at 300 px" in report.weight_gap_sentence(-1.234, 300)


def test_per_image_tests_are_said_to_overstate_only_when_they_do(chapter):
    s = chapter.summary.sizes[300]
    strong = s.model_copy(deep=True)
    strong.comparison.p_McNemar_per_image, strong.comparison.p_DeLong_per_image = 0.0001, 0.0001
    strong.comparison.p_BA_permutation, strong.comparison.p_AUC_permutation = 0.2, 0.2
    assert "overstate the evidence here" in report.comparison_sentence(300, strong, 4)
    equal = s.model_copy(deep=True)
    c = equal.comparison
    c.p_McNemar_per_image, c.p_DeLong_per_image = c.p_BA_permutation, c.p_AUC_permutation
    text = report.comparison_sentence(300, equal, 4)
    assert "overstate" not in text and "treat images as independent and are not used for any claim" in text


def test_a_calibration_difference_whose_ci_holds_zero_is_not_called():
    from alllib.results.summaries import EceDifference, Estimate

    e = {"A": Estimate(est=0.3, lo=0.2, hi=0.5), "B": Estimate(est=0.2, lo=0.1, hi=0.4)}
    d = EceDifference(first="A", second="B", dECE=Estimate(est=-0.1, lo=-0.2, hi=0.02), p_permutation=0.005)
    text = report.calibration_sentence(type("E", (), {"ece": e, "ece_bins": 10, "ece_difference": d})())
    assert "less well calibrated" not in text


def _run_page(weights: str, recalibrated: bool) -> Run:
    from alllib.study.profile import load_profile

    return Run.of(
        predictions=_predictions(0.1, 7),
        display="VGG-16",
        backbone="vgg16",
        input_size=300,
        input_px=75,
        seed=0,
        run_id="vgg16_300px_seed0_x",
        profile="smoke",
        weights=weights,
        training=load_profile("smoke").training,
        train_images=200,
        train_images_oversampled=276,
        steps_per_epoch=35,
        batchnorm_recalibrated=recalibrated,
    )


def test_a_run_page_says_in_words_how_its_run_started_and_its_batchnorm():
    head = report.run_header(_run_page("none", True))
    assert "from **random initialisation**" in head and "re-estimated after each epoch." in head
    assert "True" not in head and "none" not in head
    head = report.run_header(_run_page("imagenet", False))
    assert "from **ImageNet weights**" in head and "(not re-estimated)" in head and "False" not in head


def test_a_run_pages_confusion_matrix_gives_each_count_its_share_of_the_true_class():
    run = _run_page("none", True)
    evaluation, cells = report.run_evaluation(run)
    assert evaluation.index.tolist() == ["preliminary test", "validation"]
    assert evaluation["n"].sum() == len(run.predictions)
    test = run.predictions[run.predictions["split"] == "preliminary_test"]
    y, called_all = test["y"].to_numpy(), test["p_all"].to_numpy() >= 0.5
    for true, yv in (("Hem", 0), ("ALL", 1)):
        for said, av in (("Hem", False), ("ALL", True)):
            count = int(((y == yv) & (called_all == av)).sum())
            share = 100 * count / (y == yv).sum()
            assert cells.loc[true, said] == f"{count} ({share:.1f} %)"
    assert cells.columns.name == "predicted (count, % of the true class)" and cells.index.name == "true"


def test_the_concentration_tests_read_in_words_with_the_books_p_values():
    tests = pd.DataFrame(
        {
            "measure": ["energy_in_cell", "entropy"],
            "single": ["VGG-16", "Xception"],
            "subjects": [14, 0],
            "median ensemble": [0.19412, np.nan],
            "Wilcoxon p": [0.0001, np.nan],
            "Holm p": [0.04567, np.nan],
        }
    )
    shown = report.concentration_tests_table(tests)
    assert shown["measure"].tolist() == ["energy in the cell", "entropy"]
    assert shown["Wilcoxon p"].tolist() == ["< 0.001", "–"] and shown["Holm p"].tolist() == ["0.046", "–"]
    assert shown["median ensemble"].iloc[0] == pytest.approx(0.194) and tests["measure"].iloc[0] == "energy_in_cell"
