"""Benchmarks (not timed tests): `python -m alllib bench pipeline|training|ensemble|data [--profile P]`.

- pipeline: images/s of the tf.data input pipeline (decode + crop + resize + augment) against
  Keras' legacy ImageDataGenerator doing the same work on the same files, same machine, same run;
- training: training step time per backbone and input size with the real input pipeline (images
  decoded once per run, then gathered, augmented and batched every step, as in `training.fit`)
  against the same model fed from in-memory tensors (the pipeline's overhead, goal at most 5 %),
  and the one-off decoding time;
- ensemble: seconds to rebuild every ensemble of a finished study from cached probabilities;
- data: seconds to read and fingerprint a tree of the real data set's size (once per kernel).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from alllib import io
from alllib.method.dataset import (
    IMAGE_SUFFIXES,
    PRELIM_DIR,
    PRELIM_LABELS,
    data_fingerprint,
    load_manifest,
    manifest_training_table,
    read_cnmc,
    verify_manifest,
)
from alllib.method.models import build_model, get_backbone
from alllib.method.preprocessing import input_pixels, make_dataset, random_oversampling, subject_split
from alllib.method.training import PHASES, make_optimizer
from alllib.provenance import stamp
from alllib.results.analysis import ablation_benchmark
from alllib.rounding import fmt, pct
from alllib.study.prepare import prepare
from alllib.study.profile import load_profile
from alllib.use import predict as pr


def _train_table(profile: str, n: int | None = None):

    study = prepare(profile, progress=False)
    train = subject_split(study.table, 0).query("split == 'train'")
    return study, (train.sample(n=min(n, len(train)), random_state=0) if n else train)


def pipeline(profile: str = "smoke", batches: int = 30, batch_size: int = 8) -> pd.DataFrame:
    import tensorflow as tf

    study, train = _train_table(profile)
    scale, aug = study.cfg.input_scale, study.cfg.augment
    rows = []
    for size in (450, 300):
        ds, _ = make_dataset(train, size, scale, batch_size, seed=0, training=True, augment_cfg=aug)
        it = iter(ds)
        next(it)
        t0 = time.perf_counter()
        for _ in range(batches):
            next(it)
        tfdata = batches * batch_size / (time.perf_counter() - t0)
        idg = tf.keras.preprocessing.image.ImageDataGenerator(
            rotation_range=aug.rotation_deg,
            zoom_range=aug.zoom,
            width_shift_range=aug.shift,
            height_shift_range=aug.shift,
            horizontal_flip=aug.flips,
            vertical_flip=aug.flips,
            fill_mode="constant",
        )
        flow = idg.flow_from_dataframe(
            train.assign(cls=train["label"]),
            x_col="path",
            y_col="cls",
            target_size=(450, 450),
            batch_size=batch_size,
            class_mode="categorical",
            seed=0,
        )
        px = input_pixels(size, scale)
        off = (450 - size) // 2
        next(flow)
        t0 = time.perf_counter()
        for _ in range(batches):
            x, _ = next(flow)
            x = x[:, off : off + size, off : off + size]
            if px != size:
                x = tf.image.resize(x, (px, px), method="area").numpy()
        legacy = batches * batch_size / (time.perf_counter() - t0)
        rows.append(
            {
                "input": f"{size} px -> {px} px",
                "tf.data images/s": round(tfdata, 1),
                "ImageDataGenerator images/s": round(legacy, 1),
                "speed-up": round(tfdata / legacy, 2),
            }
        )
    return pd.DataFrame(rows)


def _step_clock():
    import keras

    class StepClock(keras.callbacks.Callback):
        """Wall-clock period between consecutive batch ends: a whole step, data fetch included."""

        def __init__(self):
            super().__init__()
            self.ends = []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())

        def periods(self) -> list[float]:
            return list(np.diff(self.ends))

    return StepClock()


def overhead(pipeline_rounds, memory_rounds) -> dict:
    """The pipeline's overhead in % of step time, from per-round lists of step periods: the median
    step of all rounds pooled for each feed (`pipeline_s`, `memory_s`: robust to the start of each
    fit and to the odd stalled step), their `overall` ratio, and the `lowest` and `highest` ratio of
    the rounds taken one by one, the timer's noise on this machine."""
    ratio = lambda p, m: 100 * (p / m - 1)  # noqa: E731
    per_round = [ratio(np.median(p), np.median(m)) for p, m in zip(pipeline_rounds, memory_rounds)]
    pipeline_s = float(np.median(np.concatenate(pipeline_rounds)))
    memory_s = float(np.median(np.concatenate(memory_rounds)))
    return {
        "pipeline_s": pipeline_s,
        "memory_s": memory_s,
        "overall": ratio(pipeline_s, memory_s),
        "lowest": float(min(per_round)),
        "highest": float(max(per_round)),
    }


def training(profile: str = "smoke", steps: int = 16, warmup: int = 3, rounds: int = 4, backbones=None) -> pd.DataFrame:
    """Steady-state step times, traced as demo and paper train (whatever the profile's run_eagerly)."""
    import keras
    import tensorflow as tf

    study, train = _train_table(profile)
    cfg = study.cfg
    bs = cfg.training.batch_size
    rows = []
    for name in backbones or cfg.backbones:
        for size in sorted(cfg.runs, reverse=True):
            px = input_pixels(size, cfg.input_scale)
            t0 = time.perf_counter()  # as in training.fit: decoded once, then gathered and augmented every step
            ds, n = make_dataset(
                train, size, cfg.input_scale, bs, seed=0, training=True, augment_cfg=cfg.augment, cache=True
            )
            decode = time.perf_counter() - t0
            x, y = next(iter(ds))
            # the same batches held in memory, with the pipeline's element spec (so one traced step serves both)
            memory = tf.data.Dataset.from_tensor_slices((x, y)).batch(bs).repeat()
            keras.utils.set_random_seed(0)
            model = build_model(name, px, cfg.weights)
            model.compile(
                optimizer=make_optimizer(cfg.training_for(name), 100),
                loss="categorical_crossentropy",
                metrics=["accuracy"],
            )
            model.fit(ds, epochs=1, steps_per_epoch=warmup, verbose=0, shuffle=False)  # traces the step once
            periods = {"pipeline": [], "in-memory": []}
            for _ in range(rounds):  # interleaved, so drift in machine load hits both alike
                for label, data in (("pipeline", ds), ("in-memory", memory)):
                    clock = _step_clock()
                    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=[clock])
                    periods[label].append(clock.periods())
            over = overhead(periods["pipeline"], periods["in-memory"])
            rows.append(
                {
                    "backbone": get_backbone(name).display,
                    "input": f"{size} px -> {px} px",
                    "step s (pipeline)": round(over["pipeline_s"], 4),
                    "step s (in-memory)": round(over["memory_s"], 4),
                    "images/s": round(bs / over["pipeline_s"], 1),
                    "decode once s": round(decode, 2),
                    "pipeline overhead %": round(over["overall"], 1),
                    "lowest round %": round(over["lowest"], 1),
                    "highest round %": round(over["highest"], 1),
                }
            )
    return pd.DataFrame(rows)


def record(table: pd.DataFrame, out, profile: str) -> None:
    """Write a benchmark table as CSV with where and when it was measured."""

    io.write_csv(out, stamp(table, profile, machine=True))


def ensemble(profile: str = "smoke") -> pd.DataFrame:

    study = prepare(profile, progress=False)
    runs = study.runs()
    res = ablation_benchmark(runs, sorted(study.cfg.runs), runs.seeds)
    return pd.DataFrame([res])


def data(profile: str = "paper", root=None, repeats: int = 3) -> pd.DataFrame:
    """Seconds to read and fingerprint a data tree of the real C-NMC-2019 size (what `prepare` does
    once per notebook kernel). Without `root`, a skeleton of the official tree is built from the
    shipped manifest: every one of the 15,114 files at its path with its size (sparse, no pixels;
    `read_cnmc` lists and parses names and `data_fingerprint` reads sizes, neither opens an image)."""
    import tempfile
    from pathlib import Path

    def timed(fn):
        best = np.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t0)
        return out, best

    with tempfile.TemporaryDirectory() as tmp:
        if root is None:
            manifest = load_manifest()
            for rel, size in zip(manifest["path"], manifest["bytes"]):
                p = Path(tmp) / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                with open(p, "wb") as fh:
                    fh.truncate(int(size))
            root = Path(tmp) / "C-NMC_Leukemia"
            prelim = sorted(
                (root / "validation_data/C-NMC_test_prelim_phase_data").iterdir(), key=lambda p: int(p.stem)
            )
            rows = [
                f"UID_{i % 60 + 1}_{i}_1_all,{p.name},1" if i % 3 else f"UID_H{i % 40 + 1}_{i}_1_hem,{p.name},0"
                for i, p in enumerate(prelim)
            ]
            (root / PRELIM_LABELS).write_text("Patient_ID,new_names,labels\n" + "\n".join(rows) + "\n")
        table, read_s = timed(lambda: read_cnmc(root))
        _, fp_s = timed(lambda: data_fingerprint(table, root))
    return pd.DataFrame(
        [
            {
                "images": len(table),
                "read_cnmc s": round(read_s, 3),
                "data_fingerprint s": round(fp_s, 3),
                "one read s": round(read_s + fp_s, 3),
            }
        ]
    )


NO_DATA = ("data.source=synthetic", "weights=none")  # the real profile's settings, without its data root
GPU_MODES = {  # Keras backend -> how the training step is compiled in this benchmark (first: XLA on)
    "tensorflow": ("xla", "graph"),  # jit_compile=True / a tf.function graph without XLA
    "jax": ("xla", "no jit"),  # jax.jit of the whole step (XLA) / Keras' JAX trainer op by op (XLA off)
    "torch": ("eager",),  # PyTorch eager: the no-XLA path on a machine without TensorFlow
}
CONCURRENCY = (1, 2, 4, 8)  # training runs side by side on the one GPU (`--runs-per-gpu`)


def _gpu_model(cfg, key: str, size: int, precision: str, mode: str):
    """One benchmark case's compiled model and a batch of random images for it (in device memory)."""
    import keras

    tr = cfg.training_for(key)
    bs, px = tr.batch_size, input_pixels(size, cfg.input_scale)
    keras.mixed_precision.set_global_policy("mixed_float16" if precision == "mixed" else "float32")
    model = build_model(key, px, "none")
    model.compile(
        optimizer=make_optimizer(tr, 1000),
        loss="categorical_crossentropy",
        jit_compile=mode == "xla",  # "eager" is PyTorch's own mode, "no jit" JAX's op-by-op one
    )
    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(rng.integers(0, 256, (bs, px, px, 3)).astype("float32"))
    y = keras.ops.convert_to_tensor(np.eye(2, dtype="float32")[rng.integers(0, 2, bs)])
    return model, x, y, bs, px


def _gpu_case(cfg, key: str, size: int, precision: str, mode: str, steps: int, warmup: int) -> dict:
    """One case run alone: images/s of the training step and of inference (batch 32)."""
    import gc

    import keras

    row = {"backend": keras.backend.backend(), "backbone": key, "input_size": size}
    row.update({"precision": precision, "compile": mode, "concurrent_runs": 1})
    try:
        model, x, y, bs, px = _gpu_model(cfg, key, size, precision, mode)
        row.update({"input_px": px, "batch_size": bs})
        if mode == "xla" and not model.jit_compile:  # Keras fell back: say so, not "xla"
            row["compile"] = "graph (XLA unsupported)"
        t0 = time.perf_counter()
        for _ in range(warmup):
            model.train_on_batch(x, y)  # returns the loss as a number: the step has finished
        row["first_steps_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        row["train_images_per_s"] = round(steps * bs / (time.perf_counter() - t0), 1)
        xp = keras.ops.convert_to_tensor(np.random.default_rng(1).integers(0, 256, (32, px, px, 3)).astype("float32"))
        np.asarray(model.predict_on_batch(xp))
        t0 = time.perf_counter()
        for _ in range(max(2, steps // 4)):
            np.asarray(model.predict_on_batch(xp))
        row["predict_images_per_s"] = round(max(2, steps // 4) * 32 / (time.perf_counter() - t0), 1)
        row["status"] = "ok"
    except Exception as exc:  # one failing case must not cost the others (OOM, a backend gap)
        row["status"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    finally:
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()
        gc.collect()
    return row


def gpu_worker(spec: dict) -> dict:
    """One of several training runs side by side on the GPU (a process of its own, started by
    `concurrent_case`): compile and warm up, say so (a file), wait until every run has, then train for
    `window` seconds and report the images trained and the seconds taken."""
    from pathlib import Path

    cfg = load_profile(spec["profile"], NO_DATA)
    model, x, y, bs, _ = _gpu_model(cfg, spec["backbone"], spec["size"], spec["precision"], spec["compile"])
    for _ in range(spec["warmup"]):
        model.train_on_batch(x, y)
    ready = Path(spec["barrier"])
    (ready / f"ready_{spec['index']}").touch()
    deadline = time.time() + spec["wait"]
    while len(list(ready.glob("ready_*"))) < spec["runs"]:
        if time.time() > deadline:
            raise TimeoutError(f"the other runs were not ready within {spec['wait']} s")
        time.sleep(0.05)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < spec["window"]:
        model.train_on_batch(x, y)
        steps += 1
    return {"images": steps * bs, "seconds": time.perf_counter() - t0}


def concurrent_case(
    profile: str, key: str, size: int, precision: str, mode: str, runs: int, window: float, warmup: int = 2
) -> dict:
    """`runs` training runs of one case side by side on the one GPU, each its own process taking GPU memory
    as it grows (as `--runs-per-gpu` runs them): their aggregate training images/s while all of them train."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    import keras

    from alllib.study.runner import GROWTH_ENV

    cfg = load_profile(profile, NO_DATA)
    row = {"backend": keras.backend.backend(), "backbone": key, "input_size": size, "precision": precision}
    row.update({"compile": mode, "concurrent_runs": runs, "batch_size": cfg.training_for(key).batch_size})
    row["input_px"] = input_pixels(size, cfg.input_scale)
    with tempfile.TemporaryDirectory(prefix="alllib-bench-") as barrier:
        spec = {"profile": profile, "backbone": key, "size": size, "precision": precision, "compile": mode}
        spec.update({"runs": runs, "window": window, "warmup": warmup, "barrier": barrier, "wait": 600})
        env = {**os.environ, **GROWTH_ENV, "JAX_COMPILATION_CACHE_DIR": str(Path(tempfile.gettempdir()) / "jaxc")}
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "alllib.evidence.bench", json.dumps({**spec, "index": i})],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(runs)
        ]
        outs = [p.communicate() for p in procs]
    failed = [
        err.strip().splitlines()[-1] if err.strip() else f"exit {p.returncode}"
        for p, (_, err) in zip(procs, outs)
        if p.returncode
    ]
    if failed:
        row["status"] = f"{len(failed)} of {runs} runs failed: {failed[0][:160]}"
        return row
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    row["train_images_per_s"] = round(sum(r["images"] / r["seconds"] for r in results), 1)
    row["status"] = "ok"
    return row


def gpu_plan(backend: str, keys, sizes, precisions, concurrency) -> list[tuple]:
    """The cases of `gpu`, most needed first, so that a time budget cuts the least useful: each precision
    with XLA at the first size (the rates the estimate needs), then several runs side by side at the
    first size in the last precision listed, then the other sizes, then XLA off at the first size."""
    modes = GPU_MODES[backend]
    first, rest = sizes[0], list(sizes[1:])
    plan = [("alone", key, first, p, modes[0], 1) for p in precisions for key in keys]
    plan += [("together", key, first, precisions[-1], modes[0], k) for k in concurrency if k > 1 for key in keys]
    plan += [("alone", key, size, p, modes[0], 1) for size in rest for p in precisions for key in keys]
    plan += [("alone", key, first, precisions[0], mode, 1) for mode in modes[1:] for key in keys]
    return plan


def gpu(
    profile: str = "paper",
    seconds: float = 420.0,
    steps: int = 12,
    warmup: int = 2,
    backbones=None,
    sizes=(300, 450),
    precisions=("fp32", "mixed"),
    concurrency=CONCURRENCY,
    window: float = 10.0,
    out=None,
) -> pd.DataFrame:
    """For a GPU when one is lent: images/s of the training step (Adamax with the cyclic schedule, the
    profile's batch size, weights=none) and of inference (batch 32), per backbone, input size, precision
    (fp32 | mixed_float16) and compilation (XLA on and off, GPU_MODES), on the active Keras backend; and the
    aggregate training images/s of 2, 4 and 8 runs side by side on the one GPU (`concurrency`, each its own
    process, over `window` seconds while all of them train). Inputs are random uint8 images already in
    memory: this measures the network, not the input pipeline (`bench pipeline` and `bench data` measure
    that). Cases run in `gpu_plan`'s order and no new case starts after `seconds`; with `out`, the table
    is rewritten after every case, so a cut-off run keeps its rows."""
    import keras

    cfg = load_profile(profile, NO_DATA)  # the benchmark feeds random images: no data set needed
    backend = keras.backend.backend()
    keys = [get_backbone(b).key for b in (backbones or cfg.backbones)]
    rows, t_start = [], time.perf_counter()
    for kind, key, size, precision, mode, runs in gpu_plan(backend, keys, list(sizes), list(precisions), concurrency):
        if time.perf_counter() - t_start > seconds:
            print(f"bench gpu: {fmt(seconds, 0)} s spent, not starting {precision} {mode} {size} px {key} x{runs}")
            continue
        if kind == "alone":
            steps_here = steps if mode == GPU_MODES[backend][0] else max(2, steps // 4)  # XLA off is slow
            row = _gpu_case(cfg, key, size, precision, mode, steps_here, warmup)
        else:
            row = concurrent_case(profile, key, size, precision, mode, runs, window, warmup)
        rows.append(row)
        print(row, flush=True)
        if out:
            record(pd.DataFrame(rows), out, profile)
    return pd.DataFrame(rows)


def packing_speedup(table: pd.DataFrame) -> pd.DataFrame:
    """From a `gpu` table: per backend, backbone and number of runs side by side, the aggregate training
    rate over the same case's rate alone (the speed-up of packing that many runs onto the GPU)."""
    ok = table[table["status"] == "ok"]
    if "concurrent_runs" not in ok:
        return pd.DataFrame(columns=["backend", "backbone", "concurrent_runs", "speedup"])
    together = ok[ok["concurrent_runs"] > 1]
    alone = ok[ok["concurrent_runs"] == 1].set_index(["backend", "backbone", "input_size", "precision", "compile"])
    rows = []
    for _, r in together.iterrows():
        k = (r["backend"], r["backbone"], r["input_size"], r["precision"], r["compile"])
        if k in alone.index:
            rate = alone.loc[k, "train_images_per_s"]
            rate = rate.iloc[0] if isinstance(rate, pd.Series) else rate
            rows.append(
                {
                    "backend": r["backend"],
                    "backbone": r["backbone"],
                    "concurrent_runs": int(r["concurrent_runs"]),
                    "speedup": float(r["train_images_per_s"]) / float(rate),
                }
            )
    return pd.DataFrame(rows, columns=["backend", "backbone", "concurrent_runs", "speedup"])


def paper_matrix_hours(table: pd.DataFrame, profile: str = "paper", epochs: int | None = None) -> pd.DataFrame:
    """The whole run matrix of `profile` on one device, from a `gpu` table: per run and epoch, the
    oversampled training set at the measured training rate plus the validation set at the measured
    inference rate; image counts from the official manifest with the study's own split and oversampling.
    One row per backend, precision and compilation with one run at a time ("runs per GPU" 1), then one per
    number of runs side by side that the table measured: each backbone's runs sped up by its measured
    packing speed-up (`packing_speedup`; a backbone not measured at that packing takes the mean of those
    that were). `epochs`: the epochs each run lasts (default: the profile's maximum, i.e. no early stop)."""

    cfg = load_profile(profile, NO_DATA)
    split = subject_split(manifest_training_table(), 0)
    train = split[split["split"] == "train"]
    n_train = len(random_oversampling(train["y"].to_numpy(), 0))
    n_val = int((split["split"] == "validation").sum())
    n_epochs = epochs or cfg.training.epochs
    ok = table[table["status"] == "ok"]
    if "concurrent_runs" in ok:
        ok = ok[ok["concurrent_runs"].fillna(1) == 1]
    speedups = packing_speedup(table)
    out = []
    for (backend, precision, mode), t in ok.groupby(["backend", "precision", "compile"]):
        rate = t.set_index(["backbone", "input_size"])
        per_backbone, missing, extrapolated = {}, [], []
        for size, seeds in cfg.runs.items():
            for key in cfg.backbones:
                if (key, int(size)) in rate.index:
                    r = rate.loc[(key, int(size))]
                    train_rate, predict_rate = r["train_images_per_s"], r["predict_images_per_s"]
                else:  # the other size of the same network, its rate scaled by the pixel ratio
                    other = t[t["backbone"] == key]
                    if other.empty:
                        missing.append(f"{key} {size}")
                        continue
                    r = other.iloc[0]
                    ratio = (r["input_px"] / input_pixels(int(size), cfg.input_scale)) ** 2
                    train_rate, predict_rate = r["train_images_per_s"] * ratio, r["predict_images_per_s"] * ratio
                    extrapolated.append(f"{key} {size} from {r['input_size']}")
                per_epoch = n_train / train_rate + n_val / predict_rate
                per_backbone[key] = per_backbone.get(key, 0.0) + len(seeds) * n_epochs * per_epoch / 3600
        mine = speedups[speedups["backend"] == backend]
        for runs in [1, *sorted(set(mine["concurrent_runs"]))]:
            at = mine[mine["concurrent_runs"] == runs].set_index("backbone")["speedup"]
            assumed = [k for k in per_backbone if runs > 1 and k not in at.index]
            factor = {k: 1.0 if runs == 1 else float(at.get(k, at.mean())) for k in per_backbone}
            hours = sum(h / factor[k] for k, h in per_backbone.items())
            out.append(
                {
                    "backend": backend,
                    "precision": precision,
                    "compile": mode,
                    "runs per GPU": runs,
                    "train images/epoch": n_train,
                    "validation images": n_val,
                    "epochs per run": n_epochs,
                    "hours": round(hours, 1) if not missing else None,
                    "epochs within 8 h": int(8 * n_epochs / hours) if hours and not missing else None,
                    "extrapolated (pixel ratio)": ", ".join(extrapolated),
                    "speed-up assumed (mean of the others)": ", ".join(assumed),
                    "missing": ", ".join(missing),
                }
            )
    return pd.DataFrame(out)


def gpu_note(table: pd.DataFrame, profile: str = "paper") -> str:
    """What a recorded `gpu` table says about the paper's run matrix on that GPU, in words."""

    cfg = load_profile(profile, NO_DATA)
    hours = paper_matrix_hours(table, profile)
    backends = sorted(set(table["backend"]))
    n_runs = sum(len(seeds) for seeds in cfg.runs.values()) * len(cfg.backbones)
    text = (
        f"Each rate is the mean over a few steps at the profile's batch size ({int(table['batch_size'].iloc[0])}), "
        "images already in device memory, so it is the network's rate, not the input pipeline's."
    )
    if "tensorflow" not in backends:
        text += (
            f" Measured through Keras 3 on {' and '.join(backends)}: the GPU machine had no TensorFlow, so XLA "
            "ran through JAX and the uncompiled paths are JAX without jit or eager PyTorch, where measured; the "
            "study itself trains on TensorFlow."
        )
    alone = table[table["concurrent_runs"].fillna(1) == 1] if "concurrent_runs" in table else table
    cases = [f"{p} {c} ({b})" for (b, p, c), _ in alone.groupby(["backend", "precision", "compile"])]
    text += f" Cases measured: {', '.join(cases)}."
    for _, h in hours.dropna(subset=["hours"]).iterrows():
        text += (
            f" With {h['backend']} {h['precision']} {h['compile']}"
            + (f", {h['runs per GPU']} runs side by side on the GPU" if h["runs per GPU"] > 1 else "")
            + f", the paper's {n_runs} runs at their maximum of "
            f"{h['epochs per run']} epochs ({h['train images/epoch']} oversampled training and "
            f"{h['validation images']} validation images per epoch) would take **{h['hours']} h**; 8 h allow "
            f"{h['epochs within 8 h']} epochs per run"
            + (
                f" ({h['extrapolated (pixel ratio)']}, rate scaled by the pixel ratio)"
                if h["extrapolated (pixel ratio)"]
                else ""
            )
            + (
                f" (the packing speed-up of {h['speed-up assumed (mean of the others)']} assumed: the mean of the "
                "backbones measured)"
                if h["speed-up assumed (mean of the others)"]
                else ""
            )
            + "."
        )
    patience = cfg.training.patience
    text += f" Early stopping at patience {patience} ends a run after {patience + 1} epochs at the earliest."
    return text


def gpu_markdown(table: pd.DataFrame) -> str:
    """A recorded `gpu` table as the README shows it: training images/s per backbone (rows) and
    backend, compilation, precision and input size (columns); `-` where a case was not measured."""
    ok = table[table["status"] == "ok"].copy()
    runs = ok["concurrent_runs"].fillna(1).astype(int) if "concurrent_runs" in ok else pd.Series(1, index=ok.index)
    ok["case"] = (
        ok["backend"] + " " + ok["compile"] + " " + ok["precision"] + " " + ok["input_size"].astype(str) + " px"
    ) + runs.map(lambda k: f" x{k} runs" if k > 1 else "")
    wide = ok.pivot_table(index="backbone", columns="case", values="train_images_per_s", sort=False)
    lines = ["| backbone | " + " | ".join(wide.columns) + " |", "|---" * (len(wide.columns) + 1) + "|"]
    for key, row in wide.iterrows():
        lines.append(f"| {key} | " + " | ".join("-" if pd.isna(v) else f"{fmt(v, 0)}" for v in row) + " |")
    return "\n".join(lines)


DATA_STEPS = ("verify fast", "verify full", "read_cnmc", "data_fingerprint", "subject_split", "epoch 300 px")


def own_manifest(root) -> pd.DataFrame:
    """path, bytes and sha256 of every image under `root` (C-NMC_Leukemia/), in the layout of the
    official manifest: what `verify` checks a synthetic tree against (the official one names other files)."""
    import hashlib
    from pathlib import Path

    root = Path(root)
    rows = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            rows.append(
                {"path": f"{root.name}/{p.relative_to(root)}", "bytes": p.stat().st_size, "sha256": h.hexdigest()}
            )
    return pd.DataFrame(rows)


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def data_step(step: str, root: str, manifest: str) -> dict:
    """One step of `data_scaling` in this process: seconds, peak resident memory and the peak before
    the step (the interpreter and its imports). Run by `data_scaling` in a fresh process per step."""

    if step == "epoch 300 px":
        import tensorflow as tf  # noqa: F401  (imported before the baseline is read)

    base = _rss_mb()
    t0 = time.perf_counter()
    n = 0
    if step.startswith("verify"):
        report = verify_manifest(
            root, full=step == "verify full", manifest=pd.read_csv(manifest, sep="\t"), progress=False
        )
        if not report["ok"]:
            raise RuntimeError(f"{root} does not match its own manifest {manifest}")
        n = report["present"]
    else:
        table = read_cnmc(root)
        n = len(table)
        if step == "data_fingerprint":
            t0 = time.perf_counter()
            data_fingerprint(table, root)
        elif step == "subject_split":
            t0 = time.perf_counter()
            subject_split(table, 0)
        elif step == "epoch 300 px":
            cfg = load_profile("paper", NO_DATA)
            train = subject_split(table, 0).query("split == 'train'")
            t0 = time.perf_counter()
            bs = cfg.training.batch_size
            ds, n = make_dataset(
                train, 300, cfg.input_scale, bs, seed=0, training=True, augment_cfg=cfg.augment, cache=False
            )
            for _ in ds.take(-(-n // bs)):
                pass
    return {
        "step": step,
        "images": n,
        "seconds": round(time.perf_counter() - t0, 2),
        "baseline MB": round(base),
        "peak MB": round(_rss_mb()),
    }


def _drop_page_cache() -> str:
    """Empty the kernel's page cache before a step, so that it reads from disk as a first read does
    ('cold'); where that is not permitted (not root), say so ('warm': the files may be cached)."""
    import os

    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return "cold"
    except OSError:
        return "warm"


def data_scaling(roots, steps=DATA_STEPS) -> pd.DataFrame:
    """Each step of the data layer (verify in fast and full mode, read_cnmc, the
    fingerprint, the split, one streamed epoch of the training pipeline at 300 px) on each data root,
    each in a fresh process and, where permitted, with the page cache emptied first (a first read from
    disk): seconds, peak resident memory, and the memory the step adds to its process's imports.
    `roots`: synthetic trees (python -m alllib synthesize --format bmp --scale S); the tree's own
    manifest, which `verify` checks against, is written once beside each as own_manifest.tsv."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    rows = []
    for root in roots:
        root = Path(root)
        manifest = root.parent / "own_manifest.tsv"
        if not manifest.is_file():
            with io.atomic_path(manifest) as tmp:
                own_manifest(root).to_csv(tmp, sep="\t", index=False)
        scale = (
            json.loads((root / "SYNTHETIC.json").read_text())["scale"] if (root / "SYNTHETIC.json").is_file() else None
        )
        gb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e9
        for step in steps:
            cache = _drop_page_cache()
            call = f"data_step({step!r}, {str(root)!r}, {str(manifest)!r})"
            code = f"import json; from alllib.evidence.bench import data_step; print(json.dumps({call}))"
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"bench data step {step!r} on {root} failed:\n{proc.stderr[-2000:]}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row.update({"scale": scale, "tree GB": round(gb, 2), "added MB": row["peak MB"] - row["baseline MB"]})
            row["page cache"] = cache
            print(row, flush=True)
            rows.append(row)
    cols = ["scale", "tree GB", "step", "images", "seconds", "baseline MB", "peak MB", "added MB", "page cache"]
    return pd.DataFrame(rows)[cols]


def data_growth(table: pd.DataFrame) -> pd.DataFrame:
    """How each step's cost grows with the number of images, from a `data_scaling` table: the
    exponent b of seconds ~ images^b (least squares on the logs; 1 = linear), the seconds per 1,000
    images at the largest scale, and the memory each step adds at the smallest and largest scale."""
    rows = []
    for step, t in table.groupby("step", sort=False):
        t = t.sort_values("images")
        ok = t["seconds"] > 0
        slope = np.polyfit(np.log(t.loc[ok, "images"]), np.log(t.loc[ok, "seconds"]), 1)[0] if ok.sum() >= 2 else np.nan
        last, first = t.iloc[-1], t.iloc[0]
        rows.append(
            {
                "step": step,
                "growth exponent": round(float(slope), 2),
                "s per 1000 images": round(1000 * last["seconds"] / last["images"], 3),
                "added MB, smallest scale": int(first["added MB"]),
                "added MB, largest scale": int(last["added MB"]),
            }
        )
    return pd.DataFrame(rows)


def predict(profile: str = "demo", images: int = 256) -> pd.DataFrame:
    """Images/s of `predict` for a finished study's whole ensemble (every member, Eq. 1) at each
    input size, on the first `images` preliminary-test images: decoding, the input path and the
    networks, after one warm-up batch per member."""

    study = prepare(profile, progress=False)
    files = pr.collect_images([study.data_root / PRELIM_DIR])[:images]
    rows = []
    runs = study.runs()
    for size in sorted(study.cfg.runs):
        ens = pr.load_ensemble(study, size, runs=runs)
        pr.predict(ens, files[:32], progress=False)  # warm-up: models loaded and traced once
        t0 = time.perf_counter()
        pr.predict(ens, files, progress=False)
        seconds = time.perf_counter() - t0
        rows.append(
            {
                "input size": size,
                "input px": input_pixels(size, study.cfg.input_scale),
                "members": len(ens.members),
                "images": len(files),
                "seconds": round(seconds, 1),
                "images/s (ensemble)": round(len(files) / seconds, 1),
            }
        )
    return pd.DataFrame(rows)


def run_phases(runs) -> pd.DataFrame:
    """Where this build's training runs spent their time: one row per backbone and input size, the
    mean wall seconds of each phase that run.json records (`phases`), the measured wall time per
    run and the number of runs; runs recorded before phases were (no `phases`) are left out."""
    rows = []
    for r in runs:
        phases = getattr(r, "phases", None)
        if phases:
            rows.append({"backbone": r.display, "size": r.input_size, **phases, "wall per run": r.wall_seconds})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).fillna(0.0)
    known = [p for p in PHASES if p in frame] + [c for c in frame if c not in PHASES]  # a run's order
    frame = frame[
        ["backbone", "size", *[c for c in known if c not in ("backbone", "size", "wall per run")], "wall per run"]
    ]
    table = frame.groupby(["backbone", "size"], sort=False).mean().reset_index()
    table.insert(2, "runs", frame.groupby(["backbone", "size"], sort=False).size().to_numpy())
    return table


def phase_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c not in ("backbone", "size", "runs", "wall per run")]


def phase_sentence(table: pd.DataFrame) -> str:
    """The table's answer in words: what share of all runs' wall time the training steps took, and
    the largest other phase."""
    if table.empty:
        return "No run of this build recorded its phases (runs trained before phases were recorded are reused)."
    weights = table["runs"].to_numpy()
    totals = {c: float((table[c] * weights).sum()) for c in phase_columns(table)}
    wall = float((table["wall per run"] * weights).sum())
    steps = totals.get("training steps", 0.0)
    other = max((c for c in totals if c != "training steps"), key=totals.get)
    return (
        f"Over the {int(weights.sum())} runs of this build the training steps took {pct(steps / wall, 0)} of the "
        f"{fmt(wall / 60, 1)} min of run time; the largest other phase was {other} ({pct(totals[other] / wall, 0)}). "
        "The phases add up to each run's measured wall time by construction: what no phase holds is shown as "
        "'other (not measured apart)'."
    )


def phase_shares(table: pd.DataFrame) -> pd.DataFrame:
    """One row per phase: its mean seconds per run over all of this build's runs, and its share of
    their wall time (the figure gives the split per backbone and size)."""
    weights = table["runs"].to_numpy()
    wall = float((table["wall per run"] * weights).sum())
    rows = [
        {
            "phase": c,
            "seconds per run": round(float((table[c] * weights).sum()) / weights.sum(), 1),
            "share of run time": f"{pct(float((table[c] * weights).sum()) / wall, 1)}",
        }
        for c in phase_columns(table)
    ]
    return pd.DataFrame(rows).set_index("phase")


if __name__ == "__main__":  # one run of `concurrent_case`, in a process of its own
    import json
    import sys

    print(json.dumps(gpu_worker(json.loads(sys.argv[1]))), flush=True)
