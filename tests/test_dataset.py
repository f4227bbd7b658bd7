import hashlib
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from alllib.errors import DataError
from alllib.method import dataset
from alllib.method.dataset import PRELIM_DIR, PRELIM_LABELS, parse_name, read_cnmc, verify_manifest


@pytest.mark.parametrize(
    "name,subject,label",
    [
        ("UID_11_10_1_all.bmp", "11", "all"),
        ("UID_H6_3_1_hem.bmp", "H6", "hem"),
        ("UID_h3_2_1_hem.bmp", "H3", "hem"),  # 36 real files use a lowercase h
        ("UID_1_1_1_all.png", "1", "all"),
        ("UID_H1_1_1_hem.jpg", "H1", "hem"),
    ],
)
def test_parse_name(name, subject, label):
    assert parse_name(name) == {"subject": subject, "label": label}


def test_all_1_and_hem_h1_are_different_people():
    assert parse_name("UID_1_1_1_all.bmp")["subject"] != parse_name("UID_H1_1_1_hem.bmp")["subject"]


@pytest.mark.parametrize("name", ["UID_X1_1_1_all.bmp", "image.bmp", "UID_11_1_all.bmp", "UID_H2_1_1_all.bmp"])
def test_unparsable_or_contradictory_names(name):
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        parse_name(name)


def test_reader_on_generated_tree(synth_root):
    t = read_cnmc(synth_root)
    assert list(t.columns) == dataset.COLUMNS
    assert set(t["split"]) == {"train_folds", "preliminary_test", "final_test"}
    folds = t[t["split"] == "train_folds"]
    expected = dataset.training_subjects()
    assert set(folds["subject"]) == set(expected["subject"])
    assert (
        folds.groupby("subject")["fold"].first().sort_index() == expected.set_index("subject")["fold"].sort_index()
    ).all()
    assert (folds["y"] == (folds["label"] == "all")).all()
    prelim = t[t["split"] == "preliminary_test"]
    labels = pd.read_csv(synth_root / PRELIM_LABELS)
    assert len(prelim) == len(labels) and prelim["label"].notna().all()
    assert set(prelim["subject"]).isdisjoint(folds["subject"])
    assert t[t["split"] == "final_test"]["label"].isna().all()
    assert dataset.is_synthetic(synth_root)
    ratio = (folds["label"] == "all").sum() / (folds["label"] == "hem").sum()
    assert 1.8 < ratio < 2.5  # the real 7272 : 3389 = 2.15


def test_stray_files_are_ignored(synth_copy):
    import warnings

    (synth_copy / "training_data/fold_0/all/.DS_Store").write_text("x")
    (synth_copy / "training_data/fold_1/hem/Thumbs.db").write_text("x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # OS metadata files of macOS and Windows alike: ignored silently
        n = len(read_cnmc(synth_copy))
    (synth_copy / "training_data/fold_0/all/notes.txt").write_text("x")
    with pytest.warns(UserWarning, match="notes.txt"):
        assert len(read_cnmc(synth_copy)) == n


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope'} does not exist"):
        read_cnmc(tmp_path / "nope")


def test_missing_fold_folder(synth_copy):
    shutil.rmtree(synth_copy / "training_data/fold_1")
    with pytest.raises(DataError, match="missing folder .*fold_1"):
        read_cnmc(synth_copy)


def test_class_without_images(synth_copy):
    for p in (synth_copy / "training_data/fold_2/hem").iterdir():
        p.unlink()
    with pytest.raises(DataError, match="fold_2/hem has no images"):
        read_cnmc(synth_copy)


def test_image_in_wrong_class_folder(synth_copy):
    src = next((synth_copy / "training_data/fold_0/hem").iterdir())
    shutil.move(src, synth_copy / "training_data/fold_0/all" / src.name)
    with pytest.raises(DataError, match="lies in the 'all' folder"):
        read_cnmc(synth_copy)


def test_labels_with_other_columns(synth_copy):
    path = synth_copy / PRELIM_LABELS
    pd.read_csv(path).rename(columns={"labels": "label"}).to_csv(path, index=False)
    with pytest.raises(DataError, match="has columns .*expected \\['Patient_ID', 'new_names', 'labels'\\]"):
        read_cnmc(synth_copy)


def test_labels_naming_missing_files(synth_copy):
    first = pd.read_csv(synth_copy / PRELIM_LABELS)["new_names"].iloc[0]
    (synth_copy / PRELIM_DIR / first).unlink()
    with pytest.raises(DataError, match=f"names 1 images missing .*'{first}'"):
        read_cnmc(synth_copy)


def test_labels_contradicting_patient_id(synth_copy):
    path = synth_copy / PRELIM_LABELS
    labels = pd.read_csv(path)
    labels.loc[0, "labels"] = 1 - labels.loc[0, "labels"]
    labels.to_csv(path, index=False)
    with pytest.raises(DataError, match="row 2: Patient_ID"):
        read_cnmc(synth_copy)


def test_missing_labels_file(synth_copy):
    (synth_copy / PRELIM_LABELS).unlink()
    with pytest.raises(DataError, match="missing labels file"):
        read_cnmc(synth_copy)


def test_truncated_image_is_named(synth_copy):
    victim = next((synth_copy / "training_data/fold_0/all").iterdir())
    victim.write_bytes(victim.read_bytes()[:500])
    with pytest.raises(DataError, match=f"{victim.name} \\(cannot be read: image file is truncated\\)"):
        dataset.check_images(read_cnmc(synth_copy), progress=False)


def test_wrong_size_image_is_named(synth_copy):
    victim = next((synth_copy / "training_data/fold_1/hem").iterdir())
    Image.new("RGB", (300, 300)).save(victim)
    expected = f"each must be a complete 450x450 RGB image\\): .*{victim.name} \\(300x300 RGB\\)"
    with pytest.raises(DataError, match=expected):
        dataset.check_images(read_cnmc(synth_copy), progress=False)


def test_grayscale_image_is_named(synth_copy):
    victim = next((synth_copy / "training_data/fold_1/all").iterdir())
    Image.new("L", (450, 450)).save(victim)
    with pytest.raises(DataError, match="\\(450x450 L\\)"):
        dataset.check_images(read_cnmc(synth_copy), progress=False)


def _manifest_of(root):
    rows = []
    for p in sorted(root.rglob("*")):
        if p.suffix == ".png":
            rows.append(
                {
                    "path": "C-NMC_Leukemia/" + str(p.relative_to(root)),
                    "bytes": p.stat().st_size,
                    "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                }
            )
    return pd.DataFrame(rows)


def test_manifest_verification_on_a_tampered_tree(synth_copy):
    manifest = _manifest_of(synth_copy)
    clean = verify_manifest(synth_copy, full=True, manifest=manifest, progress=False)
    assert clean["ok"] and clean["present"] == len(manifest)
    files = sorted((synth_copy / "training_data/fold_0/all").iterdir())
    files[0].unlink()  # missing
    (synth_copy / "training_data/fold_0/all/UID_99_1_1_all.png").write_bytes(files[1].read_bytes())  # extra
    with open(files[2], "ab") as fh:  # altered size
        fh.write(b"\0")
    data = bytearray(files[3].read_bytes())  # altered content, same size
    data[-1] ^= 0xFF
    files[3].write_bytes(bytes(data))
    fast = verify_manifest(synth_copy, full=False, manifest=manifest, progress=False)
    assert not fast["ok"]
    assert fast["missing"] == ["training_data/fold_0/all/" + files[0].name]
    assert fast["extra"] == ["training_data/fold_0/all/UID_99_1_1_all.png"]
    assert [a[0] for a in fast["altered"]] == ["training_data/fold_0/all/" + files[2].name]
    full = verify_manifest(synth_copy, full=True, manifest=manifest, progress=False)
    assert sorted(a[0] for a in full["altered"]) == sorted("training_data/fold_0/all/" + f.name for f in files[2:4])
    assert "NOT OK" in dataset.format_report(full)


def test_synthetic_tree_against_official_manifest_reports_counts(synth_root):
    report = verify_manifest(synth_root, manifest=dataset.load_manifest(), progress=False)
    assert not report["ok"] and len(report["missing"]) > 15000  # synthetic files are not the official ones
    assert set(report["counts"]["split"]) == {"train_folds", "preliminary_test", "final_test"}


def test_synthetic_is_deterministic(tmp_path):
    from alllib.study.synthetic import synthesize

    a = synthesize(tmp_path / "a", scale=0.004, seed=3, progress=False)
    b = synthesize(tmp_path / "b", scale=0.004, seed=3, progress=False)
    fa = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert fa == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    for rel in fa[:20]:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    train = [rel for rel in fa if rel.parts[0] == "training_data"]
    img = np.asarray(Image.open(a / train[0]))
    assert img.shape == (450, 450, 3) and img[0, 0].sum() == 0  # black background


def test_synthetic_classes_differ_in_cell_size(synth_root):
    """Haematology in the generator: ALL blasts are larger than Hem lymphocytes on average."""
    t = read_cnmc(synth_root)
    t = t[t["split"] == "train_folds"]
    area = {
        lab: np.mean([(np.asarray(Image.open(p)).max(axis=2) > 10).mean() for p in g["path"][:40]])
        for lab, g in t.groupby("label")
    }
    assert area["all"] > area["hem"]


def test_image_sides_match_the_manifests_bitmap_sizes():
    from alllib.method.dataset import FINAL_IMAGE_SIDE, IMAGE_SIDE, load_manifest

    m = load_manifest()
    top = m["path"].str.split("/").str[1]

    def bmp_bytes(side, header=54):  # 24-bit rows padded to 4 bytes
        return header + side * (-(-side * 3 // 4) * 4)

    assert set(m.loc[top == "testing_data", "bytes"]) == {bmp_bytes(FINAL_IMAGE_SIDE)}
    assert set(m.loc[top == "training_data", "bytes"]) == {bmp_bytes(IMAGE_SIDE)}


def test_synthetic_plan_at_full_scale_has_the_real_counts():
    from alllib.method.dataset import load_manifest
    from alllib.study.synthetic import plan

    m = load_manifest()
    top = (
        m["path"]
        .str.split("/")
        .str[1]
        .map({"training_data": "train_folds", "validation_data": "preliminary_test", "testing_data": "final_test"})
    )
    assert plan(1.0, 2019)["split"].value_counts().to_dict() == top.value_counts().to_dict()


def test_synthetic_final_test_images_are_600_px(synth_root):
    from PIL import Image

    from alllib.method.dataset import FINAL_DIR

    sizes = {Image.open(p).size for p in (synth_root / FINAL_DIR).iterdir()}
    assert sizes == {(600, 600)}


def test_synthetic_set_does_not_depend_on_the_number_of_workers(tmp_path):
    from alllib.study.synthetic import synthesize

    a = synthesize(tmp_path / "a", scale=0.004, seed=3, progress=False, workers=1)
    b = synthesize(tmp_path / "b", scale=0.004, seed=3, progress=False, workers=2)
    files = sorted(p.relative_to(a.parent) for p in a.parent.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b.parent) for p in b.parent.rglob("*") if p.is_file())
    assert all((a.parent / f).read_bytes() == (b.parent / f).read_bytes() for f in files)
