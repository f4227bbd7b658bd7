"""Section 5, Figs. 7-9: Grad-CAM maps of the single models and of the weighted ensemble.

- `class_activation_maps`: tf-keras-vis Grad-CAM (or Grad-CAM++) with ReplaceToLinear and a
  CategoricalScore, on the saved flat models, at the layer the model registry names (the tool's
  own search picks a residual 1x1 convolution in Xception under Keras 3), batched;
- `ensemble_map`: the WEN-weighted average of the single models' maps for the same image, each map
  first normalised to [0, 1] and resized to the image, so the weights alone set each model's share;
- `concentration`: measures of the paper's claim that ensemble maps are "concentrated" and single
  maps "coarse and scattered": share of map energy inside the cell (non-black pixels) and inside
  the nucleus (synthetic masks), and the map's normalised entropy (1 = spread evenly).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from alllib import CLASS_NAMES
from alllib.errors import ConfigError
from alllib.method.ensemble import WeightSource, ensemble_predictions
from alllib.method.metrics import predict_labels
from alllib.method.models import get_backbone, load_model
from alllib.method.preprocessing import cell_mask, center_crop, input_pixels, load_arrays
from alllib.results.analysis import test_rows
from alllib.results.stats import holm
from alllib.results.summaries import GradcamSummary
from alllib.study.synthetic import mask_path

if TYPE_CHECKING:  # names used in annotations only
    from alllib.study.runs import Run, RunSet

METHODS = ("gradcam", "gradcam++")


def class_activation_maps(
    model, images: np.ndarray, classes, layer: str, method: str = "gradcam", batch_size: int = 16, expand: bool = True
) -> np.ndarray:
    """Maps for `images` (N, s, s, 3, raw RGB) and target `classes` (N,), each normalised to [0, 1].
    expand=True resizes them to the input size; False keeps the layer's resolution."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    if method not in METHODS:
        raise ConfigError(f"unknown Grad-CAM method {method!r}: expected one of {', '.join(METHODS)}")
    model.get_layer(layer)  # a clear error if the registry's layer is not in the model
    cls = GradcamPlusPlus if method == "gradcam++" else Gradcam
    tool = cls(model, model_modifier=ReplaceToLinear(), clone=True)
    classes = np.asarray(classes).astype(int)
    out = []
    for start in range(0, len(images), batch_size):
        x = np.asarray(images[start : start + batch_size], np.float32)
        cam = tool(
            CategoricalScore(classes[start : start + batch_size].tolist()),
            x,
            penultimate_layer=layer,
            seek_penultimate_conv_layer=False,
            expand_cam=expand,
            normalize_cam=False,
        )
        out.append(np.asarray(cam, np.float32).reshape(len(x), *np.shape(cam)[-2:]))
    return normalise(np.concatenate(out)) if out else np.zeros((0,) + images.shape[1:3], np.float32)


def normalise(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to [0, 1] (min-max); a constant map becomes all zeros."""
    maps = np.asarray(maps, np.float32)
    lo = maps.min(axis=(-2, -1), keepdims=True)
    span = maps.max(axis=(-2, -1), keepdims=True) - lo
    return np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1), 0.0).astype(np.float32)


def resize_maps(maps: np.ndarray, side: int) -> np.ndarray:
    import tensorflow as tf

    if maps.shape[-1] == side:
        return maps
    return tf.image.resize(maps[..., None], (side, side), method="bilinear").numpy()[..., 0]


def ensemble_map(maps: list[np.ndarray] | np.ndarray, weights) -> np.ndarray:
    """WEN map: sum_k W_k norm(M_k) / sum_k W_k, all maps resized to the first's size."""
    maps = list(maps)
    w = np.asarray(weights, float)
    if len(maps) != len(w) or w.sum() <= 0:
        raise ConfigError(
            f"ensemble_map: need one positive-sum weight per map, got {len(maps)} maps and weights {w.tolist()}"
        )
    side = maps[0].shape[-1]
    stack = np.stack([normalise(resize_maps(m, side)) for m in maps])
    return normalise(np.tensordot(w, stack, axes=1) / w.sum())


def concentration(maps: np.ndarray, cell_masks: np.ndarray, nucleus_masks: np.ndarray | None = None) -> pd.DataFrame:
    """Per map: share of map energy inside the cell and the nucleus, and normalised entropy."""
    maps = np.asarray(maps, np.float64)
    total = maps.sum(axis=(-2, -1))
    safe = np.where(total > 0, total, 1)
    out = {"energy_in_cell": (maps * cell_masks).sum(axis=(-2, -1)) / safe}
    if nucleus_masks is not None:
        out["energy_in_nucleus"] = (maps * nucleus_masks).sum(axis=(-2, -1)) / safe
    p = maps / safe[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(p > 0, p * np.log(p), 0).sum(axis=(-2, -1))
    out["entropy"] = ent / np.log(maps.shape[-1] * maps.shape[-2])
    frame = pd.DataFrame(out)
    frame.loc[total <= 0, :] = np.nan  # an all-zero map carries no evidence
    return frame


def nucleus_masks(paths, size: int, scale: float) -> np.ndarray | None:
    """Nucleus masks of synthetic images (None for real data), cropped and resized like the images."""
    from PIL import Image

    files = [mask_path(p) for p in paths]
    if not files or not all(f.is_file() for f in files):
        return None
    out = []
    px = input_pixels(size, scale)
    for f in files:
        m = np.asarray(Image.open(f))
        nucleus = center_crop(m[..., None], size)[..., 0] == 2
        m = Image.fromarray((nucleus * 255).astype(np.uint8)).resize((px, px), Image.NEAREST)
        out.append(np.asarray(m) > 127)
    return np.stack(out).astype(np.float32)


def cached_maps(run: Run, images: np.ndarray, image_ids, classes, method: str, cache_dir) -> np.ndarray:
    """Maps of one run for these images, computed once and cached as .npz beside the other results."""

    cache = Path(cache_dir) / f"{run.run_id}_{method.replace('+', 'p')}.npz"
    ids = np.asarray(image_ids).astype(str)
    if cache.is_file():
        with np.load(cache) as z:
            if np.array_equal(z["image_ids"], ids) and np.array_equal(z["classes"], np.asarray(classes)):
                return z["maps"]
    model = load_model(run.folder / "model.keras")
    maps = class_activation_maps(model, images, classes, get_backbone(run.backbone).last_conv, method)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.stem + ".partial.npz")
    np.savez_compressed(tmp, maps=maps, image_ids=ids, classes=np.asarray(classes))
    tmp.replace(cache)
    return maps


# ---------------------------------------------------------------- the chapter: sample, cases, tests

MEASURES = ("energy_in_cell", "energy_in_nucleus", "entropy")
# ... as the book names them
MEASURE_NAMES = {
    "energy_in_cell": "energy in the cell",
    "energy_in_nucleus": "energy in the nucleus",
    "entropy": "entropy",
}


def concentration_sample(test: pd.DataFrame, n: int, seed: int) -> np.ndarray:
    """Row positions of `test` for the concentration test, drawn without looking at any prediction:
    stratified by class and subject (every subject gives the same number of images, or all it has
    when fewer), seeded. Returns sorted positions."""
    rng = np.random.default_rng(seed)
    groups = [g.index.to_numpy() for _, g in test.reset_index(drop=True).groupby(["label", "subject"], sort=True)]
    if not groups:
        return np.zeros(0, int)
    per = max(1, n // len(groups))
    picks = [rng.choice(g, size=min(per, len(g)), replace=False) for g in groups]
    return np.sort(np.concatenate(picks))


def figure_cases(test: pd.DataFrame, single: dict[str, np.ndarray], ensemble_p: np.ndarray, label: str) -> dict:
    """For Figs. 7 and 8 (selected, as the paper's): per model, the first test image of class
    `label` that the model misclassifies and the ensemble classifies correctly (None if none)."""

    y = test["y"].to_numpy(int)
    ens_right = predict_labels(ensemble_p) == y
    is_label = (test["label"] == label).to_numpy()
    out = {}
    for name, p in single.items():
        hits = np.flatnonzero(is_label & (predict_labels(p) != y) & ens_right)
        out[name] = int(hits[0]) if len(hits) else None
    return out


def concentration_tests(conc: pd.DataFrame, ensemble: str = "WEN-kappa") -> tuple[pd.DataFrame, list[str]]:
    """Ensemble against each single model, the subject as the unit: each measure averaged over a
    subject's images, then a Wilcoxon signed-rank test over subjects; Holm over the single models
    (per measure). `conc` has columns model, subject and the measures. Returns the table and the
    models without usable maps (every map flat)."""
    from scipy.stats import wilcoxon

    measures = [m for m in MEASURES if m in conc]
    per_subject = conc.groupby(["model", "subject"])[measures].mean()
    e = per_subject.loc[ensemble]
    models = [m for m in dict.fromkeys(conc["model"]) if m != ensemble]
    flat = [m for m in models if conc.loc[conc["model"] == m, measures[0]].isna().all()]
    rows = []
    for measure in measures:
        for name in models:
            s = per_subject.loc[name][measure]
            both = pd.concat([e[measure], s], axis=1, keys=["e", "s"]).dropna()
            diff = both["e"] - both["s"]
            p = wilcoxon(both["e"], both["s"]).pvalue if len(both) > 1 and (diff != 0).any() else float("nan")
            rows.append(
                {
                    "measure": measure,
                    "single": name,
                    "subjects": len(both),
                    "median ensemble": both["e"].median(),
                    "median single": both["s"].median(),
                    "median difference": diff.median() if len(diff) else float("nan"),
                    "Wilcoxon p": p,
                }
            )
    table = pd.DataFrame(rows)
    if len(table):
        table["Holm p"] = np.nan
        for idx in table.groupby("measure").groups.values():
            table.loc[idx, "Holm p"] = holm(table.loc[idx, "Wilcoxon p"].to_numpy())
    return table, flat


def significantly(
    table: pd.DataFrame, direction: int, measure: str = "energy_in_cell", alpha: float = 0.05
) -> list[str]:
    """Single models the ensemble beats (direction +1) or trails (-1) on `measure`, Holm-adjusted."""
    t = table[(table["measure"] == measure) & (table["Holm p"] < alpha)]
    return t.loc[np.sign(t["median difference"]) == direction, "single"].tolist()


@dataclass
class GradcamChapter:
    """Everything the Grad-CAM chapter shows, and its typed summary (`summary`)."""

    size: int
    seed: int
    names: list[str]  # the members, in the paper's order
    weights: dict[str, float]  # WEN-kappa's validation weights
    images: np.ndarray  # the images mapped (rows of `sub`)
    sub: pd.DataFrame  # their test rows
    at: dict[int, int]  # position in the test split -> row in `sub`
    maps: dict[str, np.ndarray]  # each member's maps
    ens_maps: np.ndarray  # the ensemble's maps
    p_ensemble: np.ndarray
    p_single: dict[str, np.ndarray]
    cases: dict[str, dict]  # the selected cases of Figs. 7 (hem) and 8 (all)
    fig9: list[int]
    concentration: pd.DataFrame
    tests: pd.DataFrame
    summary: GradcamSummary


def gradcam_chapter(study, runs: RunSet, method: str, seed: int | None = None):
    """Maps of the five models and of WEN-kappa (leak-free weights) at the crop size for (a) a
    sample of test images drawn without looking at predictions and (b) the selected error cases of
    Figs. 7 and 8; their concentration and the subject-level tests; and the typed summary."""

    seed = runs.first_seed if seed is None else seed
    size = runs.crop_size(seed)
    chosen = runs.where(size, seed)
    preds = runs.at(size, seed)
    ens, weights = ensemble_predictions(preds, "wen-kappa", WeightSource.VALIDATION)
    test = ens.merge(study.table[["image_id", "path"]], on="image_id")
    single = {
        r.display: test_rows(r.predictions).set_index("image_id").loc[test.image_id, "p_all"].to_numpy() for r in chosen
    }
    names = list(preds)
    sample = concentration_sample(test, study.cfg.gradcam.images, seed)
    cases = {lab: figure_cases(test, single, test["p_all"].to_numpy(), lab) for lab in ("hem", "all")}
    case_pos = sorted({i for c in cases.values() for i in c.values() if i is not None})
    fig9 = np.flatnonzero((test["label"] == "all").to_numpy())[: study.cfg.gradcam.examples_per_class]
    positions = np.array(sorted(set(sample.tolist()) | set(case_pos) | set(fig9.tolist())), int)
    sub = test.iloc[positions].reset_index(drop=True)
    at = {int(p): i for i, p in enumerate(positions)}  # position in `test` -> row in `sub`
    images = load_arrays(sub, size, study.cfg.input_scale)
    classes = sub["y"].astype(int).to_numpy()
    maps = {
        r.display: cached_maps(r, images, sub["image_id"], classes, method, study.results / "gradcam") for r in chosen
    }
    ens_maps = ensemble_map([maps[n] for n in names], [weights[n] for n in names])
    rows = [at[int(p)] for p in sample]
    cells = cell_mask(images[rows])
    nuclei = nucleus_masks(sub["path"].iloc[rows], size, study.cfg.input_scale)
    conc = pd.concat(
        [
            concentration(m[rows], cells, nuclei).assign(model=n, subject=sub["subject"].iloc[rows].to_numpy())
            for n, m in {**{n: maps[n] for n in names}, "WEN-kappa": ens_maps}.items()
        ],
        ignore_index=True,
    )
    tests, flat = concentration_tests(conc)
    summary = GradcamSummary(
        label=study.label(),
        method=method,
        images=len(rows),
        subjects=int(sub["subject"].iloc[rows].nunique()),
        sample_seed=seed,
        models=names,
        models_without_maps=flat,
        more_concentrated_than=significantly(tests, +1),
        less_concentrated_than=significantly(tests, -1),
        paired=tests.to_dict("records"),
    )
    p_sub = sub["p_all"].to_numpy()
    single_sub = {n: single[n][positions] for n in names}
    return GradcamChapter(
        size=size,
        seed=seed,
        names=names,
        weights=weights,
        images=images,
        sub=sub,
        at=at,
        maps=maps,
        ens_maps=ens_maps,
        p_ensemble=p_sub,
        p_single=single_sub,
        cases=cases,
        fig9=[at[int(p)] for p in fig9],
        concentration=conc,
        tests=tests,
        summary=summary,
    )


def case_rows(ch, label: str) -> list[dict]:
    """Rows of Fig. 7 (Hem) or Fig. 8 (ALL) for `figures.gradcam_rows`: per backbone its selected case."""

    rows = []
    for n in ch.names:
        pos = ch.cases[label][n]
        if pos is None:
            rows.append(
                {
                    "backbone": n,
                    "note": f"no {CLASS_NAMES[label]} test image that {n} misclassifies and WEN-kappa gets right",
                }
            )
            continue
        i = ch.at[pos]
        rows.append(
            {
                "backbone": n,
                "image": ch.images[i],
                "single": ch.maps[n][i],
                "ensemble": ch.ens_maps[i],
                "true": CLASS_NAMES[label],
                "p_single": ch.p_single[n][i],
                "p_ensemble": ch.p_ensemble[i],
            }
        )
    return rows


def concentration_facts(ch) -> dict:
    """The concentration figure's caption facts: which measures it has, on how many images."""
    nucleus = "energy_in_nucleus" in ch.concentration and ch.concentration["energy_in_nucleus"].notna().any()
    return {"nucleus": " and inside the nucleus" if nucleus else "", "images": ch.summary.images}
