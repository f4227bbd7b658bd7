"""A synthetic, C-NMC-like stand-in for the real data, written in the official layout.

A fresh machine has neither the 10 GB of C-NMC-2019 nor the internet to fetch it, so the study's
default profiles generate this set and read it back with the same reader (`alllib.method.dataset`).
Everything made from it is labelled SYNTHETIC (the marker file `SYNTHETIC.json` in the root).

What it imitates (see the data chapter of the book):

- layout, naming, subjects, folds and per-subject image counts of the real training folds
  (`training_subjects.csv`, scaled by `scale`), a labelled preliminary test set and an unlabelled
  final test set with subjects of their own; 450 x 450 RGB (the final test 600 x 600, as the
  real one), one segmented cell on black; at scale 1.0 exactly the real set's 15,114 images;
- class morphology from haematology: ALL blasts are larger, with a higher nucleus-to-cytoplasm
  ratio, fine chromatin and visible nucleoli; Hem lymphocytes are smaller, with condensed
  (coarse, darker) chromatin and relatively more cytoplasm. Every feature is drawn from
  overlapping class distributions;
- a per-subject stain and illumination shift, and a small per-subject morphology offset: a
  domain effect, so that a split that leaks subjects scores higher than a subject-disjoint one;
- imperfect segmentation: some images keep fragments of background (paper Fig. 2), and a few
  cells are large enough to reach past the 300 px centre crop.

`difficulty` (0..1) scales the distance between the class means of every feature: 0 gives
well-separated classes, 1 identical classes (chance). Its default (0.5) was calibrated with
the demo profile (see the book's training chapter).
"""

from __future__ import annotations

import hashlib
import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image

from alllib import io
from alllib.errors import ConfigError
from alllib.method.dataset import (
    FINAL_DIR,
    FINAL_IMAGE_SIDE,
    FOLDS,
    IMAGE_SIDE,
    PRELIM_DIR,
    PRELIM_LABELS,
    SYNTHETIC_MARKER,
    TRAIN_DIR,
    training_subjects,
)
from alllib.study.profile import fingerprint

if TYPE_CHECKING:  # names used in annotations only
    from alllib.study.profile import Data

# Subjects of the preliminary and final test sets: new people, as in the real challenge
# (13 ALL + 15 Hem and 9 ALL + 8 Hem subjects, Table 3), with ids unused by the training folds.
PRELIM_SUBJECTS = {"all": [str(i) for i in range(53, 66)], "hem": [f"H{i}" for i in range(25, 40)]}
FINAL_SUBJECTS = {"all": [str(i) for i in range(79, 88)], "hem": [f"H{i}" for i in range(49, 57)]}
PRELIM_IMAGES = {"all": 1219, "hem": 648}
FINAL_IMAGES = {"all": 1761, "hem": 825}

# Class means of each morphological feature: (midpoint, half-gap between the classes, spread within a class).
# Sign convention: ALL gets midpoint + half-gap * (1 - difficulty), Hem midpoint - half-gap * (1 - difficulty).
FEATURES = {
    "radius": (80.0, 9.0, 9.0),  # cell radius in px (ALL blasts larger)
    "nc_ratio": (0.70, 0.07, 0.05),  # nucleus radius / cell radius (ALL higher)
    "coarseness": (0.45, -0.22, 0.14),  # chromatin texture: 0 fine, 1 condensed (Hem coarser)
    "nucleus_dark": (0.50, -0.10, 0.08),  # darkness of the nucleus stain (Hem darker, condensed)
    "nucleoli": (1.0, 0.8, 0.0),  # Poisson mean of visible nucleoli (ALL more)
}
SUBJECT_STAIN_SD = 0.09  # per-subject multiplicative stain shift per RGB channel
SUBJECT_SHIFT_SD = 0.35  # per-subject morphology offset, in units of each feature's spread
P_FRAGMENT = 0.06  # superfluous background fragments (imperfect segmentation)
P_LARGE = 0.03  # cells reaching past the 300 px crop


def _rng(seed: int, *keys) -> np.random.Generator:
    digest = hashlib.sha256(repr((seed,) + keys).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _noise(rng, grid: int, side: int = IMAGE_SIDE) -> np.ndarray:
    small = Image.fromarray(rng.random((grid, grid)).astype(np.float32), mode="F")
    return np.asarray(small.resize((side, side), Image.BILINEAR))


def subject_profile(seed: int, subject: str) -> dict:
    rng = _rng(seed, "subject", subject)
    return {
        "stain": rng.normal(1.0, SUBJECT_STAIN_SD, 3).clip(0.7, 1.3),
        "brightness": rng.normal(1.0, 0.05),
        "shift": {k: rng.normal(0, SUBJECT_SHIFT_SD) for k in FEATURES},
    }


def draw_cell(rng: np.random.Generator, label: str, difficulty: float, subject: dict) -> dict:
    sign = 1.0 if label == "all" else -1.0
    f = {}
    for name, (mid, half_gap, sd) in FEATURES.items():
        mean = mid + sign * half_gap * (1.0 - difficulty) + subject["shift"][name] * sd
        f[name] = rng.normal(mean, sd) if sd > 0 else mean
    f["nucleoli"] = int(rng.poisson(max(f["nucleoli"], 0.05)))
    f["radius"] = float(np.clip(f["radius"], 40, 125))
    if rng.random() < P_LARGE:
        f["radius"] = float(rng.uniform(135, 165))
    f["nc_ratio"] = float(np.clip(f["nc_ratio"], 0.45, 0.92))
    f["coarseness"] = float(np.clip(f["coarseness"], 0, 1))
    f["nucleus_dark"] = float(np.clip(f["nucleus_dark"], 0.2, 0.8))
    return f


def render_cell(rng: np.random.Generator, f: dict, subject: dict, side: int = IMAGE_SIDE):
    """Returns (uint8 RGB image, uint8 mask with 0 background, 1 cytoplasm, 2 nucleus)."""
    c = side / 2 + rng.normal(0, 12, 2)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    dx, dy = xx - c[0], yy - c[1]
    # an irregular ellipse: random elongation and orientation, low harmonics on the boundary
    ang = rng.uniform(0, np.pi)
    elong = rng.uniform(1.0, 1.25)
    u = (dx * np.cos(ang) + dy * np.sin(ang)) / elong
    v = (-dx * np.sin(ang) + dy * np.cos(ang)) * elong
    rr, th = np.hypot(u, v), np.arctan2(v, u)
    wobble = sum(rng.normal(0, 0.03) * np.cos(k * th + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    cell = np.clip((f["radius"] * (1 + wobble) - rr) / 1.5, 0, 1)
    # nucleus: eccentric inside the cell, with an occasional indentation
    rn = f["radius"] * f["nc_ratio"]
    off = rng.normal(0, 0.35, 2) * (f["radius"] - rn)
    nu, nv = u - off[0], v - off[1]
    nr, nth = np.hypot(nu, nv), np.arctan2(nv, nu)
    nwobble = sum(rng.normal(0, 0.04) * np.cos(k * nth + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4))
    nucleus = np.clip((rn * (1 + nwobble) - nr) / 1.5, 0, 1) * cell
    # chromatin: fine (high-frequency) in blasts, condensed clumps in mature lymphocytes
    fine, coarse = _noise(rng, 90, side), _noise(rng, 16, side)
    texture = (1 - f["coarseness"]) * (fine - 0.5) * 0.5 + f["coarseness"] * (coarse - 0.5) * 1.3
    cyto_rgb = np.array([0.80, 0.68, 0.88], np.float32)
    nuc_rgb = np.array([0.62, 0.40, 0.78], np.float32) * (1.25 - f["nucleus_dark"])
    shade = 1.0 - 0.25 * (nr / max(rn, 1.0)).clip(0, 1) ** 2  # slight dome shading
    img = cell[..., None] * cyto_rgb * (1 + 0.06 * (fine[..., None] - 0.5))
    nuc = nuc_rgb * (shade * (1 + texture))[..., None]
    img = img * (1 - nucleus[..., None]) + nucleus[..., None] * nuc
    for _ in range(f["nucleoli"]):  # nucleoli: small pale round spots inside the nucleus
        p = rng.normal(0, 0.4, 2) * rn
        spot = np.clip((rng.uniform(4, 8) - np.hypot(nu - p[0], nv - p[1])) / 1.5, 0, 1) * nucleus
        img = img * (1 - 0.45 * spot[..., None]) + 0.45 * spot[..., None] * np.array([0.85, 0.72, 0.92], np.float32)
    mask = (cell > 0.5).astype(np.uint8) + (nucleus > 0.5).astype(np.uint8)
    if rng.random() < P_FRAGMENT:  # leftovers of an imperfect segmentation near the border
        for _ in range(rng.integers(1, 4)):
            q = rng.uniform(0, side, 2)
            edge = rng.integers(0, 4)
            q[edge % 2] = [rng.uniform(0, 60), rng.uniform(side - 60, side)][edge // 2]
            blob = np.clip(
                (rng.uniform(15, 45) * (1 + 0.3 * (coarse - 0.5)) - np.hypot(xx - q[0], yy - q[1])) / 2, 0, 1
            )
            img = img * (1 - blob[..., None]) + blob[..., None] * np.array([0.70, 0.55, 0.80], np.float32) * (
                1 + texture[..., None] * 0.5
            )
    img = img * subject["stain"] * subject["brightness"] * rng.normal(1.0, 0.03)
    img = img + (img.max(axis=2, keepdims=True) > 0.02) * rng.normal(0, 0.015, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), mask


def _counts(total: int, n_subjects: int, rng) -> list[int]:
    """`total` images over `n_subjects` (at least one each) in Dirichlet shares, summing exactly to
    `total` (largest remainders), so that scale 1.0 has the real set's 15,114 images."""
    share = rng.dirichlet(np.full(n_subjects, 2.0))
    raw = 1 + share * (total - n_subjects)
    counts = np.floor(raw).astype(int)
    counts[np.argsort(counts - raw)[: total - counts.sum()]] += 1
    return counts.tolist()


def plan(scale: float, seed: int) -> pd.DataFrame:
    """Which images to generate: subject, label, split, fold and index, from the real counts x scale."""
    if not 0 < scale <= 1:
        raise ConfigError(f"synthetic scale must lie in (0, 1], got {scale!r}")
    rows = []
    for rec in training_subjects().itertuples(index=False):
        n = max(1, int(round(rec.n_images * scale)))
        rows += [
            {"split": "train_folds", "fold": rec.fold, "label": rec.label, "subject": rec.subject, "k": k}
            for k in range(n)
        ]
    for split, subjects, totals in (
        ("preliminary_test", PRELIM_SUBJECTS, PRELIM_IMAGES),
        ("final_test", FINAL_SUBJECTS, FINAL_IMAGES),
    ):
        for label in ("all", "hem"):
            counts = _counts(
                max(len(subjects[label]), int(round(totals[label] * scale))),
                len(subjects[label]),
                _rng(seed, "counts", split, label),
            )
            for subject, n in zip(subjects[label], counts):
                rows += [{"split": split, "fold": None, "label": label, "subject": subject, "k": k} for k in range(n)]
    return pd.DataFrame(rows)


def synthesize(
    out_dir,
    scale: float = 0.08,
    difficulty: float = 0.5,
    seed: int = 2019,
    image_format: str = "png",
    progress: bool = True,
    workers: int | None = None,
) -> Path:
    """Write a synthetic C-NMC-like data set to `out_dir/C-NMC_Leukemia` (and nucleus/cell masks to
    `out_dir/masks`). Deterministic from the arguments (not from `workers`, the processes that draw
    the cells; default: one per CPU); returns the data root. Written atomically: an interrupted
    generation leaves no half-made root."""
    from tqdm.auto import tqdm

    if not 0 <= difficulty <= 1:
        raise ConfigError(f"synthetic difficulty must lie in [0, 1], got {difficulty!r}")
    if image_format not in ("png", "bmp"):
        raise ConfigError(f"synthetic image_format must be 'png' or 'bmp', got {image_format!r}")
    out_dir = Path(out_dir)
    todo = plan(scale, seed)
    params = {
        "generator": "alllib.study.synthetic",
        "generator_version": GENERATOR_VERSION,
        "scale": scale,
        "difficulty": difficulty,
        "seed": seed,
        "image_format": image_format,
        "images": len(todo),
    }
    root = out_dir / "C-NMC_Leukemia"
    with io.atomic_dir(out_dir) as tmp:
        troot, mroot = tmp / "C-NMC_Leukemia", tmp / "masks"
        for fold in FOLDS:
            for label in ("all", "hem"):
                (troot / TRAIN_DIR / fold / label).mkdir(parents=True)
        (troot / PRELIM_DIR).mkdir(parents=True)
        (troot / FINAL_DIR).mkdir(parents=True)
        order = {
            s: _rng(seed, "order", s).permutation(int((todo["split"] == s).sum())) + 1
            for s in ("preliminary_test", "final_test")
        }
        counters = {"preliminary_test": 0, "final_test": 0}
        labels_rows, jobs = [], []
        for rec in todo.itertuples(index=False):
            uid = f"UID_{rec.subject}_{rec.k // 3 + 1}_{rec.k % 3 + 1}_{rec.label}"
            if rec.split == "train_folds":
                rel = Path(TRAIN_DIR) / rec.fold / rec.label / f"{uid}.{image_format}"
            else:
                number = order[rec.split][counters[rec.split]]
                counters[rec.split] += 1
                rel = Path(PRELIM_DIR if rec.split == "preliminary_test" else FINAL_DIR) / f"{number}.{image_format}"
                if rec.split == "preliminary_test":
                    labels_rows.append(
                        {"Patient_ID": f"{uid}.bmp", "new_names": rel.name, "labels": 1 if rec.label == "all" else 0}
                    )
            (mroot / rel).parent.mkdir(parents=True, exist_ok=True)
            jobs.append((rec.split, rec.subject, rec.k, rec.label, troot / rel, (mroot / rel).with_suffix(".png")))
        # every cell has its own seeded generator: the set is the same for any number of workers
        draw = partial(_write_cell, seed=seed, difficulty=difficulty, image_format=image_format)
        bar = tqdm(total=len(jobs), desc="synthesising cells", disable=not progress, leave=False)
        workers = workers or os.cpu_count() or 1
        if workers > 1 and len(jobs) > 4 * workers:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers) as pool:
                for _ in pool.map(draw, jobs, chunksize=32):
                    bar.update(1)
        else:
            for job in jobs:
                draw(job)
                bar.update(1)
        bar.close()
        labels = pd.DataFrame(labels_rows).sort_values("new_names", key=lambda s: s.str.split(".").str[0].astype(int))
        labels.to_csv(troot / PRELIM_LABELS, index=False)
        io.write_json(troot / SYNTHETIC_MARKER, params)
    return root


def _write_cell(job, seed: int, difficulty: float, image_format: str) -> None:
    """Draw one cell (its generator seeded by split, subject and index) and write image and mask."""
    split, subject, k, label, image_path, mask_file = job
    subj = subject_profile(seed, subject)
    rng = _rng(seed, "cell", split, subject, k)
    side = FINAL_IMAGE_SIDE if split == "final_test" else IMAGE_SIDE  # as in the real set
    image, mask = render_cell(rng, draw_cell(rng, label, difficulty, subj), subj, side)
    Image.fromarray(image).save(image_path, **({"compress_level": 1} if image_format == "png" else {}))
    Image.fromarray(mask).save(mask_file, compress_level=1)


def mask_path(image_path) -> Path:
    """Where `synthesize` wrote the mask (0 background, 1 cytoplasm, 2 nucleus) of a synthetic image."""
    p = Path(image_path)
    parts = p.parts
    i = len(parts) - 1 - parts[::-1].index("C-NMC_Leukemia")
    return Path(*parts[:i], "masks", *parts[i + 1 :]).with_suffix(".png")


GENERATOR_VERSION = 2  # bump when the generator's output changes (2: 600 px final phase, exact counts)


def ensure_synthetic(parent, data_cfg: Data, progress: bool = True) -> Path:
    """The synthetic root for these settings and this generator under `parent`, generated once and reused."""
    key = {k: getattr(data_cfg, k) for k in ("synthetic_scale", "difficulty", "seed", "image_format")}
    key["generator_version"] = GENERATOR_VERSION

    out = Path(parent) / f"synthetic-{fingerprint(key)}"
    root = out / "C-NMC_Leukemia"
    if not (root / SYNTHETIC_MARKER).is_file():
        synthesize(
            out,
            scale=key["synthetic_scale"],
            difficulty=key["difficulty"],
            seed=key["seed"],
            image_format=key["image_format"],
            progress=progress,
        )
    return root
