"""Section 4.1.2: pre-processing.

- `subject_split`: subject-disjoint split of the training folds into train and validation
  (Table 3: 15 of 47 ALL and 7 of 26 Hem subjects, about 20 % of each class's images);
- `center_crop`: 450 -> 300 px centre crop (nearest-neighbour: a pure crop moves no pixel);
  an optional input scale then resizes the crop for CPU profiles (crop first, then resize);
- `random_oversampling`: the minority class (Hem) is resampled with replacement to the
  majority count (paper: 5822 + 5822 = 11644 images per epoch);
- `augment`: online flips, rotation, zoom and shift, batched in the tf.data graph;
- `make_dataset`: the tf.data pipeline (parallel decode, crop, resize, augment, prefetch). With
  `cache=True` each image is decoded, cropped and resized once (`decode_images`) and held in memory,
  so every epoch only gathers, augments and batches; sets larger than `MEMORY_CACHE_MB` stream from disk.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from alllib.errors import ConfigError, DataError

# Table 3 of the paper: validation subjects per class out of the training folds' subjects
PAPER_VALIDATION_SUBJECTS = {"all": (15, 47), "hem": (7, 26)}
VALIDATION_FRACTION = 0.2
# Decoded images held in memory by `make_dataset(cache=True)` at most (the demo's training split at
# 112 px is about 8 MB; the real training split at 450 px, about 5 GB, streams from disk instead).
MEMORY_CACHE_MB = 1024


def input_pixels(size: int, scale: float) -> int:
    """Side of the tensor fed to the network: the crop (450 or 300 px) times the input scale."""
    return int(round(size * scale))


def subject_split(table: pd.DataFrame, seed: int, candidates: int = 2000) -> pd.DataFrame:
    """Assign every image of the training folds to `train` or `validation`, subject-disjoint.

    Per class, the number of validation subjects follows Table 3 (15/47 ALL, 7/26 Hem, scaled to
    the subjects present). Among `candidates` seeded random subject draws, the one whose share of
    images is closest to 20 % is kept, so the split is reproducible from the seed alone."""
    out = table.copy()
    folds = out["split"] == "train_folds"
    if not folds.any():
        raise DataError("subject_split: the table has no images of the training folds")
    rng = np.random.default_rng(seed)
    val_subjects = set()
    for label, (n_val, n_all) in PAPER_VALIDATION_SUBJECTS.items():
        counts = out[folds & (out["label"] == label)].groupby("subject").size().sort_index()
        if len(counts) < 2:
            raise DataError(
                f"subject_split: class {label!r} has {len(counts)} subject(s); at least 2 are needed "
                "for a subject-disjoint split"
            )
        k = min(len(counts) - 1, max(1, round(len(counts) * n_val / n_all)))
        subjects, n = counts.index.to_numpy(), counts.to_numpy()
        best, best_err = None, math.inf
        for _ in range(candidates):
            pick = rng.choice(len(subjects), size=k, replace=False)
            err = abs(n[pick].sum() / n.sum() - VALIDATION_FRACTION)
            if err < best_err:
                best, best_err = pick, err
        val_subjects |= set(subjects[best])
    out.loc[folds, "split"] = np.where(out.loc[folds, "subject"].isin(val_subjects), "validation", "train")
    return out


def split_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Subjects and images per split and class, in the layout of Table 3."""
    labelled = table[table["label"].notna()]
    g = labelled.groupby(["split", "label"])
    summary = pd.DataFrame({"subjects": g["subject"].nunique(), "images": g.size()}).unstack("label")
    summary.columns = [f"{cls}_{what}" for what, cls in summary.columns]
    order = [s for s in ("train", "validation", "preliminary_test") if s in summary.index]
    return (
        summary.loc[order, ["all_subjects", "hem_subjects", "all_images", "hem_images"]]
        .rename_axis("split")
        .reset_index()
    )


def crop_box(side: int, size: int) -> tuple[int, int]:
    """(offset, size) of the centred window of `size` px inside an image of `side` px."""
    if size > side or size < 1:
        raise ConfigError(f"cannot centre-crop {size} px out of a {side} px image")
    off = (side - size) // 2
    return off, size


def cell_mask(images: np.ndarray, threshold: int = 10) -> np.ndarray:
    """Foreground of segmented cells: any channel above `threshold` (the background is black)."""
    return (np.asarray(images).max(axis=-1) > threshold).astype(np.float32)


def center_crop(images, size: int):
    """Centre crop of the last-but-one two axes (..., H, W, C); numpy arrays or tensors, also a
    decoded tf image whose side is only known when it runs. The one crop of the study: training,
    evaluation, the data chapter and the figures all call it."""
    h = images.shape[-3]
    if not isinstance(h, int):  # a tf image decoded from a file inside the tf.data graph
        import tensorflow as tf

        off = (tf.shape(images)[-3] - size) // 2
    else:
        off, size = crop_box(h, size)
    return images[..., off : off + size, off : off + size, :]


def random_oversampling(labels, seed: int) -> np.ndarray:
    """Indices into `labels` such that every class appears as often as the majority class: all
    original images once, plus minority images drawn with replacement. Deterministic from seed."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise DataError(f"random_oversampling needs two classes, got only {classes.tolist()}")
    rng = np.random.default_rng(seed)
    target = counts.max()
    idx = [np.flatnonzero(labels == c) for c in classes]
    extra = [rng.choice(i, size=target - len(i), replace=True) for i in idx]
    return np.sort(np.concatenate(idx + extra))


def load_image(path, size: int, scale: float = 1.0):
    """tf: decode one image file (BMP, PNG or JPEG), centre-crop to `size`, resize by `scale`.
    Returns uint8 (s, s, 3). Resizing uses area interpolation so small tensors keep texture."""
    import tensorflow as tf

    raw = tf.io.read_file(path)
    img = tf.io.decode_image(raw, channels=3, expand_animations=False)
    return crop_and_scale(img, size, input_pixels(size, scale))


def crop_and_scale(images, size: int, px: int):
    """tf: the study's input path after decoding, on one image or a batch of uint8 images: the centre
    crop to `size`, then the area resize to `px` rounded to whole intensities, as uint8. `load_image`,
    `predict` and the exported model's input layer all take it."""
    import tensorflow as tf

    x = center_crop(images, size)
    x.set_shape(x.shape[:-3].concatenate((size, size, 3)))
    if px != size:
        x = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(x, (px, px), method="area")), 0, 255), tf.uint8)
    return x


def cached_bytes(n_images: int, size: int, scale: float) -> int:
    """Memory of `n_images` decoded uint8 images at the input size of (size, scale)."""
    px = input_pixels(size, scale)
    return int(n_images) * px * px * 3


def decode_images(paths, size: int, scale: float, batch_size: int = 64) -> np.ndarray:
    """Every file of `paths` decoded, centre-cropped and resized by `load_image` (in parallel), as
    one uint8 array (n, px, px, 3) in the order of `paths`."""
    import tensorflow as tf

    paths = [str(p) for p in paths]
    px = input_pixels(size, scale)
    if not paths:
        return np.zeros((0, px, px, 3), np.uint8)
    opts = tf.data.Options()
    opts.deterministic = True
    ds = (
        tf.data.Dataset.from_tensor_slices(paths)
        .with_options(opts)
        .map(lambda p: load_image(p, size, scale), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
    )
    return np.concatenate([x.numpy() for x in ds])


def augmentation_matrices(seeds, batch: int, side: int, cfg):
    """tf: per-image projective transforms (rotation, zoom, shift, flips) about the image centre,
    in the 8-parameter form of ImageProjectiveTransformV3 (output -> input mapping). `cfg`: the profile's
    `augment` settings (rotation_deg, zoom, shift, flips)."""
    import tensorflow as tf

    def u(i, lo, hi):
        return tf.random.stateless_uniform((batch,), seed=seeds + [0, i], minval=lo, maxval=hi)

    rot = math.radians(cfg.rotation_deg)
    angle = u(1, -rot, rot)
    zoom = cfg.zoom
    scale = u(2, 1 - zoom, 1 + zoom)
    shift = cfg.shift * side
    tx, ty = u(3, -shift, shift), u(4, -shift, shift)
    flips = cfg.flips
    fx = tf.where(u(5, 0, 1) < 0.5, -1.0, 1.0) if flips else tf.ones((batch,))
    fy = tf.where(u(6, 0, 1) < 0.5, -1.0, 1.0) if flips else tf.ones((batch,))
    c = (side - 1) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # input = R(angle)/scale * diag(fx, fy) * (output - c - t) + c
    a0, a1 = cos * fx, -sin * fy
    b0, b1 = sin * fx, cos * fy
    ox, oy = -c - tx, -c - ty
    a2 = a0 * ox + a1 * oy + c
    b2 = b0 * ox + b1 * oy + c
    zeros = tf.zeros((batch,))
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def augment(images, seed, cfg):
    """tf: online augmentation of a batch of uint8 images (B, s, s, 3) -> uint8, black fill.
    `seed` is a length-2 int tensor (stateless: the same seed gives the same augmentation)."""
    import tensorflow as tf

    batch = tf.shape(images)[0]
    side = images.shape[1]
    mats = augmentation_matrices(tf.cast(seed, tf.int32), batch, side, cfg)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32),
        transforms=mats,
        output_shape=tf.shape(images)[1:3],
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
        fill_value=0.0,
    )
    return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)


def make_dataset(
    table: pd.DataFrame,
    size: int,
    scale: float,
    batch_size: int,
    seed: int = 0,
    training: bool = False,
    augment_cfg=None,
    oversample: bool = True,
    cache: bool = False,
    start_step: int = 0,
):
    """tf.data pipeline over the images of `table`.

    training=True: random oversampling (once, seeded), a fresh seeded shuffle each epoch, online
    augmentation, infinite (use steps_per_epoch). training=False: the table's order, one pass,
    no augmentation. Yields (uint8 images, one-hot float labels).

    cache=True decodes every image once, now, and holds the array in memory when it needs at most
    `MEMORY_CACHE_MB` (the same pixels as decoding on the fly, so results do not change); the
    dataset can then be iterated many times (every epoch, every validation) without touching disk.

    start_step (training): begin at that batch of the stream, exactly as if `start_step` batches had
    been drawn: a resumed run sees the images and augmentations an uninterrupted one would. The
    skipped batches cost nothing (only their indices are skipped, nothing is decoded)."""
    import tensorflow as tf

    if size not in (450, 300):
        raise ConfigError(f"input size must be 450 (full) or 300 (centre crop), got {size!r}")
    paths = table["path"].astype(str).to_numpy()
    y = table["y"].fillna(0).astype(int).to_numpy()
    if training:
        order = random_oversampling(y, seed) if oversample else np.arange(len(y))
        order = tf.constant(order, tf.int64)
        n = int(order.shape[0])
        ds = (
            tf.data.Dataset.range(1 << 30)
            .flat_map(
                lambda epoch: tf.data.Dataset.from_tensor_slices(
                    tf.random.experimental.stateless_shuffle(order, seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
                )
            )
            .skip(start_step * batch_size)
        )
    else:
        n = len(paths)
        ds = tf.data.Dataset.range(n)
    y_t = tf.constant(y, tf.int32)
    opts = tf.data.Options()
    opts.deterministic = True
    if cache and cached_bytes(len(paths), size, scale) <= MEMORY_CACHE_MB * 2**20:
        images_t = tf.constant(decode_images(paths, size, scale))

        def image(i):
            return tf.gather(images_t, i)
    else:
        paths_t = tf.constant(paths)

        def image(i):
            return load_image(tf.gather(paths_t, i), size, scale)

    ds = ds.with_options(opts).map(
        lambda i: (image(i), tf.one_hot(tf.gather(y_t, i), 2)), num_parallel_calls=tf.data.AUTOTUNE
    )
    ds = ds.batch(batch_size, drop_remainder=False)
    if training:
        if augment_cfg is None:
            raise ConfigError("a training dataset needs the profile's augment settings (augment_cfg)")
        cfg = augment_cfg
        ds = ds.enumerate(start=start_step).map(
            lambda step, xy: (augment(xy[0], tf.stack([tf.cast(seed, tf.int64), step]), cfg), xy[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.prefetch(tf.data.AUTOTUNE), n


def load_arrays(table: pd.DataFrame, size: int, scale: float, batch_size: int = 32) -> np.ndarray:
    """All images of `table`, decoded, cropped and resized, as one uint8 array (for analysis)."""
    ds, _ = make_dataset(table, size, scale, batch_size)
    return np.concatenate([x.numpy() for x, _ in ds]) if len(table) else np.zeros((0, 0, 0, 3), np.uint8)
