"""Using the trained ensemble: predict new cells and write the challenge submission.

`load_ensemble` picks a finished study's models at one input size and seed, with their weights:
WEN-kappa with leak-free (validation) weights by default, at the input size whose ensemble scores
the higher balanced accuracy on validation. `predict` runs every member on image files through the
study's own input path (`preprocessing.load_image`: the full 450 px image, or its 300 px centre
crop, then the profile's input scale), batched through tf.data, and combines them by Eq. 1.
`submission` writes the C-NMC-2019 challenge's `isbi_valid.predict` (one 1 (ALL) or 0 (Hem) per
line, in the numeric order of the image names) and its zip. `export` writes the ensemble as one
Keras model (raw uint8 image in, the study's crop and resize inside, the members, their weighted
mean out), as `.keras` and as a TensorFlow SavedModel whose `serve` endpoint loads without alllib.

Images: BMP, PNG or JPEG. 450 x 450 is the training size. 600 x 600, the size of the final-phase
test images, is centre-cropped to 450 first, as the challenge's published solutions do. Any other
size is refused unless `resize=True` (then resized to 450). Grayscale or RGBA images are converted
to RGB with a warning.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from alllib import io
from alllib.errors import ConfigError, DataError, StudyError
from alllib.method.dataset import FINAL_IMAGE_SIDE, IMAGE_SIDE, IMAGE_SUFFIXES
from alllib.method.ensemble import WeightSource, ensemble_name, ensemble_predictions, model_weights
from alllib.method.metrics import evaluate, predict_labels
from alllib.method.models import get_backbone, load_model, predict_batches, preprocessing_layer
from alllib.method.preprocessing import crop_and_scale, input_pixels
from alllib.results.gradcam import class_activation_maps, ensemble_map
from alllib.study.prepare import prepare, prepare_profile
from alllib.study.profile import profile_from

if TYPE_CHECKING:  # names used in annotations only
    from alllib.study.runs import RunSet

FINAL_CROP_NOTE = (
    f"{FINAL_IMAGE_SIDE} x {FINAL_IMAGE_SIDE} images (the final-phase test size) are centre-cropped to "
    f"{IMAGE_SIDE} x {IMAGE_SIDE} first, as the challenge's published solutions do"
)
PREDICT_METHODS = ("wen-kappa", "wen-f1", "wen-auc", "soft-vote")
SUBMISSION_FILE = "isbi_valid.predict"


@dataclass
class Member:
    backbone: str  # display name, as in the paper's tables
    run_dir: Path
    weight: float


@dataclass
class Ensemble:
    size: int  # 450 (full image) or 300 (centre crop)
    scale: float  # the profile's input scale
    method: str
    source: str  # where the weights come from: validation (leak-free) or test (the paper's)
    seed: int
    profile: str
    synthetic: bool
    members: list[Member] = field(default_factory=list)

    @property
    def weights_source(self) -> str:
        how = "equal weights" if self.method == "soft-vote" else f"weights from {self.source}"
        return f"{ensemble_name(self.method)}, {how} (profile {self.profile}, {self.size} px, seed {self.seed})"


def _validation_ba(preds: dict, method: str) -> float:

    p, _ = ensemble_predictions(preds, method, WeightSource.VALIDATION, split="validation")
    return evaluate(p["y"].to_numpy(int), p["p_all"].to_numpy())["BA"]


def open_study(study_dir=None, profile: str = "demo", overrides=(), data_dir=None, results_dir=None):
    """A finished study, given as its results folder (results/<profile>, which holds study.json) or
    as a profile with its data and results folder, as `python -m alllib study` takes them."""

    if study_dir is None:
        return prepare(profile, overrides, data_dir, results_dir, progress=False)
    folder = Path(study_dir)
    record = folder / "study.json"
    if not record.is_file():
        raise ConfigError(
            f"{folder} is not a finished study's results folder: it has no study.json (run the study first)"
        )
    saved = io.read_json(record, "run the study again (make book), which rewrites it from the finished runs")
    data = None if saved["data"].get("synthetic") else saved["data"]["root"]
    return prepare_profile(profile_from(saved["profile"], list(overrides), data), folder.parent, progress=False)


def load_ensemble(
    study,
    size: int | None = None,
    method: str = "wen-kappa",
    source: str = "validation",
    seed: int | None = None,
    runs: RunSet | None = None,
) -> Ensemble:
    """The ensemble of a finished study's runs at `size` and `seed` (default: the size whose
    ensemble has the higher validation balanced accuracy, the first seed). Refuses a study whose runs
    are unfinished, naming them and the command that trains them. `runs`: the study's runs where the
    caller has already loaded them."""
    if method not in PREDICT_METHODS:
        raise ConfigError(f"unknown ensemble {method!r} for prediction: expected one of {', '.join(PREDICT_METHODS)}")
    if size is not None and size not in study.cfg.runs:
        raise ConfigError(f"the study trained no runs at {size} px: its sizes are {sorted(study.cfg.runs)}")
    runs = runs if runs is not None else study.runs()  # refuses unfinished runs, naming them and the command
    sizes = [size] if size is not None else sorted(study.cfg.runs)
    candidates = {}
    for s in sizes:
        r = seed if seed is not None else min(study.cfg.runs[s])
        preds = runs.at(s, r)
        if len(preds) < 2:
            raise StudyError(f"an ensemble needs two backbones at {s} px, seed {r}; the study has {len(preds)}")
        candidates[s] = (r, preds)
    chosen = max(candidates, key=lambda s: _validation_ba(candidates[s][1], method)) if size is None else size
    r, preds = candidates[chosen]
    weights = {n: 1.0 for n in preds} if method == "soft-vote" else model_weights(preds, method[4:], source)
    by_name = {run.display: run.folder for run in runs.where(chosen, r)}
    return Ensemble(
        size=chosen,
        scale=study.cfg.input_scale,
        method=method,
        source=source,
        seed=r,
        profile=study.cfg.name,
        synthetic=bool(study.data_info.get("synthetic")),
        members=[Member(n, by_name[n], float(weights[n])) for n in preds],
    )


def _natural_key(p: Path):
    return (0, int(p.stem), p.name) if p.stem.isdigit() else (1, 0, p.name)


def collect_images(inputs) -> list[Path]:
    """Image files named by `inputs` (files or folders, a folder's images in numeric-then-name order)."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            entries = sorted(p.iterdir(), key=_natural_key)
            found = [q for q in entries if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES]
            skipped = [q.name for q in entries if q not in found and not q.name.startswith(".")]
            if not found:
                raise DataError(f"folder {p} holds no images: expected {', '.join(IMAGE_SUFFIXES)} files")
            if skipped:
                warnings.warn(
                    f"{p}: skipped {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} that are not "
                    f"{'/'.join(IMAGE_SUFFIXES)} files (folders are not searched): {', '.join(skipped[:5])}"
                    + (" ..." if len(skipped) > 5 else ""),
                    stacklevel=2,
                )
            files += found
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(f"{p} is not an image file: expected one of {', '.join(IMAGE_SUFFIXES)}")
            files.append(p)
        else:
            raise DataError(f"{p} does not exist: expected an image file or a folder of images")
    if not files:
        raise DataError("no images given: name image files or folders")
    return files


CONVERSIONS = {  # the image modes predict accepts, and what it does to make them RGB (PIL's conversion)
    "RGB": None,
    "L": "grey copied to the three channels",
    "1": "black and white copied to the three channels",
    "P": "its palette applied",
    "RGBA": "its alpha channel dropped",
    "LA": "grey copied to the three channels, its alpha channel dropped",
    "PA": "its palette applied, its alpha channel dropped",
    "CMYK": "converted from CMYK by PIL's formula (colours may shift)",
}
FORMATS = ("BMP", "PNG", "JPEG")  # the contents accepted, whatever the file's suffix says


def read_rgb(path: Path) -> np.ndarray:
    """The image as the network sees it before cropping: uint8 RGB, decoded by PIL with every mode
    converted faithfully (a palette applied, for one; TensorFlow's decoder ignores BMP palettes)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def check_image(path: Path, resize: bool = False) -> str:
    """Open `path` fully and say how it enters the network: 'as is', 'crop 600' or 'resize'.
    Raises DataError naming the file for an unreadable or truncated image, contents other than BMP,
    PNG or JPEG, a mode that cannot be made RGB faithfully (16-bit, float), or a size other than 450
    or 600 px square without `resize`. Warns how a non-RGB image is converted."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            mode, size, fmt = im.mode, im.size, im.format
    except Exception as exc:
        raise DataError(f"cannot read image {path}: {type(exc).__name__}: {exc} (unreadable or truncated)") from None
    if fmt not in FORMATS:
        raise DataError(f"{path} holds a {fmt} image: expected {', '.join(FORMATS)} contents (convert it first)")
    if mode not in CONVERSIONS:
        raise DataError(
            f"{path} is a {mode} image, which cannot be made 8-bit RGB faithfully: expected one of "
            f"{', '.join(CONVERSIONS)} (convert it to 8-bit RGB first)"
        )
    if CONVERSIONS[mode]:
        warnings.warn(f"{path} is {mode}, not RGB: converted to RGB ({CONVERSIONS[mode]})", stacklevel=2)
    if size == (IMAGE_SIDE, IMAGE_SIDE):
        return "as is"
    if size == (FINAL_IMAGE_SIDE, FINAL_IMAGE_SIDE):
        return "crop 600"
    if resize:
        return "resize"
    raise DataError(
        f"{path} is {size[0]} x {size[1]} px: expected {IMAGE_SIDE} x {IMAGE_SIDE} (C-NMC training and preliminary "
        f"test) or {FINAL_IMAGE_SIDE} x {FINAL_IMAGE_SIDE} (final test, centre-cropped to {IMAGE_SIDE}); pass "
        f"--resize to resize other sizes to {IMAGE_SIDE} x {IMAGE_SIDE}"
    )


def _dataset(paths: list[Path], resize_flags: list[bool], size: int, scale: float, batch_size: int):
    """tf.data over the files (decoded by PIL): other sizes resized to 450 where flagged, then exactly the study's
    `load_image` path (centre crop to `size`, which also takes the 450 centre of a 600 image, and the
    input scale)."""
    import tensorflow as tf

    px = input_pixels(size, scale)

    def images():  # decoded by PIL (`read_rgb`), in order
        for p, r in zip(paths, resize_flags):
            yield read_rgb(p), r

    def load(img, resize):
        img = tf.cond(
            resize,
            lambda: tf.cast(
                tf.clip_by_value(tf.round(tf.image.resize(img, (IMAGE_SIDE, IMAGE_SIDE))), 0, 255), tf.uint8
            ),
            lambda: img,
        )
        return crop_and_scale(img, size, px)

    opts = tf.data.Options()
    opts.deterministic = True
    signature = (tf.TensorSpec((None, None, 3), tf.uint8), tf.TensorSpec((), tf.bool))
    ds = tf.data.Dataset.from_generator(images, output_signature=signature).with_options(opts)
    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def predict(ens: Ensemble, paths, resize: bool = False, batch_size: int = 32, progress: bool = True) -> pd.DataFrame:
    """One row per image: path, how it entered the network, p(ALL) of each member, the ensemble's
    p(ALL) and label, and where the ensemble's weights come from."""
    from tqdm.auto import tqdm

    paths = [Path(p) for p in paths]
    how = [check_image(p, resize) for p in paths]
    flags = [h == "resize" for h in how]
    out = pd.DataFrame({"path": [str(p) for p in paths], "input": how})
    n_batches = -(-len(paths) // batch_size)
    bar = tqdm(total=n_batches * len(ens.members), desc="predicting", unit="batch", disable=not progress)
    import keras

    class Progress(keras.callbacks.Callback):
        def on_predict_batch_end(self, batch, logs=None):
            bar.update(1)

    for m in ens.members:
        model = load_model(m.run_dir / "model.keras")
        ds = _dataset(paths, flags, ens.size, ens.scale, batch_size)
        out[f"p_all {m.backbone}"] = predict_batches(model, ds, callbacks=[Progress()])[:, 1].astype(float)
    bar.close()
    w = np.array([m.weight for m in ens.members], float)
    member_cols = [f"p_all {m.backbone}" for m in ens.members]
    out["p_all"] = out[member_cols].to_numpy() @ w / w.sum()  # Eq. 1 on the ALL column
    out["label"] = np.where(predict_labels(out["p_all"]) == 1, "ALL", "Hem")
    out["weights"] = ens.weights_source
    return out


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_destination(path, kind: str, force: bool = False) -> Path:
    """Refuse, before any work, a destination that cannot be written: `kind` "file" (a CSV) or
    "folder" (overlays, an export). Names the path and what is wrong, in one line."""
    path = Path(path)
    if kind == "file" and path.is_dir():
        raise ConfigError(f"{path} is a folder: expected the path of a file to write (e.g. {path / 'predictions.csv'})")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise ConfigError(f"{path} is a file: expected a folder to write into (it is created if missing)")
    if kind == "file" and path.exists() and not force:
        raise ConfigError(f"{path} exists: choose another path or pass --force to replace it")
    base = _nearest_existing(path.parent if kind == "file" else path)
    if not base.is_dir():
        raise ConfigError(f"cannot write {path}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {path}: {base} is not writable by this user")
    return path


def write_table(table: pd.DataFrame, out, force: bool = False) -> Path:
    """Write a prediction table as CSV, atomically; an existing file is kept unless `force`."""
    out = Path(out)
    if out.exists() and not force:
        raise ConfigError(f"{out} exists: choose another path or pass --force to replace it")
    io.write_csv(out, table)
    return out


def check_submission_names(paths) -> list[str]:
    """The challenge's test images are named 1.bmp ... N.bmp: refuse, naming the files, names that
    are not numbers, a number given twice (01.bmp beside 1.bmp, 1.bmp beside 1.png), a gap, or a
    count from 0. Returns the stems, in the given order."""
    names = [Path(p).stem for p in paths]
    bad = [Path(p).name for p, n in zip(paths, names) if not re.fullmatch(r"\d+", n)]
    if bad:
        raise DataError(
            f"{len(bad)} image(s) not named by a number, e.g. {', '.join(bad[:3])}: the challenge's test images are "
            "1.bmp ... N.bmp"
        )
    by_number: dict[int, list[str]] = {}
    for p, n in zip(paths, names):
        by_number.setdefault(int(n), []).append(Path(p).name)
    twice = {k: v for k, v in by_number.items() if len(v) > 1}
    if twice:
        k, v = next(iter(sorted(twice.items())))
        raise DataError(f"image number {k} is given {len(v)} times ({', '.join(v)}): each number must name one image")
    numbers = sorted(by_number)
    if numbers[0] == 0:
        raise DataError("the test images are numbered from 0 (0.bmp): the challenge numbers them from 1.bmp")
    if numbers != list(range(1, len(numbers) + 1)):
        gaps = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
        raise DataError(
            f"the test images must be numbered 1 ... {len(numbers)} without gaps; {len(gaps)} missing, e.g. "
            f"{', '.join(f'{g}.bmp' for g in gaps[:5])}"
        )
    return names


def submission(table: pd.DataFrame, out_dir, force: bool = False) -> tuple[Path, Path]:
    """The challenge's `isbi_valid.predict` (1 = ALL, 0 = Hem, one line per image in the numeric
    order of the image names 1.bmp ... N.bmp) and its zip, from a `predict` table of a test folder."""
    names = check_submission_names(table["path"])
    out_dir = Path(out_dir)
    predict_path, zip_path = out_dir / SUBMISSION_FILE, out_dir / "isbi_valid.zip"
    for p in (predict_path, zip_path):
        if p.exists() and not force:
            raise ConfigError(f"{p} exists: choose another folder or pass --force to replace it")
    order = np.argsort([int(n) for n in names], kind="stable")
    lines = "".join(f"{int(v)}\n" for v in predict_labels(table["p_all"].to_numpy()[order]))
    with io.atomic_path(predict_path) as tmp:
        Path(tmp).write_text(lines)
    with io.atomic_path(zip_path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(SUBMISSION_FILE, lines)
    return predict_path, zip_path


@functools.cache
def _input_layer_class():
    import keras

    @keras.saving.register_keras_serializable(package="alllib")
    class StudyInput(keras.layers.Layer):
        """The study's input path inside a model (`preprocessing.load_image` on a decoded batch): the
        centre crop to `size` (450 takes the 450 centre of a 600 px final-phase image; 300 the
        centre crop), the area resize to `px` with rounding to whole intensities, as float32."""

        def __init__(self, size: int, px: int, **kwargs):
            super().__init__(**kwargs)
            self.size, self.px = int(size), int(px)

        def call(self, images):
            import tensorflow as tf

            h, w = tf.shape(images)[1], tf.shape(images)[2]
            ok = tf.logical_and(tf.equal(h, w), tf.logical_or(tf.equal(h, IMAGE_SIDE), tf.equal(h, FINAL_IMAGE_SIDE)))
            check = tf.debugging.Assert(
                ok, [f"expected square images of {IMAGE_SIDE} or {FINAL_IMAGE_SIDE} px, as predict; got", h, w]
            )
            with tf.control_dependencies([check]):  # what predict refuses, the exported model refuses too
                images = tf.identity(images)
            return tf.cast(crop_and_scale(tf.cast(images, tf.uint8), self.size, self.px), tf.float32)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], self.px, self.px, 3)

        def get_config(self):
            return {**super().get_config(), "size": self.size, "px": self.px}

    return StudyInput


def study_input_layer(size: int, px: int, name: str):
    return _input_layer_class()(size, px, name=name)


def export_model(ens: Ensemble):
    """The ensemble as one Keras model: uint8 images (batch, side, side, 3) of 450 or 600 px in,
    p = (p(Hem), p(ALL)) out, the weighted mean of Eq. 1. No Lambda layer: every layer is a Keras
    layer or one of alllib's registered classes, so the file loads in Keras' safe mode."""
    import keras

    image = keras.Input((None, None, 3), dtype="uint8", name="image")
    px = input_pixels(ens.size, ens.scale)
    x = study_input_layer(ens.size, px, f"input_{ens.size}px")(image)
    total = sum(m.weight for m in ens.members)
    parts = []
    for m in ens.members:
        member = load_model(m.run_dir / "model.keras")
        y = member(x)
        y = y[0] if isinstance(y, (list, tuple)) else y  # a stored model keeps its outputs as a list of one
        parts.append(keras.layers.Rescaling(m.weight / total, name=f"weight_{member.name}")(y))
    p = keras.layers.Add(name="weighted_mean")(parts) if len(parts) > 1 else parts[0]
    return keras.Model(image, p, name="alllib_ensemble")


def export(ens: Ensemble, out_dir, force: bool = False) -> dict:
    """Write `ensemble.keras` and the SavedModel folder `saved_model/` (endpoint `serve`) into
    `out_dir`, atomically (both or neither); returns their paths and sizes on disk."""

    out_dir = check_destination(out_dir, "folder")
    keras_path, saved = out_dir / "ensemble.keras", out_dir / "saved_model"
    for p in (keras_path, saved):
        if p.exists() and not force:
            raise ConfigError(f"{p} exists: choose another folder or pass --force to replace it")
    model = export_model(ens)
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / ".ensemble.partial.keras"  # Keras insists on the .keras suffix
    try:
        with _no_space_as_refusal(keras_path):
            model.save(partial)
        os.replace(partial, keras_path)
    finally:
        partial.unlink(missing_ok=True)
    try:
        with _no_space_as_refusal(saved):
            _export_saved_model(model, ens, saved)
    except BaseException:  # no half export: the .keras file goes too, so that a rerun needs no --force
        keras_path.unlink(missing_ok=True)
        raise

    def size_mb(p: Path) -> float:
        return round(sum(f.stat().st_size for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()) / 1e6, 1)

    return {
        "keras": str(keras_path),
        "keras MB": size_mb(keras_path),
        "saved_model": str(saved),
        "saved_model MB": size_mb(saved),
        "about": json.dumps([m.backbone for m in ens.members]),
    }


@contextlib.contextmanager
def _no_space_as_refusal(path: Path):
    """A write that runs out of space inside Keras or TensorFlow (an OSError, or TensorFlow's own
    error that says so) becomes one line naming `path` and the space left."""
    try:
        yield
    except StudyError:
        raise
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno in io.WRITE_ERRORS:
            raise io.refuse_write(path, exc) from None
        if "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc):
            raise io.refuse_write(path, OSError(errno.ENOSPC, "No space left on device")) from None
        raise


def _export_saved_model(model, ens: Ensemble, saved: Path) -> None:
    with io.atomic_dir(saved) as tmp:
        model.export(str(tmp / "model"), format="tf_saved_model", verbose=False)
        for item in (tmp / "model").iterdir():
            item.rename(tmp / item.name)
        (tmp / "model").rmdir()
        io.write_json(
            tmp / "alllib_ensemble.json",
            {
                "weights": ens.weights_source,
                "members": [m.backbone for m in ens.members],
                "input": "uint8 images (batch, side, side, 3), side 450 or 600",
                "output": "p(Hem), p(ALL)",
                "synthetic_training_data": ens.synthetic,
            },
        )


def load_exported(path):
    """The exported `.keras` ensemble, loaded in Keras' safe mode (alllib's layers registered)."""
    import keras

    preprocessing_layer("tf")
    study_input_layer(450, 450, "registration")
    return keras.saving.load_model(path, compile=False, safe_mode=True)


def decoded(ens: Ensemble, paths, resize: bool = False, batch_size: int = 32) -> np.ndarray:
    """The images as the members see them (uint8, the ensemble's input path), one array."""
    paths = [Path(p) for p in paths]
    flags = [check_image(p, resize) == "resize" for p in paths]
    return np.concatenate([x.numpy() for x in _dataset(paths, flags, ens.size, ens.scale, batch_size)])


def cam_maps(ens: Ensemble, paths, table: pd.DataFrame, resize: bool = False) -> tuple[np.ndarray, dict]:
    """Grad-CAM maps of each member and of the ensemble (the weighted mean of the members'
    normalised maps, as Fig. 8) for the class the ensemble predicts, from a `predict` table."""

    images = decoded(ens, paths, resize)
    classes = predict_labels(table["p_all"].to_numpy())
    maps = {}
    for m in ens.members:
        model = load_model(m.run_dir / "model.keras")
        maps[m.backbone] = class_activation_maps(model, images, classes, get_backbone(m.backbone).last_conv)
    maps = {ensemble_name(ens.method): ensemble_map(list(maps.values()), [m.weight for m in ens.members]), **maps}
    return images, maps


def overlay_stems(paths) -> list[str]:
    """A distinct file-name stem per image: its stem, or where two images share one (x/cell.png and
    y/cell.png, cell.png and cell.bmp), its path from their common folder, suffix kept, with '__'
    for '/'."""
    paths = [Path(p).resolve() for p in paths]
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    out = []
    for p, stem in zip(paths, stems):
        if stems.count(stem) == 1:
            out.append(stem)
        else:
            out.append("__".join(p.relative_to(root).parts).replace(".", "_"))
    if len(set(out)) != len(out):
        raise ConfigError("two input images have the same path: name each image once")
    return out


def write_overlays(images: np.ndarray, maps: dict, paths, out_dir, members: bool = False, force: bool = False) -> list:
    """One PNG per image (and per member with `members`): the image with its map blended in (viridis,
    alpha 0.4), named <image>_cam_<model>.png (`overlay_stems`: distinct for images that share a
    name); each written atomically, none replaced without `force`."""
    from matplotlib import colormaps
    from PIL import Image

    out_dir = Path(out_dir)
    names = list(maps)[: None if members else 1]
    stems = overlay_stems(paths)
    targets = [
        (i, name, out_dir / f"{stems[i]}_cam_{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-').lower()}.png")
        for i in range(len(stems))
        for name in names
    ]
    existing = [t for _, _, t in targets if t.exists()]
    if existing and not force:
        raise ConfigError(f"{existing[0]} exists ({len(existing)} overlay(s) would be replaced): pass --force")
    written = []
    for i, name, target in targets:
        heat = colormaps["viridis"](maps[name][i])[..., :3] * 255
        blend = (0.6 * images[i].astype(float) + 0.4 * heat).clip(0, 255).astype(np.uint8)
        with io.atomic_path(target) as tmp:
            Image.fromarray(blend).save(tmp, format="PNG")
        written.append(target)
    return written


def chapter_images(study, per_class: int = 3) -> list[Path]:
    """A few held-out (preliminary-test) images for the chapter, `per_class` of each class, each from
    another subject where the set allows, in a fixed order."""
    test = study.table[study.table["split"] == "preliminary_test"].sort_values("image_id")
    picked = []
    for label in ("all", "hem"):
        g = test[test["label"] == label]
        first = g.drop_duplicates("subject").head(per_class)  # one image per subject first
        picked += [first, g.drop(first.index).head(per_class - len(first))]
    return [Path(p) for p in pd.concat(picked)["path"]]


def shown_table(table: pd.DataFrame, study) -> pd.DataFrame:
    """A `predict` table for the page: image name, true class where the study knows it, each
    member's and the ensemble's p(ALL), the ensemble's label."""
    truth = dict(zip(study.table["path"].astype(str), study.table["label"].map({"all": "ALL", "hem": "Hem"})))
    out = pd.DataFrame({"image": [Path(p).name for p in table["path"]]})
    out["true class"] = [truth.get(str(p), "unknown") for p in table["path"]]
    for col in [c for c in table if c.startswith("p_all ")]:
        out[col.removeprefix("p_all ")] = table[col].round(3)
    out["ensemble p(ALL)"] = table["p_all"].round(3)
    out["ensemble says"] = table["label"]
    return out


def usage_markdown(study, ens: Ensemble) -> str:
    """The commands that do the same on one's own images, for this study."""
    where = f"--study results/{study.cfg.name}"
    return "\n".join(
        [
            "```bash",
            f"python -m alllib predict my_cells/ {where} --out my_predictions.csv --cam my_overlays/",
            f"python -m alllib predict cell.bmp {where} --out one.csv --method wen-auc --size {ens.size}",
            f"python -m alllib submit {where} --out-dir submission/   # isbi_valid.predict and isbi_valid.zip",
            f"python -m alllib export {where} --out-dir exported/     # ensemble.keras and saved_model/",
            "```",
        ]
    )


def overlay_inputs(table: pd.DataFrame, maps: dict, study) -> tuple[dict, list[str]]:
    """What `figures.gradcam_grid` needs beside the images and maps: p(ALL) per map's model, and the
    true class of each image where the study knows it."""
    probs = {
        name: table[f"p_all {name}"].to_numpy() if f"p_all {name}" in table else table["p_all"].to_numpy()
        for name in maps
    }
    return probs, list(shown_table(table, study)["true class"])


def chapter_intro(study, ens: Ensemble, n_images: int) -> str:
    """The chapter's opening sentences, from the ensemble in hand."""
    size_note = (
        f"at {ens.size} px, the input size whose ensemble scored the higher balanced accuracy on the validation "
        "subjects"
        if len(study.cfg.runs) > 1
        else f"at {ens.size} px, the study's one input size"
    )
    text = (
        f"The ensemble below is {ens.weights_source}: its {len(ens.members)} members "
        f"({', '.join(m.backbone for m in ens.members)}) {size_note}. It is applied with `python -m alllib predict` "
        f"to {n_images} preliminary-test images (subjects that took no part in training or validation), exactly as "
        "to anyone's own images: the cached models, no retraining."
    )
    if study.synthetic:
        text += " **The models were trained on synthetic images: their outputs mean nothing clinically.**"
    return text
