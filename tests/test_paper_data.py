"""Facts copied from ../shared stay identical to their source, and say what the docs say they say."""

import filecmp

import pytest
from conftest import ROOT, SHARED

from alllib import dataset, paper

COPIES = [(SHARED / "paper" / p.name, p) for p in sorted((ROOT / "alllib/data/paper").glob("*.csv"))] + [
    (SHARED / "cnmc" / p.name, p) for p in sorted((ROOT / "alllib/data/cnmc").iterdir())
]


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
    from alllib import config, paper

    cfg = config.load_profile("paper", data_dir="/x")
    keys = {".".join(p) for p in config._leaf_paths(cfg) if "per_backbone" not in p}
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
    from alllib import paper

    text = " ".join(next((SHARED / "paper").glob("*.txt")).read_text().split())
    quotes = [q for _, q in paper.FAITHFUL.values()] + [r["paper"] for r in paper.SILENT_OR_AMBIGUOUS if r["paper"]]
    for q in quotes:
        assert " ".join(q.split()) in text, f"not in the paper: {q!r}"
