"""The data chapter's helpers and the atomic writers."""

import numpy as np
import pandas as pd
import pytest

from alllib import io
from alllib.results import exploration


def test_outside_crop_share_measured_on_the_mask():
    img = np.zeros((450, 450, 3), np.uint8)
    img[200:250, 200:250] = 200  # a cell well inside the 300 px window
    assert exploration.outside_crop(img) == 0.0
    img[0:10, 0:50] = 200  # 500 cell pixels outside the window (75..374)
    assert exploration.outside_crop(img) == pytest.approx(500 / 3000)
    assert exploration.outside_crop(np.zeros((450, 450, 3), np.uint8)) == 0.0


def test_crop_facts_and_split_facts_are_computed():
    feats = pd.DataFrame({"cell_outside_crop": [0.0, 0.0, 0.1, 0.3]})
    text = exploration.crop_facts(feats)
    assert "in **50.0%** of them" in text and "median 20.0%" in text and "largest: 30.0%" in text
    split = pd.DataFrame(
        {
            "split": ["train"] * 6 + ["validation"] * 3 + ["preliminary_test"] * 10,
            "label": ["all"] * 4 + ["hem"] * 2 + ["all", "all", "hem"] + ["hem"] * 10,
            "subject": list("aabbcc") + list("dde") + ["z"] * 10,
        }
    )
    facts = exploration.split_facts(split)
    assert "**2.00 ALL per Hem image**" in facts  # 6 ALL : 3 Hem of the training folds, not the test set
    assert "paper's Table 3: 2.15" in facts and "Subjects in both train and validation: 0" in facts


def test_leakage_summary_says_which_way():
    leak = pd.DataFrame(
        {
            "split": ["image-level random split (leaks subjects)"] * 2 + ["subject-disjoint split"] * 2,
            "BA": [0.9, 0.8, 0.6, 0.7],
        }
    )
    summary, sentence = exploration.leakage_summary(leak)
    assert summary.loc["subject-disjoint split", "mean"] == pytest.approx(0.65)
    # a gap of 0.200 with seed SDs of 0.071: more than twice the noise, so it is called
    assert sentence == (
        "Over 2 seeds, the leaking split minus the subject-disjoint one: **+0.200** balanced accuracy, more than "
        "twice the seed-to-seed SD (0.141): the leaking split scores higher."
    )
    noisy = leak.assign(BA=[0.95, 0.55, 0.5, 0.8])  # the same means, far noisier seeds: no claim
    assert "no difference is shown" in exploration.leakage_summary(noisy)[1]


def test_stain_between_subjects_is_the_between_group_share_of_variance():
    feats = pd.DataFrame(
        {"split": "train_folds", "subject": ["a", "a", "b", "b"], "r": [1.0, 1.0, 3.0, 3.0], "g": 0.0, "b": 0.0}
    )
    assert exploration.stain_between_subjects(feats) == pytest.approx(1.0)  # all of it between subjects
    feats["r"] = [1.0, 3.0, 1.0, 3.0]
    assert exploration.stain_between_subjects(feats) == pytest.approx(0.0)  # all of it within subjects
    assert "0% of the variance" in exploration.stain_sentence(
        0.0, 2
    ) and "do not dominate" in exploration.stain_sentence(0.0, 2)


def test_real_oversampling_comes_from_the_official_manifest():
    from alllib.method.dataset import manifest_training_table
    from alllib.method.preprocessing import subject_split

    train = subject_split(manifest_training_table(), 0).query("split == 'train'")
    n_all = int((train.label == "all").sum())
    assert f"an epoch holds {2 * n_all} images" in exploration.real_oversampling_facts(0)


def test_atomic_writes_leave_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    io.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert io.read_json(target) == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["out.json"]
    with pytest.raises(RuntimeError), io.atomic_dir(tmp_path / "run") as d:
        (d / "model.keras").write_text("half")
        raise RuntimeError("killed")
    assert not (tmp_path / "run").exists() and [p.name for p in tmp_path.iterdir()] == ["out.json"]
