"""Profiles (smoke, demo, paper): small YAML files with every setting of a study, plus
command-line overrides such as `epochs=3` or `training.batch_size=16`."""
from __future__ import annotations

import copy
import hashlib
import json
from importlib import resources
from pathlib import Path

import yaml

from .errors import ConfigError

PROFILES = ("smoke", "demo", "paper")
SIZES = (450, 300)  # full image and the paper's centre crop
PER_BACKBONE = "per_backbone"  # training.per_backbone.<backbone>.<setting>: a CPU profile's per-backbone departures


def profile_path(name: str) -> Path:
    if name in PROFILES:
        return Path(str(resources.files("alllib") / "profiles" / f"{name}.yml"))
    path = Path(name)
    if path.suffix in (".yml", ".yaml") and path.exists():
        return path
    raise ConfigError(f"unknown profile {name!r}: expected one of {', '.join(PROFILES)} or a path to a .yml file")


def _parse_value(text: str):
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse override value {text!r}: {exc}") from None
    if isinstance(value, str):  # YAML 1.1 reads 1e-8 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _leaf_paths(tree, prefix=()):
    for key, value in tree.items():
        if isinstance(value, dict) and key != "runs":
            yield from _leaf_paths(value, prefix + (key,))
        else:
            yield prefix + (key,)


def apply_override(cfg: dict, assignment: str) -> str:
    """Apply `key=value` in place. `key` is a dotted path or a leaf name that is unique. Returns
    the dotted path that was set."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key=value (for example epochs=3)")
    key, text = assignment.split("=", 1)
    key = key.strip()
    # a bare leaf name never means a per-backbone entry (those need their full dotted path)
    paths = [p for p in _leaf_paths(cfg) if ".".join(p) == key] or [
        p for p in _leaf_paths(cfg) if p[-1] == key and PER_BACKBONE not in p]
    if not paths:
        known = sorted(".".join(p) for p in _leaf_paths(cfg))
        raise ConfigError(f"unknown setting {key!r} in override {assignment!r}; known settings: {', '.join(known)}")
    if len(paths) > 1:
        raise ConfigError(f"setting {key!r} is ambiguous: use one of {', '.join('.'.join(p) for p in paths)}")
    node = cfg
    for part in paths[0][:-1]:
        node = node[part]
    node[paths[0][-1]] = _parse_value(text)
    return ".".join(paths[0])


def _check_training(tr: dict, need, where: str) -> None:
    for key in ("epochs", "batch_size", "patience", "clr_step_epochs"):
        need(isinstance(tr[key], int) and tr[key] >= 1, f"{where}.{key} must be a positive integer, got {tr[key]!r}")
    for key in ("learning_rate", "clr_base_lr", "clr_max_lr"):
        need(isinstance(tr[key], (int, float)) and tr[key] > 0, f"{where}.{key} must be > 0, got {tr[key]!r}")
    need(tr["clr_base_lr"] < tr["clr_max_lr"], f"clr_base_lr {tr['clr_base_lr']} must be below clr_max_lr {tr['clr_max_lr']}")
    for key in ("beta_1", "beta_2"):
        need(0 <= tr[key] < 1, f"{where}.{key} must lie in [0, 1), got {tr[key]!r}")
    need(tr.get("max_train_images") is None or (isinstance(tr["max_train_images"], int) and tr["max_train_images"] >= 4),
         f"{where}.max_train_images must be null or an integer >= 4, got {tr.get('max_train_images')!r}")
    need(not (tr.get("run_eagerly") and tr.get("xla")),
         f"{where}: run_eagerly and xla exclude each other (XLA compiles the traced graph that run_eagerly skips)")


def validate(cfg: dict) -> dict:
    from .models import BACKBONES, get_backbone  # local import: models imports tensorflow

    def need(cond, msg):
        if not cond:
            raise ConfigError(f"profile {cfg.get('name')!r}: {msg}")

    per = cfg["training"].get(PER_BACKBONE) or {}
    need(isinstance(per, dict) and all(isinstance(v, dict) for v in per.values()),
         f"training.{PER_BACKBONE} must map backbone names to training settings, got {per!r}")
    _check_training({k: v for k, v in cfg["training"].items() if k != PER_BACKBONE}, need, "training")
    for name, settings in per.items():
        get_backbone(name)  # raises with the list of known names
        unknown = sorted(set(settings) - set(cfg["training"]) - {PER_BACKBONE})
        need(not unknown, f"training.{PER_BACKBONE}.{name} sets unknown training settings {unknown}")
        _check_training(training_for(cfg, name), need, f"training.{PER_BACKBONE}.{name}")
    need(isinstance(cfg.get("jobs", 1), int) and cfg.get("jobs", 1) >= 1, f"jobs must be a positive integer, got {cfg.get('jobs')!r}")
    scale = cfg["input_scale"]
    need(isinstance(scale, (int, float)) and 0 < scale <= 1, f"input_scale must lie in (0, 1], got {scale!r}")
    need(cfg["backbones"], "backbones must list at least one backbone")
    for name in cfg["backbones"]:
        get_backbone(name)  # raises with the list of known names
    runs = {int(k): v for k, v in cfg["runs"].items()}
    need(set(runs) <= set(SIZES), f"runs may only name input sizes {SIZES}, got {sorted(runs)}")
    for size, seeds in runs.items():
        need(isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds),
             f"runs[{size}] must be a non-empty list of non-negative integer seeds, got {seeds!r}")
        px = input_pixels(size, scale)
        for name in cfg["backbones"]:
            bb = BACKBONES[name]
            need(px >= bb.min_size, f"{bb.display} needs inputs of at least {bb.min_size} px, but {size} px x "
                 f"input_scale {scale} gives {px} px; raise input_scale")
    cfg["runs"] = runs
    data = cfg["data"]
    need(data["source"] in ("synthetic", "real"), f"data.source must be 'synthetic' or 'real', got {data['source']!r}")
    if data["source"] == "synthetic":
        need(0 < data["synthetic_scale"] <= 1, f"data.synthetic_scale must lie in (0, 1], got {data['synthetic_scale']!r}")
        need(0 <= data["difficulty"] <= 1, f"data.difficulty must lie in [0, 1], got {data['difficulty']!r}")
    w = cfg["weights"]
    need(w in ("imagenet", "none") or Path(str(w)).exists(),
         f"weights must be 'imagenet', 'none' or an existing weights file, got {w!r}")
    return cfg


def training_for(cfg: dict, backbone: str) -> dict:
    """The training settings of one backbone's runs: `training`, with the backbone's entry of
    `training.per_backbone` on top where the profile has one (CPU profiles, training from random
    initialisation, tune a few settings per backbone; the paper uses one protocol for all). What
    a run records and what its key hashes."""
    from .models import get_backbone

    tr = dict(cfg["training"])
    per = {get_backbone(k).key: v for k, v in (tr.pop(PER_BACKBONE, None) or {}).items()}
    tr.update(per.get(get_backbone(backbone).key, {}))
    return tr


def input_pixels(size: int, scale: float) -> int:
    """Side of the tensor fed to the network: the crop (450 or 300 px) times the input scale."""
    return int(round(size * scale))


def load_profile(name: str = "demo", overrides=(), data_dir: str | None = None) -> dict:
    path = profile_path(name)
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"profile file {path} is not valid YAML: {exc}") from None
    cfg = copy.deepcopy(cfg)
    for assignment in overrides:
        path = apply_override(cfg, assignment).split(".")
        if len(path) == 2 and path[0] == "training":
            # `--set clr_max_lr=X` means every backbone: it replaces the profile's per-backbone values
            for settings in (cfg["training"].get(PER_BACKBONE) or {}).values():
                settings.pop(path[1], None)
    if data_dir:
        cfg["data"]["source"] = "real"
        cfg["data"]["root"] = str(Path(data_dir).expanduser().resolve())
    elif cfg["data"]["source"] == "real" and not cfg["data"].get("root"):
        raise ConfigError(f"profile {cfg['name']!r} reads the real C-NMC-2019 data: pass DATA_DIR=/path/to/C-NMC_Leukemia")
    return validate(cfg)


def fingerprint(obj) -> str:
    """A short stable hash of any JSON-serialisable object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]
