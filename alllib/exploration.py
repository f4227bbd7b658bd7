"""Helpers of the data-exploration chapter: image statistics, per-subject stain, and the effect of
a subject-leaking split (images of one person in both train and validation)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image


def image_features(paths, side: int = 112) -> pd.DataFrame:
    """Per image: foreground share, mean RGB of the foreground (stain), intensity spread."""
    rows = []
    for p in paths:
        with Image.open(p) as im:
            a = np.asarray(im.convert("RGB").resize((side, side), Image.BILINEAR), np.float32)
        fg = a.max(axis=2) > 10
        px = a[fg] if fg.any() else np.zeros((1, 3), np.float32)
        gray = px.mean(axis=1)
        rows.append({"path": str(p), "foreground": fg.mean(), "r": px[:, 0].mean(), "g": px[:, 1].mean(),
                     "b": px[:, 2].mean(), "gray_sd": gray.std(), "gray_p10": np.percentile(gray, 10),
                     "gray_p90": np.percentile(gray, 90)})
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

    from .preprocessing import subject_split

    data = table[table["split"] == "train_folds"].merge(features, on="path")
    X, y = data[FEATURES].to_numpy(), data["y"].astype(int).to_numpy()
    rows = []
    for seed in seeds:
        tr, va = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=seed)
        split = subject_split(data, seed)
        strd, vsd = np.flatnonzero(split["split"] == "train"), np.flatnonzero(split["split"] == "validation")
        for name, (a, b) in (("image-level random split (leaks subjects)", (tr, va)),
                             ("subject-disjoint split (Section 4.1.2)", (strd, vsd))):
            clf = make_pipeline(StandardScaler(), KNeighborsClassifier(5)).fit(X[a], y[a])
            rows.append({"split": name, "seed": seed, "BA": balanced_accuracy_score(y[b], clf.predict(X[b]))})
    return pd.DataFrame(rows)
