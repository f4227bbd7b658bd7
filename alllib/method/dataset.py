"""Section 4.1.1: the C-NMC-2019 data set in its official layout (TCIA and its Kaggle mirror)::

    C-NMC_Leukemia/
      training_data/fold_{0,1,2}/{all,hem}/UID_<subject>_<image>_<cell>_<all|hem>.bmp
      validation_data/C-NMC_test_prelim_phase_data/{1..1867}.bmp
      validation_data/C-NMC_test_prelim_phase_data_labels.csv   (Patient_ID,new_names,labels; 1 = ALL)
      testing_data/C-NMC_test_final_phase_data/*.bmp             (no labels)

`read_cnmc` turns such a tree into one tidy table of images. `verify_manifest` checks a tree
against the official file list shipped with the package. The synthetic stand-in of
`alllib.study.synthetic` is written in exactly this layout and read by exactly this code.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from alllib.errors import DataError

IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg")
TRAIN_DIR = "training_data"
FOLDS = ("fold_0", "fold_1", "fold_2")
PRELIM_DIR = "validation_data/C-NMC_test_prelim_phase_data"
PRELIM_LABELS = "validation_data/C-NMC_test_prelim_phase_data_labels.csv"
FINAL_DIR = "testing_data/C-NMC_test_final_phase_data"
LABEL_COLUMNS = ["Patient_ID", "new_names", "labels"]
SYNTHETIC_MARKER = "SYNTHETIC.json"
OS_METADATA = {".DS_Store", "Thumbs.db", "desktop.ini"}  # files an OS leaves in folders: ignored silently
IMAGE_SIDE = 450  # training and preliminary-test images are 450 x 450 RGB
FINAL_IMAGE_SIDE = 600  # the final-phase test images are 600 x 600 RGB (1,080,054-byte BMPs in the manifest)

_NAME = re.compile(r"^UID_(?P<subject>[Hh]?\d+)_(?P<image>\d+)_(?P<cell>\d+)_(?P<label>all|hem)$", re.IGNORECASE)

COLUMNS = ["image_id", "path", "split", "fold", "label", "y", "subject"]


def parse_name(name: str) -> dict:
    """Subject and label of a file name such as `UID_11_10_1_all.bmp` or `UID_h3_2_1_hem.bmp`.

    Subjects are case-normalised (`h3` and `H3` are one person), and ALL subject `1` and healthy
    subject `H1` are different people."""
    stem = Path(name).stem
    match = _NAME.match(stem)
    if not match:
        raise DataError(
            f"cannot parse subject from file name {name!r}: expected UID_<subject>_<image>_<cell>_<all|hem>"
            " with subject a number (ALL) or H<number> (Hem)"
        )
    subject = match["subject"].upper()
    label = match["label"].lower()
    if subject.startswith("H") != (label == "hem"):
        raise DataError(
            f"file name {name!r}: subject {subject} is {'healthy' if subject.startswith('H') else 'an ALL patient'}"
            f" but the name says {label!r}"
        )
    return {"subject": subject, "label": label}


def _images_in(folder: Path, ignored: list) -> list[Path]:
    files = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            files.append(p)
        else:
            ignored.append(p)
    return files


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(
            f"missing folder {path}: expected {what} (official C-NMC-2019 layout, see alllib.method.dataset)"
        )
    return path


def read_cnmc(root, require_final: bool = False) -> pd.DataFrame:
    """One row per image: image_id, path, split (train_folds / preliminary_test / final_test),
    fold, label (all / hem, missing for the final test), y (1 = ALL, 0 = Hem) and subject."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist: expected the folder C-NMC_Leukemia/ of C-NMC-2019")
    ignored: list[Path] = []
    rows = []
    train = _require_dir(root / TRAIN_DIR, "training_data/ with fold_0, fold_1 and fold_2")
    for fold in FOLDS:
        for label in ("all", "hem"):
            folder = _require_dir(
                train / fold / label, f"the {label.upper() if label == 'all' else 'Hem'} images of {fold}"
            )
            files = _images_in(folder, ignored)
            if not files:
                raise DataError(
                    f"class folder {folder} has no images: expected .bmp/.png/.jpg files of class {label!r}"
                )
            for p in files:
                parsed = parse_name(p.name)
                if parsed["label"] != label:
                    raise DataError(f"{p}: file name says {parsed['label']!r} but it lies in the {label!r} folder")
                rows.append(
                    {
                        "image_id": p.stem,
                        "path": str(p),
                        "split": "train_folds",
                        "fold": fold,
                        "label": label,
                        "subject": parsed["subject"],
                    }
                )
    rows += _read_prelim(root, ignored)
    final = root / FINAL_DIR
    if final.is_dir():
        for p in _images_in(final, ignored):
            rows.append(
                {
                    "image_id": f"final_{p.stem}",
                    "path": str(p),
                    "split": "final_test",
                    "fold": None,
                    "label": None,
                    "subject": None,
                }
            )
    elif require_final:
        _require_dir(final, "the unlabelled final-test images")
    stray = [p for p in ignored if p.name not in OS_METADATA]
    if stray:
        warnings.warn(f"ignored {len(stray)} entries that are not images, e.g. {stray[0]}", stacklevel=2)
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "y"])
    table["y"] = table["label"].map({"all": 1, "hem": 0}).astype("Int64")
    return table[COLUMNS]


def _read_prelim(root: Path, ignored: list) -> list[dict]:
    folder = _require_dir(root / PRELIM_DIR, "the preliminary-test images")
    labels_path = root / PRELIM_LABELS
    if not labels_path.is_file():
        raise DataError(f"missing labels file {labels_path}: expected a CSV with columns {','.join(LABEL_COLUMNS)}")
    labels = pd.read_csv(labels_path, dtype=str)
    if list(labels.columns) != LABEL_COLUMNS:
        raise DataError(f"labels file {labels_path} has columns {list(labels.columns)}: expected {LABEL_COLUMNS}")
    bad = labels[~labels["labels"].isin(["0", "1"])]
    if len(bad):
        raise DataError(
            f"labels file {labels_path}, row {bad.index[0] + 2}: label {bad['labels'].iloc[0]!r}, "
            "expected 1 (ALL) or 0 (Hem)"
        )
    if labels["new_names"].duplicated().any():
        dup = labels.loc[labels["new_names"].duplicated(), "new_names"].iloc[0]
        raise DataError(f"labels file {labels_path} names {dup!r} twice")
    files = {p.name: p for p in _images_in(folder, ignored)}
    missing = sorted(set(labels["new_names"]) - set(files))
    if missing:
        raise DataError(
            f"labels file {labels_path} names {len(missing)} images missing from {folder}, e.g. {missing[0]!r}"
        )
    unlabelled = sorted(set(files) - set(labels["new_names"]))
    if unlabelled:
        warnings.warn(
            f"{len(unlabelled)} preliminary-test images have no label in {labels_path} and are skipped, "
            f"e.g. {unlabelled[0]}",
            stacklevel=3,
        )
    rows = []
    for i, rec in enumerate(labels.itertuples(index=False)):
        parsed = parse_name(rec.Patient_ID)
        label = "all" if rec.labels == "1" else "hem"
        if parsed["label"] != label:
            raise DataError(
                f"labels file {labels_path}, row {i + 2}: Patient_ID {rec.Patient_ID!r} says "
                f"{parsed['label']!r} but labels says {rec.labels} ({label!r})"
            )
        p = files[rec.new_names]
        rows.append(
            {
                "image_id": f"prelim_{p.stem}",
                "path": str(p),
                "split": "preliminary_test",
                "fold": None,
                "label": label,
                "subject": parsed["subject"],
            }
        )
    return rows


def is_synthetic(root) -> bool:
    return (Path(root) / SYNTHETIC_MARKER).is_file()


def data_fingerprint(table: pd.DataFrame, root) -> str:
    """Hash of the relative paths and sizes of every image (fast; sha256 of contents is `verify_manifest`)."""
    h = hashlib.sha256()
    root = Path(root)
    for path in sorted(table["path"]):
        p = Path(path)
        h.update(f"{p.relative_to(root)}:{p.stat().st_size}\n".encode())
    return h.hexdigest()[:12]


def check_images(
    table: pd.DataFrame, splits=("train_folds", "preliminary_test"), side: int = IMAGE_SIDE, progress: bool = True
) -> pd.DataFrame:
    """Open every image of `splits` fully. Raises one DataError that lists every unreadable or
    truncated file and every one that is not `side` x `side` RGB (the first five by name, with the
    count). Returns size and mean intensity per image."""
    from PIL import Image
    from tqdm.auto import tqdm

    rows, problems = [], []
    subset = table[table["split"].isin(splits)]
    for path in tqdm(subset["path"], desc="checking images", disable=not progress, leave=False):
        try:
            with Image.open(path) as im:
                im.load()
                mode, size = im.mode, im.size
                arr = np.asarray(im)
        except Exception as exc:  # PIL raises many types for broken files
            problems.append(f"{path} (cannot be read: {exc})")
            continue
        if mode != "RGB" or size != (side, side):
            problems.append(f"{path} ({size[0]}x{size[1]} {mode})")
            continue
        rows.append(
            {
                "path": path,
                "width": size[0],
                "height": size[1],
                "mean_intensity": float(arr.mean()),
                "foreground": float((arr.max(axis=2) > 10).mean()),
            }
        )
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise DataError(
            f"{len(problems)} of {len(subset)} images failed the check (each must be a complete "
            f"{side}x{side} RGB image): {shown}. Nothing was trained; replace or remove these files."
        )
    return pd.DataFrame(rows)


def load_manifest() -> pd.DataFrame:
    """The official file list (path, bytes, sha256) of all 15,114 C-NMC-2019 images."""
    with resources.files("alllib").joinpath("data/cnmc/manifest.tsv").open() as fh:
        return pd.read_csv(fh, sep="\t")


def manifest_training_table() -> pd.DataFrame:
    """The images of the training folds as `read_cnmc` lists them, from the official manifest alone
    (no data on disk): what sizes the real study's epochs before the data is downloaded."""
    m = load_manifest()
    rel = m["path"].str.split("/", n=1).str[1]
    rows = []
    for r in rel[rel.str.startswith(TRAIN_DIR + "/")]:
        _, fold, label, name = r.split("/")
        rows.append({"image_id": Path(name).stem, "path": r, "split": "train_folds", "fold": fold, **parse_name(name)})
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "y"])
    table["y"] = table["label"].map({"all": 1, "hem": 0}).astype("Int64")
    return table[COLUMNS]


def training_subjects() -> pd.DataFrame:
    """Per subject of the training folds: label, fold and image count (73 subjects, 10,661 images)."""
    with resources.files("alllib").joinpath("data/cnmc/training_subjects.csv").open() as fh:
        return pd.read_csv(fh, dtype={"subject": str})


def _split_of(rel: str) -> tuple[str, str | None, str | None]:
    parts = rel.split("/")
    if parts[0] == TRAIN_DIR and len(parts) == 4:
        return "train_folds", parts[1], parts[2]
    if rel.startswith(PRELIM_DIR + "/"):
        return "preliminary_test", None, None
    if rel.startswith(FINAL_DIR + "/"):
        return "final_test", None, None
    return "other", None, None


def verify_manifest(root, full: bool = False, manifest: pd.DataFrame | None = None, progress: bool = True) -> dict:
    """Check a data root (the folder C-NMC_Leukemia/) against the official manifest.

    Fast mode compares file sizes; full mode also compares sha256. Returns a report with counts per
    split, fold and class, and the lists of missing, extra and altered files."""
    from tqdm.auto import tqdm

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist: expected the folder C-NMC_Leukemia/")
    manifest = load_manifest() if manifest is None else manifest
    prefix = "C-NMC_Leukemia/"
    expected = {
        p[len(prefix) :] if p.startswith(prefix) else p: (b, s)
        for p, b, s in zip(manifest["path"], manifest["bytes"], manifest["sha256"])
    }
    present = {
        str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    }
    missing = sorted(set(expected) - set(present))
    extra = sorted(set(present) - set(expected))
    altered = []
    common = sorted(set(expected) & set(present))
    for rel in tqdm(common, desc="sha256" if full else "sizes", disable=not progress, leave=False):
        size, sha = expected[rel]
        path = present[rel]
        if path.stat().st_size != size:
            altered.append((rel, f"size {path.stat().st_size} != {size}"))
        elif full:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != sha:
                altered.append((rel, "sha256 differs"))
    counts = pd.DataFrame(
        [dict(zip(("split", "fold", "class"), _split_of(rel))) for rel in present] or [],
        columns=["split", "fold", "class"],
    )
    counts = (
        counts.fillna("-")
        .value_counts()
        .rename("images")
        .reset_index()
        .sort_values(["split", "fold", "class"])
        .reset_index(drop=True)
    )
    return {
        "root": str(root),
        "mode": "sha256" if full else "size",
        "expected": len(expected),
        "present": len(present),
        "counts": counts,
        "missing": missing,
        "extra": extra,
        "altered": altered,
        "ok": not (missing or extra or altered),
    }


def format_report(report: dict, limit: int = 10) -> str:
    lines = [
        f"C-NMC-2019 manifest check of {report['root']} ({report['mode']} mode)",
        f"  files expected {report['expected']}, present {report['present']}",
        report["counts"].to_string(index=False),
    ]
    for key in ("missing", "extra", "altered"):
        items = report[key]
        lines.append(f"  {key}: {len(items)}")
        lines += [f"    {item}" for item in items[:limit]]
        if len(items) > limit:
            lines.append(f"    ... and {len(items) - limit} more")
    lines.append("  OK" if report["ok"] else "  NOT OK: the tree differs from the official C-NMC-2019 release")
    return "\n".join(lines)


def read_rgb(paths) -> list[np.ndarray]:
    """The images of `paths` as RGB arrays at full resolution (for figures)."""
    from PIL import Image

    out = []
    for p in paths:
        with Image.open(p) as im:
            out.append(np.asarray(im.convert("RGB")))
    return out
