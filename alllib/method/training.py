"""Section 4.2: the training policy, and one training run with its artifacts.

Adamax (beta_1 0.9, beta_2 0.999), categorical cross-entropy, accuracy, batch size 8, at most
200 epochs, a triangular2 cyclic learning rate between 1e-7 and 2e-3 with step size
6 x iterations per epoch (Eq. 5), and early stopping with patience 20 that restores the best
epoch's weights. The paper names 2e-4 as Adamax's initial rate; as in Smith's reference
implementation the cyclic schedule sets the rate from the first step, so the trace starts at
the base rate. Both are recorded with every run.

CPU profiles (random initialisation, few steps) add one step the paper does not have: after each
epoch the BatchNorm moving statistics are re-estimated on training images (`recalibrate_batchnorm`,
"precise BN"). Without it, MobileNet, Xception and InceptionResNet-V2 score at chance in inference
mode after a few epochs from scratch although they fit the training data: their moving averages
(momentum 0.99) have not caught up with the weights. The paper profile keeps the paper's protocol.

`run_eagerly` (the smoke profile only) executes the training and prediction steps op by op instead
of tracing them into a graph. A smoke run takes a handful of training steps, and tracing the step
costs more than all of them: measured here (75 px, 4 steps of 8 images), InceptionResNet-V2's first
epoch took 70 s traced (2.8 s once traced) against 20 s eagerly (the step was then still traced
twice; `build_training_state` has about halved the first step since). It is the same computation, but
not bit for bit: graph optimisations fuse and reorder operations, and from random initialisation
Adamax's sign-like first steps let such float differences grow. Demo and paper trace as usual.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from alllib import backup, io
from alllib.errors import ConfigError
from alllib.method.metrics import predict_labels
from alllib.method.models import build_model, count_batchnorm, get_backbone, predict_batches
from alllib.method.preprocessing import input_pixels, make_dataset, random_oversampling, subject_split
from alllib.provenance import Phases, environment

if TYPE_CHECKING:  # names used in annotations only (the profile's schema lives in the study)
    from alllib.study.profile import Profile, Training


def triangular2(step, base_lr: float, max_lr: float, step_size: float):
    """Closed form of Smith's triangular2 policy: a triangle wave between base_lr and max_lr whose
    amplitude halves after every full cycle (2 x step_size iterations)."""
    step = np.asarray(step, dtype=np.float64)
    cycle = np.floor(1 + step / (2 * step_size))
    x = np.abs(step / step_size - 2 * cycle + 1)
    return base_lr + (max_lr - base_lr) * np.maximum(0.0, 1 - x) / 2 ** (cycle - 1)


@functools.cache
def _schedule_class():
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="alllib")
    class CyclicLR(keras.optimizers.schedules.LearningRateSchedule):
        """triangular2 cyclic learning rate (Smith 2017) as a Keras schedule."""

        def __init__(self, base_lr, max_lr, step_size):
            self.base_lr, self.max_lr, self.step_size = float(base_lr), float(max_lr), float(step_size)

        def __call__(self, step):
            step = ops.cast(step, "float32")
            cycle = ops.floor(1 + step / (2 * self.step_size))
            x = ops.abs(step / self.step_size - 2 * cycle + 1)
            scale = ops.power(2.0, cycle - 1)
            return self.base_lr + (self.max_lr - self.base_lr) * ops.maximum(0.0, 1 - x) / scale

        def get_config(self):
            return {"base_lr": self.base_lr, "max_lr": self.max_lr, "step_size": self.step_size}

    return CyclicLR


def cyclic_lr(base_lr: float, max_lr: float, step_size: float):
    if step_size <= 0:
        raise ConfigError(f"cyclic learning rate step size must be > 0, got {step_size}")
    return _schedule_class()(base_lr, max_lr, step_size)


OPTIMIZER = "Adamax"  # Section 4.2; Table 7 of the comparison chapter reads these two
LOSS = "categorical_crossentropy"


def make_optimizer(tr: dict, steps_per_epoch: int):
    """Adamax driven by the triangular2 schedule (step size = clr_step_epochs x iterations per epoch)."""
    import keras

    schedule = cyclic_lr(tr.clr_base_lr, tr.clr_max_lr, tr.clr_step_epochs * steps_per_epoch)
    return getattr(keras.optimizers, OPTIMIZER)(learning_rate=schedule, beta_1=tr.beta_1, beta_2=tr.beta_2)


def recalibrate_batchnorm(model, dataset) -> int:
    """Re-estimate every BatchNorm layer's moving mean and variance as the plain average of the
    batch statistics over `dataset` (images only, or (images, labels) pairs), computed in training
    mode with the current weights. Returns the number of batches used."""
    import keras

    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not bns:
        return 0
    momenta = [layer.momentum for layer in bns]
    for layer in bns:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, "float32"))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape, "float32"))
    n = 0
    try:
        for batch in dataset:
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            for layer in bns:  # momentum n/(n+1): the running value becomes the mean of all batches so far
                layer.momentum = n / (n + 1)
            model(images, training=True)
            n += 1
    finally:
        for layer, m in zip(bns, momenta):
            layer.momentum = m
    return n


def cross_entropy(y: np.ndarray, p_all: np.ndarray) -> float:
    p = np.clip(np.where(y == 1, p_all, 1 - p_all), 1e-7, 1.0)
    return float(-np.log(p).mean())


def predict_table(
    model, table: pd.DataFrame, size: int, scale: float, batch_size: int = 32, dataset=None
) -> pd.DataFrame:
    """Per-image class probabilities with image id, subject and true label. `dataset`: the
    evaluation pipeline of `table` when the caller holds one already (decoded once, reused)."""

    ds = dataset if dataset is not None else make_dataset(table, size, scale, batch_size)[0]
    probs = predict_batches(model, ds) if len(table) else np.zeros((0, 2))
    out = table[["split", "image_id", "subject", "label", "y"]].reset_index(drop=True).copy()
    out["p_hem"], out["p_all"] = probs[:, 0].astype(float), probs[:, 1].astype(float)
    return out


def resume_epoch(backup_dir) -> int:
    """The epoch a run resumes at: how many epochs the newest consistent backup holds (0: none)."""
    return backup.resume_epoch(backup_dir)


def _callbacks(val_table, val_ds, size, scale, tr, recal_ds, schedule_fn, steps_per_epoch, phases=None):
    import keras

    phases = phases or Phases()

    class EpochValidation(keras.callbacks.Callback):
        """Validation at every epoch end (after re-estimating BatchNorm statistics where the profile
        asks for it), written into the logs before early stopping reads them."""

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            if recal_ds is not None:
                # the evidence for the re-estimation: validation accuracy with the running statistics first
                with phases("validation"):
                    stale = predict_table(self.model, val_table, size, scale, dataset=val_ds)
                logs["val_accuracy_running_bn"] = float((predict_labels(stale["p_all"]) == stale["y"]).mean())
                with phases("batchnorm re-estimation"):
                    recalibrate_batchnorm(self.model, recal_ds)
            with phases("validation"):
                pred = predict_table(self.model, val_table, size, scale, dataset=val_ds)
            y = pred["y"].to_numpy(int)
            logs["val_loss"] = cross_entropy(y, pred["p_all"].to_numpy())
            logs["val_accuracy"] = float((predict_labels(pred["p_all"]) == y).mean())
            logs["lr_end"] = float(schedule_fn((epoch + 1) * steps_per_epoch - 1))

    class FirstStep(keras.callbacks.Callback):
        """The run's first training step, which traces (and with XLA compiles) the step function."""

        t0 = None
        timed = False

        def on_train_batch_begin(self, batch, logs=None):
            if self.t0 is None:
                self.t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if not self.timed:
                phases.add("tracing (the first step)", time.perf_counter() - self.t0)
                self.timed = True

    return [
        FirstStep(),
        EpochValidation(),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=tr.patience, restore_best_weights=True, verbose=1),
    ]


@dataclass(frozen=True)
class RunSpec:
    """What one training run is, beside its profile: a backbone at an input size and seed, and the
    seed of the subject split it trains on."""

    backbone: str
    size: int
    seed: int
    split_seed: int


@dataclass
class _RunData:
    """One run's data: its splits and the input pipelines that feed them."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    oversampled: int  # training images per epoch after random oversampling
    steps: int  # steps per epoch
    start: backup.Checkpoint | None  # the backup the run resumes from
    ds: object  # the training stream (augmented, from `start_epoch`)
    val_ds: object
    decode_seconds: float

    @property
    def start_epoch(self) -> int:  # epochs the backup already holds
        return self.start.epoch if self.start else 0


def fit(
    cfg: Profile,
    spec: RunSpec,
    table: pd.DataFrame,
    out_dir: Path,
    data_info: dict,
    verbose: int = 2,
    backup_dir: Path | None = None,
    callbacks=(),
) -> dict:
    """Train one model and write model.keras, history.csv and predictions.csv to out_dir; returns
    what run.json records.

    `backup_dir`: where the run's state is saved at every epoch end (`RunBackup`); a run started
    again with the same folder resumes at its last finished epoch, with the data stream, the
    schedule, early stopping and the history where they were. The caller removes the folder once
    the run is stored. `callbacks`: more Keras callbacks (tests interrupt a run with one)."""
    import keras

    policy = keras.mixed_precision.global_policy()
    try:
        return _fit(cfg, spec, table, Path(out_dir), data_info, verbose, backup_dir, list(callbacks))
    finally:  # a failed mixed-precision run must not leave its policy to the next model of the process
        keras.mixed_precision.set_global_policy(policy)


def _fit(cfg: Profile, spec: RunSpec, table, out_dir: Path, data_info: dict, verbose, backup_dir, extra) -> dict:
    import keras
    import tensorflow as tf

    tr = cfg.training_for(spec.backbone)
    keras.utils.set_random_seed(spec.seed)
    if tr.deterministic:
        tf.config.experimental.enable_op_determinism()
    if tr.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    phases = Phases()
    data = _run_data(cfg, spec, tr, table, backup_dir)
    px = input_pixels(spec.size, cfg.input_scale)
    with phases("model build"):
        model = build_model(spec.backbone, px, cfg.weights)
        model.compile(
            optimizer=make_optimizer(tr, data.steps),
            loss=LOSS,
            metrics=["accuracy"],
            jit_compile=bool(tr.xla),
            run_eagerly=bool(tr.run_eagerly),
            steps_per_execution=steps_per_execution(data.steps, tr.steps_per_execution),
        )
        build_training_state(model, data.ds)
    recal = None
    if tr.recalibrate_batchnorm and count_batchnorm(model):
        sub = data.train.sample(n=min(len(data.train), tr.bn_recalibration_images), random_state=spec.seed)
        t_decode = time.time()
        recal = make_dataset(sub, spec.size, cfg.input_scale, 32, cache=True)[0]
        data.decode_seconds += time.time() - t_decode
    t0 = time.time()
    history = _train(model, data, spec, cfg.input_scale, tr, recal, backup_dir, extra, verbose, phases)
    train_seconds = time.time() - t0
    t1 = time.time()
    pred = pd.concat(
        [
            predict_table(model, data.val, spec.size, cfg.input_scale, dataset=data.val_ds),
            predict_table(model, data.test, spec.size, cfg.input_scale),
        ],
        ignore_index=True,
    )
    predict_seconds = time.time() - t1
    with phases("saving"):
        save_model(model, out_dir / "model.keras")
        io.write_csv(out_dir / "history.csv", history)
        io.write_csv(out_dir / "predictions.csv", pred)
    inside = sum(phases.seconds.get(k, 0.0) for k in TRAINING_PARTS)
    seconds = {
        "decode_seconds": data.decode_seconds,
        "train_seconds": train_seconds,
        "predict_seconds": predict_seconds,
        "phases": {
            "data and pipelines": data.decode_seconds,
            "model build": phases.seconds["model build"],
            **{k: phases.seconds.get(k, 0.0) for k in TRAINING_PARTS},
            "training steps": max(0.0, train_seconds - inside),
            "validation and test prediction": predict_seconds,
            "saving": phases.seconds["saving"],
        },
    }
    return _record(cfg, spec, tr, data, px, history, pred, seconds, model, recal is not None, data_info)


def build_training_state(model, dataset) -> None:
    """Create the optimizer's slots and the metrics' variables before the first training step, with Keras'
    own symbolic build (shapes only, from `dataset`'s element spec).

    Without a distribution strategy Keras defers this to the tracing of the training step, and
    `tf.function` traces a function that creates variables twice: once creating them, once more to get a
    function that does not. Built beforehand, the step is traced once. Measured here (75 px, batch 8, one
    thread): InceptionResNet-V2's first step took 70.6 s before, 36.1 s after (plus 2.4 s for this build);
    MobileNet's 7.4 s, then 3.7 s. The computation is the same: the weights, the optimizer's state and the
    predictions after two epochs were bit for bit equal (tests/test_training.py pins the single trace)."""
    symbolic_build = getattr(model, "_symbolic_build", None)
    if symbolic_build is None or model.optimizer is None or model.optimizer.built:
        return  # another Keras: the step is then traced twice, as before (slower, not different)
    symbolic_build(data_batch=dataset.element_spec)


def _run_data(cfg: Profile, spec: RunSpec, tr: Training, table: pd.DataFrame, backup_dir) -> _RunData:
    """The run's subject split (its training images drawn down where the profile says so), and its
    training and validation pipelines, the training stream starting where a backup left off."""
    split = subject_split(table, spec.split_seed)
    train = split[split["split"] == "train"]
    if tr.max_train_images and len(train) > tr.max_train_images:
        train = train.groupby("label").sample(frac=tr.max_train_images / len(train), random_state=spec.seed)
    val = split[split["split"] == "validation"]
    test = split[split["split"] == "preliminary_test"]
    t_decode = time.time()
    oversampled = len(random_oversampling(train["y"].fillna(0).astype(int).to_numpy(), spec.seed))
    steps = math.ceil(oversampled / tr.batch_size)
    start = backup.latest(backup_dir)
    start_epoch = start.epoch if start else 0
    if start_epoch:
        print(
            f"[train] resuming {spec.backbone} {spec.size}px seed {spec.seed} after epoch {start_epoch} "
            f"from {backup_dir}"
        )
    ds, _ = make_dataset(
        train,
        spec.size,
        cfg.input_scale,
        tr.batch_size,
        seed=spec.seed,
        training=True,
        augment_cfg=cfg.augment,
        cache=True,
        start_step=start_epoch * steps,
    )
    val_ds = make_dataset(val, spec.size, cfg.input_scale, 32, cache=True)[0]  # validated every epoch: decoded once
    return _RunData(train, val, test, oversampled, steps, start, ds, val_ds, time.time() - t_decode)


def steps_per_execution(steps_per_epoch: int, setting: int) -> int:
    """The steps per graph call a run uses: the largest divisor of its steps per epoch not above the setting.
    Keras runs whole executions, so a setting that does not divide the epoch would take extra steps (3 per
    call over 4 steps: 6 steps), moving the data stream, the schedule and a resumed run off their epoch."""
    return max(d for d in range(1, min(setting, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


# the parts of model.fit's time measured apart; the rest of it is the training steps
TRAINING_PARTS = ("tracing (the first step)", "validation", "batchnorm re-estimation", "backup")
# every phase run.json records, in the order a run meets them (the kernel's part only under a runner)
PHASES = (
    "kernel start, imports and set-up",
    "data and pipelines",
    "model build",
    *TRAINING_PARTS,
    "training steps",
    "validation and test prediction",
    "saving",
    "other (not measured apart)",
)


def _train(
    model, data: _RunData, spec: RunSpec, scale: float, tr: Training, recal, backup_dir, extra, verbose, phases=None
):
    """model.fit with the study's callbacks (and a backup where the run keeps one); the history of
    every epoch, those before a resume included."""
    import keras

    def schedule_fn(step):
        return float(triangular2(step, tr.clr_base_lr, tr.clr_max_lr, tr.clr_step_epochs * data.steps))

    callbacks = _callbacks(data.val, data.val_ds, spec.size, scale, tr, recal, schedule_fn, data.steps, phases)
    saver = None
    if backup_dir is not None:
        stopping = next(c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping))
        saver = backup.backup_callback(backup_dir, stopping, data.start, phases)  # after early stopping: its state
        callbacks.append(saver)
    hist = model.fit(
        data.ds,
        epochs=tr.epochs,
        steps_per_epoch=data.steps,
        verbose=verbose,
        shuffle=False,
        callbacks=callbacks + extra,
    )
    history = pd.DataFrame(hist.history)
    if saver is not None:  # the epochs before a resume too, in Keras' column order
        history = pd.DataFrame(saver.rows)
        history = history[list(hist.history)] if hist.history else history
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    return history


def _record(
    cfg: Profile,
    spec: RunSpec,
    tr: Training,
    data: _RunData,
    px,
    history,
    pred,
    seconds,
    model,
    recalibrated,
    data_info,
) -> dict:
    """What run.json records of a finished run."""
    best_epoch = int(history["val_loss"].idxmin()) + 1
    epochs_run = len(history)
    test = pred[pred.split == "preliminary_test"]
    bb = get_backbone(spec.backbone)
    return {
        "backbone": bb.key,
        "display": bb.display,
        "input_size": spec.size,
        "input_px": px,
        "seed": spec.seed,
        "weights": str(cfg.weights),
        "profile": cfg.name,
        "split_seed": spec.split_seed,
        "steps_per_epoch": data.steps,
        "steps_per_execution_used": steps_per_execution(data.steps, tr.steps_per_execution),
        "train_images": len(data.train),
        "train_images_oversampled": data.oversampled,
        "validation_images": len(data.val),
        "test_images": len(data.test),
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "val_accuracy": float(history["val_accuracy"].iloc[best_epoch - 1]),
        "test_accuracy": float((predict_labels(test["p_all"]) == test["y"]).mean()),
        **seconds,
        "images_per_second": (epochs_run - data.start_epoch) * data.steps * tr.batch_size / seconds["train_seconds"],
        "resumed_at_epoch": data.start_epoch,
        "batchnorm_layers": count_batchnorm(model),
        "batchnorm_recalibrated": recalibrated,
        "training": tr.model_dump(),
        "augment": cfg.augment.model_dump(),
        "input_scale": cfg.input_scale,
        "data": data_info,
        "environment": environment(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def save_model(model, path) -> None:
    """The trained network alone, without the optimizer: everything after training (Grad-CAM) only
    runs inference, and Adamax's two slots per weight would triple the file (InceptionResNet-V2:
    about 655 MB instead of 220 MB). The saved model shares the trained layers, nothing is copied."""
    import keras

    keras.Model(model.inputs, model.outputs, name=model.name).save(path)
