import json

import nbformat
import pandas as pd
import pytest

from alllib import pipeline, provenance
from alllib.book import postprocess
from alllib.errors import StudyError
from alllib.evidence import recorded
from alllib.study import prepare as study_mod
from alllib.study import profile as config
from alllib.study import runner


def _notebook(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("x = 1")] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, path)


def test_failed_notebook_is_kept_and_named(tmp_path):
    (tmp_path / "notebooks").mkdir()
    _notebook(tmp_path / "notebooks" / "bad.ipynb", ["y = x + 1", "raise ValueError(f'boom {y}')"])
    out = tmp_path / "gen" / "bad.ipynb"
    with pytest.raises(StudyError) as err:
        runner.execute("bad", out, {"x": 41}, tmp_path)
    msg = str(err.value)
    # In [1] is the defaults cell, In [2] papermill's injected parameters, In [3] y = x + 1
    assert "bad.ipynb failed at cell In [4] (ValueError: boom 42)" in msg
    failed = tmp_path / "gen" / "bad.failed.ipynb"
    assert str(failed) in msg and failed.is_file() and not out.exists()
    # once mended, the notebook runs and the stale partial copy goes, so no reader mistakes it for news
    _notebook(tmp_path / "notebooks" / "bad.ipynb", ["y = x + 1"])
    runner.execute("bad", out, {"x": 41}, tmp_path)
    assert out.is_file() and not failed.exists()


def test_injected_parameters_leave_the_page(tmp_path):
    (tmp_path / "notebooks").mkdir()
    for name, tag in (("ok", "remove-cell"), (runner.TRAIN_NOTEBOOK, "remove-cell")):
        _notebook(tmp_path / "notebooks" / f"{name}.ipynb", ["print(x * 2)"])
        out = tmp_path / "gen" / f"{name}.ipynb"
        runner.execute(name, out, {"x": 21}, tmp_path)
        postprocess.for_the_book(out, tmp_path / "gen")
        cells = json.loads(out.read_text())["cells"]
        injected = [c for c in cells if "injected-parameters" in c["metadata"].get("tags", [])]
        assert injected and tag in injected[0]["metadata"]["tags"]
        assert "42" in json.dumps(cells[-1]["outputs"])


def test_missing_notebook(tmp_path):
    with pytest.raises(StudyError, match="notebook .*nope.ipynb does not exist"):
        runner.execute("nope", tmp_path / "x.ipynb", {}, tmp_path)


def test_study_on_a_given_root_is_labelled_by_its_content(synth_root, tmp_path):
    s = study_mod.prepare("smoke", data_dir=str(synth_root), results_dir=tmp_path, progress=False)
    assert s.synthetic and s.label().startswith("SYNTHETIC")  # a synthetic tree passed as DATA_DIR stays labelled
    m = s.matrix()
    assert len(m) == 15 and len(set(m)) == 15
    # seed-major (seed 0 completes its ensembles first), longest runs first within a seed
    assert [r[2] for r in m] == [0] * 10 + [1] * 5
    assert m[0] == ("inception_resnet_v2", 450, 0) and m[-1] == ("mobilenet", 300, 1)
    s.cfg.training.per_backbone = {"mobilenet": config.TrainingOverride(epochs=100 * s.cfg.training.epochs)}
    assert s.matrix()[0] == ("mobilenet", 450, 0)  # the cost counts epochs
    s.cfg.training.per_backbone = {}
    assert s.runs(require_all=False) == []
    with pytest.raises(StudyError, match="15 training runs of profile 'smoke' are not finished"):
        s.runs()


def test_side_by_side_cpu_jobs_share_the_cores(monkeypatch):
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 8)
    assert runner.cpu_threads(1) == {}
    assert runner.cpu_threads(2) == {"TF_NUM_INTRAOP_THREADS": "4", "TF_NUM_INTEROP_THREADS": "4"}
    assert runner.cpu_threads(16)["TF_NUM_INTRAOP_THREADS"] == "1"


def test_recorded_tables_carry_their_provenance():
    table = pd.DataFrame({"BA": [0.9]})
    assert list(provenance.stamp(table, "demo").columns) == ["BA", "profile", "recorded", "commit"]
    t = provenance.stamp(table, "smoke", machine=True)
    assert list(t.columns) == ["BA", "profile", "recorded", "cpus", "gpus", "commit"]
    assert t.loc[0, "profile"] == "smoke" and t.loc[0, "cpus"] == runner.os.cpu_count()
    d = provenance.stamp(table, "demo").iloc[0]
    assert (
        recorded.recorded_note(provenance.stamp(table, "demo"))
        == f"Recorded {d['recorded']} with the `demo` profile at commit `{d['commit']}`."
    )
    assert f"on {t.loc[0, 'cpus']} CPUs (GPU: {t.loc[0, 'gpus']})" in recorded.recorded_note(t)
    assert recorded.recorded("no_such_table") is None
    bench = recorded.recorded("bench_training")  # what the training chapter shows
    assert set(provenance.STAMP_COLUMNS) <= set(bench.columns) and len(bench) == 10


def test_trial_tabulates_every_variant_and_seed(synth_root, tmp_path, monkeypatch):
    from alllib.study import runs

    def run_matrix(study, params, root, gpus, log, jobs):  # the runner without papermill, same runs
        for bb, size, seed in study.matrix():
            runs.train_or_load(study, bb, size, seed, verbose=0)

    monkeypatch.setattr(runner, "run_matrix", run_matrix)
    tiny = ["input_scale=0.12", "epochs=1", "max_train_images=16", "bn_recalibration_images=8"]
    out = tmp_path / "trial.csv"
    args = ("smoke", [[], ["clr_max_lr=1e-3", "epochs=2"]], ["mobilenet"], 300, (3,))
    kwargs = {"results_dir": tmp_path, "base": tiny, "data_dir": str(synth_root)}
    t = recorded.trial(*args, out=out, **kwargs)
    assert list(t["setting"]) == ["profile as is", "clr_max_lr=1e-3 epochs=2"]
    assert list(t["seed"]) == [3, 3] and set(t["backbone"]) == {"MobileNet"}
    assert list(t["clr_max_lr"]) == [2e-3, 1e-3] and list(t["epochs"]) == [1, 2]
    assert t["val_BA"].between(0, 1).all() and t["test_BA"].between(0, 1).all()
    assert {"profile", "recorded", "commit"} <= set(t.columns)
    assert [len(h.split()) for h in t["val_accuracy_by_epoch"]] == [1, 2]  # per-epoch histories back any claim
    pd.testing.assert_frame_equal(pd.read_csv(out), t, check_dtype=False)
    # a second call reuses both runs
    monkeypatch.setattr(runs, "fit", lambda *a, **k: pytest.fail("a finished trial run was retrained"))
    again = recorded.trial(*args, **kwargs)
    pd.testing.assert_frame_equal(again, t)


def test_calibration_is_a_trial_over_difficulties(monkeypatch):
    seen = {}

    def fake_trial(profile, variants, backbones, size, seeds, results_dir=None, **kw):
        seen.update(variants=variants, backbones=backbones, seeds=seeds)
        return pd.DataFrame({"setting": [v[0] for v in variants], "backbone": "VGG-16", "test_BA": 0.7})

    monkeypatch.setattr(recorded, "trial", fake_trial)
    t = recorded.calibrate("demo", (0.2, 0.25))
    assert seen == {
        "variants": [["difficulty=0.2"], ["difficulty=0.25"]],
        "backbones": ("vgg16", "mobilenet"),
        "seeds": (0,),
    }
    assert list(t["difficulty"]) == [0.2, 0.25] and "setting" not in t


def test_trial_chooses_on_validation_not_test():
    t = pd.DataFrame(
        {"setting": ["a", "a", "b", "b"], "val_BA": [0.9, 0.8, 0.7, 0.75], "test_BA": [0.6, 0.6, 0.95, 0.95]}
    )
    choice = recorded.choose_on_validation(t)
    assert choice.loc[choice["chosen_on_validation"], "setting"].tolist() == ["a"]  # test prefers b: ignored
    assert choice.set_index("setting").loc["a", "val_BA_worst"] == 0.8
    cal = pd.DataFrame(
        {
            "difficulty": [0.1, 0.1, 0.2, 0.2, 0.3],
            "val_BA": [0.99, 0.9, 0.9, 0.7, 0.55],
            "test_BA": [0.5, 0.5, 0.5, 0.5, 0.99],
        }
    )
    assert recorded.calibration_choice(cal) == 0.2  # 0.1 is too easy on validation, 0.3 at chance
    assert recorded.calibration_choice(cal.assign(val_BA=0.5)) is None


def test_a_one_backbone_study_is_refused_before_any_work(synth_root, tmp_path):
    from alllib.errors import ConfigError

    with pytest.raises(ConfigError, match=r"backbones = \['vgg16'\]: a study needs at least two backbones"):
        pipeline.run_study("smoke", ["backbones=vgg16"], str(synth_root), tmp_path, book=False)
    assert not (tmp_path / "smoke" / "runs").exists()


def test_bad_images_are_reported_in_one_paragraph_before_any_notebook(synth_copy, tmp_path):
    from alllib.errors import DataError

    files = sorted((synth_copy / "training_data" / "fold_0" / "all").iterdir())
    files[0].write_bytes(b"not an image")
    from PIL import Image

    Image.new("RGB", (300, 300)).save(files[1], format="PNG")
    with pytest.raises(DataError) as err:
        pipeline.run_study("smoke", [], str(synth_copy), tmp_path, book=False)
    msg = str(err.value)
    assert msg.startswith("2 of ") and files[0].name in msg and files[1].name in msg and "300x300 RGB" in msg
    assert "\n" not in msg and not (tmp_path / "smoke" / "runs").exists()
