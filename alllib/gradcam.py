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

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ConfigError

METHODS = ("gradcam", "gradcam++")


def class_activation_maps(model, images: np.ndarray, classes, layer: str, method: str = "gradcam",
                          batch_size: int = 16, expand: bool = True) -> np.ndarray:
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
        x = np.asarray(images[start:start + batch_size], np.float32)
        cam = tool(CategoricalScore(classes[start:start + batch_size].tolist()), x, penultimate_layer=layer,
                   seek_penultimate_conv_layer=False, expand_cam=expand, normalize_cam=False)
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
        raise ConfigError(f"ensemble_map: need one positive-sum weight per map, got {len(maps)} maps and weights {w.tolist()}")
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


def cell_mask(images: np.ndarray, threshold: int = 10) -> np.ndarray:
    """Foreground of segmented cells: any channel above `threshold` (the background is black)."""
    return (np.asarray(images).max(axis=-1) > threshold).astype(np.float32)


def nucleus_masks(paths, size: int, scale: float) -> np.ndarray | None:
    """Nucleus masks of synthetic images (None for real data), cropped and resized like the images."""
    from PIL import Image

    from .config import input_pixels
    from .preprocessing import crop_box
    from .synthetic import mask_path

    files = [mask_path(p) for p in paths]
    if not files or not all(f.is_file() for f in files):
        return None
    out = []
    px = input_pixels(size, scale)
    for f in files:
        m = np.asarray(Image.open(f))
        off, s = crop_box(m.shape[0], size)
        m = Image.fromarray(((m[off:off + s, off:off + s] == 2) * 255).astype(np.uint8)).resize((px, px), Image.NEAREST)
        out.append(np.asarray(m) > 127)
    return np.stack(out).astype(np.float32)


def cached_maps(run: dict, images: np.ndarray, image_ids, classes, method: str, cache_dir) -> np.ndarray:
    """Maps of one run for these images, computed once and cached as .npz beside the other results."""
    from .models import get_backbone, load_model

    cache = Path(cache_dir) / f"{run['run_id']}_{method.replace('+', 'p')}.npz"
    ids = np.asarray(image_ids).astype(str)
    if cache.is_file():
        with np.load(cache) as z:
            if np.array_equal(z["image_ids"], ids) and np.array_equal(z["classes"], np.asarray(classes)):
                return z["maps"]
    model = load_model(Path(run["dir"]) / "model.keras")
    maps = class_activation_maps(model, images, classes, get_backbone(run["backbone"]).last_conv, method)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.stem + ".partial.npz")
    np.savez_compressed(tmp, maps=maps, image_ids=ids, classes=np.asarray(classes))
    tmp.replace(cache)
    return maps
