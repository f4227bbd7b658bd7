"""Helpers of the data-exploration chapter: image statistics, per-subject stain, and the effect of
a subject-leaking split (images of one person in both train and validation)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from alllib import CLASS_NAMES
from alllib.method.dataset import manifest_training_table
from alllib.method.preprocessing import (
    cell_mask,
    center_crop,
    make_dataset,
    random_oversampling,
    split_summary,
    subject_split,
)
from alllib.results import paper
from alllib.rounding import fmt, pct
from alllib.study.profile import SIZES


def outside_crop(full: np.ndarray, crop: int = 300) -> float:
    """Share of an image's cell pixels that fall outside the centred `crop` window (what the centre
    crop of Section 4.1.2 cuts away), from the full-resolution image."""
    fg = cell_mask(full) > 0
    total = fg.sum()
    if not total:
        return 0.0
    return float(1 - center_crop(fg[..., None], crop).sum() / total)


def image_features(paths, side: int = 112, crop: int = 300) -> pd.DataFrame:
    """Per image: foreground share, mean RGB of the foreground (stain), intensity spread, and the
    share of cell pixels the 300 px centre crop cuts away (measured at full resolution)."""
    rows = []
    for p in paths:
        with Image.open(p) as im:
            full = np.asarray(im.convert("RGB"))
        a = np.asarray(Image.fromarray(full).resize((side, side), Image.BILINEAR), np.float32)
        fg = cell_mask(a) > 0
        px = a[fg] if fg.any() else np.zeros((1, 3), np.float32)
        gray = px.mean(axis=1)
        rows.append(
            {
                "path": str(p),
                "foreground": fg.mean(),
                "r": px[:, 0].mean(),
                "g": px[:, 1].mean(),
                "b": px[:, 2].mean(),
                "gray_sd": gray.std(),
                "gray_p10": np.percentile(gray, 10),
                "gray_p90": np.percentile(gray, 90),
                "mean_intensity": float(full.mean()),
                "cell_outside_crop": outside_crop(full, crop),
            }
        )
    return pd.DataFrame(rows)


FEATURES = ["foreground", "r", "g", "b", "gray_sd", "gray_p10", "gray_p90"]


def leakage_experiment(table: pd.DataFrame, features: pd.DataFrame, seeds=range(5)) -> pd.DataFrame:
    """Balanced accuracy of a k-nearest-neighbour classifier on simple colour/shape features when
    validation images are drawn (a) at random, leaking subjects, and (b) subject-disjoint. A gap
    between the two is the domain effect that makes a leaking split look better than it is."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = table[table["split"] == "train_folds"].merge(features, on="path")
    X, y = data[FEATURES].to_numpy(), data["y"].astype(int).to_numpy()
    rows = []
    for seed in seeds:
        tr, va = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=seed)
        split = subject_split(data, seed)
        strd, vsd = np.flatnonzero(split["split"] == "train"), np.flatnonzero(split["split"] == "validation")
        for name, (a, b) in (
            ("image-level random split (leaks subjects)", (tr, va)),
            ("subject-disjoint split (Section 4.1.2)", (strd, vsd)),
        ):
            clf = make_pipeline(StandardScaler(), KNeighborsClassifier(5)).fit(X[a], y[a])
            rows.append({"split": name, "seed": seed, "BA": balanced_accuracy_score(y[b], clf.predict(X[b]))})
    return pd.DataFrame(rows)


def table3(split: pd.DataFrame) -> pd.DataFrame:
    """Our subjects and images per split beside the paper's Table 3."""

    ours = split_summary(split).set_index("split")
    ref = paper.table("table3_dataset").set_index("split").drop(columns="phase")
    return (
        pd.concat({"ours": ours, "paper": ref.loc[ours.index]}, axis=1)
        .swaplevel(axis=1)
        .sort_index(axis=1, level=0, sort_remaining=False)
    )


def split_facts(split: pd.DataFrame) -> str:
    """Class imbalance of the training folds (as the paper's 2.15) and the validation shares."""

    folds = split[split["split"].isin(["train", "validation"])]
    counts = folds["label"].value_counts()
    ref = paper.table("table3_dataset").set_index("split")
    paper_ratio = (
        ref.loc[["train", "validation"], "all_images"].sum() / ref.loc[["train", "validation"], "hem_images"].sum()
    )
    share = {lab: (folds[(folds["label"] == lab)]["split"] == "validation").mean() for lab in ("all", "hem")}
    overlap = set(split.loc[split["split"] == "train", "subject"]) & set(
        split.loc[split["split"] == "validation", "subject"]
    )
    return (
        f"Class imbalance of the training folds (train and validation together, as the paper counts it): "
        f"**{fmt(counts['all'] / counts['hem'], 2)} ALL per Hem image** (paper's Table 3: {fmt(paper_ratio, 2)}). "
        f"Validation share of images: ALL {pct(share['all'], 1)}, Hem {pct(share['hem'], 1)}. "
        f"Subjects in both train and validation: {len(overlap)}."
    )


def sample_cells(feats: pd.DataFrame, seed: int, per_class: int = 3, fragments: int = 2) -> tuple[list[str], list[str]]:
    """Fig. 2: `per_class` random training-fold cells of each class, then the `fragments` images
    with the largest share of cell pixels outside the crop window. Returns (paths, titles)."""
    train = feats[feats["split"] == "train_folds"]
    picks = [
        train[train["label"] == c].sample(min(per_class, (train["label"] == c).sum()), random_state=seed)
        for c in ("all", "hem")
    ]
    messy = train.sort_values("cell_outside_crop", ascending=False).head(fragments)
    rows = pd.concat(picks + [messy])
    titles = [
        f"{CLASS_NAMES[lab]}, subject {s}" + (" (most cut by the crop)" if i >= len(rows) - len(messy) else "")
        for i, (lab, s) in enumerate(zip(rows["label"], rows["subject"]))
    ]
    return rows["path"].tolist(), titles


def sample_facts(titles: list[str]) -> dict:
    """Fig. 2's caption facts, counted from the titles `sample_cells` gave."""

    random = [t for t in titles if "most cut" not in t]
    n = {c: sum(t.startswith(c + ",") for t in random) for c in ("ALL", "Hem")}
    return {"cells": f"{n['ALL']} ALL and {n['Hem']} Hem", "fragments": len(titles) - len(random), "crop": SIZES[1]}


def crop_facts(feats: pd.DataFrame) -> str:
    """What the 300 px centre crop cuts away, measured on every labelled image."""
    cut = feats["cell_outside_crop"]
    return (
        f"Measured on all {len(feats)} labelled images: the crop cuts away part of the cell in "
        f"**{pct((cut > 0).mean(), 1)}** of them; on those it removes a median {pct(cut[cut > 0].median(), 1)} "
        "of the cell "
        f"pixels (largest: {pct(cut.max(), 1)})."
        if (cut > 0).any()
        else f"Measured on all {len(feats)} labelled images: no cell reaches outside the 300 px window."
    )


def oversampling_counts(split: pd.DataFrame, seed: int) -> tuple[pd.Series, pd.Series]:
    """Images per class in the training split before and after random oversampling."""
    tr = split[split["split"] == "train"]
    idx = random_oversampling(tr["y"].astype(int).to_numpy(), seed)
    return tr["label"].map(CLASS_NAMES).value_counts(), tr["label"].iloc[idx].map(CLASS_NAMES).value_counts()


def leakage_summary(leak: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Mean and SD of BA per split kind over the seeds, and the sentence comparing them: a gap is
    called one only when it exceeds twice the larger of the two seed SDs."""
    summary = leak.groupby("split")["BA"].agg(["mean", "std"])
    image = summary.loc[summary.index.str.startswith("image")].iloc[0]
    subject = summary.loc[summary.index.str.startswith("subject")].iloc[0]
    gap, noise = image["mean"] - subject["mean"], 2 * max(image["std"], subject["std"])
    seeds = int(leak.groupby("split").size().iloc[0])
    if abs(gap) <= noise:
        verdict = f"within twice the seed-to-seed SD ({fmt(noise, 3)}): no difference is shown"
    else:
        word = "higher" if gap > 0 else "lower"
        verdict = f"more than twice the seed-to-seed SD ({fmt(noise, 3)}): the leaking split scores {word}"
    return summary, (
        f"Over {seeds} seeds, the leaking split minus the subject-disjoint one: **{fmt(gap, 3, sign=True)}** "
        "balanced accuracy, "
        f"{verdict}."
    )


def stain_between_subjects(feats: pd.DataFrame) -> float:
    """The share of the variance of the cells' mean colour (red, green, blue together) that lies
    between the training subjects' means (one-way ANOVA's between-group share, eta squared)."""
    train = feats[feats["split"] == "train_folds"]
    colour = train[["r", "g", "b"]]
    grand = colour.mean()
    total = ((colour - grand) ** 2).to_numpy().sum()
    means = colour.groupby(train["subject"]).transform("mean")
    between = ((means - grand) ** 2).to_numpy().sum()
    return float(between / total) if total else float("nan")


def stain_sentence(share: float, subjects: int) -> str:
    return (
        f"{pct(share, 0)} of the variance of the cells' mean colour lies between the {subjects} training subjects "
        "(the rest within them): "
        + (
            "images of one subject share a stain, so the split keeps subjects apart."
            if share > 0.5
            else "subjects do not dominate the colour here."
        )
    )


def real_oversampling_facts(seed: int) -> str:
    """Random oversampling on the real data, from the official file manifest: this project's split of
    the real training folds, its training images per class, and the epoch size after oversampling."""
    split = subject_split(manifest_training_table(), seed)
    train = split[split["split"] == "train"]["label"].value_counts()
    major, minor = ("all", "hem") if train["all"] >= train["hem"] else ("hem", "all")
    return (
        f"On the real data (the official manifest, this project's split of seed {seed}): {train[major]} "
        f"{CLASS_NAMES[major]} and {train[minor]} {CLASS_NAMES[minor]} training images; {CLASS_NAMES[minor]} is "
        f"oversampled to {train[major]}, so an epoch holds {2 * train[major]} images."
    )


def subject_split_for(study, seed: int) -> pd.DataFrame:
    """The subject split the runs of `seed` train on (the profile's `split` setting)."""
    return subject_split(study.table, study.split_seed(seed))


def augmented_batch(split: pd.DataFrame, augment_cfg: dict, seed: int, n: int = 12) -> tuple[list, list[str]]:
    """One training batch of the 300 px crop at full resolution, as the training pipeline augments it."""

    ds, _ = make_dataset(
        split[split["split"] == "train"], 300, 1.0, n, seed=seed, training=True, augment_cfg=augment_cfg
    )
    x, y = next(iter(ds))
    return list(x.numpy()), [CLASS_NAMES["all"] if v[1] else CLASS_NAMES["hem"] for v in y.numpy()]
