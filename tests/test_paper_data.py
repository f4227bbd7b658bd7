"""Facts copied from ../shared stay identical to their source, and say what the docs say they say."""

import filecmp
import re

import pytest
from conftest import ROOT, SHARED

from alllib.method import dataset
from alllib.results import paper

# read from the paper's text by us (tested against it below), not copied from shared/paper
FROM_TEXT = {"table7_hyperparameters.csv", "fig10_wfs.csv", "figure_captions.csv"}
COPIES = [
    (SHARED / "paper" / p.name, p)
    for p in sorted((ROOT / "alllib/data/paper").glob("*.csv"))
    if p.name not in FROM_TEXT
] + [(SHARED / "cnmc" / p.name, p) for p in sorted((ROOT / "alllib/data/cnmc").iterdir())]


@pytest.mark.parametrize("source,copy", COPIES, ids=[c.name for _, c in COPIES])
def test_copy_is_identical_to_shared(source, copy):
    if not source.exists():
        pytest.skip(f"{source} not present (shared/ is only beside the project in development and CI)")
    assert filecmp.cmp(source, copy, shallow=False), f"{copy} differs from {source}: copy it again"


def test_every_shared_table_is_shipped():
    if not SHARED.exists():
        pytest.skip("shared/ not present")
    shipped = {p.name for p in (ROOT / "alllib/data/paper").glob("*.csv")}
    assert {p.name for p in (SHARED / "paper").glob("*.csv")} <= shipped


def test_manifest_counts():
    m = dataset.load_manifest()
    assert len(m) == 15114
    split = m["path"].str.split("/").str[1]
    assert (split == "validation_data").sum() == 1867
    assert m.loc[split == "training_data", "bytes"].isin([608454, 608538]).all()
    assert (m.loc[split == "testing_data", "bytes"] == 1080054).all()


def test_training_subjects_match_readme_and_table3():
    s = dataset.training_subjects()
    counts = s.groupby("label").agg(subjects=("subject", "nunique"), images=("n_images", "sum"))
    assert counts.loc["all"].tolist() == [47, 7272]
    assert counts.loc["hem"].tolist() == [26, 3389]
    t3 = paper.table("table3_dataset").set_index("split")
    assert t3.loc[["train", "validation"], "all_images"].sum() == 7272
    assert t3.loc[["train", "validation"], "hem_images"].sum() == 3389
    assert t3.loc[["train", "validation"], "all_subjects"].sum() == 47


def test_method_notes_cover_every_key_of_the_paper_profile():
    from alllib.results import paper
    from alllib.study import profile as config

    cfg = config.load_profile("paper", data_dir="/x")
    keys = {".".join(p) for p in config._leaf_paths(cfg.record()) if "per_backbone" not in p}
    covered = (
        set(paper.FAITHFUL) | set(paper.BOOKKEEPING) | {k for row in paper.SILENT_OR_AMBIGUOUS for k in row["keys"]}
    )
    assert keys - covered == set(), "paper-profile settings neither taken from the paper nor in the method notes' table"
    assert covered - keys == set(), "the method notes name settings the profile does not have"
    for topic in (
        "Model head",
        "Augmentation ranges",
        "Early stopping",
        "Learning rate",
        "Oversampling",
        "WEN weights",
        "Determinism",
        "Subject split",
        "Decision threshold",
    ):
        assert topic in paper.choices_markdown()


@pytest.mark.skipif(not (SHARED / "paper").is_dir(), reason="../shared/paper is not beside this checkout")
def test_method_notes_quote_the_paper_verbatim():
    from alllib.results import paper

    text = " ".join(next((SHARED / "paper").glob("*.txt")).read_text().split())
    quotes = [q for _, q in paper.FAITHFUL.values()] + [r["paper"] for r in paper.SILENT_OR_AMBIGUOUS if r["paper"]]
    for q in quotes:
        assert " ".join(q.split()) in text, f"not in the paper: {q!r}"


# ---------------------------------------------------------------- tables read from the paper's text

PAPER_TEXT = SHARED / "paper" / "000_7904261b651e63fc.txt"


def _text() -> str:
    if not PAPER_TEXT.exists():
        pytest.skip("shared/paper's text not present")
    return PAPER_TEXT.read_text()


def test_table7_rows_are_the_papers():
    text = _text()
    t = paper.table("table7_hyperparameters")
    assert len(t) == 10 and list(t.columns) == [
        "method",
        "reference",
        "optimizer",
        "learning_rate",
        "loss",
        "batch_size",
    ]
    lines = text[text.index("Methods\tHyperparameter") :].splitlines()[2:12]
    for line, row in zip(lines, t.itertuples()):
        cells = line.split("\t")
        ref = f" [{int(row.reference)}]" if row.reference == row.reference else ""
        assert cells[0] == row.method + ref
        assert cells[1] == row.optimizer
        assert float(cells[2]) == float(row.learning_rate)
        assert cells[3].split(" <sup>")[0] == row.loss.split(" (")[0]
        assert cells[4] == ("-" if row.batch_size != row.batch_size else str(int(row.batch_size)))


def test_fig10_margins_and_table2_are_the_papers():
    text = _text()
    t = paper.table("fig10_wfs")
    own = t[t["article"].isna()]
    assert own["wfs_pp"].item() == 89.72 and "89.72% WFS" in text
    # the order of Fig. 10's caption: A1 ... A11
    caption = paper.figure_caption(10)
    refs = [int(r) for r in re.findall(r"\[(\d+)\]", caption)]
    assert refs == t["reference"].dropna().astype(int).tolist()
    assert t["article"].dropna().tolist() == [f"A{i}" for i in range(1, 12)]
    # the margins, as the text gives them
    assert "defeated by the best approach [69] with a lower margin of 0.58%" in text
    assert t.set_index("reference").loc[69, "wfs_margin_pp"] == -0.58
    sentence = "Xie et al. [77], Prellberg and Kramer"
    assert sentence in text and "with a significant margin of 1.18%, 1.83%, 2.70%, and 2.82% of WFS" in text
    m = t.set_index("reference")["wfs_margin_pp"]
    assert [m[77], m[53], m[66], m[57]] == [1.18, 1.83, 2.70, 2.82]
    assert "Khan and Choo [67] with a very significant margin of 8.02%" in text and m[67] == 8.02
    assert m.notna().sum() == 6  # no other margin is given
    # Table 2's F1 for the others
    fs = t.set_index("reference")["table2_fs"].dropna()
    for ref, value in fs.items():
        assert re.search(rf"2019 \[{int(ref)}\]\t.*\t{value:.1f}%", text), ref


def test_figure_captions_are_verbatim():
    text = _text()
    t = paper.table("figure_captions")
    assert t["figure"].tolist() == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    for number, caption in zip(t["figure"], t["caption"]):
        assert f"Fig. {number}. {caption}" in text


def test_fig10_derived_values():
    """Each derived WFS is the paper's 89.72 minus its margin, and Khan and Choo's equals Table 2's 81.7."""
    from alllib.results import comparison

    f = comparison.fig10_paper().set_index("label")
    assert f.loc["A1: Xiao et al. [69]", "wfs"] == pytest.approx(90.30)
    assert f.loc["A11: Khan and Choo [67]", "wfs"] == pytest.approx(81.70)
    assert f.loc["A4: Marzahl et al. [43]", "wfs_from"].startswith("Table 2")
    assert f["wfs"].isna().sum() == 1  # Shah et al.: no number anywhere
    assert f.loc["Mondal et al. (WEN-kappa)", "wfs"] == pytest.approx(
        100 * paper.table("table4_prelim_test").query("input_px == 300 and classifier == 'WEN-kappa'")["WFS"].item(),
        abs=0.05,
    )


def test_fig10_sentence_counts_the_sources_and_places_ours():
    from alllib.results import comparison
    from alllib.results.summaries import EnsembleSummary, Estimate, SizeResult

    est = {"WEN-kappa": {"WFS": Estimate(est=0.88, lo=0.85, hi=0.91)}}
    sizes = {300: SizeResult.model_construct(paper_faithful=est, leak_free=est)}
    ens = EnsembleSummary.model_construct(sizes=sizes, label="X", seed=0)
    frame = comparison.fig10(ens)
    text = comparison.fig10_sentence(frame, synthetic=False)
    assert text.startswith("Of the 11 published methods, the paper's text gives 6 as margins, its Table 2 gives")
    # 88.00 is above Prellberg (87.89), Marzahl 87.5, Verma 87.02, Shi 86.90, Ding 86.7, Kulhalli, Liu, Khan: 8
    assert "WFS 88.00 % [85.00, 91.00], above 8 of the 10 published methods with a number" in text
    assert "places nothing" not in text
    synthetic = comparison.fig10_sentence(frame, synthetic=True)  # on synthetic data: no rank at all
    assert "WFS 88.00 % [85.00, 91.00]" in synthetic and "above" not in synthetic and "places nothing" in synthetic
