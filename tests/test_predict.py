"""Using the trained ensemble: `predict` reproduces the study's own predictions, the
challenge submission has the challenge's format and scores the study's ensemble exactly, and bad
input is refused by name without leaving a partial file."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tmpfs
from PIL import Image

from alllib.errors import ConfigError, DataError, StudyError
from alllib.method.dataset import FINAL_DIR, PRELIM_DIR, PRELIM_LABELS
from alllib.use import predict as pr

TINY = [
    "backbones=[mobilenet,vgg16]",
    "runs={450: [0], 300: [0]}",
    "input_scale=0.12",
    "epochs=1",
    "max_train_images=24",
    "bn_recalibration_images=16",
    "run_eagerly=false",
]


@pytest.fixture(scope="module")
def study(synth_root, tmp_path_factory):
    from alllib.study.prepare import prepare
    from alllib.study.runs import train_or_load

    s = prepare("smoke", TINY, str(synth_root), tmp_path_factory.mktemp("predict"), progress=False)
    for bb, size, seed in s.matrix():
        train_or_load(s, bb, size, seed, verbose=0)
    return s


def _prelim(study, n=None):
    files = pr.collect_images([study.data_root / PRELIM_DIR])
    return files[:n] if n else files


def test_predict_reproduces_the_studys_predictions_and_ensemble(study):
    from alllib.method.ensemble import ensemble_predictions

    ens = pr.load_ensemble(study, size=300)
    assert (
        ens.method == "wen-kappa"
        and ens.source == "validation"
        and [m.backbone for m in ens.members]
        == [
            "VGG-16",
            "MobileNet",
        ]
    )
    table = pr.predict(ens, _prelim(study), progress=False)
    preds = study.runs().at(300, 0)
    for name, p in preds.items():
        stored = p[p["split"] == "preliminary_test"].set_index("image_id")["p_all"]
        ours = pd.Series(
            table[f"p_all {name}"].to_numpy(), index=[f"prelim_{p.split('/')[-1].split('.')[0]}" for p in table["path"]]
        )
        np.testing.assert_allclose(ours.loc[stored.index], stored, atol=1e-6)
    wen, weights = ensemble_predictions(preds, "wen-kappa", "validation")
    assert [m.weight for m in ens.members] == pytest.approx([weights[m.backbone] for m in ens.members])
    ours = pd.Series(
        table["p_all"].to_numpy(), index=[f"prelim_{p.split('/')[-1].split('.')[0]}" for p in table["path"]]
    )
    np.testing.assert_allclose(ours.loc[wen["image_id"]], wen["p_all"], atol=1e-6)
    assert set(table["label"]) <= {"ALL", "Hem"} and table["weights"].str.contains("weights from validation").all()


def test_the_default_size_is_chosen_on_validation(study, monkeypatch):
    from alllib.method import ensemble

    by_size = {s: pr._validation_ba(study.runs().at(s, 0), "wen-kappa") for s in (300, 450)}
    splits = []
    real_stack = ensemble._stack

    def recording(preds, split):
        splits.append(split)
        return real_stack(preds, split)

    monkeypatch.setattr(ensemble, "_stack", recording)
    ens = pr.load_ensemble(study)
    assert ens.size == max(by_size, key=by_size.get)
    assert splits and set(splits) == {"validation"}  # nothing about the choice looked at test images


def test_submission_format_on_a_final_phase_folder(study, tmp_path):
    final = pr.collect_images([study.data_root / FINAL_DIR])
    assert {Image.open(p).size for p in final} == {(600, 600)}
    table = pr.predict(pr.load_ensemble(study, size=450), final, progress=False)
    assert set(table["input"]) == {"crop 600"}
    predict_path, zip_path = pr.submission(table, tmp_path)
    lines = predict_path.read_text().splitlines()
    assert len(lines) == len(final) and set(lines) <= {"0", "1"}
    by_number = dict(zip((int(p.stem) for p in map(__import__("pathlib").Path, table["path"])), table["p_all"]))
    assert lines == [str(int(by_number[i] >= 0.5)) for i in range(1, len(final) + 1)]  # numeric order, not 1, 10, 11
    with zipfile.ZipFile(zip_path) as z:
        assert z.namelist() == [pr.SUBMISSION_FILE] and z.read(pr.SUBMISSION_FILE).decode() == predict_path.read_text()
    with pytest.raises(ConfigError, match="exists.*--force"):
        pr.submission(table, tmp_path)


def test_submission_on_the_preliminary_folder_scores_the_books_ensemble_row(study, tmp_path):
    from alllib.method.metrics import evaluate
    from alllib.results.analysis import classifiers

    table = pr.predict(pr.load_ensemble(study, size=300), _prelim(study), progress=False)
    predict_path, _ = pr.submission(table, tmp_path)
    labels = pd.read_csv(study.data_root / PRELIM_LABELS)
    labels["n"] = labels["new_names"].str.split(".").str[0].astype(int)
    y = labels.sort_values("n")["labels"].to_numpy()
    submitted = np.array([int(v) for v in predict_path.read_text().split()])
    book_row = classifiers(study.runs().at(300, 0), "validation")["WEN-kappa"]
    ours = evaluate(y, submitted.astype(float))
    theirs = evaluate(book_row["y"].to_numpy(int), (book_row["p_all"].to_numpy() >= 0.5).astype(float))
    for metric in ("ACC", "BA", "WFS", "kappa"):
        assert ours[metric] == pytest.approx(theirs[metric], abs=1e-12), metric


def test_bad_images_are_named_and_no_output_is_left(study, tmp_path):
    src = _prelim(study, 1)[0]
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(src.read_bytes()[:200])
    small = tmp_path / "small.png"
    Image.open(src).resize((200, 200)).save(small)
    grey = tmp_path / "grey.png"
    Image.open(src).convert("L").save(grey)
    empty = tmp_path / "empty"
    empty.mkdir()
    ens = pr.load_ensemble(study, size=300)
    out = tmp_path / "out.csv"
    with pytest.raises(DataError, match="cannot read image .*truncated.png"):
        pr.predict(ens, [src, truncated], progress=False)
    with pytest.raises(DataError, match=r"small.png is 200 x 200 px: expected 450 x 450.*--resize"):
        pr.predict(ens, [small], progress=False)
    with pytest.raises(DataError, match=f"folder {empty} holds no images"):
        pr.collect_images([empty])
    with pytest.warns(UserWarning, match="grey.png is L, not RGB: converted"):
        t = pr.predict(ens, [grey, small], resize=True, progress=False)
    assert list(t["input"]) == ["as is", "resize"] and not out.exists()
    pr.write_table(t, out)
    with pytest.raises(ConfigError, match="out.csv exists: .*--force"):
        pr.write_table(t, out)
    assert pr.write_table(t, out, force=True) == out


def test_an_unfinished_study_names_its_missing_runs_and_the_command(study, tmp_path):
    from alllib.study.prepare import prepare

    other = prepare("smoke", TINY + ["epochs=2"], str(study.data_root), study.results_root, progress=False)
    with pytest.raises(
        StudyError,
        match=r"4 of 4 training runs of profile 'smoke' are not finished .*python -m alllib study --profile smoke",
    ):
        pr.load_ensemble(other)


def test_predict_command_line_writes_the_csv(study, tmp_path):
    images = [str(p) for p in _prelim(study, 3)]
    out = tmp_path / "p.csv"
    overrides = sum((["--set", o] for o in TINY), [])
    cmd = [sys.executable, "-m", "alllib", "predict", *images, "--profile", "smoke", *overrides]
    cmd += ["--data-dir", str(study.data_root), "--results", str(study.results_root), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "WEN-kappa, weights from validation" in proc.stderr and "SYNTHETIC" in proc.stderr
    table = pd.read_csv(out)
    assert len(table) == 3 and "p_all" in table
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "exists" in again.stderr
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_the_exported_model_agrees_with_predict_and_loads_without_alllib(study, tmp_path):
    import json

    ens = pr.load_ensemble(study, size=300)
    info = pr.export(ens, tmp_path / "exported")  # a folder that does not exist yet
    images = _prelim(study, 3) + pr.collect_images([study.data_root / FINAL_DIR])[:2]  # 450 and 600 px
    expected = pr.predict(ens, images, progress=False)["p_all"].to_numpy()
    # 1. the SavedModel's serve endpoint in a fresh process that never imports alllib
    arrays = tmp_path / "arrays.npz"
    np.savez(arrays, *[np.asarray(Image.open(p).convert("RGB")) for p in images])
    code = (
        "import sys, json, numpy as np, tensorflow as tf\n"
        f"m = tf.saved_model.load({info['saved_model']!r})\n"
        f"a = np.load({str(arrays)!r})\n"
        "out = [float(m.serve(tf.constant(a[k][None]))[0, 1]) for k in sorted(a.files, key=lambda k: int(k[4:]))]\n"
        "try:\n    m.serve(tf.zeros((1, 200, 200, 3), tf.uint8)); small = 'served'\n"
        "except Exception as exc:\n    small = str(exc)\n"
        "alllib = any(n.startswith('alllib') for n in sys.modules)\n"
        "print(json.dumps({'p_all': out, 'alllib': alllib, 'small': small}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    assert served["alllib"] is False
    assert "expected square images of 450 or 600 px" in served["small"]  # refused, as predict refuses it
    np.testing.assert_allclose(served["p_all"], expected, atol=1e-5)
    # 2. the .keras file in Keras' safe mode, and no Lambda layer anywhere in it
    model = pr.load_exported(info["keras"])
    batch = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in images[:3]])
    np.testing.assert_allclose(model.predict(batch, verbose=0)[:, 1], expected[:3], atol=1e-5)
    with zipfile.ZipFile(info["keras"]) as z:
        assert '"Lambda"' not in z.read("config.json").decode()
    assert info["keras MB"] > 0 and info["saved_model MB"] > 0
    # Keras 3.15 stores every variable of a SavedModel twice (keras-team/keras#23553), which the README
    # states: when a Keras release fixes it, this fails, and the note goes
    import tensorflow as tf

    stored = tf.train.list_variables(str(Path(info["saved_model"]) / "variables" / "variables"))
    assert {n.split("/")[0] for n, _ in stored} == {"variables", "_all_variables", "_CHECKPOINTABLE_OBJECT_GRAPH"}
    assert 1.9 < info["saved_model MB"] / info["keras MB"] < 2.1


def test_cam_overlays_are_written_per_image_and_model(study, tmp_path):
    files = pr.chapter_images(study, per_class=1)
    truth = dict(zip(study.table["path"].astype(str), study.table["label"]))
    assert sorted(truth[str(p)] for p in files) == ["all", "hem"]
    ens = pr.load_ensemble(study, size=300)
    table = pr.predict(ens, files, progress=False)
    images, maps = pr.cam_maps(ens, files, table)
    assert list(maps) == ["WEN-kappa", "VGG-16", "MobileNet"]
    assert all(m.shape == images.shape[:3] and 0 <= m.min() and m.max() <= 1 for m in maps.values())
    written = pr.write_overlays(images, maps, files, tmp_path)
    assert [p.name for p in written] == [f"{p.stem}_cam_wen-kappa.png" for p in files]
    assert Image.open(written[0]).size == images.shape[1:3][::-1]
    with pytest.raises(ConfigError, match="exists .*--force"):
        pr.write_overlays(images, maps, files, tmp_path, members=True)
    assert len(pr.write_overlays(images, maps, files, tmp_path, members=True, force=True)) == 3 * len(files)


def test_the_model_card_is_computed_from_the_runs(study):
    from alllib.book.model_card import model_card_markdown
    from alllib.method.ensemble import ensemble_predictions
    from alllib.method.metrics import evaluate
    from alllib.results.ablation import ensemble_chapter

    summary = ensemble_chapter(study.runs(), study.label(), n_boot=50, n_perm=50).summary
    card = model_card_markdown(study, summary)
    assert card.startswith("**These models were trained on synthetic images and mean nothing clinically.**")
    sections = [
        "Model details",
        "Intended use",
        "Factors",
        "Metrics",
        "Per-class and per-subject performance",
        "Training and evaluation data",
        "Ethical considerations",
        "Caveats and recommendations",
    ]
    positions = [card.index(f"## {s}") for s in sections]
    assert positions == sorted(positions)
    ens = pr.load_ensemble(study)
    test, _ = ensemble_predictions(study.runs().at(ens.size, ens.seed), "wen-kappa", "validation")
    m = evaluate(test["y"].to_numpy(int), test["p_all"].to_numpy())
    ba = summary.sizes[ens.size].leak_free["WEN-kappa"]["BA"]
    assert ba.est == pytest.approx(m["BA"]) and f"| BA | {ba.est:.3f} | {ba.lo:.3f} to {ba.hi:.3f} |" in card
    assert "50 resamples of subjects" in card and f"| ALL | {m['n_all']} | {m['recall_all']:.3f} |" in card
    assert study.data_info["fingerprint"] in card and "Not for diagnosis" in card


def test_every_accepted_mode_gives_its_rgb_originals_prediction(study, tmp_path):
    """A palette BMP (TensorFlow's decoder ignores the palette), 1-bit, grey and alpha images are
    predicted as the RGB picture they show."""
    src = Image.open(_prelim(study, 1)[0]).convert("RGB")
    variants = {
        "palette.bmp": src.convert("P", palette=Image.ADAPTIVE),
        "bilevel.bmp": src.convert("1"),
        "grey.png": src.convert("L"),
        "alpha.png": src.convert("RGBA"),
        "grey_alpha.png": src.convert("LA"),
    }
    files, originals = [], []
    for name, im in variants.items():
        im.save(tmp_path / name)
        Image.open(tmp_path / name).convert("RGB").save(tmp_path / f"rgb_{name}.png")  # the picture it shows
        files.append(tmp_path / name)
        originals.append(tmp_path / f"rgb_{name}.png")
    ens = pr.load_ensemble(study, size=300)
    with pytest.warns(UserWarning) as record:
        table = pr.predict(ens, files + originals, progress=False)
    said = " ".join(str(w.message) for w in record)
    assert "palette.bmp is P, not RGB: converted to RGB (its palette applied)" in said
    assert "alpha.png is RGBA, not RGB: converted to RGB (its alpha channel dropped)" in said
    n = len(files)
    np.testing.assert_array_equal(table["p_all"].to_numpy()[:n], table["p_all"].to_numpy()[n:])


def test_contents_and_modes_that_would_crash_the_batch_are_refused_by_name(study, tmp_path):
    src = Image.open(_prelim(study, 1)[0]).convert("RGB")
    tiff = tmp_path / "tiff_inside.png"
    src.save(tiff, format="TIFF")
    deep = tmp_path / "deep.png"
    Image.fromarray(np.asarray(src.convert("L"), dtype=np.uint16) * 256).save(deep)
    ens = pr.load_ensemble(study, size=300)
    with pytest.raises(DataError, match=f"{tiff} holds a TIFF image: expected BMP, PNG, JPEG contents"):
        pr.predict(ens, [tiff], progress=False)
    with pytest.raises(DataError, match=f"{deep} is a I;16 image, which cannot be made 8-bit RGB faithfully"):
        pr.predict(ens, [deep], progress=False)


def test_skipped_files_are_named(tmp_path):
    for name in ("1.bmp", "2.png", "scan.tif", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    with pytest.warns(UserWarning, match=r"skipped 3 entries that are not .*: scan.tif, notes.txt, sub|skipped 3"):
        files = pr.collect_images([tmp_path])
    assert [p.name for p in files] == ["1.bmp", "2.png"]


def test_overlays_of_images_that_share_a_name_do_not_overwrite_each_other(tmp_path):
    paths = [tmp_path / "x" / "cell.png", tmp_path / "y" / "cell.png", tmp_path / "y" / "cell.bmp", tmp_path / "a.png"]
    stems = pr.overlay_stems(paths)
    assert len(set(stems)) == 4 and stems[3] == "a" and stems[0] == "x__cell_png"
    images = np.zeros((4, 8, 8, 3), np.uint8)
    written = pr.write_overlays(images, {"WEN-kappa": np.zeros((4, 8, 8))}, paths, tmp_path / "cam")
    assert len({p.name for p in written}) == 4 and len(list((tmp_path / "cam").iterdir())) == 4


def test_destinations_are_refused_before_any_work(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=f"{tmp_path / 'folder'} is a folder: expected the path of a file"):
        pr.check_destination(tmp_path / "folder", "file")
    with pytest.raises(ConfigError, match=f"{tmp_path / 'file'} is a file: expected a folder"):
        pr.check_destination(tmp_path / "file", "folder")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        pr.check_destination(tmp_path / "file" / "out.csv", "file")
    with pytest.raises(ConfigError, match="exists: .*--force"):
        pr.check_destination(tmp_path / "file", "file")
    assert pr.check_destination(tmp_path / "new" / "deeper" / "p.csv", "file") == tmp_path / "new" / "deeper" / "p.csv"
    with pytest.raises(ConfigError, match=f"{tmp_path / 'file'} is a file: expected a folder"):
        pr.export(None, tmp_path / "file")  # before the ensemble is even looked at


def test_a_read_only_destination_is_refused_before_any_work(tmp_path):
    with tmpfs(tmp_path / "ro", "size=1m,ro") as ro:
        with pytest.raises(ConfigError, match=f"cannot write {ro / 'p.csv'}: {ro} is not writable"):
            pr.check_destination(ro / "p.csv", "file")
        with pytest.raises(ConfigError, match=f"cannot write {ro / 'cam'}: {ro} is not writable"):
            pr.check_destination(ro / "cam", "folder")


@pytest.mark.parametrize(
    "names,message",
    [
        (["1.bmp", "01.bmp", "2.bmp"], r"image number 1 is given 2 times \(1.bmp, 01.bmp\)"),
        (["1.bmp", "1.png"], r"image number 1 is given 2 times \(1.bmp, 1.png\)"),
        (["0.bmp", "1.bmp"], "numbered from 0"),
        (["1.bmp", "3.bmp", "4.bmp"], r"numbered 1 ... 3 without gaps; 1 missing, e.g. 2.bmp"),
        (["1.bmp", "cell.bmp"], "1 image.s. not named by a number, e.g. cell.bmp"),
    ],
)
def test_submission_names_are_checked_first_and_say_what_is_wrong(names, message):
    with pytest.raises(DataError, match=message):
        pr.check_submission_names(names)
    assert pr.check_submission_names(["2.bmp", "1.bmp", "10.bmp", *map("{}.bmp".format, range(3, 10))])


def test_impossible_counts_are_refused_on_the_command_line():
    for cmd in (
        ["study", "--jobs", "0"],
        ["study", "--jobs", "-3"],
        ["predict", "x.bmp", "--out", "o.csv", "--batch-size", "0"],
    ):
        proc = subprocess.run([sys.executable, "-m", "alllib", *cmd], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "expected a whole number of at least 1" in proc.stderr, cmd


def test_a_full_disk_during_export_is_named_and_leaves_no_half_export(study, tmp_path):
    """A disk that holds neither file, and one that holds ensemble.keras but not the SavedModel: one
    line naming the path, and nothing left (a rerun needs no --force)."""
    if os.geteuid() != 0:  # before the ensemble is loaded
        pytest.skip("mounting a tmpfs needs root")
    ens = pr.load_ensemble(study, size=300)
    sizes = pr.export(ens, tmp_path / "whole")
    for megabytes, stage in ((1, "ensemble.keras"), (int(sizes["keras MB"] * 1.2) + 1, "saved_model")):
        with tmpfs(tmp_path / f"disk{megabytes}", f"size={megabytes}m") as disk:
            with pytest.raises(StudyError, match=f"cannot write {disk / 'out'}/{stage}.*: the disk is full"):
                pr.export(ens, disk / "out")
            assert [p.name for p in (disk / "out").iterdir()] == []
