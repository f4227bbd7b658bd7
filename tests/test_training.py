import json

import numpy as np
import pytest

from alllib import backup as backup_lib
from alllib import io
from alllib.errors import ConfigError
from alllib.method import training
from alllib.study import profile as config
from alllib.study import runs
from alllib.study.profile import Augment

MOBILENET_300 = training.RunSpec("mobilenet", 300, 0, 0)  # seed 0, trained on the split of seed 0


def _piecewise_triangular2(steps, base, peak, step_size):
    """Independent construction: linear interpolation through the vertices of the triangle wave,
    whose n-th peak (n = 0, 1, ...) is base + (peak - base) / 2**n."""
    n_cycles = int(np.max(steps) // (2 * step_size)) + 2
    xs, ys = [], []
    for n in range(n_cycles):
        xs += [2 * n * step_size, (2 * n + 1) * step_size]
        ys += [base, base + (peak - base) / 2**n]
    return np.interp(steps, xs, ys)


def test_triangular2_closed_form_against_vertices():
    steps = np.arange(0, 12 * 50 + 7)
    np.testing.assert_allclose(
        training.triangular2(steps, 1e-7, 2e-3, 50),
        _piecewise_triangular2(steps, 1e-7, 2e-3, 50),
        rtol=1e-9,
        atol=1e-15,
    )


def test_triangular2_landmarks():
    s = 6 * 100  # Eq. 5 with 100 iterations per epoch

    def lr(t):
        return float(training.triangular2(t, 1e-7, 2e-3, s))

    assert lr(0) == pytest.approx(1e-7)
    assert lr(s) == pytest.approx(2e-3)  # first peak after 6 epochs
    assert lr(2 * s) == pytest.approx(1e-7)  # back to base after 12 epochs
    assert lr(3 * s) == pytest.approx(1e-7 + (2e-3 - 1e-7) / 2)  # amplitude halved
    assert lr(5 * s) == pytest.approx(1e-7 + (2e-3 - 1e-7) / 4)


def test_keras_schedule_equals_formula():
    sched = training.cyclic_lr(1e-7, 2e-3, 37)
    steps = np.arange(0, 400, 3)
    got = np.array([float(sched(int(s))) for s in steps])
    np.testing.assert_allclose(got, training.triangular2(steps, 1e-7, 2e-3, 37), rtol=1e-5)
    assert sched.get_config() == {"base_lr": 1e-7, "max_lr": 2e-3, "step_size": 37.0}
    with pytest.raises(ConfigError, match="step size must be > 0"):
        training.cyclic_lr(1e-7, 2e-3, 0)


def test_optimizer_is_adamax_with_papers_betas():
    tr = config.load_profile("smoke").training
    opt = training.make_optimizer(tr, steps_per_epoch=10)
    assert type(opt).__name__ == "Adamax"
    assert opt.beta_1 == 0.9 and opt.beta_2 == 0.999
    lr = opt.get_config()["learning_rate"]
    assert lr["config"]["step_size"] == 60  # 6 x iterations per epoch
    assert lr["config"]["base_lr"] == 1e-7 and lr["config"]["max_lr"] == 2e-3


def test_recalibrate_batchnorm_averages_batch_statistics():
    import keras

    inp = keras.Input((4,))
    x = keras.layers.Dense(3, use_bias=True, name="d")(inp)
    out = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    batches = [rng.normal(i, 1 + i, (16, 4)).astype("float32") for i in range(3)]
    used = training.recalibrate_batchnorm(model, batches)
    assert used == 3
    dense = model.get_layer("d")
    acts = [b @ dense.kernel.numpy() + dense.bias.numpy() for b in batches]
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([a.mean(0) for a in acts], axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([a.var(0) for a in acts], axis=0), rtol=1e-4)
    assert bn.momentum == 0.99  # restored


def test_cross_entropy():
    y = np.array([1, 0, 1])
    p = np.array([0.9, 0.2, 0.5])
    assert training.cross_entropy(y, p) == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.5])))


TINY = [
    "backbones=[mobilenet]",
    "input_scale=0.12",
    "epochs=1",
    "max_train_images=24",
    "bn_recalibration_images=16",
    "batch_size=8",
    "run_eagerly=false",
]  # traced, as demo and paper train (the smoke study covers eager)


@pytest.fixture()
def tiny_cfg():
    return config.load_profile("smoke", TINY)


def _study(synth_root, results, extra=()):
    from alllib.study.prepare import prepare

    return prepare("smoke", TINY + list(extra), data_dir=str(synth_root), results_dir=results, progress=False)


def test_same_seed_same_predictions_on_cpu(tiny_cfg, synth_root, tmp_path):
    a = runs.train_or_load(_study(synth_root, tmp_path / "a"), "mobilenet", 300, 0, verbose=0)
    b = runs.train_or_load(_study(synth_root, tmp_path / "b"), "mobilenet", 300, 0, verbose=0)
    pa, pb = runs.load_run(a).predictions, runs.load_run(b).predictions
    assert len(pa) > 0
    np.testing.assert_array_equal(pa["p_all"].to_numpy(), pb["p_all"].to_numpy())
    run = runs.load_run(a)
    assert set(run.predictions["split"]) == {"validation", "preliminary_test"}
    assert {"model.keras", "history.csv", "predictions.csv", "run.json"} <= {p.name for p in a.iterdir()}
    assert run.weights == "none" and run.data["synthetic"] is True
    assert run.environment["tensorflow"] and run.images_per_second > 0
    # where its time went: the phases add up to the wall time measured whole (outside a runner's kernel
    # there is no kernel start to count)
    assert "kernel start, imports and set-up" not in run.phases and set(run.phases) <= set(training.PHASES)
    assert {
        "tracing (the first step)",
        "training steps",
        "validation",
        "batchnorm re-estimation",
        "backup",
        "saving",
    } <= set(run.phases)
    assert all(v >= 0 for v in run.phases.values()) and run.phases["training steps"] > 0
    assert sum(run.phases.values()) == pytest.approx(run.wall_seconds, rel=1e-6)
    assert list(run.history.columns[:3]) == ["epoch", "accuracy", "loss"]
    # the saved model is the evaluated one (with its re-estimated BatchNorm statistics), without the optimizer
    import io
    import zipfile

    import h5py

    from alllib.method.dataset import read_cnmc
    from alllib.method.models import load_model
    from alllib.method.preprocessing import subject_split

    with zipfile.ZipFile(a / "model.keras") as z, h5py.File(io.BytesIO(z.read("model.weights.h5"))) as h5:
        assert "layers" in h5 and "optimizer" not in h5
    model = load_model(a / "model.keras")
    split = subject_split(read_cnmc(synth_root), 0)
    val = training.predict_table(model, split[split["split"] == "validation"], 300, tiny_cfg.input_scale)
    np.testing.assert_allclose(val["p_all"], pa.loc[pa["split"] == "validation", "p_all"], atol=1e-6)


def test_fixed_split_trains_every_seed_on_the_first_seeds_split(synth_root, tmp_path):
    fixed = _study(synth_root, tmp_path, ["runs={300: [0, 5]}"])
    per_seed = _study(synth_root, tmp_path, ["runs={300: [0, 5]}", "split=per_seed"])
    assert fixed.cfg.split == "fixed" and [fixed.split_seed(s) for s in (0, 5)] == [0, 0]
    assert [per_seed.split_seed(s) for s in (0, 5)] == [0, 5]
    # the split is part of a run's identity
    assert fixed.run_dir("mobilenet", 300, 5) != per_seed.run_dir("mobilenet", 300, 5)


def test_finished_run_is_reused(tiny_cfg, synth_root, tmp_path, monkeypatch):
    study = _study(synth_root, tmp_path)
    d = runs.train_or_load(study, "mobilenet", 300, 1, verbose=0)
    assert d == study.run_dir("mobilenet", 300, 1)
    stamp = (d / "run.json").stat().st_mtime_ns
    monkeypatch.setattr(runs, "fit", lambda *a, **k: pytest.fail("a finished run was retrained"))
    assert runs.train_or_load(study, "mobilenet", 300, 1) == d
    assert (d / "run.json").stat().st_mtime_ns == stamp
    # another version of the training code is another run; another release of the package is not
    import alllib

    current = runs.run_id(runs.run_key(tiny_cfg, "mobilenet", 300, 1, "x"))
    monkeypatch.setattr(alllib, "__version__", "99.0")
    assert runs.run_id(runs.run_key(tiny_cfg, "mobilenet", 300, 1, "x")) == current
    monkeypatch.setattr(runs, "TRAINING_CODE_VERSION", "99.0")
    assert runs.run_id(runs.run_key(tiny_cfg, "mobilenet", 300, 1, "x")) != current
    # another setting is another run
    other = config.load_profile("smoke", TINY + ["epochs=2"])
    assert runs.run_id(runs.run_key(other, "mobilenet", 300, 1, "x")) != runs.run_id(
        runs.run_key(tiny_cfg, "mobilenet", 300, 1, "x")
    )


def test_killed_run_is_redone_not_reused(tiny_cfg, synth_root, tmp_path, monkeypatch):
    real_fit = runs.fit

    def killed(cfg, spec, table, out_dir, data_info, verbose=2, **kw):
        (out_dir / "model.keras").write_text("half")
        (out_dir / "predictions.csv").write_text("image_id\n")
        raise KeyboardInterrupt("killed mid-way")

    monkeypatch.setattr(runs, "fit", killed)
    study = _study(synth_root, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        runs.train_or_load(study, "mobilenet", 300, 2)
    assert not any(runs.is_complete(d) for d in study.runs_dir.iterdir())
    assert not any(p.name.startswith("mobilenet") for p in study.runs_dir.iterdir())  # no half-written final dir
    assert runs.load_runs(study.runs_dir) == []
    monkeypatch.setattr(runs, "fit", real_fit)
    d = runs.train_or_load(study, "mobilenet", 300, 2, verbose=0)
    assert runs.is_complete(d)
    assert json.loads((d / "run.json").read_text())["epochs_run"] == 1


def test_a_kernel_reads_the_data_tree_once(synth_root, tmp_path, monkeypatch):
    """setup (prepare) reads the tree; training a run reuses the Study's table instead of reading again."""
    from alllib.book import notebook
    from alllib.method import dataset
    from alllib.study import prepare

    calls = []
    real = dataset.read_cnmc
    for module in (dataset, prepare):  # the module that defines it and the one that reads the tree with it
        monkeypatch.setattr(module, "read_cnmc", lambda *a, **k: calls.append(a) or real(*a, **k))
    study, _ = notebook.setup("smoke", TINY, str(synth_root), tmp_path, show=False)
    runs.train_or_load(study, "mobilenet", 300, 0, verbose=0)
    runs.load_run(study.run_dir("mobilenet", 300, 0))
    assert len(calls) == 1


def test_failed_mixed_precision_run_restores_the_policy(tiny_cfg, synth_root, tmp_path, monkeypatch):
    import keras

    def broken(*a, **k):
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        raise RuntimeError("out of memory")

    monkeypatch.setattr(training, "build_model", broken)  # the name training builds its model with
    cfg = config.load_profile("smoke", TINY + ["mixed_precision=true"])
    with pytest.raises(RuntimeError, match="out of memory"):
        training.fit(cfg, MOBILENET_300, _study(synth_root, tmp_path).table, tmp_path, {}, verbose=0)
    assert keras.mixed_precision.global_policy().name == "float32"


def _counting_callbacks():
    import keras

    class Interrupt(keras.callbacks.Callback):
        """Preemption at the start of epoch 3 (index 2), in the manner of Keras' own BackupAndRestore tests."""

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("preempted")

    class Count(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs, self.batches = [], 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs.append(epoch)

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1

    return Interrupt, Count


def test_steps_per_execution_divides_the_epoch():
    assert [training.steps_per_execution(4, n) for n in (1, 2, 3, 4, 8)] == [1, 2, 2, 4, 4]
    assert training.steps_per_execution(12, 5) == 4 and training.steps_per_execution(7, 3) == 1


@pytest.mark.parametrize("setting", ["mixed_precision=true", "xla=true", "steps_per_execution=3"])
def test_each_faster_path_trains_on_cpu_and_keeps_its_promises(setting, synth_root, tmp_path):
    """Mixed precision, XLA and several steps per graph call, on CPU: the run trains to a finite loss, records
    its setting, keeps its output layer (softmax and loss) in float32, takes every step of every epoch, and
    its backup is written at the end of each epoch, also when Keras calls batch callbacks only every N steps."""
    import keras
    import pandas as pd

    from alllib.method.models import load_model

    both = ["epochs=2", "patience=5"] + (["deterministic=true"] if setting.startswith("steps") else [])
    study = _study(synth_root, tmp_path / "r", both + [setting])
    backup = tmp_path / "backup"
    seen = {"backups": [], "iterations": [], "batch_calls": 0}

    class Watch(keras.callbacks.Callback):  # runs after the backup callback (extra callbacks come last)
        def on_train_batch_end(self, batch, logs=None):
            seen["batch_calls"] += 1

        def on_epoch_end(self, epoch, logs=None):
            seen["backups"].append(backup_lib.latest(backup).epoch)
            seen["iterations"].append(int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)))

    (tmp_path / "out").mkdir()
    record = training.fit(
        study.cfg, MOBILENET_300, study.table, tmp_path / "out", study.data_info, 0, backup, [Watch()]
    )
    key, value = setting.split("=")
    assert record["training"][key] == (True if value == "true" else int(value))
    history = pd.read_csv(tmp_path / "out" / "history.csv")
    assert np.isfinite(history[["loss", "val_loss"]].to_numpy()).all() and len(history) == 2
    steps = record["steps_per_epoch"]
    assert seen["backups"] == [1, 2]
    per_call = record["steps_per_execution_used"]
    if key == "steps_per_execution":  # the largest divisor of the steps per epoch not above the setting
        assert per_call == max(d for d in range(1, int(value) + 1) if steps % d == 0)
    assert seen["batch_calls"] == 2 * steps // per_call  # Keras calls batch callbacks once per graph call
    if key == "mixed_precision":  # dynamic loss scaling skips the steps whose scaled gradients overflow
        assert seen["iterations"][0] <= steps and seen["iterations"][1] <= 2 * steps
    else:  # every step of every epoch updated the weights once, no more (Keras runs whole executions)
        assert seen["iterations"] == [steps, 2 * steps]
    model = load_model(tmp_path / "out" / "model.keras")
    assert model.get_layer("predictions").compute_dtype == "float32" and model.outputs[0].dtype == "float32"
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert {layer.compute_dtype for layer in convs} == {"float16" if key == "mixed_precision" else "float32"}
    assert keras.mixed_precision.global_policy().name == "float32"  # the policy is the process's again
    if key == "steps_per_execution":  # the same steps: the predictions of one step per call, to the last digit
        (tmp_path / "one").mkdir()
        one = _study(synth_root, tmp_path / "r1", both)
        training.fit(one.cfg, MOBILENET_300, one.table, tmp_path / "one", one.data_info, 0)
        a, b = (pd.read_csv(tmp_path / d / "predictions.csv")["p_all"].to_numpy() for d in ("out", "one"))
        np.testing.assert_array_equal(a, b)


def test_an_interrupted_run_resumes_at_its_last_epoch_and_equals_an_uninterrupted_one(synth_root, tmp_path):
    """On CPU with op determinism, a run interrupted after two of four epochs and resumed from its
    backup gives the same history and the same predictions, bit for bit, as one never interrupted:
    the weights, the optimizer's state (and the schedule's step), the data stream, early stopping
    and the history all continue where they stopped."""
    study = _study(synth_root, tmp_path / "r", ["epochs=4", "patience=1", "deterministic=true"])
    cfg, table, data = study.cfg, study.table, study.data_info
    Interrupt, Count = _counting_callbacks()
    backup = tmp_path / "backup"
    for d in "abc":
        (tmp_path / d).mkdir()
    with pytest.raises(RuntimeError, match="preempted"):
        training.fit(
            cfg, MOBILENET_300, table, tmp_path / "a", data, verbose=0, backup_dir=backup, callbacks=[Interrupt()]
        )
    assert training.resume_epoch(backup) == 2
    assert [c.epoch for c in backup_lib.checkpoints(backup)] == [2, 1]  # the newest two are kept
    state = json.loads((backup / "epoch_0002" / backup_lib.STATE).read_text())
    assert len(state["history"]) == 2 and {"wait", "best", "best_epoch", "best_weights"} <= set(state)
    count = Count()
    resumed = training.fit(
        cfg, MOBILENET_300, table, tmp_path / "b", data, verbose=0, backup_dir=backup, callbacks=[count]
    )
    whole_count = Count()
    whole = training.fit(cfg, MOBILENET_300, table, tmp_path / "c", data, verbose=0, callbacks=[whole_count])
    assert resumed["resumed_at_epoch"] == 2 and whole["resumed_at_epoch"] == 0
    assert count.epochs == [e for e in whole_count.epochs if e >= 2]  # only the epochs after the backup
    assert count.batches == len(count.epochs) * resumed["steps_per_epoch"]
    assert resumed["epochs_run"] == whole["epochs_run"] and resumed["best_epoch"] == whole["best_epoch"]
    for name in ("history.csv", "predictions.csv"):
        hb, hc = (tmp_path / "b" / name).read_text(), (tmp_path / "c" / name).read_text()
        assert hb == hc, name


def test_a_finished_run_removes_its_backup(synth_root, tmp_path):
    study = _study(synth_root, tmp_path)
    d = runs.train_or_load(study, "mobilenet", 300, 3, verbose=0)
    assert runs.is_complete(d) and not runs.backup_dir(d).exists()
    assert training.resume_epoch(None) == 0 and training.resume_epoch(tmp_path / "none") == 0


def test_a_resumed_stream_is_the_uninterrupted_stream_from_that_step(synth_root):
    from alllib.method.dataset import read_cnmc
    from alllib.method.preprocessing import make_dataset, subject_split

    train = subject_split(read_cnmc(synth_root), 0).query("split == 'train'").groupby("label").head(10)
    aug = Augment(rotation_deg=180, zoom=0.1, shift=0.1, flips=True)
    whole, _ = make_dataset(train, 300, 0.1, 8, seed=3, training=True, augment_cfg=aug)
    later, _ = make_dataset(train, 300, 0.1, 8, seed=3, training=True, augment_cfg=aug, start_step=5)
    batches = [x.numpy() for x, _ in whole.take(8)]
    for a, (b, _) in zip(batches[5:], later.take(3)):
        np.testing.assert_array_equal(a, b.numpy())


def test_a_run_that_early_stopping_had_ended_is_not_trained_further(synth_root, tmp_path):
    """Killed after early stopping ended it but before it was stored: the resumed run trains no
    further epoch and keeps the history it had."""
    study = _study(synth_root, tmp_path / "r", ["epochs=4", "deterministic=true"])
    Interrupt, Count = _counting_callbacks()
    backup = tmp_path / "backup"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(RuntimeError, match="preempted"):
        training.fit(
            study.cfg,
            MOBILENET_300,
            study.table,
            tmp_path / "a",
            study.data_info,
            verbose=0,
            backup_dir=backup,
            callbacks=[Interrupt()],
        )
    ckpt = backup / "epoch_0002"
    state = json.loads((ckpt / backup_lib.STATE).read_text())
    assert state["stopped"] is False
    (ckpt / backup_lib.STATE).write_text(json.dumps({**state, "stopped": True}))  # as if early stopping had ended
    manifest = json.loads((ckpt / backup_lib.MANIFEST).read_text())  # ... and the checkpoint had been written so
    manifest["files"][backup_lib.STATE] = io.file_record(ckpt / backup_lib.STATE)
    (ckpt / backup_lib.MANIFEST).write_text(json.dumps(manifest))
    count = Count()
    info = training.fit(
        study.cfg,
        MOBILENET_300,
        study.table,
        tmp_path / "b",
        study.data_info,
        verbose=0,
        backup_dir=backup,
        callbacks=[count],
    )
    assert count.epochs == [] and count.batches == 0 and info["epochs_run"] == 2


def _traces_of_one_fit(prebuild: bool):
    """Fit a small BatchNorm network for two epochs; returns how often its training step was traced, the
    names of the variables created while it was traced, and the trained weights."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.BatchNormalization()(x)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    adamax = training.make_optimizer(config.load_profile("smoke").training, 4)  # with the cyclic schedule
    model.compile(optimizer=adamax, loss=training.LOSS, metrics=["accuracy"])
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (32, 6, 6, 3)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((images, np.eye(2, dtype="float32")[rng.integers(0, 2, 32)]))
    ds = ds.batch(8).repeat()
    if prebuild:
        training.build_training_state(model, ds)
    traced, created, step = [], [], model.train_step

    def counted(data):
        traced.append(1)
        return step(data)

    def creator(next_creator, **kw):
        if traced:
            created.append(kw.get("name"))
        return next_creator(**kw)

    model.train_step = counted
    with tf.variable_creator_scope(creator):
        model.fit(ds, steps_per_epoch=4, epochs=2, verbose=0, shuffle=False)
    return len(traced), created, model.get_weights() + [v.numpy() for v in model.optimizer.variables]


def test_the_training_step_is_traced_once_and_computes_the_same():
    """Without the state built beforehand, the optimizer's slots and the metrics are created inside the
    traced step, and tf.function traces it a second time; built beforehand, once, with the same result."""
    lazy_traces, lazy_created, lazy = _traces_of_one_fit(prebuild=False)
    traces, created, built = _traces_of_one_fit(prebuild=True)
    assert lazy_traces == 2 and lazy_created  # what build_training_state removes (the check can fail)
    assert traces == 1 and created == []
    assert len(built) == len(lazy)
    for a, b in zip(built, lazy):
        np.testing.assert_array_equal(a, b)
